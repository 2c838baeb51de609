"""One tuning trial for real: a `Delta` applied to the build config, converted and judged.

The search (`analysis/tune.py`) knows only deltas and trials; this module gives them meaning:
- `CALIBRATION_OPTIONS` are the per-layer calibration settings the search may try, each one the
  real toolkit can express in `override_layer_configs` (so the deployed model is the validated
  one; simulator-only algorithms never enter a tuned config);
- `apply_delta` turns a delta into a `BuildConfig` (INT8: `skip_layers` and
  `override_layer_configs`; FP16: atc's `keep_dtype`);
- `TrialEvaluator` converts with the build's backend (rendering the toolkit configs first on the
  atc backend, exactly as `build` does) and compares against the FP32 golden with the build's own
  gates, so "passed" in a trial means what PASSED means in the build;
- `DiskTrialCache` keeps every trial's result on disk, keyed by the delta and by everything else
  the trial depends on, so re-runs and bigger budgets resume.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ascend_quant.analysis.tune import Candidate, Delta, Trial
from ascend_quant.backends.base import Artifact, Backend
from ascend_quant.compare import (
    THRESHOLD_METRICS,
    CandidateResult,
    OutputComparison,
    compare_models,
)
from ascend_quant.config import (
    TOOLKIT_ALGORITHMS,
    BuildConfig,
    HfmgConfig,
    IfmrConfig,
    LayerOverride,
    Precision,
    to_mapping,
)
from ascend_quant.errors import UsageError
from ascend_quant.gates import Gate
from ascend_quant.golden import GoldenSet
from ascend_quant.jobs import make_request, render_job
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.workspace import atomic_write_json, read_json, sha256_json

# Per-layer calibration settings that keep more of a layer's range. "ifmr-full": IFMR from the
# true min/max (percentiles 1.0) with a clip search that starts at 1.0, i.e. no clipping; both
# ATC's and amct_onnx's simple configs express it. "hfmg": HFMG's histogram search (amct_onnx only).
CALIBRATION_OPTIONS: dict[str, LayerOverride] = {
    "ifmr-full": LayerOverride(
        algorithm="ifmr",
        ifmr=IfmrConfig(search_range_start=1.0, max_percentile=1.0, min_percentile=1.0),
    ),
    "hfmg": LayerOverride(algorithm="hfmg", hfmg=HfmgConfig()),
}


def calibration_options(config: BuildConfig) -> tuple[str, ...]:
    """The options the INT8 route can deploy: ATC-native calibration has no HFMG."""
    if config.atc.int8_route == "atc":
        return ("ifmr-full",)
    return ("ifmr-full", "hfmg")


def check_tunable(config: BuildConfig) -> None:
    """Tuning searches only what the real toolkit can build."""
    if config.quant.algorithm not in TOOLKIT_ALGORITHMS:
        raise UsageError(
            f"--tune searches only settings the toolkit can express, but --algorithm "
            f"{config.quant.algorithm} exists only in the simulator",
            hint="use --algorithm ifmr (the default) or hfmg with --tune",
        )
    if not 0.0 <= config.tune.max_float <= 1.0:
        raise UsageError(
            f"tune max_float {config.tune.max_float} is not a share in [0, 1]",
            hint="e.g. --max-float 0.5 keeps at most half of the quantizable MACs in float",
        )
    for option in config.tune.strategies:
        if option not in ("calibration", "float"):
            raise UsageError(f"unknown tune strategy '{option}'", hint="calibration, float")


def apply_delta(config: BuildConfig, delta: Delta, precision: Precision) -> BuildConfig:
    """The build config with a tuning delta applied on top of the user's own settings."""
    if precision == "fp16":
        keep = tuple(dict.fromkeys([*config.atc.keep_dtype, *delta.floats]))
        return replace(config, atc=replace(config.atc, keep_dtype=keep))
    quant = config.quant
    overrides = dict(quant.override_layer_configs)
    for layer, option in delta.overrides:
        overrides[layer] = CALIBRATION_OPTIONS[option]
    skip = tuple(dict.fromkeys([*quant.skip_layers, *delta.floats]))
    return replace(config, quant=replace(quant, skip_layers=skip, override_layer_configs=overrides))


def tuned_settings(config: BuildConfig) -> dict[str, Any]:
    """The config keys tuning sets, as `ascend-quant.toml` spells them (for --write-config)."""
    return {
        "quant": {
            "skip_layers": list(config.quant.skip_layers),
            "override_layer_configs": to_mapping(config.quant.override_layer_configs),
        },
        "atc": {"keep_dtype": list(config.atc.keep_dtype)},
    }


def _gate_values(output: OutputComparison) -> list[tuple[Gate, float | None]]:
    """Each gate of an output with the value it judges (aggregate, or the worst sample)."""
    gates = list(output.gates) or [
        Gate(key, op, float(getattr(output.thresholds, attr)))  # type: ignore[arg-type]
        for attr, (key, op) in THRESHOLD_METRICS.items()
    ]
    table = {"aggregate": output.metrics, "worst": output.worst}
    return [(g, table[g.scope].get(g.metric)) for g in gates]


