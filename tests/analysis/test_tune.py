"""The tuning search against fake evaluators: what it finds, how many trials, how it stops."""

from __future__ import annotations

import math
import random

import pytest

from ascend_quant.analysis.tune import (
    Candidate,
    Delta,
    Limits,
    MemoryCache,
    Trial,
    tune,
)


class Fake:
    """Passes when every `needed` layer is in float and every `fixable` layer has `option`
    (or is in float). The margin counts what is still missing, so partial fixes help."""

    def __init__(
        self,
        needed: set[str],
        fixable: dict[str, str] | None = None,
        nothing_passes: bool = False,
    ) -> None:
        self.needed = needed
        self.fixable = fixable or {}
        self.nothing_passes = nothing_passes
        self.calls: list[Delta] = []

    def __call__(self, delta: Delta) -> Trial:
        self.calls.append(delta)
        floats = set(delta.floats)
        overrides = dict(delta.overrides)
        missing = len(self.needed - floats)
        missing += sum(
            1
            for name, option in self.fixable.items()
            if name not in floats and overrides.get(name) != option
        )
        passed = missing == 0 and not self.nothing_passes
        margin = 0.01 if passed else -0.01 * (missing or 1)
        return Trial(passed, margin, {"cosine": 0.99 + margin}, "PASSED" if passed else "FAILED")


def _ranking(n: int, sensitive: list[str], clipped: tuple[str, ...] = ()) -> list[Candidate]:
    """n layers L0..L{n-1}, equal cost; `sensitive` ranked in the top places but not first."""
    rng = random.Random(n)
    names = [f"L{i}" for i in range(n)]
    scores = {name: rng.random() for name in names}
    for i, name in enumerate(sensitive):
        scores[name] = 2.0 + 0.1 * i
    return [
        Candidate(name, scores[name], 1.0 / n, 0.3 if name in clipped else 0.0) for name in names
    ]


@pytest.mark.parametrize(("n", "k"), [(16, 1), (64, 1), (64, 2), (256, 3), (1024, 2)])
def test_finds_exactly_the_needed_layers_in_o_k_log_n(n: int, k: int) -> None:
    needed = [f"L{(7 * i + 3) % n}" for i in range(k)]
    fake = Fake(set(needed))
    result = tune(_ranking(n, needed), fake, limits=Limits(max_float=1.0))
    assert result.passed and result.stop == "passed"
    assert result.best is not None
    assert set(result.best.delta.floats) == set(needed)
    assert result.best.cost == pytest.approx(k / n)
    bound = 2 + k * (math.ceil(math.log2(n)) + 2)
    assert result.evaluations <= bound, (result.evaluations, bound)
    assert result.evaluations < n


def test_imperfect_ranking_still_finds_the_minimal_set() -> None:
    """The needed layers sit among noise in the ranking: the prefix contains extra layers that
    the group-testing rounds and the step-back pass drop."""
    n = 64
    ranking = [Candidate(f"L{i}", float(n - i), 1.0 / n) for i in range(n)]
    needed = {"L2", "L40"}  # L40 is ranked 41st: the first passing prefix holds 41 layers
    result = tune(ranking, Fake(needed), limits=Limits(max_float=1.0))
    assert result.best is not None and set(result.best.delta.floats) == needed


def test_rerank_orders_the_rest_against_the_current_model() -> None:
    n = 32
    ranking = [Candidate(f"L{i}", float(n - i), 1.0 / n) for i in range(n)]
    needed = {"L20", "L25"}
    asked: list[tuple[Delta, list[str]]] = []

    def rerank(delta: Delta, names: list[str]) -> list[Candidate]:
        asked.append((delta, list(names)))
        return [Candidate(nm, 10.0 if nm in needed else 0.0, 1.0 / n) for nm in names]

    plain = tune(ranking, Fake(needed), limits=Limits(max_float=1.0))
    reranked = tune(ranking, Fake(needed), limits=Limits(max_float=1.0), rerank=rerank)
    assert asked and asked[0][0].floats == ("L25",)
    assert reranked.best is not None and set(reranked.best.delta.floats) == needed
    assert reranked.evaluations <= plain.evaluations


def test_baseline_that_passes_needs_one_trial() -> None:
    result = tune(_ranking(8, []), Fake(set()))
    assert result.stop == "already-passed" and result.passed
    assert result.evaluations == 1
    assert result.best is not None and result.best.delta == Delta()


def test_calibration_first_keeps_int8() -> None:
    """A clipped layer fixed by a calibration option: no layer goes to float."""
    fake = Fake(set(), fixable={"L5": "ifmr-full"})
    ranking = _ranking(32, ["L5"], clipped=("L5", "L9", "L11"))
    result = tune(ranking, fake, options=("ifmr-full", "hfmg"))
    assert result.passed
    assert result.best is not None
    assert result.best.delta.floats == ()
    assert result.best.delta.overrides == (("L5", "ifmr-full"),)
    assert result.best.cost == 0.0


def test_calibration_keeps_only_the_overrides_it_needs() -> None:
    """The prefix search ends at the last needed layer of the ranking; the more sensitive
    clipped layers before it are stepped back when the model passes without them (a ViT's
    tune kept a 6 %-clipped layer's override that only a 0.1 %-clipped one needed)."""
    fake = Fake(set(), fixable={"L11": "ifmr-full"})
    ranking = _ranking(32, ["L5"], clipped=("L5", "L9", "L11"))
    result = tune(ranking, fake, options=("ifmr-full",))
    assert result.passed and result.best is not None
    assert result.best.delta.overrides == (("L11", "ifmr-full"),)
    assert result.message.startswith("passes with 1 calibration override(s) (ifmr-full on L11)")


