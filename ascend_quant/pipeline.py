"""`build`: every stage from ONNX model to report, for one or more socs, cached by content hash.

Workspace layout (default `build/<model-stem>/`):

    .lock                      held for the whole build; a second build gets a clear error
    .state/<stage>.json        what each soc-independent stage ran on (its key) and produced
    model/                     preflight: <stem>.sim.onnx, <stem>.json
    calib/<input>/             calibration set (samples/, batches_bs<N>/, manifest.json)
    eval/<input>/              evaluation set from held-apart images, same preprocessing
    golden/                    FP32 outputs on the eval set (golden.json), shared by every soc
    <soc>/.state/<stage>.json  the same records for the per-soc stages
    <soc>/configs/             quant_config.json, *.cfg, atc_fp16.sh, atc_int8.sh, amct_int8.sh,
                               atc_w8.sh (weight-only INT8, on socs that support it)
    <soc>/om/                  <stem>_fp16.om, <stem>_int8.om, <stem>_w8.om, each + .json manifest
    <soc>/reports/             bench.json, compare.json, report.json, report.html

The build is the table `PIPELINE` of `Stage`s. Each stage's `key` lists exactly what the stage
depends on (a hash of its inputs' hashes, its settings and the tool's code), its `run` does the
work, and its `load` puts the result into the typed records (`Prepared`, `SocWork`) that later
stages read. A stage is reused when its key matches the record and its outputs still exist with
the recorded sizes. A record is deleted before its stage runs and written after it finished, so
a build killed at any moment leaves a workspace that the next run completes.

A stage whose output does not depend on the soc (`shared`: every simulated conversion, bench and
compare) is keyed without the soc; a second soc with the same key adopts the first soc's result
(`adopt` copies it into its own directory, labelled for that soc) instead of recomputing it.

Adding a stage: write its `key`, `run` and `load` over `BuildContext`, and put a `Stage` in
`PIPELINE` after the stages it reads from (a new `--from` name goes into `STAGES`, with the
phases it reads in `PHASE_READS`).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ascend_quant.analysis.trials import tuned_settings
from ascend_quant.backends.base import Backend, ConvertRequest
from ascend_quant.config import BuildConfig, PreprocessConfig, to_mapping
from ascend_quant.data.calibset import CalibSet, shared_feeds
from ascend_quant.data.feeds import RANDOM_WARNING
from ascend_quant.data.inputs import InputPlan, at_gear, is_random, make_sets, plan_inputs
from ascend_quant.errors import UsageError, not_a_model_file
from ascend_quant.gates import GateFailure, verdict_line
from ascend_quant.gears import Gears
from ascend_quant.golden import MANIFEST, GoldenSet, record_golden
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.resources import templates_dir
from ascend_quant.sanity import calibration_warning
from ascend_quant.soc import get_soc
from ascend_quant.tensors import TensorSpec
from ascend_quant.usermetric import hook_fingerprint
from ascend_quant.workspace import (
    atomic_directory,
    atomic_write_json,
    exclusive_lock,
    read_json,
    remove_stale_temps,
    sha256_file,
    sha256_json,
    tool_fingerprint,
    tree_sha256,
)

log = logging.getLogger("ascend_quant")

# The `--from` names, in build order, and the phases whose results each one reads. `--from P`
# re-runs P and every phase that reads it, directly or through another (`rerun_phases`); the
# rest is reused where its key is unchanged (`--from bench` re-times, it does not re-compare).
STAGES = ("preflight", "calib", "tune", "config", "convert", "bench", "compare", "report")
PHASE_READS: dict[str, tuple[str, ...]] = {
    "preflight": (),
    "calib": ("preflight",),  # the calib and eval sets, and the golden on the eval set
    "tune": ("preflight", "calib"),
    "config": ("preflight", "calib", "tune"),
    "convert": ("preflight", "calib", "tune", "config"),
    "bench": ("convert",),
    "compare": ("calib", "convert"),  # compare and analyze
    "report": ("preflight", "tune", "bench", "compare"),
}
PRECISIONS = ("fp16", "int8", "w8")
Analyze = Literal["off", "on", "only"]


@dataclass(frozen=True)
class StageRun:
    stage: str
    soc: str | None
    reused: bool
    seconds: float
    shared_with: str | None = None  # the soc whose identical result this soc adopted


@dataclass(frozen=True)
class SocResult:
    soc: str
    directory: Path
    artifacts: dict[str, str]  # precision -> .om path
    bench: dict[str, Any]  # bench.json
    compare: dict[str, Any]  # compare.json
    reports: dict[str, str]  # name -> path
    passed: bool
    analysis: dict[str, Any] = field(default_factory=dict)  # analysis.json (build --analyze)
    tune: dict[str, Any] = field(default_factory=dict)  # precision -> summary (build --tune)
    settings: dict[str, Any] = field(default_factory=dict)  # what --tune set, as config keys


@dataclass(frozen=True)
class BuildResult:
    model: Path
    workspace: Path
    backend: str
    simulated: bool
    socs: list[SocResult]
    stages: list[StageRun]
    passed: bool
    warnings: list[str] = field(default_factory=list)
    verdict: str = ""  # the one verdict line: "PASSED" or "FAILED: <first failure> ..."


def build_verdict(socs: list[SocResult]) -> str:
    """One verdict line over every soc; candidates are named `<soc>/<name>` when there are
    several socs."""
    failures = []
    for soc in socs:
        for item in soc.compare.get("gate_failures", []):
            failure = GateFailure.from_mapping(item)
            if len(socs) > 1:
                failure = replace(failure, candidate=f"{soc.soc}/{failure.candidate}")
            failures.append(failure)
    if not failures and not all(s.passed for s in socs):
        return "FAILED: " + "; ".join(s.compare.get("verdict", "") for s in socs if not s.passed)
    return verdict_line(failures)


# --------------------------------------------------------------------------- typed records


@dataclass(frozen=True)
class Preflighted:
    """What preflight produced: the model every later stage converts, and its facts."""

    model_path: Path
    model_sha256: str
    source_sha256: str
    input_shapes: dict[str, tuple[int, ...]]
    output_shapes: dict[str, tuple[int, ...]]
    input_dtypes: dict[str, str]
    int8_refused: str | None
    warnings: tuple[str, ...]
    repairs: tuple[str, ...]
    simplified: bool
    declared_inputs: tuple[TensorSpec, ...] = ()  # as exported: dynamic dims mark the batch
    pinned: dict[str, Any] = field(default_factory=dict)  # inputs folded in as constants
    gears: dict[str, Any] | None = None  # Gears.record(); input_shapes are the calib gear's

    @property
    def gear_set(self) -> Gears | None:
        return Gears.from_record(self.gears)

    @property
    def resized(self) -> bool:
        """`--input-shape` changed a size the source declares: the source cannot take the feeds."""
        return any(
            isinstance(declared, int) and declared != used
            for spec in self.declared_inputs
            for declared, used in zip(spec.shape, self.input_shapes.get(spec.name, spec.shape))
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "model_path": str(self.model_path),
            "model_sha256": self.model_sha256,
            "source_sha256": self.source_sha256,
            "input_shapes": {k: list(v) for k, v in self.input_shapes.items()},
            "output_shapes": {k: list(v) for k, v in self.output_shapes.items()},
            "input_dtypes": dict(self.input_dtypes),
            "int8_refused": self.int8_refused,
            "warnings": list(self.warnings),
            "repairs": list(self.repairs),
            "simplified": self.simplified,
            "declared_inputs": [
                {"name": t.name, "dtype": t.dtype, "shape": list(t.shape)}
                for t in self.declared_inputs
            ],
            "pinned": dict(self.pinned),
            "gears": self.gears,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Preflighted:
        return cls(
            model_path=Path(data["model_path"]),
            model_sha256=data["model_sha256"],
            source_sha256=data["source_sha256"],
            input_shapes={k: tuple(v) for k, v in data["input_shapes"].items()},
            output_shapes={k: tuple(v) for k, v in data["output_shapes"].items()},
            input_dtypes=dict(data["input_dtypes"]),
            int8_refused=data["int8_refused"],
            warnings=tuple(data["warnings"]),
            repairs=tuple(data["repairs"]),
            simplified=bool(data["simplified"]),
            declared_inputs=tuple(
                TensorSpec(t["name"], t["dtype"], tuple(t["shape"]))
                for t in data.get("declared_inputs", [])
            ),
            pinned=dict(data.get("pinned", {})),
            gears=data.get("gears"),
        )


@dataclass(frozen=True)
class DataSets:
    """One calib-set directory per model input, and one hash over their manifests."""

    dirs: dict[str, Path]
    sha256: str
    by_gear: dict[str, dict[str, Path]] = field(default_factory=dict)  # gear label -> dirs
    warnings: tuple[str, ...] = ()  # degenerate calibration data (sanity.calibration_warning)

    def to_json(self) -> dict[str, Any]:
        return {
            "dirs": {k: str(v) for k, v in self.dirs.items()},
            "sha256": self.sha256,
            "by_gear": {g: {k: str(v) for k, v in d.items()} for g, d in self.by_gear.items()},
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DataSets:
        by_gear = {
            g: {k: Path(v) for k, v in d.items()} for g, d in data.get("by_gear", {}).items()
        }
        dirs = {k: Path(v) for k, v in data["dirs"].items()}
        return cls(dirs, data["sha256"], by_gear, tuple(data.get("warnings", ())))

    def gear_dirs(self, label: str | None) -> list[Path]:
        """The sample folders (one per input) of gear `label`; the shared ones otherwise."""
        dirs = self.by_gear.get(label, self.dirs) if label is not None else self.dirs
        return [d / "samples" for d in dirs.values()]


@dataclass
class Prepared:
    """The soc-independent stages' results, filled in order; every per-soc stage reads them."""

    preflight: Preflighted | None = None
    inputs: list[InputPlan] = field(default_factory=list)  # every input that is fed
    preprocess: dict[str, PreprocessConfig] = field(default_factory=dict)  # per image input
    calib: DataSets | None = None
    eval: DataSets | None = None
    golden: GoldenSet | None = None  # FP32 outputs on the eval set
    goldens: dict[str, GoldenSet] = field(default_factory=dict)  # gear models: per gear label

    @property
    def model(self) -> Preflighted:
        if self.preflight is None:
            raise RuntimeError("preflight has not run")  # a stage table out of order
        return self.preflight

    @property
    def calib_sets(self) -> DataSets:
        if self.calib is None:
            raise RuntimeError("calib has not run")
        return self.calib

    @property
    def calib_warnings(self) -> tuple[str, ...]:
        """Degenerate calibration data, for compare.json and the build's JSON."""
        return self.calib.warnings if self.calib is not None else ()

    @property
    def eval_sets(self) -> DataSets:
        if self.eval is None:
            raise RuntimeError("eval has not run")
        return self.eval