def gate_margin(candidate: CandidateResult) -> float:
    """The worst gate's margin relative to its threshold: >= 0 passes, NaN/inf is -inf."""
    margins: list[float] = []
    for output in candidate.outputs:
        for gate, value in _gate_values(output):
            if value is None:
                continue
            if not math.isfinite(value):
                return -math.inf
            scale = max(abs(gate.threshold), 1e-12)
            diff = value - gate.threshold if gate.op == ">=" else gate.threshold - value
            margins.append(diff / scale)
    if not margins:
        return 0.0 if candidate.passed else -math.inf
    worst = min(margins)
    return min(worst, -1e-12) if not candidate.passed and worst >= 0 else worst


def _headline(candidate: CandidateResult) -> dict[str, float | None]:
    """The figures the search path shows: per gated metric, the worst output's judged value."""
    figures: dict[str, float | None] = {}
    for output in candidate.outputs:
        for gate, value in _gate_values(output):
            if value is None:
                continue
            key = gate.metric if gate.scope == "aggregate" else f"worst_{gate.metric}"
            old = figures.get(key)
            worse = old is None or (value < old if gate.op == ">=" else value > old)
            figures[key] = float(value) if worse else old
    psnr = [o.metrics.get("psnr_db") for o in candidate.outputs]
    numbers = [float(v) for v in psnr if v is not None]
    if numbers and "psnr_db" not in figures:
        figures["psnr_db"] = min(numbers)
    return figures


@dataclass
class TrialEvaluator:
    """`evaluate(delta) -> Trial` for one model, soc and precision over a backend."""

    config: BuildConfig
    precision: Precision
    backend: Backend
    source: Path  # the user's .onnx (the FP32 golden)
    model: Path  # the preflighted model that is converted
    source_sha256: str
    input_shapes: dict[str, tuple[int, ...]]
    soc: str
    calib_dirs: dict[str, Path]
    eval_dirs: dict[str, Path]
    work_dir: Path  # scratch space for the trial's configs, .om and compare outputs
    progress: Progress = NULL_PROGRESS
    renders_configs: bool = False  # the atc backend converts from rendered toolkit configs
    golden: GoldenSet | None = None  # the build's FP32 outputs on the eval set, computed once

    def config_for(self, delta: Delta) -> BuildConfig:
        return apply_delta(self.config, delta, self.precision)

    def convert(self, config: BuildConfig, work_dir: Path) -> Artifact:
        """Convert the model under `config` into `work_dir` (configs rendered first on atc)."""
        config_dir = work_dir / "configs"
        if self.renders_configs:
            render_job(
                config,
                self.soc,
                model=self.model,
                source_sha256=self.source_sha256,
                input_shapes=self.input_shapes,
                calib_dirs=self.calib_dirs,
                config_dir=config_dir,
                om_dir=work_dir / "om",
                name=self.source.stem,
            )
        request = make_request(
            config,
            model=self.model,
            source_sha256=self.source_sha256,
            input_shapes=self.input_shapes,
            soc=self.soc,
            precision=self.precision,
            out_dir=work_dir / "om",
            name=self.source.stem,
            calib_dirs=self.calib_dirs,
            config_dir=config_dir,
        )
        return self.backend.convert(request, self.progress)

    def __call__(self, delta: Delta) -> Trial:
        started = time.perf_counter()
        config = self.config_for(delta)
        artifact = self.convert(config, self.work_dir)
        result = compare_models(
            self.source,
            [artifact.path],
            [d / "samples" for d in self.eval_dirs.values()],
            self.work_dir / "compare",
            thresholds=config.thresholds,
            output_thresholds=config.output_thresholds,
            progress=self.progress,
            accuracy=config.accuracy,
            golden=self.golden,
        )
        candidate = result.candidates[0]
        return Trial(
            passed=candidate.passed,
            margin=gate_margin(candidate),
            metrics=_headline(candidate),
            verdict=result.verdict,
            seconds=time.perf_counter() - started,
        )


class DiskTrialCache:
    """Trials as small JSON files under `root`, keyed by the delta within a `context` (a hash of
    everything else a trial depends on: model, data, settings, backend, code)."""

    def __init__(self, root: Path, context: dict[str, Any]) -> None:
        self.root = Path(root)
        self.context = sha256_json(context)

    def _path(self, key: str) -> Path:
        return self.root / f"{sha256_json({'context': self.context, 'delta': key})}.json"

    def get(self, key: str) -> Trial | None:
        try:
            data = read_json(self._path(key))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("delta") != key:
            return None
        try:
            return Trial.from_mapping(data["trial"])
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, key: str, trial: Trial) -> None:
        atomic_write_json(self._path(key), {"delta": key, "trial": trial.to_mapping()})

    def get_ranking(self, key: str) -> list[Candidate] | None:
        """A ranking stored by `put_ranking` under `key` in this context, or None."""
        try:
            data = read_json(self._path(f"ranking:{key}"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("ranking_of") != key:
            return None
        try:
            return [
                Candidate(str(c["name"]), float(c["sensitivity"]), float(c["cost"]),
                          float(c["clip_fraction"]))
                for c in data["ranking"]
            ]  # fmt: skip
        except (KeyError, TypeError, ValueError):
            return None

    def put_ranking(self, key: str, ranking: list[Candidate]) -> None:
        """Keep a per-layer ranking: on a re-run whose trials all come from the cache it was
        the slowest part (a full per-layer analysis each time)."""
        rows = [
            {"name": c.name, "sensitivity": c.sensitivity, "cost": c.cost,
             "clip_fraction": c.clip_fraction}
            for c in ranking
        ]  # fmt: skip
        atomic_write_json(self._path(f"ranking:{key}"), {"ranking_of": key, "ranking": rows})
