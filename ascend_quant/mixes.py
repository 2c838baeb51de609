"""Multi-model pipelines: each component at its own precision, judged on the final outputs.

A generative pipeline is not one forward pass: a diffusion UNet runs 20-50 times and a decoder or
upscaler follows, so per-step errors compound and only what the pipeline returns says whether a
precision mix is good enough. The user writes the pipeline as a function

    def generate(runners: Mapping[str, Runner], index: int) -> ndarray | Mapping[str, ndarray]

that runs its components through the given Runners (component name -> Runner) and derives its
seeds / noise / prompts from `index`. It is called once per sample with every component in FP32
(the golden: the ONNX models on ONNX Runtime) and once per sample for each precision mix; each
component is built once per precision it needs with the normal cached `build` stages, in its own
workspace. The final outputs are compared with the golden (msit's metrics, PSNR/SSIM for images)
and the thresholds gate them. Mixes are declared in TOML:

    [pipeline]
    function = "pipeline:generate"      # module:function; the module is looked up beside the file
    samples = 2                         # indices 0..samples-1
    soc = "Ascend310P3"

    [pipeline.components.unet]
    model = "unet.onnx"
    precision = "int8"                  # this component's precision in the "declared" mix
    build = { calib = { sources = ["captured/calib"] }, eval_sources = ["captured/eval"] }

    [pipeline.components.sr]
    model = "../sr/espcn_x2.onnx"
    precision = "fp16"

    [pipeline.mixes]                    # more mixes; a component not named keeps its declared one
    "unet-w8" = { unet = "w8" }
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ascend_quant.backends import get_backend
from ascend_quant.compare import check_thresholds
from ascend_quant.config import (
    PRECISIONS,
    BuildConfig,
    Thresholds,
    from_mapping,
    load_project_file,
    merge,
)
from ascend_quant.errors import UsageError
from ascend_quant.gates import Extremes, Gate, judge, parse_gate
from ascend_quant.metrics import MetricAccumulator, data_range, detect_kind
from ascend_quant.pipeline import build
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.runners.base import Runner
from ascend_quant.runners.ort import OrtRunner

log = logging.getLogger("ascend_quant")

FP32 = "fp32"  # a component left as the FP32 ONNX model (ONNX Runtime), as in the golden
MIX_PRECISIONS = (FP32, *PRECISIONS)
DECLARED = "declared"
_PATH_KEYS = ("sources", "eval_sources", "calib", "eval")

PipelineFunction = Callable[[Mapping[str, Runner], int], Any]


@dataclass(frozen=True)
class Component:
    """One model of the pipeline and the build settings it is converted with."""

    name: str
    model: Path
    precision: str  # in the declared mix
    build: dict[str, Any] = field(default_factory=dict)  # BuildConfig keys for this component


@dataclass(frozen=True)
class PipelineSpec:
    """What `compare --pipeline` evaluates: components, precision mixes, samples, gates."""

    function: str  # "module:function"
    components: dict[str, Component]
    mixes: dict[str, dict[str, str]]  # mix name -> a precision for every component
    samples: int = 1
    soc: str = "Ascend310P3"
    backend: str = "auto"
    out: Path = Path("build/pipeline")
    search_path: Path = Path(".")  # where the function's module is looked up first
    thresholds: Thresholds = field(default_factory=Thresholds)
    # (output or None for every output, gate): `[pipeline] gates`, `--gate`
    gates: tuple[tuple[str | None, Gate], ...] = ()


@dataclass
class MixResult:
    """One precision mix against the all-FP32 golden, per final output."""

    name: str
    precisions: dict[str, str]
    outputs: dict[str, dict[str, Any]]  # output -> metrics over all samples
    per_sample: dict[str, list[dict[str, Any]]]  # output -> each sample's metrics
    failures: list[str]


@dataclass
class PipelineResult:
    """The comparison of every mix, the verdict, and where each component's models are."""

    function: str
    soc: str
    backend: str
    simulated: bool
    samples: int
    mixes: list[MixResult]
    verdict: str
    failures: list[str]
    thresholds: Thresholds
    artifacts: dict[str, dict[str, str]]  # component -> precision -> .om (fp32: the .onnx)
    out_dir: str = ""

    @property
    def passed(self) -> bool:
        return not self.failures


