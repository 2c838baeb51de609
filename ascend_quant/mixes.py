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
    "unet-int8-tuned" = { unet = { precision = "int8", quant = { skip_layers = ["/inp/Conv"] } } }

A mix may give a component a table instead of a precision: build settings merged over the
component's `build` table (validated like `ascend-quant.toml`). Every distinct effective setting
is one build in its own workspace (`<out>/<component>` for the component's own settings,
`<out>/<component>-<id>` otherwise), so mixes with the same settings share one build, and a
second run reuses every stage.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib
import inspect
import logging
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ascend_quant.backends import get_backend
from ascend_quant.comparator import ErrorAccumulator
from ascend_quant.compare import check_thresholds
from ascend_quant.config import (
    PRECISIONS,
    BuildConfig,
    Thresholds,
    from_mapping,
    load_project_file,
    merge,
    to_mapping,
)
from ascend_quant.errors import AscendQuantError, UsageError, not_a_model_file
from ascend_quant.gates import Extremes, Gate, judge, parse_gate
from ascend_quant.metrics import data_range, detect_kind, image_layout
from ascend_quant.pipeline import build
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.report import MAX_GRID_SAMPLES
from ascend_quant.runners.base import Runner
from ascend_quant.runners.ort import OrtRunner
from ascend_quant.soc import get_soc
from ascend_quant.workspace import sha256_json

log = logging.getLogger("ascend_quant")

FP32 = "fp32"  # a component left as the FP32 ONNX model (ONNX Runtime), as in the golden
MIX_PRECISIONS = (FP32, *PRECISIONS)
DECLARED = "declared"
_PATH_KEYS = ("sources", "eval_sources", "calib", "eval")

# Build keys the pipeline sets for every component: where the user sets them instead.
PIPELINE_OWNED = {
    "model": "[pipeline.components.NAME] model",
    "socs": "[pipeline] soc (or --soc)",
    "backend": "[pipeline] backend (or --backend)",
    "out": "[pipeline] out (or --out)",
}
BACKENDS = ("auto", "atc", "sim")
PIPELINE_EXAMPLES = {
    "function": "pipeline:generate",
    "soc": "Ascend310P3",
    "backend": "sim",
    "out": "build/pipeline",
}
CHOICE_HINT = (
    'e.g. unet = "w8", or unet = { precision = "int8", quant = { skip_layers = ["/inp/Conv"] } }'
)

PipelineFunction = Callable[[Mapping[str, Runner], int], Any]


@dataclass(frozen=True)
class Component:
    """One model of the pipeline and the build settings it is converted with."""

    name: str
    model: Path
    precision: str  # in the declared mix
    build: dict[str, Any] = field(default_factory=dict)  # BuildConfig keys for this component


@dataclass(frozen=True)
class Choice:
    """How one mix runs one component: a precision, and build settings over the component's.

    `overrides` are `ascend-quant.toml` keys merged over `Component.build` (e.g. a tuned INT8's
    `quant.skip_layers`), so a tuned and a plain INT8 UNet can be compared in one pipeline.
    """

    precision: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """`int8`, or `int8 [quant.skip_layers=[/inp/Conv, /out/Conv, +2 more]]`."""
        if not self.overrides:
            return self.precision
        settings = "; ".join(f"{k}={_short(v)}" for k, v in _dotted(self.overrides))
        return f"{self.precision} [{settings}]"


def _dotted(table: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        pairs += _dotted(value, name) if isinstance(value, Mapping) and value else [(name, value)]
    return pairs


def _short(value: Any, shown: int = 2) -> str:
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value[:shown]]
        more = [f"+{len(value) - shown} more"] if len(value) > shown else []
        return "[" + ", ".join(items + more) + "]"
    return str(value)


def mix_label(choices: Mapping[str, Choice]) -> str:
    """`unet=int8 [quant.skip_layers=[...]], sr=fp16`: what a mix runs, overrides included."""
    return ", ".join(f"{name}={choice.describe()}" for name, choice in choices.items())


