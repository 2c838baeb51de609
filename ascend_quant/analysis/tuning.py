"""Tune one model for one soc: the search of `tune.py` over real trials, and its records.

FP16 first (the ops to keep in FP32, written to atc's `--keep_dtype`), because an INT8 model's
float parts run in FP16 too; then INT8 on top of the FP16 result (calibration overrides, then
`skip_layers`). A precision is searched only when its default build fails its gates. Writes
`tune.json` (every trial: delta, verdict, figures, cost, whether it came from the cache) and
`tune_ranking.json` (the ranking each search started from); returns the deltas, which the build
applies to its config so the rendered configs, scripts and the final models carry them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import onnx

from ascend_quant.analysis.analyze import analyze_models
from ascend_quant.analysis.cost import layer_costs, quantizable_costs, shares
from ascend_quant.analysis.trials import (
    DiskTrialCache,
    TrialEvaluator,
    apply_delta,
    calibration_options,
    check_tunable,
)
from ascend_quant.analysis.tune import Candidate, Delta, Limits, TuneResult, tune
from ascend_quant.backends.base import Backend
from ascend_quant.config import BuildConfig, Precision, parse_budget, to_mapping
from ascend_quant.golden import GoldenSet
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.workspace import atomic_write_json, tool_fingerprint

TUNE_JSON = "tune.json"
RANKING_JSON = "tune_ranking.json"
# Ops that never compute in a precision of their own: not candidates for --keep_dtype.
_NO_COMPUTE = ("Constant", "Identity", "Shape", "Reshape", "Flatten", "Squeeze", "Unsqueeze")


@dataclass(frozen=True)
class LayerScore:
    """What the per-layer analysis says about one layer under a configuration."""

    sensitivity: float  # higher = this layer alone hurts more (-isolated SQNR, dB)
    clip_fraction: float = 0.0  # share of its input values outside the calibrated range


class LayerScorer(Protocol):
    """Per-layer sensitivity of `names` for `precision` under `config` (analysis ranking)."""

    def __call__(
        self, config: BuildConfig, precision: Precision, names: Sequence[str]
    ) -> dict[str, LayerScore]: ...


@dataclass(frozen=True)
class PrecisionTune:
    precision: Precision
    result: TuneResult

    @property
    def delta(self) -> Delta:
        best = self.result.best
        return best.delta if best is not None else Delta()

    def summary(self) -> dict[str, Any]:
        result = self.result
        best = result.best
        return {
            "passed": result.passed,
            "stop": result.stop,
            "message": result.message,
            "delta": self.delta.to_mapping(),
            "cost": best.cost if best is not None else 0.0,
            "trials": len(result.trials),
            "evaluated": result.evaluations,
        }

    def to_json(self) -> dict[str, Any]:
        result = self.result
        return {
            **self.summary(),
            "limits": to_mapping(result.limits),
            "best": result.best.to_mapping() if result.best else None,
            "baseline": result.baseline.to_mapping() if result.baseline else None,
            "path": [r.to_mapping() for r in result.trials],
        }


def candidates_for(model: onnx.ModelProto, precision: Precision) -> dict[str, float]:
    """Layer name -> cost share: quantizable layers for INT8, every computing op for FP16."""
    if precision == "int8":
        return shares(quantizable_costs(model))
    return shares(c for c in layer_costs(model) if c.op_type not in _NO_COMPUTE and c.name)


def _ranking(
    scorer: LayerScorer,
    config: BuildConfig,
    precision: Precision,
    costs: dict[str, float],
    names: Sequence[str],
) -> list[Candidate]:
    scores = scorer(config, precision, list(names))
    return [
        Candidate(
            name,
            scores[name].sensitivity if name in scores else 0.0,
            costs.get(name, 0.0),
            scores[name].clip_fraction if name in scores else 0.0,
        )
        for name in names
    ]


def tune_precision(
    evaluator: TrialEvaluator,
    scorer: LayerScorer,
    costs: dict[str, float],
    cache_dir: Path,
    cache_context: dict[str, Any],
) -> TuneResult:
    """Search one precision; the ranking is computed only when the default build fails."""
    config, precision = evaluator.config, evaluator.precision
    trials, seconds = parse_budget(config.tune.budget)
    limits = Limits(trials=trials, seconds=seconds, max_float=config.tune.max_float)
    cache = DiskTrialCache(cache_dir, cache_context)

    def cached(delta: Delta, names: list[str]) -> list[Candidate]:
        key = json.dumps({"delta": delta.key(), "names": names}, separators=(",", ":"))
        found = cache.get_ranking(key)
        if found is None:
            found = _ranking(scorer, apply_delta(config, delta, precision), precision, costs, names)
            cache.put_ranking(key, found)
        return found

    def ranking() -> list[Candidate]:
        return cached(Delta(), list(costs))

    def rerank(delta: Delta, names: list[str]) -> list[Candidate]:
        return cached(delta, names)

    return tune(
        ranking,
        evaluator,
        limits=limits,
        strategies=config.tune.strategies if precision == "int8" else ("float",),
        options=calibration_options(config) if precision == "int8" else (),
        clip_min=config.tune.clip_min,
        rerank=rerank,
        cache=cache,
    )


def tune_soc(
    make_evaluator: Callable[[BuildConfig, Precision], TrialEvaluator],
    scorer: LayerScorer,
    config: BuildConfig,
    model: Path,
    out_dir: Path,
    cache_dir: Path,
    cache_context: dict[str, Any],
    precisions: Sequence[Precision],
) -> tuple[BuildConfig, list[PrecisionTune]]:
    """Tune each failing precision of `precisions` (FP16 first); returns the tuned config and
    the searches, and writes tune.json and tune_ranking.json into `out_dir`."""
    check_tunable(config)
    loaded = onnx.load(str(model), load_external_data=False)
    done: list[PrecisionTune] = []
    order: tuple[Precision, ...] = ("fp16", "int8")
    for precision in order:
        if precision not in precisions or precision not in config.tune.precisions:
            continue
        evaluator = make_evaluator(config, precision)
        context = {
            **cache_context,
            "precision": precision,
            "config": to_mapping(config),
            "tool": tool_fingerprint(),
        }
        context["config"].pop("tune", None)  # budgets and limits do not change a trial
        # Where the model runs is the caller's cache_context (the resolved backend; the soc on
        # hardware, none on the simulator, where every soc computes the same): the config's own
        # socs/backend/out/model would split the cache, e.g. per soc on the simulator.
        for key in ("socs", "backend", "out", "model"):
            context["config"].pop(key, None)
        result = tune_precision(
            evaluator,
            scorer,
            candidates_for(loaded, precision),
            cache_dir / precision,
            context,
        )
        found = PrecisionTune(precision, result)
        done.append(found)
        config = apply_delta(config, found.delta, precision)
    write_records(out_dir, done)
    return config, done


def write_records(out_dir: Path, done: list[PrecisionTune]) -> list[Path]:
    tune_json = atomic_write_json(
        Path(out_dir) / TUNE_JSON, {"precisions": {t.precision: t.to_json() for t in done}}
    )
    ranking_json = atomic_write_json(
        Path(out_dir) / RANKING_JSON,
        {
            t.precision: [
                {
                    "name": c.name,
                    "sensitivity": c.sensitivity,
                    "cost": c.cost,
                    "clip_fraction": c.clip_fraction,
                }
                for c in t.result.ranking
            ]
            for t in done
        },
    )
    return [tune_json, ranking_json]


def tuned_config(config: BuildConfig, summary: dict[str, Any]) -> BuildConfig:
    """`config` with the deltas a tune stage found (its JSON summary) applied."""
    for precision in ("fp16", "int8"):
        found = summary.get("precisions", {}).get(precision)
        if found is not None:
            config = apply_delta(config, Delta.from_mapping(found["delta"]), precision)
    return config


def run_for_build(
    config: BuildConfig,
    *,
    backend: Backend,
    renders_configs: bool,
    source: Path,
    model: Path,
    source_sha256: str,
    input_shapes: dict[str, tuple[int, ...]],
    soc: str,
    calib_dirs: dict[str, Path],
    eval_dirs: dict[str, Path],
    precisions: Sequence[Precision],
    out_dir: Path,
    cache_dir: Path,
    cache_context: dict[str, Any],
    progress: Progress = NULL_PROGRESS,
    scorer: LayerScorer | None = None,
    golden: GoldenSet | None = None,
) -> tuple[dict[str, Any], list[Path]]:
    """The build's tune stage: (JSON summary per precision, files written)."""

    def make_evaluator(base: BuildConfig, precision: Precision) -> TrialEvaluator:
        return TrialEvaluator(
            config=base,
            precision=precision,
            backend=backend,
            source=source,
            model=model,
            source_sha256=source_sha256,
            input_shapes=input_shapes,
            soc=soc,
            calib_dirs=calib_dirs,
            eval_dirs=eval_dirs,
            work_dir=out_dir / "trial" / precision,
            progress=progress,
            renders_configs=renders_configs,
            golden=golden,
        )

    _, done = tune_soc(
        make_evaluator,
        scorer or analysis_scorer(make_evaluator, model, eval_dirs, out_dir / "rank"),
        config,
        model,
        out_dir,
        cache_dir,
        cache_context,
        precisions,
    )
    summary = {
        "precisions": {t.precision: t.summary() for t in done},
        "tune_json": str(out_dir / TUNE_JSON),
        "ranking_json": str(out_dir / RANKING_JSON),
    }
    return summary, [out_dir / TUNE_JSON, out_dir / RANKING_JSON]


def analysis_scorer(
    make_evaluator: Callable[[BuildConfig, Precision], TrialEvaluator],
    model: Path,
    eval_dirs: dict[str, Path],
    work_dir: Path,
) -> LayerScorer:
    """The per-layer analysis (`analysis/layers.py`) as a `LayerScorer`: convert under the
    config, then rank layers by isolated error on the evaluation set, with clip fractions."""

    def score(
        config: BuildConfig, precision: Precision, names: Sequence[str]
    ) -> dict[str, LayerScore]:
        evaluator = make_evaluator(config, precision)
        artifact = evaluator.convert(config, work_dir / precision)
        analysis = analyze_models(
            model,
            {precision: artifact.path},
            eval_dirs,
            keep_dtype=tuple(config.atc.keep_dtype),
            progress=evaluator.progress,
        )
        wanted = set(names)
        return {
            c.name: LayerScore(c.sensitivity, c.clip_fraction)
            for c in analysis.candidates(precision)
            if c.name in wanted
        }

    return score