# --------------------------------------------------------------------------- the spec


def _resolve_paths(value: Any, base: Path, key: str = "") -> Any:
    """Relative data paths in a component's build table are relative to the TOML file."""
    if isinstance(value, dict):
        return {k: _resolve_paths(v, base, k) for k, v in value.items()}
    if key in _PATH_KEYS and isinstance(value, (list, tuple)):
        return [_resolve_one(v, base) for v in value]
    if key in _PATH_KEYS and isinstance(value, str):
        return [_resolve_one(value, base)]
    return value


def _resolve_one(value: Any, base: Path) -> Any:
    if not isinstance(value, str) or value == "random" or Path(value).is_absolute():
        return value
    return str(base / value)


def _precision(value: Any, where: str) -> str:
    if value not in MIX_PRECISIONS:
        raise UsageError(
            f"{where}: precision '{value}' is not one of {', '.join(MIX_PRECISIONS)}",
            hint="int8 is W8A8, w8 is weight-only INT8, fp32 keeps the ONNX model",
        )
    return str(value)


def pipeline_spec(data: Mapping[str, Any], base: Path, function: str | None = None) -> PipelineSpec:
    """A spec from the `[pipeline]` table of a TOML file in `base` (paths relative to it)."""
    table = dict(data.get("pipeline") or {})
    if not table:
        raise UsageError(
            "no [pipeline] table in the config file",
            hint="declare [pipeline.components.NAME] tables with model and precision",
        )
    known = {
        "function",
        "samples",
        "soc",
        "backend",
        "out",
        "components",
        "mixes",
        "thresholds",
        "gates",
    }
    unknown = sorted(set(table) - known)
    if unknown:
        raise UsageError(
            f"[pipeline]: unknown key(s) {', '.join(unknown)}", hint=f"known: {', '.join(known)}"
        )
    raw_components = table.get("components") or {}
    if not isinstance(raw_components, dict) or not raw_components:
        raise UsageError(
            "[pipeline] declares no components",
            hint='add [pipeline.components.NAME] with model = "x.onnx" and precision = "fp16"',
        )
    components: dict[str, Component] = {}
    for name, entry in raw_components.items():
        where = f"[pipeline.components.{name}]"
        if not isinstance(entry, dict) or "model" not in entry:
            raise UsageError(f'{where} needs model = "<file>.onnx"')
        extra = sorted(set(entry) - {"model", "precision", "build"})
        if extra:
            raise UsageError(
                f"{where}: unknown key(s) {', '.join(extra)}", hint="known: model, precision, build"
            )
        model = Path(entry["model"])
        model = model if model.is_absolute() else base / model
        if not model.is_file():
            raise UsageError(f"{where}: model not found: {model}")
        build_table = _resolve_paths(dict(entry.get("build") or {}), base)
        from_mapping(BuildConfig, build_table, f"{where}.build")  # unknown keys fail early
        components[name] = Component(
            name, model, _precision(entry.get("precision", "fp16"), where), build_table
        )
    declared = {name: c.precision for name, c in components.items()}
    mixes: dict[str, dict[str, str]] = {DECLARED: declared}
    for mix, choice in (table.get("mixes") or {}).items():
        if not isinstance(choice, dict):
            raise UsageError(f"[pipeline.mixes] '{mix}' must map components to precisions")
        stray = [c for c in choice if c not in components]
        if stray:
            raise UsageError(
                f"[pipeline.mixes] '{mix}' names unknown component(s) {', '.join(stray)}",
                hint=f"components: {', '.join(components)}",
            )
        mixes[mix] = {
            **declared,
            **{c: _precision(p, f"[pipeline.mixes] '{mix}'") for c, p in choice.items()},
        }
    function = function or table.get("function")
    if not function:
        raise UsageError(
            "no pipeline function",
            hint="pass --pipeline module:function or set [pipeline] function",
        )
    samples = int(table.get("samples", 1))
    if samples < 1:
        raise UsageError(f"[pipeline] samples must be at least 1, got {samples}")
    return PipelineSpec(
        function=str(function),
        components=components,
        mixes=mixes,
        samples=samples,
        soc=str(table.get("soc", "Ascend310P3")),
        backend=str(table.get("backend", "auto")),
        out=Path(table.get("out", Path("build") / f"pipeline-{base.name or 'pipeline'}")),
        search_path=base,
        thresholds=from_mapping(Thresholds, dict(table.get("thresholds") or {}), "thresholds"),
        gates=tuple(parse_gate(str(text)) for text in table.get("gates") or ()),
    )