@dataclass(frozen=True)
class PipelineSpec:
    """What `compare --pipeline` evaluates: components, precision mixes, samples, gates."""

    function: str  # "module:function"
    components: dict[str, Component]
    mixes: dict[str, dict[str, Choice]]  # mix name -> a Choice for every component
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
    precisions: dict[str, str]  # component -> precision
    outputs: dict[str, dict[str, Any]]  # output -> metrics over all samples
    per_sample: dict[str, list[dict[str, Any]]]  # output -> each sample's metrics
    failures: list[str]
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # component -> settings
    builds: dict[str, str] = field(default_factory=dict)  # component -> ComponentBuild.name
    label: str = ""  # mix_label: precisions and overrides, for tables


@dataclass
class ComponentBuild:
    """One distinct build of a component: its own settings, or a mix's overrides merged over
    them. Mixes whose effective settings are equal share one; `reused`/`ran` are its stages."""

    name: str  # its workspace folder under `out`: the component, or "<component>-<id>"
    component: str
    overrides: dict[str, Any]  # over the component's build table; {} for its own settings
    mixes: list[str]  # the mixes that run it
    precisions: list[str]  # the precisions they run it at
    workspace: str = ""
    artifacts: dict[str, str] = field(default_factory=dict)  # precision -> .om
    reused: list[str] = field(default_factory=list)  # stages whose cached result was reused
    ran: list[str] = field(default_factory=list)  # stages that ran


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
    # component (or "<component>-<id>", a build with a mix's overrides) -> precision -> .om;
    # "fp32" is the component's ONNX model
    artifacts: dict[str, dict[str, str]]
    out_dir: str = ""
    builds: list[ComponentBuild] = field(default_factory=list)

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


def _suggest_key(key: str, known: Iterable[str]) -> str | None:
    match = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else None


def _check_owned(table: Mapping[str, Any], where: str) -> None:
    """Refuse build keys the pipeline sets for every component (they would be ignored)."""
    owned = sorted(set(table) & set(PIPELINE_OWNED))
    if owned:
        raise UsageError(
            f"{where}: {', '.join(owned)} is set by the pipeline, not per component or mix",
            hint="use " + "; ".join(PIPELINE_OWNED[k] for k in owned),
        )


def _choice(value: Any, component: Component, base: Path, where: str) -> Choice:
    """A mix's entry for one component: a precision string, or a table of `precision` (default:
    the component's declared one) and build settings merged over the component's `build`."""
    if isinstance(value, str):
        return Choice(_precision(value, where))
    if not isinstance(value, dict):
        raise UsageError(
            f"{where}: expected a precision or a table of precision and build settings, "
            f"got {value!r}",
            hint=CHOICE_HINT,
        )
    table = dict(value)
    precision = _precision(table.pop("precision", component.precision), where)
    if "build" in table:
        raise UsageError(
            f"{where}: put build settings beside precision, not in a build table",
            hint=CHOICE_HINT,
        )
    overrides = _resolve_paths(table, base)
    _check_owned(overrides, where)
    known = ["precision", *(f.name for f in dataclasses.fields(BuildConfig))]
    for key in overrides:
        if key.replace("-", "_") not in known:
            raise UsageError(
                f"{where}: unknown config key '{key}'",
                hint=_suggest_key(key, known)
                or "precision, or any ascend-quant.toml key (docs/config.md)",
            )
    if overrides and precision == FP32:
        raise UsageError(
            f"{where}: fp32 runs the ONNX model itself, so build settings do not apply",
            hint="drop the settings, or pick fp16, int8 or w8",
        )
    effective_config(component, overrides, where)  # unknown keys and bad values fail early
    return Choice(precision, overrides)


@contextlib.contextmanager
def _config_hint() -> Iterator[None]:
    """A config error without a hint of its own points at the reference of the keys."""
    try:
        yield
    except UsageError as exc:
        exc.hint = exc.hint or "the keys and values of ascend-quant.toml: docs/config.md"
        raise