@dataclass
class SocWork:
    """One soc's stage results, filled in order."""

    soc: str
    directory: Path
    configs: dict[str, str] = field(default_factory=dict)  # rendered file name -> path
    artifacts: dict[str, str] = field(default_factory=dict)  # precision -> .om path
    runs_sha256: dict[str, str] = field(default_factory=dict)  # precision -> what executes
    bench: dict[str, Any] = field(default_factory=dict)
    compare: dict[str, Any] = field(default_factory=dict)
    analysis: dict[str, Any] = field(default_factory=dict)
    reports: dict[str, str] = field(default_factory=dict)
    tune: dict[str, Any] = field(default_factory=dict)  # precision -> summary; tune.json path


@dataclass
class BuildContext:
    """Everything a stage may read: the settings, the backend and the earlier stages' records.

    `config` is the user's config, or for one soc after `tune`, that config with the tuned
    settings applied (every later stage then renders, converts and judges the tuned model)."""

    config: BuildConfig
    source: Path  # the user's .onnx
    source_sha256: str
    workspace: Path
    backend: Backend
    backend_name: str
    progress: Progress
    prepared: Prepared = field(default_factory=Prepared)
    work: SocWork | None = None  # the soc being built (per-soc stages only)
    forced: bool = False  # set for a stage that caches itself (calib, eval)
    analyze: Analyze = "off"  # per-layer analysis: off, on (build --analyze), only (`analyze`)

    @property
    def simulated(self) -> bool:
        return self.backend_name == "sim"

    @property
    def soc(self) -> SocWork:
        if self.work is None:
            raise RuntimeError("a per-soc stage ran outside a soc")
        return self.work

    @property
    def stem(self) -> str:
        return self.source.stem


@dataclass(frozen=True)
class Outcome:
    """What a stage's run produced: a JSON-able result, the files it wrote, whether it reused."""

    result: dict[str, Any]
    outputs: list[Path]
    reused: bool = False


def _always(ctx: BuildContext) -> bool:
    return True


def _never(ctx: BuildContext) -> bool:
    return False


