"""Accuracy-driven mixed precision: the search, with no model, backend or file in sight.

Given a ranking of quantizable layers (most harmful first, each with its cost) and an
`evaluate(delta) -> Trial` that builds and judges one configuration, find the cheapest change to
the default configuration whose every gate passes. A change (`Delta`) has two parts, tried in
this order by default:

1. `calibration`: per-layer calibration settings (`override_layer_configs`) on the layers whose
   activations were clipped, keeping INT8. The option names are opaque here; the caller maps
   them to settings the real toolkit can express. Trying one option on every clipped layer costs
   one trial; when that passes, a binary search finds the shortest prefix of the ranking that
   still passes, and each layer before the prefix's last is dropped when the model passes
   without it, so only the layers that need it are changed. When none passes, the first
   option (in the caller's order of preference) that raised the margin is kept for step 2.
2. `float`: layers kept in float (`skip_layers` for INT8, `--keep_dtype` for FP16), in ranking
   order. First AMCT's binary search over how many of the top-ranked layers (the largest prefix
   within `max_float` is tried first: if it fails no prefix can pass). The last layer of the
   shortest passing prefix is proved necessary; it is kept, the rest of that prefix is re-ranked
   against the model with it in float (as NNCF re-ranks), and the search repeats on them until
   the kept layers pass on their own. A final pass steps back each kept layer (costliest first)
   and each calibration override kept from step 1, and drops what the model passes without.
   With k necessary layers among N this takes
   O(k log N) trials instead of AMCT's one-layer-at-a-time linear scan.

Cost model (explicit, replaceable): the share of the model's quantizable MACs kept in float,
i.e. the sum of `Candidate.cost` over the layers in `Delta.floats`. Calibration overrides cost
nothing (the layer stays INT8). Among passing configurations the cheapest wins, then the one
with fewer changes, then the larger margin.

Limits: `Limits.trials` and `Limits.seconds` (the `--tune-budget`) and `Limits.max_float` (the
most float share the search may spend). Whatever stops the search, the result holds the best
configuration found so far and a sentence naming the limit. Every trial goes through a
`TrialCache` keyed by `Delta.key()`, so a re-run or a bigger budget repeats no evaluation.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

Strategy = Literal["calibration", "float"]
StopReason = Literal["passed", "already-passed", "trials", "seconds", "max-float", "exhausted"]
STRATEGIES: tuple[Strategy, ...] = ("calibration", "float")
DEFAULT_MAX_FLOAT = 0.5


@dataclass(frozen=True)
class Candidate:
    """One quantizable layer as the ranking sees it."""

    name: str  # the ONNX node name (preflighted model)
    sensitivity: float  # higher = quantizing it alone hurts more (e.g. -SQNR, 1 - cosine)
    cost: float  # its share of the model's quantizable MACs: what keeping it in float costs
    clip_fraction: float = 0.0  # share of its input values outside the calibrated range


@dataclass(frozen=True)
class Delta:
    """A change to the built configuration: per-layer calibration options and float layers."""

    overrides: tuple[tuple[str, str], ...] = ()  # (layer, option), sorted by layer
    floats: tuple[str, ...] = ()  # layers kept in float, sorted

    @staticmethod
    def of(overrides: Mapping[str, str] | None = None, floats: Sequence[str] = ()) -> Delta:
        return Delta(tuple(sorted((overrides or {}).items())), tuple(sorted(set(floats))))

    def key(self) -> str:
        """Canonical text of the change: the trial cache's key (order-independent)."""
        return json.dumps(
            {"overrides": [list(o) for o in self.overrides], "floats": list(self.floats)},
            separators=(",", ":"),
            ensure_ascii=False,
        )

    def with_floats(self, floats: Sequence[str]) -> Delta:
        return Delta(self.overrides, tuple(sorted(set(self.floats) | set(floats))))

    def without_float(self, name: str) -> Delta:
        return Delta(self.overrides, tuple(f for f in self.floats if f != name))

    @property
    def changes(self) -> int:
        return len(self.overrides) + len(self.floats)

    def to_mapping(self) -> dict[str, object]:
        return {"override_layer_configs": dict(self.overrides), "floats": list(self.floats)}

    @staticmethod
    def from_mapping(data: Mapping[str, object]) -> Delta:
        overrides = data.get("override_layer_configs") or {}
        floats = data.get("floats") or []
        if not isinstance(overrides, dict) or not isinstance(floats, list):
            raise ValueError(f"not a tune delta: {data!r}")
        return Delta.of({str(k): str(v) for k, v in overrides.items()}, [str(f) for f in floats])