def effective_config(
    component: Component, overrides: Mapping[str, Any] | None = None, where: str = ""
) -> BuildConfig:
    """The component's build table with a mix's overrides merged over it, validated like
    `ascend-quant.toml` (unknown keys refused with a suggestion)."""
    config = from_mapping(
        BuildConfig, component.build, f"[pipeline.components.{component.name}].build"
    )
    if not overrides:
        return config
    try:
        return merge(config, dict(overrides))
    except UsageError as exc:
        where = where or f"overrides of {component.name}"
        hint = exc.hint or "the keys and values of ascend-quant.toml: docs/config.md"
        raise UsageError(f"{where}: {exc.message}", hint=hint) from None


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
            f"[pipeline]: unknown key(s) {', '.join(unknown)}",
            hint=_suggest_key(unknown[0], known) or f"known: {', '.join(sorted(known))}",
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
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
            raise UsageError(
                f'{where} needs model = "<file>.onnx"',
                hint="the model's path, relative to this TOML file",
            )
        extra = sorted(set(entry) - {"model", "precision", "build"})
        if extra:
            raise UsageError(
                f"{where}: unknown key(s) {', '.join(extra)}",
                hint=_suggest_key(extra[0], ("model", "precision", "build"))
                or "known: model, precision, build (build settings go in its build table)",
            )
        model = Path(entry["model"])
        model = model if model.is_absolute() else base / model
        if not model.is_file():
            problem = not_a_model_file(model)
            raise UsageError(
                f"{where}: {problem.message}",
                hint="the path of the .onnx file, relative to the TOML file",
            )
        raw_build = entry.get("build") or {}
        if not isinstance(raw_build, dict):
            raise UsageError(
                f"{where}: build must be a table of ascend-quant.toml keys, got {raw_build!r}",
                hint=f"[pipeline.components.{name}.build] with e.g. quant = {{ ... }}",
            )
        build_table = _resolve_paths(dict(raw_build), base)
        _check_owned(build_table, f"{where}.build")
        with _config_hint():  # unknown keys and bad values fail here, not mid-build
            from_mapping(BuildConfig, build_table, f"{where}.build")
        components[name] = Component(
            name, model, _precision(entry.get("precision", "fp16"), where), build_table
        )
    declared = {name: Choice(c.precision) for name, c in components.items()}
    mixes: dict[str, dict[str, Choice]] = {DECLARED: declared}
    raw_mixes = table.get("mixes") or {}
    if not isinstance(raw_mixes, dict):
        raise UsageError(
            f"[pipeline] mixes must be a table of mix name -> components, got {raw_mixes!r}",
            hint='[pipeline.mixes] "unet-w8" = { unet = "w8" }',
        )
    for mix, entries in raw_mixes.items():
        if not isinstance(entries, dict):
            raise UsageError(
                f"[pipeline.mixes] '{mix}' must map components to precisions",
                hint=f'e.g. "{mix}" = {{ {next(iter(components))} = "fp16" }}',
            )
        stray = [c for c in entries if c not in components]
        if stray:
            raise UsageError(
                f"[pipeline.mixes] '{mix}' names unknown component(s) {', '.join(stray)}",
                hint=f"components: {', '.join(components)}",
            )
        mixes[str(mix)] = {
            **declared,
            **{
                c: _choice(value, components[c], base, f"[pipeline.mixes] '{mix}' {c}")
                for c, value in entries.items()
            },
        }
    function = function or _text(table, "function", None)
    if not function:
        raise UsageError(
            "no pipeline function",
            hint="pass --pipeline module:function or set [pipeline] function",
        )
    samples = table.get("samples", 1)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise UsageError(
            f"[pipeline] samples must be a whole number of at least 1, got {samples!r}",
            hint="samples = 4 calls the function with index 0..3",
        )
    soc = _text(table, "soc", "Ascend310P3")
    get_soc(soc)  # an unknown soc fails here, with a suggestion
    backend = _text(table, "backend", "auto")
    if backend not in BACKENDS:
        raise UsageError(
            f"[pipeline] backend '{backend}' is not one of {', '.join(BACKENDS)}",
            hint="auto uses atc when the CANN toolkit is found, else the simulator",
        )
    raw_gates = table.get("gates", [])
    if not isinstance(raw_gates, (list, tuple)):
        raise UsageError(
            f"[pipeline] gates must be a list of gate texts, got {raw_gates!r}",
            hint='gates = ["image:worst:psnr_db>=30"]',
        )
    raw_thresholds = table.get("thresholds") or {}
    if not isinstance(raw_thresholds, dict):
        raise UsageError(
            f"[pipeline] thresholds must be a table, got {raw_thresholds!r}",
            hint="[pipeline.thresholds] cosine_min = 0.99",
        )
    with _config_hint():
        thresholds = from_mapping(Thresholds, dict(raw_thresholds), "pipeline.thresholds")
    return PipelineSpec(
        function=str(function),
        components=components,
        mixes=mixes,
        samples=samples,
        soc=soc,
        backend=backend,
        out=Path(_text(table, "out", str(Path("build") / f"pipeline-{base.name or 'pipeline'}"))),
        search_path=base,
        thresholds=thresholds,
        gates=tuple(parse_gate(str(text)) for text in raw_gates),
    )