def test_calibration_then_float_when_calibration_is_not_enough() -> None:
    fake = Fake({"L3"}, fixable={"L5": "hfmg"})
    ranking = _ranking(32, ["L5", "L3"], clipped=("L5",))
    result = tune(ranking, fake, options=("ifmr-full", "hfmg"))
    assert result.best is not None and result.passed
    assert result.best.delta.overrides == (("L5", "hfmg"),)
    assert result.best.delta.floats == ("L3",)
    assert "(hfmg on L5), 1 layer(s) in float (3.1% of MACs: L3)" in result.message


def test_strategy_order_float_only() -> None:
    fake = Fake(set(), fixable={"L5": "hfmg"})
    ranking = _ranking(16, ["L5"], clipped=("L5",))
    result = tune(ranking, fake, options=("hfmg",), strategies=("float",))
    assert result.best is not None and result.best.delta.floats == ("L5",)
    assert not result.best.delta.overrides


def test_max_float_stops_with_a_message() -> None:
    ranking = [Candidate(f"L{i}", float(10 - i), 0.1) for i in range(10)]
    fake = Fake({"L0", "L1", "L2", "L7"})  # needs 40 % of MACs but L7 is past a 30 % prefix
    result = tune(ranking, fake, limits=Limits(max_float=0.3))
    assert not result.passed and result.stop == "max-float"
    assert "max_float" in result.message and "30%" in result.message
    assert result.best is not None  # the closest configuration is still reported
    assert all(r.cost <= 0.3 + 1e-9 for r in result.trials)


def test_trial_budget_stops_and_keeps_the_best_so_far() -> None:
    needed = ["L3", "L9"]
    result = tune(_ranking(128, needed), Fake(set(needed)), limits=Limits(trials=3, max_float=1))
    assert result.stop == "trials"
    assert len(result.trials) == 3
    assert "3 trials" in result.message


def test_time_budget_uses_the_clock() -> None:
    ticks = iter(range(0, 1000, 10))
    needed = ["L3", "L9"]
    result = tune(
        _ranking(128, needed),
        Fake(set(needed)),
        limits=Limits(seconds=25, max_float=1.0),
        clock=lambda: float(next(ticks)),
    )
    assert result.stop == "seconds" and "25 s" in result.message


def test_nothing_passes_says_so() -> None:
    result = tune(_ranking(8, []), Fake(set(), nothing_passes=True), limits=Limits(max_float=1))
    assert result.stop == "exhausted" and not result.passed
    assert "all quantizable layers but one in float" in result.message
    assert all(len(r.delta.floats) < 8 for r in result.trials)


def test_cache_resumes_a_bigger_budget_without_repeating_trials() -> None:
    needed = ["L3", "L9"]
    ranking = _ranking(128, needed)
    cache = MemoryCache()
    first = Fake(set(needed))
    stopped = tune(ranking, first, limits=Limits(trials=4, max_float=1.0), cache=cache)
    assert stopped.stop == "trials"
    second = Fake(set(needed))
    done = tune(ranking, second, limits=Limits(max_float=1.0), cache=cache)
    assert done.passed
    assert sum(1 for r in done.trials if r.cached) == 4
    assert len(second.calls) == len(done.trials) - 4
    assert not set(d.key() for d in first.calls) & set(d.key() for d in second.calls)


def test_delta_key_is_order_independent_and_round_trips() -> None:
    a = Delta.of({"b": "hfmg", "a": "ifmr-full"}, ["y", "x", "x"])
    b = Delta.of({"a": "ifmr-full", "b": "hfmg"}, ["x", "y"])
    assert a.key() == b.key()
    assert Delta.from_mapping(a.to_mapping()) == a
    trial = Trial(False, -math.inf, {"cosine": math.nan}, "FAILED: nan")
    back = Trial.from_mapping(trial.to_mapping())
    assert back.margin == -math.inf and back.metrics["cosine"] is None


def test_unknown_strategy_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown tune strategy"):
        tune(_ranking(4, []), Fake(set()), strategies=("magic",))  # type: ignore[arg-type]


def test_overrides_that_only_helped_are_dropped_once_floats_pass() -> None:
    """An override that raises the margin but is not needed does not stay in the result."""

    class Helpful(Fake):
        def __call__(self, delta: Delta) -> Trial:
            trial = super().__call__(delta)
            bonus = 0.001 if dict(delta.overrides).get("L5") == "ifmr-full" else 0.0
            return Trial(trial.passed, trial.margin + bonus, trial.metrics, trial.verdict)

    ranking = _ranking(16, ["L3"], clipped=("L5",))
    result = tune(ranking, Helpful({"L3"}), options=("ifmr-full",))
    assert result.best is not None
    assert result.best.delta == Delta.of(floats=["L3"])


def test_message_names_the_most_sensitive_float_layers_first() -> None:
    """Names are shown in ranking order: alphabetically, the culprit (here "Z9", ranked first)
    hid under "+N more" behind layers that were only in the passing prefix."""
    names = ["Z9", "A1", "B2", "C3", "D4", "E5", "F6", "G7"]
    ranking = [Candidate(name, float(10 - i), 0.05) for i, name in enumerate(names)]
    result = tune(ranking, Fake(set(names[:5])), limits=Limits(max_float=1))
    assert result.passed
    assert "of MACs: Z9, A1, B2 +2 more)" in result.message