@dataclass(frozen=True)
class Trial:
    """What one evaluated configuration scored."""

    passed: bool
    margin: float  # the worst gate's normalised margin: >= 0 passes, larger is better
    metrics: Mapping[str, float | None] = field(default_factory=dict)
    verdict: str = ""  # "PASSED" or "FAILED: ..." as the gates say it
    seconds: float = 0.0  # wall time of the evaluation itself

    def to_mapping(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "margin": _json_float(self.margin),
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
            "verdict": self.verdict,
            "seconds": round(self.seconds, 4),
        }

    @staticmethod
    def from_mapping(data: Mapping[str, object]) -> Trial:
        metrics = data.get("metrics") or {}
        assert isinstance(metrics, dict)
        margin = data.get("margin")
        seconds = data.get("seconds", 0.0)
        return Trial(
            passed=bool(data["passed"]),
            margin=-math.inf if margin is None else float(margin),  # type: ignore[arg-type]
            metrics={str(k): None if v is None else float(v) for k, v in metrics.items()},
            verdict=str(data.get("verdict", "")),
            seconds=float(seconds),  # type: ignore[arg-type]
        )


def _json_float(value: float | None) -> float | None:
    """JSON has no NaN/inf: those become null (a failed or undefined figure)."""
    return None if value is None or not math.isfinite(value) else value


@dataclass(frozen=True)
class TrialRecord:
    """One step of the search, in order: the accuracy-cost path of the report."""

    index: int
    phase: str  # "baseline" | "calibration" | "float" | "prune"
    delta: Delta
    trial: Trial
    cost: float
    cached: bool

    def to_mapping(self) -> dict[str, object]:
        return {
            "index": self.index,
            "phase": self.phase,
            "delta": self.delta.to_mapping(),
            "cost": round(self.cost, 6),
            "cached": self.cached,
            **self.trial.to_mapping(),
        }


@dataclass(frozen=True)
class Limits:
    trials: int | None = None  # evaluations, cached ones included (so a budget is repeatable)
    seconds: float | None = None  # wall time of the search
    max_float: float = DEFAULT_MAX_FLOAT  # most share of quantizable MACs kept in float


class Evaluator(Protocol):
    def __call__(self, delta: Delta) -> Trial: ...


class Ranker(Protocol):
    """Re-rank layers against the model with `delta` applied (NNCF's re-ranking step)."""

    def __call__(self, delta: Delta, names: list[str]) -> list[Candidate]: ...


class TrialCache(Protocol):
    def get(self, key: str) -> Trial | None: ...

    def put(self, key: str, trial: Trial) -> None: ...


class MemoryCache:
    """A dict-backed `TrialCache` (tests, and the in-run layer over a disk cache)."""

    def __init__(self) -> None:
        self.data: dict[str, Trial] = {}

    def get(self, key: str) -> Trial | None:
        return self.data.get(key)

    def put(self, key: str, trial: Trial) -> None:
        self.data[key] = trial


@dataclass(frozen=True)
class TuneResult:
    passed: bool
    stop: StopReason
    message: str  # one sentence: what was found, or which limit stopped the search
    best: TrialRecord | None  # cheapest passing, else the closest to passing
    baseline: TrialRecord | None
    trials: list[TrialRecord]
    ranking: list[Candidate]
    limits: Limits

    @property
    def evaluations(self) -> int:
        return sum(1 for t in self.trials if not t.cached)


class _Stop(Exception):
    def __init__(self, reason: StopReason) -> None:
        super().__init__(reason)
        self.reason = reason


class _Search:
    """The state of one search: budget accounting, the cache and the best record so far."""

    def __init__(
        self,
        evaluate: Evaluator,
        costs: Mapping[str, float],
        limits: Limits,
        cache: TrialCache,
        clock: Callable[[], float],
    ) -> None:
        self.evaluate = evaluate
        self.costs = costs
        self.limits = limits
        self.cache = cache
        self.clock = clock
        self.start = clock()
        self.records: list[TrialRecord] = []
        self.seen: dict[str, TrialRecord] = {}

    def cost(self, delta: Delta) -> float:
        return sum(self.costs.get(name, 0.0) for name in delta.floats)

    def run(self, delta: Delta, phase: str) -> Trial:
        """Evaluate `delta` (from this run's memory, the cache, or for real), within limits."""
        key = delta.key()
        if key in self.seen:
            return self.seen[key].trial
        if self.limits.trials is not None and len(self.records) >= self.limits.trials:
            raise _Stop("trials")
        if self.limits.seconds is not None and self.clock() - self.start >= self.limits.seconds:
            raise _Stop("seconds")
        trial = self.cache.get(key)
        cached = trial is not None
        if trial is None:
            trial = self.evaluate(delta)
            self.cache.put(key, trial)
        record = TrialRecord(len(self.records), phase, delta, trial, self.cost(delta), cached)
        self.records.append(record)
        self.seen[key] = record
        return trial

    def best(self) -> TrialRecord | None:
        passing = [r for r in self.records if r.trial.passed]
        if passing:
            return min(passing, key=lambda r: (r.cost, r.delta.changes, -r.trial.margin))
        if not self.records:
            return None
        return max(self.records, key=lambda r: (r.trial.margin, -r.cost, -r.index))