@dataclass(frozen=True)
class Stage:
    """One step of the build.

    `key(ctx)`: exactly what the result depends on (None for a stage that caches itself:
    `run` then decides reuse, honouring `ctx.forced`). `run(ctx)`: do the work.
    `load(ctx, result)`: put a new or reused result into the typed records.
    `shared(ctx)`: the result is the same for every soc (the key then leaves the soc out) and
    `adopt(ctx, donor_result, donor)` makes another soc's result this soc's.
    `narrow(ctx, donor_result)`: for a soc that runs a subset of another soc's models (no W8 on
    Ascend310B1), that soc's result cut down to this soc's models, or None when it cannot be;
    `adopt` then takes the cut result.
    """

    name: str  # record file name and the label in the summary
    phase: str  # the `--from` name that re-runs it (one of STAGES)
    per_soc: bool
    key: Callable[[BuildContext], dict[str, Any] | None]
    run: Callable[[BuildContext], Outcome]
    load: Callable[[BuildContext, dict[str, Any]], None]
    applies: Callable[[BuildContext], bool] = _always
    shared: Callable[[BuildContext], bool] = _never
    adopt: Callable[[BuildContext, dict[str, Any], SocWork], Outcome] | None = None
    narrow: Callable[[BuildContext, dict[str, Any]], dict[str, Any] | None] | None = None


# --------------------------------------------------------------------------- soc-independent


def _pinned(ctx: BuildContext) -> dict[str, Any]:
    return {n: s.value for n, s in ctx.config.inputs.items() if s.value is not None}


def _preflight_key(ctx: BuildContext) -> dict[str, Any]:
    return {
        "source": ctx.source_sha256,
        "input_shape": ctx.config.input_shape,
        "pinned": _pinned(ctx),
        "gears": to_mapping(ctx.config.gears),
        "input_format": ctx.config.atc.input_format,
        "extra_args": list(ctx.config.atc.extra_args),
    }


def _preflight_run(ctx: BuildContext) -> Outcome:
    from ascend_quant import model

    result = model.preflight(
        ctx.source,
        ctx.workspace / "model",
        input_shape=ctx.config.input_shape,
        progress=ctx.progress,
        pinned=_pinned(ctx),
        gears_config=ctx.config.gears,
        input_format=ctx.config.atc.input_format,
        extra_args=ctx.config.atc.extra_args,
        log_warnings=False,  # _preflight_load shows them, fresh or reused
    )
    record = Preflighted(
        model_path=result.model_path,
        model_sha256=sha256_file(result.model_path),
        source_sha256=result.source_sha256,
        input_shapes=dict(result.input_shapes),
        output_shapes=dict(result.output_shapes),
        input_dtypes={t.name: t.dtype for t in result.summary.inputs},
        int8_refused=model.refuse_int8_reason(result.summary),
        warnings=tuple(result.warnings),
        repairs=tuple(result.repairs),
        simplified=result.simplified,
        declared_inputs=tuple(result.declared_inputs),
        pinned=dict(result.pinned),
        gears=result.gears.record() if result.gears is not None else None,
    )
    return Outcome(record.to_json(), [result.model_path])


def _preflight_load(ctx: BuildContext, result: dict[str, Any]) -> None:
    pre = Preflighted.from_json(result)
    ctx.prepared.preflight = pre
    declared = list(pre.declared_inputs) or [
        TensorSpec(name, pre.input_dtypes.get(name, "float32"), tuple(shape))
        for name, shape in pre.input_shapes.items()
    ]
    ctx.prepared.inputs = plan_inputs(declared, pre.input_shapes, ctx.config, list(pre.pinned))
    ctx.prepared.preprocess = {
        p.spec.name: p.preprocess for p in ctx.prepared.inputs if p.preprocess is not None
    }
    if is_random(ctx.prepared.inputs):
        log.warning(RANDOM_WARNING)
    for message in pre.warnings:
        log.warning(message)
    if pre.int8_refused:
        log.warning(f"INT8 skipped: {pre.int8_refused}")


def _data_sets(ctx: BuildContext, label: str) -> Outcome:
    """One set per fed input under `<workspace>/<label>/`; the sets check their own sources."""
    sets, reused = make_sets(
        ctx.prepared.inputs,
        label,
        ctx.workspace / label,
        ctx.config,
        force=ctx.forced,
        progress=ctx.progress,
    )
    dirs = {name: str(calib_set.root) for name, calib_set in sets.items()}
    sha = sha256_json({n: sha256_file(Path(d) / "manifest.json") for n, d in dirs.items()})
    result: dict[str, Any] = {"dirs": dirs, "sha256": sha}
    if label == "calib":
        found = (calibration_warning(n, s.iter_samples()) for n, s in sets.items())
        result["warnings"] = [w for w in found if w]
    return Outcome(result, [], reused)


def _calib_run(ctx: BuildContext) -> Outcome:
    return _data_sets(ctx, "calib")


def _eval_run(ctx: BuildContext) -> Outcome:
    """The evaluation sets; for image-size and dims gears one per gear (images resized to the
    gear, arrays given per gear). Batch gears share one: the samples fill every batch."""
    gears = ctx.prepared.model.gear_set
    if gears is None or gears.kind == "batch":
        return _data_sets(ctx, "eval")
    by_gear: dict[str, dict[str, str]] = {}
    reused_all = True
    for index, label in enumerate(gears.labels):
        shapes = gears.shapes(index)
        plans = [at_gear(p, shapes[p.spec.name], label) for p in ctx.prepared.inputs]
        sets, reused = make_sets(
            plans,
            "eval",
            ctx.workspace / "eval" / gears.dir_name(index),
            ctx.config,
            force=ctx.forced,
            progress=ctx.progress,
        )
        by_gear[label] = {name: str(s.root) for name, s in sets.items()}
        reused_all = reused_all and reused
    sha = sha256_json(
        {
            label: {n: sha256_file(Path(d) / "manifest.json") for n, d in dirs.items()}
            for label, dirs in by_gear.items()
        }
    )
    dirs = by_gear[gears.label(gears.calib_index)]
    return Outcome({"dirs": dirs, "sha256": sha, "by_gear": by_gear}, [], reused_all)


def _calib_load(ctx: BuildContext, result: dict[str, Any]) -> None:
    ctx.prepared.calib = DataSets.from_json(result)
    for message in ctx.prepared.calib.warnings:  # fresh or reused: every run says it
        log.warning(message)


def _eval_load(ctx: BuildContext, result: dict[str, Any]) -> None:
    ctx.prepared.eval = DataSets.from_json(result)