def _text(table: Mapping[str, Any], key: str, default: Any) -> Any:
    """A string value of `[pipeline]`, or `default` when absent."""
    value = table.get(key, default)
    if value is not default and not isinstance(value, str):
        raise UsageError(
            f"[pipeline] {key} must be a string, got {value!r}",
            hint=f'e.g. {key} = "{PIPELINE_EXAMPLES.get(key, "...")}"',
        )
    return value


def load_pipeline_spec(
    path: str | Path, function: str | None = None, overrides: Mapping[str, Any] | None = None
) -> PipelineSpec:
    """Read `[pipeline]` from a TOML file; `overrides` (soc, backend, out, samples) win.

    Every problem in the file is a `UsageError` with a hint (the CLI's exit 2).
    """
    path = Path(path)
    data = load_project_file(path)
    if not isinstance(data.get("pipeline", {}), dict):
        raise UsageError(
            f"{path}: pipeline must be a table",
            hint='[pipeline] function = "module:function", then [pipeline.components.NAME]',
        )
    if overrides:
        given = {k: str(v) if isinstance(v, Path) else v for k, v in overrides.items() if v}
        data.setdefault("pipeline", {}).update(given)
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
    except Exception as exc:  # the module's own code failed on import: a user error
        raise UsageError(
            f"importing pipeline module '{module_name}' raised {type(exc).__name__}: {exc}",
            hint="fix the module (--debug shows the traceback)",
        ) from exc
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(added)
    function = getattr(module, attr, None)
    if not callable(function):
        # its own functions only: not the classes and helpers it imported (Path, Mapping, ...)
        names = [
            n
            for n, obj in vars(module).items()
            if inspect.isfunction(obj)
            and obj.__module__ == module.__name__
            and not n.startswith("_")
        ]
        raise UsageError(
            f"'{module_name}' has no function '{attr}'",
            hint=_suggest_key(attr, names) or f"its functions: {', '.join(names) or 'none'}",
        )
    return function


# --------------------------------------------------------------------------- building


def component_config(
    spec: PipelineSpec, component: Component, overrides: Mapping[str, Any] | None = None
) -> BuildConfig:
    """The build settings of one component: its own table, a mix's overrides, then the
    pipeline's soc and backend and the build's workspace (see `plan_builds`)."""
    config = effective_config(component, overrides)
    name = _build_name(component, config, effective_config(component))
    return merge(
        config,
        {"socs": [spec.soc], "backend": spec.backend, "out": str(Path(spec.out) / name)},
    )