def _prefix_search(passes: Callable[[int], bool], lo: int, hi: int) -> int:
    """Smallest n in (lo, hi] with passes(n), given passes(hi) and not passes(lo)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _calibration_phase(
    search: _Search, base: Delta, ranking: list[Candidate], options: Sequence[str], clip_min: float
) -> Delta | None:
    """Per-layer calibration options on clipped layers; returns a passing delta, or the best
    improving one as the new base (None when nothing helped)."""
    clipped = [c.name for c in ranking if c.clip_fraction > clip_min]
    if not clipped or not options:
        return None
    base_margin = search.run(base, "calibration").margin
    best: Delta | None = None
    for option in options:

        def with_option(n: int, option: str = option) -> Delta:
            chosen = dict(base.overrides)
            chosen.update({name: option for name in clipped[:n]})
            return Delta.of(chosen, base.floats)

        full = with_option(len(clipped))
        trial = search.run(full, "calibration")
        if trial.passed:
            n = _prefix_search(
                lambda n: search.run(with_option(n), "calibration").passed, 0, len(clipped)
            )
            return _step_back_overrides(search, with_option(n), clipped[: n - 1])
        if trial.margin > base_margin and best is None:  # options come in order of preference
            best = full
    return best


def _step_back_overrides(search: _Search, delta: Delta, layers: Sequence[str]) -> Delta:
    """Drop each override of `layers` the model passes without: the prefix search proves only
    the prefix's last layer necessary, not the more sensitive ones before it."""
    for layer in layers:
        fewer = Delta(tuple(o for o in delta.overrides if o[0] != layer), delta.floats)
        if fewer != delta and search.run(fewer, "prune").passed:
            delta = fewer
    return delta


def _float_phase(
    search: _Search,
    base: Delta,
    ranking: list[Candidate],
    rerank: Ranker | None,
) -> StopReason | None:
    """Group-testing search over layers kept in float; returns a stop reason or None (passed)."""
    budget = search.limits.max_float - search.cost(base)
    pool: list[str] = []
    spent = 0.0
    for cand in ranking:
        if cand.name in base.floats:
            continue
        if spent + cand.cost > budget + 1e-12:
            break
        pool.append(cand.name)
        spent += cand.cost
    everything = len(pool) == sum(1 for c in ranking if c.name not in base.floats)
    if everything:  # at least one layer stays quantized, or it is not an INT8 model at all
        pool = pool[:-1]
    if not pool:
        return "max-float"
    if not search.run(base.with_floats(pool), "float").passed:
        return "exhausted" if everything else "max-float"
    fixed: list[str] = []
    while True:

        def passes(n: int, pool: list[str] = pool) -> bool:
            return search.run(base.with_floats(fixed + pool[:n]), "float").passed

        n = _prefix_search(passes, 0, len(pool))
        fixed.append(pool[n - 1])
        pool = pool[: n - 1]
        if not pool or search.run(base.with_floats(fixed), "float").passed:
            break
        if rerank is not None:
            order = {c.name: c.sensitivity for c in rerank(base.with_floats(fixed), pool)}
            pool.sort(key=lambda name: -order.get(name, -math.inf))
    # Step back: drop each kept layer (costliest first) that the model passes without.
    for name in sorted(fixed, key=lambda n: -search.costs.get(n, 0.0)):
        fewer = base.with_floats(fixed).without_float(name)
        if len(fixed) > 1 and search.run(fewer, "prune").passed:
            fixed.remove(name)
    # Calibration overrides kept because they helped may not be needed once layers are in float.
    _step_back_overrides(search, base.with_floats(fixed), [layer for layer, _ in base.overrides])
    return None