def _self_cached(ctx: BuildContext) -> None:
    return None


def _golden_model(ctx: BuildContext) -> Path:
    """The FP32 reference: the user's model, or the preflighted one where the source cannot take
    the feeds: inputs pinned (no longer fed; verified equal), gears (dims made symbolic; verified
    at every gear) or sizes changed by `--input-shape` (the same graph at the new sizes)."""
    pre = ctx.prepared.model
    return pre.model_path if pre.pinned or pre.gears is not None or pre.resized else ctx.source


def _golden_key(ctx: BuildContext) -> dict[str, Any]:
    return {
        "source": ctx.source_sha256,
        "pinned": dict(ctx.prepared.model.pinned),
        "eval": ctx.prepared.eval_sets.sha256,
        "input_shapes": {k: list(v) for k, v in ctx.prepared.model.input_shapes.items()},
        "gears": ctx.prepared.model.gears,
    }


def _golden_run(ctx: BuildContext) -> Outcome:
    pre = ctx.prepared.model
    gears = pre.gear_set
    if gears is not None:
        # per gear; on the preflighted model, which keeps the gear dims symbolic (the source
        # may declare them static) and was checked equal to the source at every gear
        roots: dict[str, str] = {}
        files: list[Path] = []
        for index, label in enumerate(gears.labels):
            golden = record_golden(
                pre.model_path,
                ctx.prepared.eval_sets.gear_dirs(label),
                ctx.workspace / "golden" / gears.dir_name(index),
                input_shapes=gears.shapes(index),
                progress=ctx.progress,
            )
            roots[label] = str(golden.root)
            files += [golden.root / MANIFEST]
        calib_root = roots[gears.label(gears.calib_index)]
        return Outcome({"root": calib_root, "by_gear": roots}, files)
    golden = record_golden(
        _golden_model(ctx),
        [d / "samples" for d in ctx.prepared.eval_sets.dirs.values()],
        ctx.workspace / "golden",
        input_shapes=ctx.prepared.model.input_shapes,
        progress=ctx.progress,
    )
    files = [golden.root / MANIFEST] + [
        golden.output_path(stem, k) for stem in golden.stems for k in range(len(golden.outputs))
    ]
    return Outcome({"root": str(golden.root)}, files)


def _golden_load(ctx: BuildContext, result: dict[str, Any]) -> None:
    ctx.prepared.golden = GoldenSet.load(Path(result["root"]))
    ctx.prepared.goldens = {
        label: GoldenSet.load(Path(root)) for label, root in result.get("by_gear", {}).items()
    }


# --------------------------------------------------------------------------- per soc


def _templates_sha(ctx: BuildContext) -> str:
    config = ctx.config
    return tree_sha256([templates_dir(), *([config.templates] if config.templates else [])])


def _first_preprocess(ctx: BuildContext) -> PreprocessConfig:
    """The image preprocessing the toolkit configs (AIPP) follow: the first image input's."""
    return next(iter(ctx.prepared.preprocess.values()), ctx.config.preprocess)


def _toolkit_settings(ctx: BuildContext) -> dict[str, Any]:
    """What the real toolkit's conversion reads besides the model: templates, atc, aipp."""
    return {
        "templates": _templates_sha(ctx),
        "atc": to_mapping(ctx.config.atc),
        "aipp": to_mapping(ctx.config.aipp),
        "preprocess": to_mapping(_first_preprocess(ctx)),
    }


def _config_key(ctx: BuildContext) -> dict[str, Any]:
    return {
        "model": ctx.prepared.model.model_sha256,
        "soc": ctx.soc.soc,
        "calib": ctx.prepared.calib_sets.sha256,
        "quant": to_mapping(ctx.config.quant),
        **_toolkit_settings(ctx),
    }


def _config_run(ctx: BuildContext) -> Outcome:
    from ascend_quant.jobs import check_gear_target, render_job

    pre, work = ctx.prepared.model, ctx.soc
    check_gear_target(ctx.config, work.soc, pre.gear_set)
    files = render_job(
        ctx.config,
        work.soc,
        model=pre.model_path,
        source_sha256=pre.source_sha256,
        input_shapes=pre.input_shapes,
        calib_dirs=ctx.prepared.calib_sets.dirs,
        config_dir=work.directory / "configs",
        om_dir=work.directory / "om",
        name=ctx.stem,
        int8_refused=pre.int8_refused,
        gears=pre.gear_set,
    )
    return Outcome({k: str(v) for k, v in files.items()}, list(files.values()))


def _config_load(ctx: BuildContext, result: dict[str, Any]) -> None:
    ctx.soc.configs = dict(result)


def _convert_key(precision: str) -> Callable[[BuildContext], dict[str, Any]]:
    def key(ctx: BuildContext) -> dict[str, Any]:
        pre = ctx.prepared.model
        data: dict[str, Any] = {
            "model": pre.model_sha256,
            "source": pre.source_sha256,
            "input_shapes": {k: list(v) for k, v in pre.input_shapes.items()},
            "gears": pre.gears,
            "backend": ctx.backend_name,
            # FP16 reads the calib set only for its overflow check, and of the quant settings
            # only how many batches that check takes.
            "calib": ctx.prepared.calib_sets.sha256,
            "keep_dtype": list(ctx.config.atc.keep_dtype),  # the simulator keeps them FP32
        }
        if precision in ("int8", "w8"):
            data["quant"] = to_mapping(ctx.config.quant)
        else:
            data["batch_num"] = ctx.config.quant.batch_num
        if not ctx.simulated:  # the simulator reads neither the soc nor the toolkit settings
            data.update(soc=ctx.soc.soc, **_toolkit_settings(ctx))
        return data

    return key


def _convert_run(precision: str) -> Callable[[BuildContext], Outcome]:
    def run(ctx: BuildContext) -> Outcome:
        from ascend_quant.jobs import check_gear_target, make_request

        pre, work = ctx.prepared.model, ctx.soc
        check_gear_target(ctx.config, work.soc, pre.gear_set)
        request: ConvertRequest = make_request(
            ctx.config,
            model=pre.model_path,
            source_sha256=pre.source_sha256,
            input_shapes=pre.input_shapes,
            soc=work.soc,
            precision=precision,  # type: ignore[arg-type]
            out_dir=work.directory / "om",
            name=ctx.stem,
            calib_dirs=ctx.prepared.calib_sets.dirs,
            config_dir=work.directory / "configs",
            gears=pre.gear_set,
        )
        artifact = ctx.backend.convert(request, ctx.progress)
        return Outcome(_converted(ctx, artifact.path), [artifact.path, artifact.manifest_path])

    return run