def _identity(config: BuildConfig) -> str:
    return sha256_json(to_mapping(config))


def _build_name(component: Component, config: BuildConfig, own: BuildConfig) -> str:
    """`unet` for the component's own settings, `unet-<id>` for other effective settings."""
    identity = _identity(config)
    return component.name if identity == _identity(own) else f"{component.name}-{identity[:8]}"


def plan_builds(spec: PipelineSpec) -> tuple[list[ComponentBuild], dict[str, dict[str, str]]]:
    """The distinct builds the mixes need below FP32, and per mix which build each component
    runs from. Mixes whose effective settings are equal (after merging) share one build."""
    builds: dict[str, ComponentBuild] = {}
    uses: dict[str, dict[str, str]] = {}
    for mix, choices in spec.mixes.items():
        uses[mix] = {}
        for name, choice in choices.items():
            if choice.precision == FP32:
                continue
            component = spec.components[name]
            config = effective_config(component, choice.overrides)
            build_name = _build_name(component, config, effective_config(component))
            entry = builds.setdefault(
                build_name,
                ComponentBuild(
                    build_name,
                    name,
                    dict(choice.overrides) if build_name != name else {},
                    [],
                    [],
                    workspace=str(Path(spec.out) / build_name),
                ),
            )
            if mix not in entry.mixes:
                entry.mixes.append(mix)
            if choice.precision not in entry.precisions:
                entry.precisions.append(choice.precision)
            uses[mix][name] = build_name
    return list(builds.values()), uses


def build_components(
    spec: PipelineSpec, progress: Progress = NULL_PROGRESS
) -> tuple[list[ComponentBuild], dict[str, dict[str, str]], str]:
    """Build every distinct (component, settings) some mix needs below FP32, each with the
    normal cached `build` stages in its own workspace. Returns the builds (artifacts and which
    stages were reused), per mix the build of each component, and the backend used."""
    builds, uses = plan_builds(spec)
    backend = spec.backend
    for entry in builds:
        component = spec.components[entry.component]
        config = component_config(spec, component, entry.overrides)
        result = build(component.model, config, progress=progress)
        backend = result.backend
        (soc,) = result.socs
        missing = sorted(set(entry.precisions) - set(soc.artifacts))
        if missing:
            raise UsageError(
                f"component '{entry.name}' has no {', '.join(missing)} build for {spec.soc}",
                hint="see the build's warnings (INT8 refused? w8 not supported on this soc?)",
            )
        entry.workspace = str(result.workspace)
        entry.artifacts = dict(soc.artifacts)
        entry.reused = [run.stage for run in result.stages if run.reused]
        entry.ran = [run.stage for run in result.stages if not run.reused]
    return builds, uses, backend


# --------------------------------------------------------------------------- running


def _outputs(value: Any, mix: str, index: int) -> dict[str, np.ndarray]:
    """The function's return value as {output: numeric array}, or a UsageError saying why not."""
    if isinstance(value, np.ndarray):
        value = {"output": value}
    if not isinstance(value, Mapping) or not value:
        what = "an empty mapping" if isinstance(value, Mapping) else type(value).__name__
        raise UsageError(
            f"the pipeline function returned {what} for mix '{mix}', sample {index}",
            hint="return the final output as a NumPy array or a mapping name -> array",
        )
    arrays = {}
    for name, array in value.items():
        try:
            arrays[str(name)] = np.asarray(array)
        except (TypeError, ValueError):
            arrays[str(name)] = np.asarray(None)
        if arrays[str(name)].dtype.kind not in "biuf":
            raise UsageError(
                f"the pipeline function's output '{name}' for mix '{mix}', sample {index} is "
                f"{type(array).__name__}, not a numeric array",
                hint="return NumPy arrays of numbers (e.g. the decoded image as float32)",
            )
    return arrays


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


