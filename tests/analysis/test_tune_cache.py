"""A re-run of tune reuses its rankings as well as its trials (no new per-layer analysis)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ascend_quant.analysis.tune import Delta, Trial, TuneResult
from ascend_quant.analysis.tuning import LayerScore, tune_precision
from ascend_quant.config import BuildConfig, Precision


@dataclass
class _Evaluator:
    """Passes when conv2 and conv5 are in float (two rounds of the float search: a re-rank)."""

    config: BuildConfig
    precision: Precision = "int8"

    def __call__(self, delta: Delta) -> Trial:
        passed = {"conv2", "conv5"} <= set(delta.floats)
        return Trial(passed, 0.01 if passed else -0.01, {}, "PASSED" if passed else "FAILED")


def test_rerun_takes_the_rankings_from_the_cache(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def scorer(
        config: BuildConfig, precision: Precision, names: Sequence[str]
    ) -> dict[str, LayerScore]:
        calls.append(list(names))
        return {n: LayerScore(float(n in ("conv2", "conv5"))) for n in names}

    costs = {f"conv{i}": 0.1 for i in range(8)}

    def run() -> TuneResult:
        return tune_precision(_Evaluator(BuildConfig()), scorer, costs, tmp_path, {"model": "m"})

    first = run()
    scored = len(calls)
    second = run()
    assert first.passed and second.passed
    assert first.best is not None and first.best.delta.floats == ("conv2", "conv5")
    assert scored >= 1
    assert second.evaluations == 0  # every trial from the cache ...
    assert len(calls) == scored  # ... and every ranking too
    assert second.ranking == first.ranking