def _converted(ctx: BuildContext, om: Path) -> dict[str, Any]:
    from ascend_quant.backends.sim import payload_sha256

    om_sha = sha256_file(om)
    return {
        "path": str(om),
        "sha256": om_sha,
        "runs_sha256": payload_sha256(om) if ctx.simulated else om_sha,
    }


def _convert_adopt(ctx: BuildContext, donor: dict[str, Any], _from: SocWork) -> Outcome:
    from ascend_quant.backends.sim import copy_for_soc

    artifact = copy_for_soc(Path(donor["path"]), ctx.soc.directory / "om", ctx.soc.soc)
    return Outcome(_converted(ctx, artifact.path), [artifact.path, artifact.manifest_path])


def _convert_load(precision: str) -> Callable[[BuildContext, dict[str, Any]], None]:
    def load(ctx: BuildContext, result: dict[str, Any]) -> None:
        ctx.soc.artifacts[precision] = result["path"]
        ctx.soc.runs_sha256[precision] = result["runs_sha256"]

    return load


def _int8_applies(ctx: BuildContext) -> bool:
    return not ctx.prepared.model.int8_refused


def _w8_applies(ctx: BuildContext) -> bool:
    """Weight-only INT8 where the soc supports it (310P, A2) and INT8 is not refused; on the
    toolkit only with that soc's NPU visible (atc's compression step runs on it)."""
    if not _int8_applies(ctx) or get_soc(ctx.soc.soc).w8_refusal is not None:
        return False
    if ctx.simulated:
        return True
    toolkit = getattr(ctx.backend, "toolkit", None)
    return bool(toolkit and toolkit.npu_visible and toolkit.npu_soc == ctx.soc.soc)


def _simulated(ctx: BuildContext) -> bool:
    return ctx.simulated


def _runs(ctx: BuildContext) -> dict[str, Any]:
    """What the later stages measure: the executed models' hashes, plus the soc on hardware."""
    data: dict[str, Any] = {"runs": dict(ctx.soc.runs_sha256)}
    if not ctx.simulated:
        data["soc"] = ctx.soc.soc
    return data


def _oms(ctx: BuildContext) -> list[Path]:
    return [Path(ctx.soc.artifacts[p]) for p in PRECISIONS if p in ctx.soc.artifacts]


def _bench_key(ctx: BuildContext) -> dict[str, Any]:
    return {**_runs(ctx), "bench": to_mapping(ctx.config.bench)}


def _bench_run(ctx: BuildContext) -> Outcome:
    from ascend_quant.bench import bench_models
    from ascend_quant.report import json_safe, save_json

    table = json_safe(bench_models(_oms(ctx), ctx.config.bench, ctx.progress))
    return Outcome(table, [save_json(ctx.soc.directory / "reports" / "bench.json", table)])


def _bench_adopt(ctx: BuildContext, donor: dict[str, Any], source: SocWork) -> Outcome:
    from ascend_quant.report import save_json

    table = relocate(donor, source, ctx.soc)
    return Outcome(table, [save_json(ctx.soc.directory / "reports" / "bench.json", table)])


def _bench_narrow(ctx: BuildContext, donor: dict[str, Any]) -> dict[str, Any] | None:
    """Another soc's bench table with only this soc's models: they were timed in the same
    alternating rounds, and each speedup is against the first model (FP16), which both have."""
    wanted = set(ctx.soc.runs_sha256)
    rows = donor.get("rows", [])
    kept = [r for r in rows if r.get("result", {}).get("precision") in wanted]
    if not rows or not kept or kept[0] is not rows[0]:
        return None
    # `timed`: how many rows shared the time budget (the settings line states each one's share)
    return {**donor, "rows": kept, "timed": donor.get("timed", len(rows))}


def _bench_load(ctx: BuildContext, result: dict[str, Any]) -> None:
    ctx.soc.bench = dict(result)


def _compare_key(ctx: BuildContext) -> dict[str, Any]:
    config = ctx.config
    return {
        **_runs(ctx),
        "source": ctx.source_sha256,
        "eval": ctx.prepared.eval_sets.sha256,
        "calib": ctx.prepared.calib_sets.sha256,  # the overlap warning reads it
        "thresholds": to_mapping(config.thresholds),
        "output_thresholds": to_mapping(config.output_thresholds),
        "accuracy": to_mapping(config.accuracy),
        "metric_code": hook_fingerprint(config.accuracy.metric),
    }


def _compare_run(ctx: BuildContext) -> Outcome:
    from ascend_quant.compare import OPTIMISTIC_WARNING, compare_models, merge_gears
    from ascend_quant.report import json_safe, save_json

    reports = ctx.soc.directory / "reports"
    calib_dirs = ctx.prepared.calib_sets.dirs
    multi = len(calib_dirs) > 1  # several inputs: overlap is judged per feed below
    pre = ctx.prepared.model
    gears = pre.gear_set
    # a gear model is compared at every gear and passes only if every gear passes
    golden_model = _golden_model(ctx)
    labels: list[str | None] = list(gears.labels) if gears is not None else [None]
    results = []
    for index, label in enumerate(labels):
        results.append(
            compare_models(
                golden_model,
                _oms(ctx),
                ctx.prepared.eval_sets.gear_dirs(label),
                reports / "compare" / (gears.dir_name(index) if gears and label else ""),
                thresholds=ctx.config.thresholds,
                output_thresholds=ctx.config.output_thresholds,
                calib_sources=None if multi else [d / "samples" for d in calib_dirs.values()],
                progress=ctx.progress,
                golden=ctx.prepared.goldens.get(label) if label else ctx.prepared.golden,
                accuracy=ctx.config.accuracy,
                gear=label,
            )
        )
    result = results[0] if gears is None else merge_gears(results)
    data = json_safe(result)
    if multi:
        eval_sets = [CalibSet.load(d) for d in ctx.prepared.eval_sets.dirs.values()]
        shared = shared_feeds(eval_sets, [CalibSet.load(d) for d in calib_dirs.values()])
        if shared:
            warning = OPTIMISTIC_WARNING.format(n=shared, total=len(eval_sets[0]))
            log.warning(warning)
            data["warnings"] = [*data.get("warnings", []), warning]
    if is_random(ctx.prepared.inputs):
        data["warnings"] = [RANDOM_WARNING, *data.get("warnings", [])]
    data["warnings"] = [*ctx.prepared.calib_warnings, *data.get("warnings", [])]
    return Outcome(data, [save_json(reports / "compare.json", data)])