def run_sample(
    function: PipelineFunction, runners: Mapping[str, Runner], index: int, mix: str
) -> dict[str, np.ndarray]:
    """The function's final outputs for one sample with these runners.

    An exception in the user's function is a `UsageError` naming the mix and sample (the
    traceback is kept for --debug); the tool's own errors pass through as they are.
    """
    try:
        value = function(runners, index)
    except AscendQuantError:
        raise
    except Exception as exc:
        raise UsageError(
            f"the pipeline function raised {type(exc).__name__}: {exc} "
            f"(mix '{mix}', sample {index})",
            hint=f"fix the function; it gets runners for {', '.join(sorted(runners))} "
            "and the sample index (--debug shows the traceback)",
        ) from exc
    return _outputs(value, mix, index)


def run_mix(
    function: PipelineFunction, runners: Mapping[str, Runner], samples: int, mix: str
) -> Iterator[dict[str, np.ndarray]]:
    """The function's final outputs for samples 0..samples-1, one at a time (`run_sample`)."""
    for index in range(samples):
        yield run_sample(function, runners, index, mix)


@dataclass
class GoldenSummary:
    """What the golden says before any mix is compared: its outputs (sample 0's names and
    shapes) and each one's value range over every sample (L of PSNR/SSIM, fixed up front)."""

    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    lo: dict[str, float] = field(default_factory=dict)
    hi: dict[str, float] = field(default_factory=dict)

    def update(self, golden: Mapping[str, np.ndarray], index: int) -> None:
        if not self.shapes:
            self.shapes = {name: tuple(array.shape) for name, array in golden.items()}
        for name in self.shapes:
            if name not in golden:
                raise UsageError(
                    f"the golden's sample {index} lacks output '{name}' that sample 0 has",
                    hint="return the same outputs for every sample",
                )
            if detect_kind(self.shapes[name]) != "image":
                continue
            lo, hi = float(np.min(golden[name])), float(np.max(golden[name]))
            # min()/max() as over a list of every sample's (a NaN stays where it is first)
            self.lo[name] = min(self.lo[name], lo) if name in self.lo else lo
            self.hi[name] = max(self.hi[name], hi) if name in self.hi else hi

    def accumulator(self, name: str) -> ErrorAccumulator:
        """msit's metrics of one output, with its kind and data range."""
        kind = detect_kind(self.shapes[name])
        value_range = data_range(self.lo[name], self.hi[name]) if kind == "image" else None
        return ErrorAccumulator(kind, value_range)  # type: ignore[arg-type]

    def image_outputs(self) -> list[str]:
        return [n for n, shape in self.shapes.items() if image_layout(shape) is not None]


@dataclass
class MixComparison:
    """One mix against the golden, sample by sample: an `ErrorAccumulator` per output and each
    sample's metrics (small dicts), never the arrays."""

    mix: str
    golden: GoldenSummary
    accumulators: dict[str, ErrorAccumulator] = field(default_factory=dict)
    per_sample: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.accumulators = {name: self.golden.accumulator(name) for name in self.golden.shapes}
        self.per_sample = {name: [] for name in self.golden.shapes}

    def update(
        self, index: int, golden: Mapping[str, np.ndarray], mine: Mapping[str, np.ndarray]
    ) -> dict[str, dict[str, Any]]:
        """Add one sample; return its metrics per output."""
        values = {}
        for name, acc in self.accumulators.items():
            if name not in mine:
                raise UsageError(
                    f"mix '{self.mix}': the pipeline output lacks '{name}' that the golden has",
                    hint="return the same outputs whatever the precision of the runners",
                )
            if golden[name].shape != mine[name].shape:
                raise UsageError(
                    f"mix '{self.mix}', sample {index}: output '{name}' has shape "
                    f"{tuple(mine[name].shape)}, the golden {tuple(golden[name].shape)}",
                    hint="return the same shapes whatever the precision of the runners",
                )
            values[name] = acc.update(golden[name], mine[name])
            self.per_sample[name].append(values[name])
        return values

    def finish(
        self, thresholds: Thresholds, gates: tuple[tuple[str | None, Gate], ...] = ()
    ) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]], list[str]]:
        """Metrics per output over all samples, each sample's metrics, and the failures:
        msit's thresholds on the aggregate, and the gates (aggregate or `worst:` sample)."""
        results: dict[str, dict[str, Any]] = {}
        failures: list[str] = []
        for name, acc in self.accumulators.items():
            results[name] = acc.result()
            failures += [f"{name}: {f}" for f in check_thresholds(results[name], thresholds)]
            extremes = Extremes()
            for index, values in enumerate(self.per_sample[name]):
                extremes.update(values, f"{index}")
            mine_gates = [gate for output, gate in gates if output in (None, name)]
            found = judge(mine_gates, results[name], extremes, candidate=self.mix, output=name)
            failures += [f"{name}: {failure.short()}" for failure in found]
        return results, self.per_sample, failures