def load_pipeline_spec(
    path: Path, function: str | None = None, overrides: Mapping[str, Any] | None = None
) -> PipelineSpec:
    """Read `[pipeline]` from a TOML file; `overrides` (soc, backend, out, samples) win."""
    path = Path(path)
    data = load_project_file(path)
    if overrides:
        data.setdefault("pipeline", {}).update({k: v for k, v in overrides.items() if v})
    return pipeline_spec(data, path.resolve().parent, function)


def load_function(reference: str, search_path: Path) -> PipelineFunction:
    """`module:function` -> the callable; the module is looked up in `search_path` first."""
    module_name, sep, attr = reference.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(
            f"--pipeline '{reference}' is not module:function",
            hint="e.g. --pipeline pipeline:generate (pipeline.py beside the config file)",
        )
    added = str(Path(search_path).resolve())
    sys.path.insert(0, added)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(
            f"cannot import pipeline module '{module_name}': {exc}",
            hint=f"put {module_name}.py beside the config file or on PYTHONPATH",
        ) from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(added)
    function = getattr(module, attr, None)
    if not callable(function):
        raise UsageError(f"'{module_name}' has no function '{attr}'")
    return function


# --------------------------------------------------------------------------- building


def component_config(spec: PipelineSpec, component: Component) -> BuildConfig:
    """The build settings of one component: its own table, then the pipeline's soc and backend."""
    config = from_mapping(BuildConfig, component.build, f"[pipeline.components.{component.name}]")
    return merge(
        config,
        {
            "socs": [spec.soc],
            "backend": spec.backend,
            "out": str(Path(spec.out) / component.name),
        },
    )


def build_components(
    spec: PipelineSpec, progress: Progress = NULL_PROGRESS
) -> tuple[dict[str, dict[str, str]], str]:
    """Build every component that some mix needs below FP32; returns its .om per precision and
    the backend used. Each build is cached by content hash like any `build`."""
    artifacts: dict[str, dict[str, str]] = {}
    backend = spec.backend
    for name, component in spec.components.items():
        needed = {mix[name] for mix in spec.mixes.values()} - {FP32}
        artifacts[name] = {FP32: str(component.model)}
        if not needed:
            continue
        result = build(component.model, component_config(spec, component), progress=progress)
        backend = result.backend
        (soc,) = result.socs
        missing = sorted(needed - set(soc.artifacts))
        if missing:
            raise UsageError(
                f"component '{name}' has no {', '.join(missing)} build for {spec.soc}",
                hint="see the build's warnings (INT8 refused? w8 not supported on this soc?)",
            )
        artifacts[name].update(soc.artifacts)
    return artifacts, backend


# --------------------------------------------------------------------------- running