def _compare_adopt(ctx: BuildContext, donor: dict[str, Any], source: SocWork) -> Outcome:
    from ascend_quant.report import save_json

    reports = ctx.soc.directory / "reports"
    with atomic_directory(reports / "compare") as tmp:
        shutil.copytree(source.directory / "reports" / "compare", tmp, dirs_exist_ok=True)
    data = relocate(donor, source, ctx.soc)
    return Outcome(data, [save_json(reports / "compare.json", data)])


def _key_but_runs(key_data: dict[str, Any]) -> str:
    """A stage key without its models: socs that agree on it can share a narrowed result."""
    return sha256_json({k: v for k, v in key_data.items() if k != "runs"})


def _compare_narrow(ctx: BuildContext, donor: dict[str, Any]) -> dict[str, Any] | None:
    """Another soc's comparison with only this soc's candidates (identical models, eval set and
    golden, so identical figures) and the verdict over those alone; not for gear models."""
    wanted = set(ctx.soc.runs_sha256)
    candidates = donor.get("candidates", [])
    kept = [c for c in candidates if c.get("precision") in wanted]
    if donor.get("gears") or not kept or len({c.get("precision") for c in kept}) != len(wanted):
        return None
    names = {c["name"] for c in kept}
    failures = [f for f in donor.get("gate_failures", []) if f.get("candidate") in names]
    verdict = verdict_line([GateFailure.from_mapping(f) for f in failures])
    samples = [
        {**s, "candidates": {n: v for n, v in s.get("candidates", {}).items() if n in names}}
        for s in donor.get("image_samples", [])
    ]
    return {
        **donor,
        "candidates": kept,
        "passed": not failures,
        "verdict": verdict,
        "failures": [GateFailure.from_mapping(f).text() for f in failures],
        "gate_failures": failures,
        "image_samples": samples,
    }


def _compare_load(ctx: BuildContext, result: dict[str, Any]) -> None:
    ctx.soc.compare = dict(result)


def _report_key(ctx: BuildContext) -> dict[str, Any]:
    return {
        "soc": ctx.soc.soc,
        "backend": ctx.backend_name,
        "bench": sha256_json(ctx.soc.bench),
        "compare": sha256_json(ctx.soc.compare),
        "analysis": sha256_json(ctx.soc.analysis),
        "config": to_mapping(ctx.config),
        "tune": sha256_json(ctx.soc.tune),
    }


def _report_run(ctx: BuildContext) -> Outcome:
    from ascend_quant.backends.toolkit import discover
    from ascend_quant.report import environment_info, write_report

    work = ctx.soc
    paths = write_report(
        work.directory / "reports",
        environment={
            **environment_info(),
            "backend": ctx.backend_name,
            "simulated": ctx.simulated,
            "cann_version": discover().version,
            "soc": work.soc,
        },
        config=to_mapping(ctx.config),
        bench=work.bench,
        compare=work.compare,
        title=f"{ctx.stem} on {work.soc}",
        analysis=work.analysis or None,
        tune=read_json(Path(work.tune["tune_json"])) if work.tune else None,
    )
    return Outcome({k: str(v) for k, v in paths.items()}, list(paths.values()))


def _report_load(ctx: BuildContext, result: dict[str, Any]) -> None:
    ctx.soc.reports = dict(result)


def relocate(value: Any, source: SocWork, target: SocWork) -> Any:
    """A soc's JSON result made another soc's: its paths moved to that soc's directory and
    its `soc` fields renamed."""
    old, new = str(source.directory), str(target.directory)

    def move(item: Any, key: str | None = None) -> Any:
        if isinstance(item, dict):
            return {k: move(v, k) for k, v in item.items()}
        if isinstance(item, list):
            return [move(v) for v in item]
        if isinstance(item, str):
            if key == "soc" and item == source.soc:
                return target.soc
            if item == old or item.startswith(old + "/"):
                return new + item[len(old) :]
        return item

    return move(value)


def _analyze_applies(ctx: BuildContext) -> bool:
    return ctx.analyze != "off"


def _measures(ctx: BuildContext) -> bool:
    """Bench, golden and compare run unless only the per-layer analysis was asked for."""
    return ctx.analyze != "only"


def _analyze_key(ctx: BuildContext) -> dict[str, Any]:
    return {
        **_runs(ctx),
        "model": ctx.prepared.model.model_sha256,
        "eval": ctx.prepared.eval_sets.sha256,
        "keep_dtype": list(ctx.config.atc.keep_dtype),
    }


def _analyze_run(ctx: BuildContext) -> Outcome:
    from ascend_quant.analysis.analyze import analyze_models, write_analysis

    reports = ctx.soc.directory / "reports"
    oms = {p: Path(ctx.soc.artifacts[p]) for p in PRECISIONS if p in ctx.soc.artifacts}
    analysis = analyze_models(
        ctx.prepared.model.model_path,
        oms,
        {name: Path(d) for name, d in ctx.prepared.eval_sets.dirs.items()},
        keep_dtype=tuple(ctx.config.atc.keep_dtype),
        progress=ctx.progress,
    )
    paths = write_analysis(analysis, reports)
    data = analysis.to_json()
    data["files"] = {name: str(path) for name, path in paths.items()}
    return Outcome(data, list(paths.values()))


def _analyze_load(ctx: BuildContext, result: dict[str, Any]) -> None:
    ctx.soc.analysis = dict(result)


def _tune_applies(ctx: BuildContext) -> bool:
    return ctx.config.tune.enabled


def _tune_key(ctx: BuildContext) -> dict[str, Any]:
    pre = ctx.prepared.model
    data: dict[str, Any] = {
        "model": pre.model_sha256,
        "source": pre.source_sha256,
        "int8_refused": pre.int8_refused,
        "calib": ctx.prepared.calib_sets.sha256,
        "eval": ctx.prepared.eval_sets.sha256,
        "backend": ctx.backend_name,
        "config": {k: v for k, v in to_mapping(ctx.config).items() if k not in ("bench", "out")},
    }
    if not ctx.simulated:
        data.update(soc=ctx.soc.soc, **_toolkit_settings(ctx))
    return data