def compare_outputs(
    golden: Sequence[Mapping[str, np.ndarray]],
    mine: Iterable[Mapping[str, np.ndarray]],
    thresholds: Thresholds,
    gates: tuple[tuple[str | None, Gate], ...] = (),
    mix: str = "",
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]], list[str]]:
    """`MixComparison` over outputs at hand: the golden's samples (read twice: its range first),
    the mix's streamed. `evaluate_pipeline` streams both and keeps neither."""
    summary = GoldenSummary()
    for index, values in enumerate(golden):
        summary.update(values, index)
    comparison = MixComparison(mix, summary)
    for index, (g, m) in enumerate(zip(golden, mine)):
        comparison.update(index, g, m)
    return comparison.finish(thresholds, gates)


WORST_METRIC = "psnr_db"  # the report's grid and full-size panel show each mix's worst on it


@dataclass
class SampleKeeper:
    """The samples the pipeline report shows, out of any number: the first `first` and, per
    mix and image output, the worst PSNR so far, as `report.worst_sample` picks it (a NaN
    first, else the lowest, the earliest on ties). A sample kept holds the golden's and every
    mix's outputs; at most `first` + mixes x image outputs samples are held at once."""

    first: int
    outputs: list[str]  # image outputs
    extremes: dict[tuple[str, str], Extremes] = field(default_factory=dict)
    kept: dict[int, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)

    def worst(self) -> set[int]:
        found = set()
        for extremes in self.extremes.values():
            at = extremes.nan_at.get(WORST_METRIC, extremes.low_at.get(WORST_METRIC))
            if at is not None:
                found.add(int(at))
        return found

    def offer(
        self,
        index: int,
        arrays: dict[str, dict[str, np.ndarray]],
        values: Mapping[str, Mapping[str, Mapping[str, Any]]],
    ) -> None:
        """One sample: `arrays` mix (and "fp32") -> outputs, `values` mix -> output -> metrics."""
        for mix, per_output in values.items():
            for output in self.outputs:
                value = per_output[output].get(WORST_METRIC)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    extremes = self.extremes.setdefault((mix, output), Extremes())
                    extremes.update({WORST_METRIC: float(value)}, str(index))
        needed = set(range(self.first)) | self.worst()
        if index in needed:
            self.kept[index] = arrays
        for old in [i for i in self.kept if i not in needed]:
            del self.kept[old]

    def by_mix(self) -> dict[str, dict[int, dict[str, np.ndarray]]]:
        """mix (and "fp32") -> kept sample index -> outputs, in index order."""
        table: dict[str, dict[int, dict[str, np.ndarray]]] = {}
        for index in sorted(self.kept):
            for mix, outputs in self.kept[index].items():
                table.setdefault(mix, {})[index] = outputs
        return table