def tune(
    ranking: Sequence[Candidate] | Callable[[], Sequence[Candidate]],
    evaluate: Evaluator,
    *,
    limits: Limits = Limits(),
    strategies: Sequence[Strategy] = STRATEGIES,
    options: Sequence[str] = (),
    clip_min: float = 0.0,
    rerank: Ranker | None = None,
    cache: TrialCache | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> TuneResult:
    """Search for the cheapest passing change to the default configuration (module docstring).

    `ranking`: every quantizable layer, most sensitive first (it is re-sorted by sensitivity);
    or a function computing it, called only when the default configuration fails.
    `options`: calibration option names for the `calibration` strategy, tried in order.
    `clip_min`: layers whose clip fraction exceeds it are the calibration strategy's targets.
    """
    for strategy in strategies:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown tune strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    if not 0.0 <= limits.max_float <= 1.0:
        raise ValueError(f"max_float must be within [0, 1], got {limits.max_float}")
    search = _Search(evaluate, {}, limits, cache or MemoryCache(), clock)
    base = Delta()
    stop: StopReason | None = None
    ordered: list[Candidate] = []
    try:
        baseline = search.run(base, "baseline")
        if baseline.passed:
            stop = "already-passed"
        else:
            listed = ranking() if callable(ranking) else ranking
            ordered = sorted(listed, key=lambda c: -c.sensitivity)
            search.costs = {c.name: c.cost for c in ordered}
        for strategy in strategies if stop is None else ():
            if strategy == "calibration":
                found = _calibration_phase(search, base, ordered, options, clip_min)
                if found is not None:
                    base = found
                    if search.run(base, "calibration").passed:
                        stop = "passed"
                        break
            else:
                stop = _float_phase(search, base, ordered, rerank) or "passed"
                break
        if stop is None:
            stop = "exhausted"
    except _Stop as exc:
        stop = exc.reason
    best = search.best()
    passed = best is not None and best.trial.passed
    return TuneResult(
        passed=passed,
        stop=stop,
        message=_message(stop, best, limits, len(search.records), [c.name for c in ordered]),
        best=best,
        baseline=search.records[0] if search.records else None,
        trials=search.records,
        ranking=ordered,
        limits=limits,
    )


def _names(names: Sequence[str], ranking: Sequence[str], shown: int = 3) -> str:
    """The first few names, most sensitive first: the culprit, not the alphabet's first."""
    rank = {name: i for i, name in enumerate(ranking)}
    names = sorted(names, key=lambda name: (rank.get(name, len(rank)), name))
    more = f" +{len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _describe(record: TrialRecord, ranking: Sequence[str]) -> str:
    """What the change is, with the layer names: a count alone left the user to dig in
    tune.json for which layers were changed and how."""
    parts = []
    overrides = record.delta.overrides
    if overrides:
        by_option: dict[str, list[str]] = {}
        for layer, option in overrides:
            by_option.setdefault(option, []).append(layer)
        which = "; ".join(
            f"{option} on {_names(layers, ranking)}" for option, layers in by_option.items()
        )
        parts.append(f"{len(overrides)} calibration override(s) ({which})")
    if record.delta.floats:
        parts.append(
            f"{len(record.delta.floats)} layer(s) in float ({record.cost:.1%} of MACs: "
            f"{_names(record.delta.floats, ranking)})"
        )
    return ", ".join(parts) or "the default configuration"


def _trials(count: int | None) -> str:
    return f"{count} trial" if count == 1 else f"{count} trials"


def _message(
    stop: StopReason,
    best: TrialRecord | None,
    limits: Limits,
    trials: int,
    ranking: Sequence[str] = (),
) -> str:
    if stop == "already-passed":
        return "the default configuration already passes every gate; nothing to tune"
    if best is not None and best.trial.passed:
        text = f"passes with {_describe(best, ranking)} after {trials} trial(s)"
        if stop in ("trials", "seconds"):
            budget = _trials(limits.trials) if stop == "trials" else f"{limits.seconds:g} s"
            text += f" (the budget of {budget} ended the search before it could cut cost further)"
        return text
    found = ""
    if best is not None:
        found = f"; best so far: {_describe(best, ranking)} ({best.trial.verdict or 'FAILED'})"
    if stop == "trials":
        return f"stopped at the trial budget ({_trials(limits.trials)}) before any passed{found}"
    if stop == "seconds":
        return f"stopped at the time budget ({limits.seconds:g} s) before any passed{found}"
    if stop == "max-float":
        return (
            f"stopped at max_float: no passing configuration keeps at most {limits.max_float:.0%} "
            f"of the quantizable MACs in float{found}"
        )
    return f"no configuration passes, even with all quantizable layers but one in float{found}"