def _tune_run(ctx: BuildContext) -> Outcome:
    from ascend_quant.analysis.tuning import run_for_build

    pre, work = ctx.prepared.model, ctx.soc
    summary, outputs = run_for_build(
        ctx.config,
        backend=ctx.backend,
        renders_configs=not ctx.simulated,
        source=ctx.source,
        model=pre.model_path,
        source_sha256=pre.source_sha256,
        input_shapes=pre.input_shapes,
        soc=work.soc,
        calib_dirs=ctx.prepared.calib_sets.dirs,
        eval_dirs=ctx.prepared.eval_sets.dirs,
        precisions=("fp16",) if pre.int8_refused else ("fp16", "int8"),
        out_dir=work.directory / "tune",
        cache_dir=ctx.workspace / ".tune-cache" / ("sim" if ctx.simulated else work.soc),
        cache_context={
            "model": pre.model_sha256,
            "source": pre.source_sha256,
            "calib": ctx.prepared.calib_sets.sha256,
            "eval": ctx.prepared.eval_sets.sha256,
            "backend": ctx.backend_name,
            **({} if ctx.simulated else {"soc": work.soc, **_toolkit_settings(ctx)}),
        },
        progress=ctx.progress,
        golden=ctx.prepared.golden,
    )
    return Outcome(summary, outputs)


def _tune_report(tune: dict[str, Any]) -> dict[str, str]:
    return {"tune": tune["tune_json"]} if tune.get("tune_json") else {}


def _tune_load(ctx: BuildContext, result: dict[str, Any]) -> None:
    from ascend_quant.analysis.tuning import tuned_config

    ctx.soc.tune = dict(result)
    ctx.config = tuned_config(ctx.config, result)


# --------------------------------------------------------------------------- the table


def _convert_stage(precision: str, applies: Callable[[BuildContext], bool] = _always) -> Stage:
    """One conversion stage; simulated conversions are shared between socs."""
    return Stage(
        f"convert-{precision}",
        "convert",
        True,
        _convert_key(precision),
        _convert_run(precision),
        _convert_load(precision),
        applies=applies,
        shared=_simulated,
        adopt=_convert_adopt,
    )


PIPELINE: tuple[Stage, ...] = (
    Stage("preflight", "preflight", False, _preflight_key, _preflight_run, _preflight_load),
    Stage("calib", "calib", False, _self_cached, _calib_run, _calib_load),
    Stage("eval", "calib", False, _self_cached, _eval_run, _eval_load),
    # the FP32 outputs on the eval set: data, like the eval set it is recorded on (not compare)
    Stage("golden", "calib", False, _golden_key, _golden_run, _golden_load, applies=_measures),
    Stage("tune", "tune", True, _tune_key, _tune_run, _tune_load, applies=_tune_applies),
    Stage("config", "config", True, _config_key, _config_run, _config_load),
    # INT8 first: its calibration pass records the FP32 statistics the FP16 overflow check reads.
    _convert_stage("int8", _int8_applies),
    _convert_stage("fp16"),
    _convert_stage("w8", _w8_applies),
    Stage(
        "bench",
        "bench",
        True,
        _bench_key,
        _bench_run,
        _bench_load,
        applies=_measures,
        shared=_simulated,
        adopt=_bench_adopt,
        narrow=_bench_narrow,
    ),
    Stage(
        "compare",
        "compare",
        True,
        _compare_key,
        _compare_run,
        _compare_load,
        applies=_measures,
        shared=_simulated,
        adopt=_compare_adopt,
        narrow=_compare_narrow,
    ),
    Stage(
        "analyze",
        "compare",
        True,
        _analyze_key,
        _analyze_run,
        _analyze_load,
        applies=_analyze_applies,
    ),
    Stage("report", "report", True, _report_key, _report_run, _report_load),
)


# --------------------------------------------------------------------------- running the table


def rerun_phases(phase: str) -> tuple[str, ...]:
    """`phase` and every phase reading its results, directly or through another, in build order."""
    chosen = {phase}
    for name in STAGES:  # build order: what a phase reads comes before it
        if chosen.intersection(PHASE_READS[name]):
            chosen.add(name)
    return tuple(name for name in STAGES if name in chosen)


def unknown_phase(name: str) -> UsageError:
    """`--from NAME` that is no phase; a stage's name (the summary shows them) gets its phase."""
    phase = next((stage.phase for stage in PIPELINE if stage.name == name), None)
    hint = f"use one of: {', '.join(STAGES)}"
    if phase is not None:
        hint = f"the {name} stage belongs to phase {phase}: --from {phase}"
    return UsageError(f"unknown --from phase '{name}'", hint=hint)


def rerun_stages(phase: str) -> tuple[str, ...]:
    """The stages `--from phase` re-runs (when they apply to the build), in build order."""
    phases = rerun_phases(phase)
    return tuple(stage.name for stage in PIPELINE if stage.phase in phases)