def evaluate_pipeline(
    spec: PipelineSpec,
    function: PipelineFunction | None = None,
    progress: Progress = NULL_PROGRESS,
) -> tuple[PipelineResult, dict[str, dict[int, dict[str, np.ndarray]]]]:
    """Build what the mixes need, run the golden and every mix, compare the final outputs.

    `function` defaults to `spec.function` (imported from beside the TOML file). Returns the
    result and the final outputs of the samples the report shows (`SampleKeeper`: the first
    ones and each mix's worst) per mix (and "fp32", the golden): mix -> sample index ->
    {output: array}, what `report.write_pipeline_report` takes. Memory does not grow with the
    samples: the golden's outputs wait in files under `spec.out` while the mixes run. Raises
    `UsageError` for a bad function, a return value that is not arrays, or a component without
    the needed build.
    """
    function = function or load_function(spec.function, spec.search_path)
    builds, uses, backend_name = build_components(spec, progress)
    artifacts: dict[str, dict[str, str]] = {
        name: {FP32: str(c.model)} for name, c in spec.components.items()
    }
    for entry in builds:
        artifacts.setdefault(entry.name, {}).update(entry.artifacts)

    def runner_keys(mix: str, choices: Mapping[str, Choice]) -> dict[str, tuple[str, str]]:
        """component -> (artifacts key, precision) for this mix."""
        return {c: (uses.get(mix, {}).get(c, c), choice.precision) for c, choice in choices.items()}

    golden_keys = {c: (c, FP32) for c in spec.components}
    keys = {mix: runner_keys(mix, choices) for mix, choices in spec.mixes.items()}
    wanted = {key for mix in [golden_keys, *keys.values()] for key in mix.values()}
    Path(spec.out).mkdir(parents=True, exist_ok=True)
    with (
        open_runners(artifacts, backend_name, wanted) as runners,
        tempfile.TemporaryDirectory(prefix=".golden-", dir=spec.out) as spool,
    ):
        # The golden first, each sample to a file: its value range is L of every mix's PSNR and
        # SSIM, known only once every sample has run.
        golden_runners = {c: runners[k] for c, k in golden_keys.items()}
        summary = GoldenSummary()
        with progress.task("pipeline: FP32 golden", total=spec.samples) as advance:
            for index, outs in enumerate(run_mix(function, golden_runners, spec.samples, FP32)):
                summary.update(outs, index)
                for k, name in enumerate(summary.shapes):
                    np.save(Path(spool) / f"{index}-{k}.npy", outs[name])
                advance(1)
        # Then sample by sample every mix against the golden read back: only the accumulators
        # and the samples the report shows stay (memory does not grow with the samples).
        comparisons = {mix: MixComparison(mix, summary) for mix in spec.mixes}
        keeper = SampleKeeper(MAX_GRID_SAMPLES, summary.image_outputs())
        label = f"pipeline: {len(spec.mixes)} mix(es)"
        with progress.task(label, total=spec.samples) as advance:
            for index in range(spec.samples):
                golden = {
                    name: np.load(Path(spool) / f"{index}-{k}.npy")
                    for k, name in enumerate(summary.shapes)
                }
                arrays = {FP32: golden}
                values = {}
                for mix in spec.mixes:
                    mix_runners = {c: runners[k] for c, k in keys[mix].items()}
                    arrays[mix] = run_sample(function, mix_runners, index, mix)
                    values[mix] = comparisons[mix].update(index, golden, arrays[mix])
                keeper.offer(index, arrays, values)
                del golden, arrays
                advance(1)
    mixes: list[MixResult] = []
    for mix, choices in spec.mixes.items():
        metrics, per_sample, failures = comparisons[mix].finish(spec.thresholds, spec.gates)
        mixes.append(
            MixResult(
                name=mix,
                precisions={c: choice.precision for c, choice in choices.items()},
                outputs=metrics,
                per_sample=per_sample,
                failures=failures,
                overrides={c: dict(ch.overrides) for c, ch in choices.items() if ch.overrides},
                builds=dict(uses.get(mix, {})),
                label=mix_label(choices),
            )
        )
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
        builds=builds,
    )
    return result, keeper.by_mix()