def _outputs(value: Any, mix: str, index: int) -> dict[str, np.ndarray]:
    if isinstance(value, Mapping):
        return {str(k): np.asarray(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return {"output": value}
    raise UsageError(
        f"the pipeline function returned {type(value).__name__} for mix '{mix}', sample {index}",
        hint="return the final output as a NumPy array or a mapping name -> array",
    )


@contextlib.contextmanager
def open_runners(
    artifacts: Mapping[str, Mapping[str, str]], backend_name: str, wanted: set[tuple[str, str]]
) -> Iterator[dict[tuple[str, str], Runner]]:
    """One open Runner per (component, precision) that a mix uses; all closed on exit."""
    backend = get_backend(backend_name) if backend_name in ("atc", "sim") else None
    with contextlib.ExitStack() as stack:
        runners: dict[tuple[str, str], Runner] = {}
        for component, precision in sorted(wanted):
            path = Path(artifacts[component][precision])
            if precision == FP32:
                runner: Runner = OrtRunner(path, name=path.name)
            else:
                assert backend is not None
                runner = backend.open(path)
            runners[(component, precision)] = stack.enter_context(runner)
        yield runners


def run_mix(
    function: PipelineFunction,
    runners: Mapping[str, Runner],
    samples: int,
    mix: str,
) -> list[dict[str, np.ndarray]]:
    """The function's final outputs for samples 0..samples-1 with these runners."""
    return [_outputs(function(runners, index), mix, index) for index in range(samples)]


def compare_outputs(
    golden: list[dict[str, np.ndarray]],
    mine: list[dict[str, np.ndarray]],
    thresholds: Thresholds,
    gates: tuple[tuple[str | None, Gate], ...] = (),
    mix: str = "",
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]], list[str]]:
    """Metrics per output over all samples, each sample's metrics, and the failures: msit's
    thresholds on the aggregate, and the gates (aggregate or `worst:` sample, named)."""
    results: dict[str, dict[str, Any]] = {}
    per_sample: dict[str, list[dict[str, Any]]] = {}
    failures: list[str] = []
    for name in golden[0]:
        if any(name not in m for m in mine):
            raise UsageError(f"a mix's pipeline output lacks '{name}' that the golden has")
        shape = tuple(golden[0][name].shape)
        kind = detect_kind(shape)
        value_range = None
        if kind == "image":
            lo = min(float(np.min(g[name])) for g in golden)
            hi = max(float(np.max(g[name])) for g in golden)
            value_range = data_range(lo, hi)
        acc = MetricAccumulator(kind, value_range)  # type: ignore[arg-type]
        per_sample[name] = [acc.update(g[name], m[name]) for g, m in zip(golden, mine)]
        results[name] = acc.result()
        failures += [f"{name}: {f}" for f in check_thresholds(results[name], thresholds)]
        extremes = Extremes()
        for index, values in enumerate(per_sample[name]):
            extremes.update(values, f"{index}")
        mine_gates = [gate for output, gate in gates if output in (None, name)]
        for failure in judge(mine_gates, results[name], extremes, candidate=mix, output=name):
            failures.append(f"{name}: {failure.short()}")
    return results, per_sample, failures


def evaluate_pipeline(
    spec: PipelineSpec,
    function: PipelineFunction | None = None,
    progress: Progress = NULL_PROGRESS,
) -> tuple[PipelineResult, dict[str, list[dict[str, np.ndarray]]]]:
    """Build what the mixes need, run the golden and every mix, compare the final outputs.

    Returns the result and the final outputs per mix (and "fp32", the golden).
    """
    function = function or load_function(spec.function, spec.search_path)
    artifacts, backend_name = build_components(spec, progress)
    golden_mix = {name: FP32 for name in spec.components}
    wanted = {(c, p) for mix in [golden_mix, *spec.mixes.values()] for c, p in mix.items()}
    outputs: dict[str, list[dict[str, np.ndarray]]] = {}
    mixes: list[MixResult] = []
    with open_runners(artifacts, backend_name, wanted) as runners:
        with progress.task("pipeline: FP32 golden", total=None):
            golden = run_mix(
                function, {c: runners[(c, FP32)] for c in golden_mix}, spec.samples, FP32
            )
        outputs[FP32] = golden
        for mix, precisions in spec.mixes.items():
            with progress.task(f"pipeline: {mix}", total=None):
                mine = run_mix(
                    function, {c: runners[(c, p)] for c, p in precisions.items()}, spec.samples, mix
                )
            outputs[mix] = mine
            metrics, per_sample, failures = compare_outputs(
                golden, mine, spec.thresholds, spec.gates, mix
            )
            mixes.append(MixResult(mix, dict(precisions), metrics, per_sample, failures))
    failures = [f"{m.name} {f}" for m in mixes for f in m.failures]
    result = PipelineResult(
        function=spec.function,
        soc=spec.soc,
        backend=backend_name,
        simulated=backend_name != "atc",
        samples=spec.samples,
        mixes=mixes,
        verdict="PASSED" if not failures else "FAILED: " + "; ".join(failures),
        failures=failures,
        thresholds=spec.thresholds,
        artifacts=artifacts,
        out_dir=str(spec.out),
    )
    return result, outputs