class _Runner:
    """Runs stages with content-hash reuse and records what happened, for the summary."""

    def __init__(self, ctx: BuildContext, forced_phases: tuple[str, ...]) -> None:
        self.ctx = ctx
        self.forced_phases = forced_phases
        self.runs: list[StageRun] = []
        # (stage, key) -> the soc that produced it in this build, for adoption across socs
        self.produced: dict[tuple[str, str], tuple[SocWork, dict[str, Any]]] = {}
        # (stage, key without "runs") -> (soc, its runs, result): donors for a subset of models
        self.partial: dict[tuple[str, str], list[tuple[SocWork, dict[str, str], dict[str, Any]]]]
        self.partial = {}

    def forced(self, stage: Stage) -> bool:
        return stage.phase in self.forced_phases

    def run(self, stage: Stage) -> None:
        ctx = self.ctx
        if not stage.applies(ctx):
            return
        soc = ctx.soc.soc if stage.per_soc else None
        where = f" [{soc}]" if soc else ""
        start = time.perf_counter()
        forced = self.forced(stage)
        key_data = stage.key(ctx)
        if key_data is None:  # the stage caches itself
            ctx.forced = forced
            with ctx.progress.task(f"{stage.name}{where}", total=None):
                outcome = stage.run(ctx)
            ctx.forced = False
            stage.load(ctx, outcome.result)
            self.runs.append(StageRun(stage.name, soc, outcome.reused, time.perf_counter() - start))
            return
        state_dir = (ctx.soc.directory if stage.per_soc else ctx.workspace) / ".state"
        record_path = state_dir / f"{stage.name}.json"
        key = sha256_json({"stage": stage.name, "tool": tool_fingerprint(), **key_data})
        if not forced:
            record = _read_record(record_path)
            if record is not None and record["key"] == key and _outputs_intact(record):
                with ctx.progress.task(f"{stage.name}{where} (reused)", total=1) as advance:
                    advance(1)
                stage.load(ctx, record["result"])
                self._remember(stage, key, key_data, record["result"])
                self.runs.append(StageRun(stage.name, soc, True, time.perf_counter() - start))
                return
        record_path.unlink(missing_ok=True)
        donor = self._donor(stage, key, forced) or self._narrowed(stage, key_data)
        if donor is not None and stage.adopt is not None:
            source, donor_result = donor
            text = f"{stage.name}{where} (same simulated model as {source.soc})"
            with ctx.progress.task(text, total=None):
                outcome = stage.adopt(ctx, donor_result, source)
        else:
            source = None
            with ctx.progress.task(f"{stage.name}{where}", total=None):
                outcome = stage.run(ctx)
        atomic_write_json(
            record_path,
            {
                "key": key,
                "result": outcome.result,
                "outputs": {str(p): p.stat().st_size for p in outcome.outputs},
            },
        )
        stage.load(ctx, outcome.result)
        self._remember(stage, key, key_data, outcome.result)
        self.runs.append(
            StageRun(
                stage.name,
                soc,
                False,
                time.perf_counter() - start,
                shared_with=source.soc if source else None,
            )
        )

    def _remember(
        self, stage: Stage, key: str, key_data: dict[str, Any], result: dict[str, Any]
    ) -> None:
        if stage.per_soc and stage.shared(self.ctx):
            self.produced.setdefault((stage.name, key), (self.ctx.soc, result))
            if stage.narrow is not None and "runs" in key_data:
                entry = (self.ctx.soc, dict(key_data["runs"]), result)
                self.partial.setdefault((stage.name, _key_but_runs(key_data)), []).append(entry)

    def _narrowed(
        self, stage: Stage, key_data: dict[str, Any]
    ) -> tuple[SocWork, dict[str, Any]] | None:
        """A soc of this build that ran every model this soc runs (and more), with its result
        cut down to this soc's models by `stage.narrow`."""
        if stage.narrow is None or "runs" not in key_data or not stage.shared(self.ctx):
            return None
        runs = key_data["runs"]
        for source, donor_runs, result in self.partial.get(
            (stage.name, _key_but_runs(key_data)), []
        ):
            if all(donor_runs.get(p) == h for p, h in runs.items()):
                narrowed = stage.narrow(self.ctx, result)
                if narrowed is not None:
                    return source, narrowed
        return None

    def _donor(self, stage: Stage, key: str, forced: bool) -> tuple[SocWork, dict[str, Any]] | None:
        """Another soc's result for the same key: made in this build, or (unless forced) on disk."""
        if not (stage.per_soc and stage.shared(self.ctx)):
            return None
        made = self.produced.get((stage.name, key))
        if made is not None or forced:
            return made
        for path in sorted(self.ctx.workspace.glob(f"*/.state/{stage.name}.json")):
            soc_dir = path.parent.parent
            if soc_dir == self.ctx.soc.directory:
                continue
            record = _read_record(path)
            if record is not None and record["key"] == key and _outputs_intact(record):
                return SocWork(soc_dir.name, soc_dir), dict(record["result"])
        return None


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "key" in record else None


def _outputs_intact(record: dict[str, Any]) -> bool:
    for name, size in record.get("outputs", {}).items():
        path = Path(name)
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True


def build(
    model: str | Path,
    config: BuildConfig | None = None,
    *,
    force: bool = False,
    from_stage: str | None = None,
    progress: Progress = NULL_PROGRESS,
    analyze: Analyze = "off",
) -> BuildResult:
    """Build FP16 and INT8 .om models for every soc in `config.socs` and measure them.

    `force` re-runs every stage; `from_stage` re-runs the stages `rerun_stages(from_stage)` names
    and reuses the rest where its key is unchanged.
    Returns the result; accuracy verdicts are in `result.passed` (the CLI maps False to exit 1).
    """
    from ascend_quant import soc as soc_registry
    from ascend_quant.backends import auto_backend_name, get_backend

    config = replace(config or BuildConfig(), model=Path(model))
    model_path = Path(model)
    if not model_path.is_file():
        raise not_a_model_file(model_path)
    if not config.socs:
        raise UsageError("no soc given", hint="pass --soc, e.g. --soc Ascend310P3")
    for soc in config.socs:
        soc_registry.get_soc(soc)
    if from_stage is not None and from_stage not in STAGES:
        raise unknown_phase(from_stage)
    forced = STAGES if force else rerun_phases(from_stage) if from_stage else ()
    backend_name = auto_backend_name() if config.backend == "auto" else config.backend
    backend = get_backend(backend_name)

    workspace = Path(config.out or Path("build") / model_path.stem)
    with exclusive_lock(workspace / ".lock", f"workspace {workspace}"):
        for path in remove_stale_temps(workspace):
            log.info(f"removed {path}, left by a build that was stopped mid-write")
        ctx = BuildContext(
            config=config,
            source=model_path,
            source_sha256=sha256_file(model_path),
            workspace=workspace,
            backend=backend,
            backend_name=backend_name,
            progress=progress,
            analyze=analyze,
        )
        runner = _Runner(ctx, forced)
        for stage in PIPELINE:
            if not stage.per_soc:
                runner.run(stage)
        if ctx.simulated:
            log.warning("figures are simulated on the CPU with ONNX Runtime (no CANN toolkit used)")
        soc_results = []
        for soc in config.socs:
            ctx.work = SocWork(soc, workspace / soc)
            ctx.config = config  # `tune` may have changed it for the previous soc
            for stage in PIPELINE:
                if stage.per_soc:
                    runner.run(stage)
            work = ctx.soc
            soc_results.append(
                SocResult(
                    soc=soc,
                    directory=work.directory,
                    artifacts={p: work.artifacts[p] for p in PRECISIONS if p in work.artifacts},
                    bench=work.bench,
                    compare=work.compare,
                    # tune.json (every trial) beside the report: `--json` names it
                    reports={**work.reports, **_tune_report(work.tune)},
                    passed=bool(work.compare.get("passed", False)),
                    analysis=work.analysis,
                    tune=dict(work.tune.get("precisions", {})),
                    settings=tuned_settings(ctx.config) if work.tune else {},
                )
            )
    return BuildResult(
        model=model_path,
        workspace=workspace,
        backend=backend_name,
        simulated=backend_name == "sim",
        socs=soc_results,
        stages=runner.runs,
        passed=all(r.passed for r in soc_results),
        warnings=list(ctx.prepared.model.warnings)
        + ([RANDOM_WARNING] if is_random(ctx.prepared.inputs) else [])
        + list(ctx.prepared.calib_warnings),
        verdict=build_verdict(soc_results),
    )
