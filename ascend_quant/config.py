"""The one typed configuration every stage reads.

Precedence: built-in defaults < project file (`ascend-quant.toml`, or a `quant_config.json`
read back) < CLI flags. Every section is a frozen dataclass; `from_mapping` rejects unknown keys
with a "did you mean" suggestion, so a typo never silently becomes a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from ascend_quant.errors import UsageError
from ascend_quant.gates import Gate
from ascend_quant.tasks import TaskChoice, TaskOptions
from ascend_quant.workspace import atomic_write_text, read_user_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ColorOrder = Literal["rgb", "bgr", "gray"]
ResizeMode = Literal["stretch", "letterbox", "center-crop", "shorter-side"]
Resample = Literal["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"]
Layout = Literal["NCHW", "NHWC"]
SampleDtype = Literal["float32", "float16", "uint8", "int8"]
ActAlgorithm = Literal["ifmr", "hfmg", "minmax", "percentile", "entropy"]
Backend = Literal["auto", "atc", "sim"]
Int8Route = Literal["auto", "atc", "amct"]
FlagDialect = Literal["documented", "sample"]
# int8 is W8A8 (weights and activations); w8 is weight-only INT8 (weight_compress_only),
# activations stay FP16.
Precision = Literal["fp16", "int8", "w8"]
PRECISIONS: tuple[Precision, ...] = ("fp16", "int8", "w8")
InputKind = Literal["auto", "image", "array"]
TuneStrategy = Literal["calibration", "float"]

# Algorithms the real toolkit implements; the others exist only in the simulator, for comparison.
TOOLKIT_ALGORITHMS = ("ifmr", "hfmg")

# atc flags ascend-quant sets itself: `atc.extra_args` may not repeat or override them.
ATC_OWNED_FLAGS = (
    "model",
    "framework",
    "output",
    "soc_version",
    "input_format",
    "input_shape",
    "log",
    "precision_mode",
    "precision_mode_v2",
    "output_type",
    "insert_op_conf",
    "enable_small_channel",
    "dynamic_batch_size",
    "dynamic_image_size",
    "dynamic_dims",
    "op_select_implmode",
    "optypelist_for_implmode",
    "op_precision_mode",
    "keep_dtype",
    "compression_optimize_conf",
    "enable_quantization",
    "quantization_config",
    "mode",
    "om",
    "weight",
)
# AIPP input formats for a static aipp_op (reference §6).
# A project file larger than this is not a project file.
MAX_CONFIG_BYTES = 1 << 20
CONFIG_FILE_HINT = "pass the path of an ascend-quant.toml (or a quant_config.json)"
# Largest image side accepted for --size (AIPP's own limit is 4096).
MAX_IMAGE_SIDE = 16384
AIPP_INPUT_FORMATS = ("YUV420SP_U8", "RGB888_U8", "XRGB8888_U8", "YUV400_U8")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _require(ok: bool, message: str, hint: str) -> None:
    """The value checks every config section runs when it is built (a bad value is exit 2)."""
    if not ok:
        raise UsageError(message, hint=hint)


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


# What separates fields in atc's --input_shape ("a:1,3;b:2") and amct's --data_dir ("d1;d2").
TOOLKIT_SEPARATORS = (";", ",", ":")


def toolkit_name_problem(name: str) -> str | None:
    """Why a tensor name cannot be written into atc/amct's --input_shape, or None."""
    if _CONTROL.search(name):
        return f"input name {name!r} contains a control character"
    found = [s for s in TOOLKIT_SEPARATORS if s in name]
    if found:
        return (
            f"input name {name!r} contains {' and '.join(repr(s) for s in found)}, which "
            "separate fields in atc's --input_shape"
        )
    return None


TOOLKIT_NAME_HINT = (
    "rename the model input (e.g. with onnx.utils or onnx-graphsurgeon) to letters, digits, "
    "'_', '.', '/' or '-'; the simulator (--backend sim) accepts any name"
)


def check_plain_text(value: str, what: str) -> None:
    """Refuse control characters (newlines, tabs, NUL) in text that reaches a file or argv."""
    _require(
        not _CONTROL.search(value),
        f"{what} {value!r} contains a control character (newline, tab, ...)",
        f"write {what} on one line without control characters",
    )


@dataclass(frozen=True)
class PreprocessConfig:
    """How calibration/evaluation images become tensors.

    Pixel pipeline: decode -> EXIF transpose -> colour -> resize -> float -> x*scale ->
    (x - mean) / std -> layout -> dtype. `mean` and `std` apply in the scaled domain, i.e.
    after multiplying by `scale` (with scale=1/255, ImageNet mean is 0.485, not 123.675).
    """

    size: tuple[int, int] | None = None  # (H, W); None: take it from the model input
    color: ColorOrder = "rgb"
    resize: ResizeMode = "stretch"
    resample: Resample = "bicubic"
    pad_value: int = 0
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    layout: Layout = "NCHW"
    dtype: SampleDtype = "float32"

    def __post_init__(self) -> None:
        if self.size is not None:
            _require(
                all(0 < v <= MAX_IMAGE_SIDE for v in self.size),
                f"size {self.size[0]}x{self.size[1]} is outside 1..{MAX_IMAGE_SIDE} pixels a side",
                "e.g. --size 224x224",
            )
        values = (self.scale, *self.mean, *self.std)
        _require(
            all(map(_finite, values)),
            f"scale {self.scale}, mean {list(self.mean)}, std {list(self.std)}: every value "
            "must be a finite number (no nan or inf)",
            "e.g. --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225",
        )


@dataclass(frozen=True)
class CalibConfig:
    """Which images to use for calibration and how to batch them."""

    sources: tuple[str, ...] = ()  # dirs, globs or list files; empty: the bundled calib/ images
    limit: int | None = None
    seed: int = 0
    batch: int = 1  # N in the calibration input_shape; one batched .bin holds N samples
    skip_bad: bool = False
    jobs: int | None = None  # worker processes; None: all cores

    def __post_init__(self) -> None:
        _require(self.batch >= 1, f"calib batch {self.batch} is below 1", "e.g. --batch 4")
        _require(self.limit is None or self.limit >= 1, f"limit {self.limit} is below 1", "e.g. 16")
        _require(self.jobs is None or self.jobs >= 1, f"jobs {self.jobs} is below 1", "e.g. -j 2")


@dataclass(frozen=True)
class IfmrConfig:
    """AMCT FMRQuantize: percentile start point, then a clip-ratio search."""

    search_range_start: float = 0.7
    search_range_end: float = 1.3
    search_step: float = 0.01
    max_percentile: float = 0.999999
    min_percentile: float = 0.999999
    asymmetric: bool | None = None  # None: follow activation_offset

    def __post_init__(self) -> None:
        start, end, step = self.search_range_start, self.search_range_end, self.search_step
        _require(
            all(map(_finite, (start, end, step))) and 0 < start < end and 0 < step <= end - start,
            f"IFMR search range {start}..{end} step {step}: AMCT needs "
            "0 < search_range_start < search_range_end and 0 < search_step <= end - start",
            "e.g. search_range_start = 0.7, search_range_end = 1.3, search_step = 0.01",
        )
        for name in ("max_percentile", "min_percentile"):
            value = getattr(self, name)
            _require(
                _finite(value) and 0.5 < value <= 1.0,
                f"IFMR {name} {value} is outside (0.5, 1]",
                f"e.g. {name} = 0.999999",
            )


@dataclass(frozen=True)
class HfmgConfig:
    """AMCT HFMGQuantize: histogram-based range search."""

    num_of_bins: int = 4096
    asymmetric: bool | None = None

    def __post_init__(self) -> None:
        _require(
            2 <= self.num_of_bins <= 1 << 16,
            f"HFMG num_of_bins {self.num_of_bins} is outside 2..65536",
            "AMCT documents 1024, 2048, 4096 (default) or 8192",
        )


@dataclass(frozen=True)
class LayerOverride:
    """A `calibration_config` for one layer type or one layer name (AMCT override_* messages)."""

    channel_wise: bool | None = None
    algorithm: ActAlgorithm | None = None
    ifmr: IfmrConfig | None = None
    hfmg: HfmgConfig | None = None


@dataclass(frozen=True)
class TensorQuantize:
    """AMCT tensor_quantize: quantize one input of a MaxPool/Add/Eltwise layer."""

    layer_name: str
    input_index: int = 0


@dataclass(frozen=True)
class QuantConfig:
    """INT8 post-training quantization settings, named as the toolkit names them.

    The same object renders simple_config.cfg/amct_config.cfg for the real toolkit and drives
    the simulator's QDQ model, so the simulation predicts what was asked of the toolkit.
    """

    activation_offset: bool = True  # asymmetric activations
    channel_wise: bool = True  # ARQ per-channel weights
    quant_bits: int = 8
    algorithm: ActAlgorithm = "ifmr"
    ifmr: IfmrConfig = field(default_factory=IfmrConfig)
    hfmg: HfmgConfig = field(default_factory=HfmgConfig)
    joint_quant: bool = False
    do_fusion: bool = True
    skip_layers: tuple[str, ...] = ()  # ONNX node names
    skip_layer_types: tuple[str, ...] = ()  # Ascend IR types (Conv2D, MatMulV2, ...) or ONNX types
    skip_fusion_layers: tuple[str, ...] = ()
    override_layer_types: dict[str, LayerOverride] = field(default_factory=dict)
    override_layer_configs: dict[str, LayerOverride] = field(default_factory=dict)
    tensor_quantize: tuple[TensorQuantize, ...] = ()
    batch_num: int | None = None  # calibration batches; None: all calibration batches

    def __post_init__(self) -> None:
        _require(
            self.quant_bits in (6, 7, 8),
            f"quant_bits {self.quant_bits} is not 6, 7 or 8",
            "AMCT quantizes weights to 8 bits (6 and 7 for Conv2d only)",
        )
        _require(
            self.batch_num is None or self.batch_num >= 1,
            f"batch_num {self.batch_num} is below 1",
            "leave batch_num unset to use every calibration batch",
        )
        names = (*self.skip_layers, *self.skip_layer_types, *self.skip_fusion_layers)
        names += (*self.override_layer_types, *self.override_layer_configs)
        for name in names:
            check_plain_text(name, "layer name")


@dataclass(frozen=True)
class AtcConfig:
    """Flags passed to `atc` (names as atc spells them) and how the toolkit is driven."""

    input_format: str = "NCHW"
    precision_mode: str | None = None
    precision_mode_v2: str | None = None
    output_type: str | None = None
    op_select_implmode: str | None = None
    optypelist_for_implmode: tuple[str, ...] = ()
    enable_small_channel: bool = False
    op_precision_mode: str | None = None
    # --keep_dtype: ops kept in FP32, one per line of keep_dtype.cfg: an ONNX node name or
    # "OpType::<type>" (every op of that type)
    keep_dtype: tuple[str, ...] = ()
    log: str = "error"
    int8_route: Int8Route = "auto"
    flag_dialect: FlagDialect = "documented"
    enable_first_layer_quantization: bool = False
    infer_device_id: int = 0
    timeout_s: float = 3600.0
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _require(
            _finite(self.timeout_s) and self.timeout_s > 0,
            f"atc.timeout_s {self.timeout_s} is not a positive number of seconds",
            "e.g. timeout_s = 3600 under [atc]",
        )
        _require(
            self.infer_device_id >= 0,
            f"atc.infer_device_id {self.infer_device_id} is negative",
            "use the device id npu-smi info shows, e.g. 0",
        )
        for text in (self.input_format, self.log, *self.optypelist_for_implmode):
            check_plain_text(text, "atc option")
        for value in (self.precision_mode, self.precision_mode_v2, self.output_type):
            check_plain_text(value or "", "atc option")
        check_plain_text(self.op_select_implmode or "", "atc option")
        check_plain_text(self.op_precision_mode or "", "atc option")
        for arg in self.extra_args:
            check_plain_text(arg, "extra atc argument")
            match = re.match(r"^-{1,2}([A-Za-z0-9_]+)(=|$)", arg)
            _require(
                match is not None and match.group(2) == "=",
                f"extra atc argument {arg!r} is not in atc's --flag=value form",
                "write each extra argument as --flag=value (gflags syntax)",
            )
            assert match is not None
            _require(
                match.group(1) not in ATC_OWNED_FLAGS,
                f"extra atc argument {arg!r} repeats a flag ascend-quant sets itself "
                f"(--{match.group(1)})",
                f"use the ascend-quant option for --{match.group(1)} instead of extra_args "
                "(see docs/config.md)",
            )


@dataclass(frozen=True)
class GearsConfig:
    """atc's dynamic gears: at most one of batch, image_size, dims (see gears.py).

    `dims` lists, per gear, one value for every -1 of `input_shape` in input order (atc
    `--dynamic_dims`); `inputs` limits image-size gears to these inputs (default: every 4-D
    input); `calib_gear` is the gear INT8 calibrates at (default: the largest), e.g. "32,320".
    """

    batch: tuple[int, ...] = ()
    image_size: tuple[tuple[int, int], ...] = ()
    dims: tuple[tuple[int, ...], ...] = ()
    inputs: tuple[str, ...] = ()
    calib_gear: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.batch or self.image_size or self.dims)


@dataclass(frozen=True)
class AippConfig:
    """Static AIPP (`--insert_op_conf`): the NPU does uint8 -> normalised float itself."""

    enabled: bool = False
    input_format: str = "RGB888_U8"
    crop: bool = False
    src_image_size: tuple[int, int] | None = None  # (H, W); None: the model input size

    def __post_init__(self) -> None:
        _require(
            self.input_format in AIPP_INPUT_FORMATS,
            f"aipp.input_format {self.input_format!r} is not an AIPP input format",
            f"use one of: {', '.join(AIPP_INPUT_FORMATS)}",
        )


@dataclass(frozen=True)
class BenchConfig:
    """Each model: `warmup` untimed runs, then at most `loop` timed runs or as many as fit in
    its equal share of `duration_s` (None: no budget), but at least `min_loop` (or `loop`, if
    lower); models alternate in rounds. One budget for the whole benchmark, so a build's bench
    stage takes about `duration_s` however many models (fp16, int8, w8) and gears it times."""

    warmup: int = 2
    loop: int = 50
    duration_s: float | None = 2.0  # time budget of all models and gears together
    min_loop: int = 5
    device: int = 0
    batch_size: int | None = None  # None: the leading dim of the first input
    gears: tuple[str, ...] = ()  # gear models: the gears to time, e.g. ["32x128"]; empty: all

    def __post_init__(self) -> None:
        _require(
            self.duration_s is None or _finite(self.duration_s),
            f"bench duration {self.duration_s} is not a finite number of seconds",
            "e.g. --duration 10",
        )


@dataclass(frozen=True)
class Thresholds:
    """msit's default accuracy thresholds; any breach fails the verdict."""

    cosine_min: float = 0.99
    rel_euclidean_max: float = 0.05
    kl_max: float = 0.005
    rmse_max: float = 1.0
    mean_rel_error_max: float = 1.0

    def __post_init__(self) -> None:
        _require(
            _finite(self.cosine_min) and -1.0 <= self.cosine_min <= 1.0,
            f"cosine_min {self.cosine_min} is outside [-1, 1]",
            "e.g. cosine_min = 0.99",
        )
        for name in ("rel_euclidean_max", "kl_max", "rmse_max", "mean_rel_error_max"):
            value = getattr(self, name)
            _require(
                _finite(value) and value >= 0,
                f"{name} {value} is not a finite number >= 0",
                f"e.g. {name} = {getattr(Thresholds, name)}",
            )

    def gates(self) -> tuple[Gate, ...]:
        """msit's thresholds as aggregate gates (they apply to every task)."""
        return (
            Gate("cosine", ">=", self.cosine_min),
            Gate("rel_euclidean", "<=", self.rel_euclidean_max),
            Gate("kl", "<=", self.kl_max),
            Gate("rmse", "<=", self.rmse_max),
            Gate("mean_rel_error", "<=", self.mean_rel_error_max),
        )


@dataclass(frozen=True)
class AccuracyConfig:
    """What the outputs mean and how they are judged, beyond msit's thresholds.

    `task` and `output_range` apply to every output unless `outputs.<name>` says otherwise;
    `gates` add to (or replace, on the same metric and scope) each task's default gates.
    """

    task: TaskChoice = "auto"
    output_range: tuple[float, float] | None = None
    gates: tuple[Gate, ...] = ()
    outputs: dict[str, TaskOptions] = field(default_factory=dict)
    metric: str | None = None  # user metric hook: "module:function" or "file.py[:function]"
    strict: bool = False  # degenerate golden outputs or inputs are errors, not warnings

    def __post_init__(self) -> None:
        if self.output_range is not None:
            _require(
                all(_finite(v) for v in self.output_range)
                and self.output_range[0] < self.output_range[1],
                f"output_range {list(self.output_range)}: needs finite LO < HI",
                "e.g. --output-range 0,1 or 0,255",
            )


@dataclass(frozen=True)
class InputConfig:
    """What one model input gets (`[inputs.NAME]` in ascend-quant.toml).

    `kind`: image (decoded and preprocessed), array (.npy/.bin/.npz as they are) or auto
    (image for a 4-D input with 1 or 3 channels fed from image files, else array).
    `batch_dim`: the dim that counts samples, or "none" (a state tensor, a scalar); unset, it is
    dim 0 for images and for inputs whose dim 0 the graph leaves dynamic, else none.
    `range`: [lo, hi) of random data (`--calib random`; required for integer inputs).
    `value`: pin the input to a constant, folded into the model before conversion.
    """

    kind: InputKind = "auto"
    batch_dim: int | Literal["none"] | None = None
    range: tuple[float, float] | None = None
    value: Any = None
    preprocess: dict[str, Any] = field(default_factory=dict)  # PreprocessConfig keys
    calib: tuple[str, ...] = ()  # sources; empty: the sources given without a name
    eval: tuple[str, ...] = ()


@dataclass(frozen=True)
class TuneConfig:
    """`build --tune`: when a precision fails its gates, search for the cheapest configuration
    that passes (analysis/tune.py): per-layer calibration first, then layers kept in float."""

    enabled: bool = False
    budget: int | str | None = None  # trials (40), or wall time ("300s", "5m"); None: no limit
    max_float: float = 0.5  # most share of quantizable MACs the search may keep in float
    strategies: tuple[TuneStrategy, ...] = ("calibration", "float")
    precisions: tuple[Precision, ...] = ("int8", "fp16")  # which failing builds to tune
    clip_min: float = 1e-3  # layers clipping more than this share of values get calibration


def parse_budget(budget: int | str | None) -> tuple[int | None, float | None]:
    """`--tune-budget`: (trials, seconds); "40" is trials, "300s", "5m", "1h" are wall time."""
    if budget is None:
        return None, None
    text = str(budget).strip().lower()
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    try:
        if text and text[-1] in units:
            seconds = float(text[:-1]) * units[text[-1]]
            if seconds > 0:
                return None, seconds
        else:
            trials = int(text)
            if trials > 0:
                return trials, None
    except ValueError:
        pass
    raise UsageError(
        f"tune budget '{budget}' is not a number of trials or a time",
        hint="e.g. --tune-budget 40 (trials) or --tune-budget 300s (or 5m, 1h)",
    )


@dataclass(frozen=True)
class BuildConfig:
    """Everything `build` needs; each stage takes the sections it reads."""

    model: Path | None = None
    socs: tuple[str, ...] = ("Ascend310P3",)
    input_shape: str | None = None  # atc syntax: "name:1,3,224,224;other:1,4"
    backend: Backend = "auto"
    out: Path | None = None  # default build/<model-stem>/
    templates: Path | None = None  # override templates by file name
    eval_sources: tuple[str, ...] = ()  # evaluation images; empty: held-apart bundled images
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    calib: CalibConfig = field(default_factory=CalibConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    atc: AtcConfig = field(default_factory=AtcConfig)
    aipp: AippConfig = field(default_factory=AippConfig)
    gears: GearsConfig = field(default_factory=GearsConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    thresholds: Thresholds = field(default_factory=Thresholds)
    output_thresholds: dict[str, Thresholds] = field(default_factory=dict)
    inputs: dict[str, InputConfig] = field(default_factory=dict)  # per model input
    accuracy: AccuracyConfig = field(default_factory=AccuracyConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)


T = TypeVar("T")


def _suggest(key: str, known: typing.Iterable[str]) -> str | None:
    match = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else None


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Coerce a TOML/JSON value to the annotated type, or raise UsageError naming `where`."""
    origin = get_origin(hint)
    args = get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where)
            except UsageError as exc:
                errors.append(exc.message)
        raise UsageError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            suggestion = _suggest(str(value), [str(a) for a in args])
            raise UsageError(
                f"{where}: {value!r} is not one of {', '.join(map(str, args))}",
                hint=suggestion,
            )
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise UsageError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise UsageError(f"{where}: expected a table, got {value!r}")
        return {str(k): _convert(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise UsageError(f"{where}: expected a table, got {value!r}")
        return from_mapping(hint, value, where)
    if hint is Path:
        if not isinstance(value, (str, Path)):
            raise UsageError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise UsageError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{where}: expected a whole number, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise UsageError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r} at {where}")


def from_mapping(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a plain mapping, rejecting unknown keys with a suggestion."""
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        key_norm = key.replace("-", "_")
        path = f"{where}.{key}" if where else key
        if key_norm not in names:
            raise UsageError(f"unknown config key '{path}'", hint=_suggest(key_norm, names))
        kwargs[key_norm] = _convert(value, hints[key_norm], path)
    try:
        return cls(**kwargs)
    except UsageError as exc:
        if where and not exc.message.startswith(where):
            exc.message = f"{where}: {exc.message}"
        raise


def to_mapping(value: Any) -> Any:
    """The inverse of `from_mapping`: plain JSON/TOML-able data (paths as strings)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_mapping(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: to_mapping(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_mapping(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def merge(base: T, overrides: dict[str, Any]) -> T:
    """Return `base` with the given (possibly nested, partial) overrides applied and validated."""
    data = to_mapping(base)
    _deep_update(data, overrides)
    return from_mapping(type(base), data)


def _deep_update(target: dict[str, Any], updates: dict[str, Any]) -> None:
    for key, value in updates.items():
        key = key.replace("-", "_")
        if (
            isinstance(value, dict)
            and isinstance(target.get(key), dict)
            and key
            not in (
                "override_layer_types",
                "override_layer_configs",
                "output_thresholds",
            )
        ):
            _deep_update(target[key], value)
        else:
            target[key] = value


def load_project_file(path: Path) -> dict[str, Any]:
    """Read `ascend-quant.toml` into a plain mapping (validated later by `from_mapping`)."""
    data = read_user_file(path, "config file", MAX_CONFIG_BYTES, CONFIG_FILE_HINT)
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{path}: not UTF-8 text (byte {exc.start})",
            hint="save the file as UTF-8 (TOML files are UTF-8 by definition)",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(
            f"{path}: not valid TOML: {exc}", hint="see docs/config.md for the file format"
        ) from None


def load_build_config(
    project_file: Path | None = None, overrides: dict[str, Any] | None = None
) -> BuildConfig:
    """defaults < project file < overrides (the CLI's flags, only those the user gave)."""
    data: dict[str, Any] = {}
    if project_file is not None:
        data = load_project_file(project_file)
    config = from_mapping(BuildConfig, data)
    return merge(config, overrides or {}) if overrides else config


def parse_input_shape(text: str) -> dict[str, tuple[int, ...]]:
    """Parse atc's `--input_shape` syntax: "in0:1,3,224,224;in1:1,4" ("name:" is a scalar)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, dims = part.rpartition(":")
        if not sep or not name:
            raise UsageError(
                f"input shape '{part}' is not 'name:d0,d1,...'",
                hint='write it as atc does, e.g. --input-shape "input:1,3,224,224"',
            )
        try:
            values = tuple(int(d) for d in dims.split(",")) if dims.strip() else ()
        except ValueError:
            raise UsageError(
                f"input shape '{part}' has a dimension that is not a whole number",
                hint='write it as atc does, e.g. --input-shape "input:1,3,224,224"',
            ) from None
        if any(v <= 0 and v != -1 for v in values):
            raise UsageError(f"input shape '{part}': dimensions must be positive (or -1)")
        shapes[name] = values
    return shapes


def format_input_shape(shapes: dict[str, tuple[int, ...]]) -> str:
    return ";".join(f"{name}:{','.join(map(str, dims))}" for name, dims in shapes.items())


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        inner = ", ".join(
            f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None
        )
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """TOML text for a config mapping; unset (None) values are shown as comments."""
    lines: list[str] = []
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    for key, value in data.items():
        if key in tables:
            continue
        name = _toml_key(key)
        lines.append(f"# {name} = (unset)" if value is None else f"{name} = {_toml_value(value)}")
    for key, value in tables.items():
        name = f"{prefix}.{_toml_key(key)}" if prefix else _toml_key(key)
        body = to_toml(value, name)
        lines.append("")
        lines.append(f"[{name}]")
        if body:
            lines.append(body)
    return "\n".join(lines).strip("\n")


def write_project_settings(path: Path, settings: dict[str, Any]) -> Path:
    """Merge `settings` into a project file (`ascend-quant.toml`, created when missing).

    Keys the settings name are replaced, everything else in the file is kept (comments are
    not: the file is rewritten). The result is read back through `BuildConfig` before the
    atomic write, so a written file always loads.
    """
    path = Path(path)
    data = load_project_file(path) if path.exists() else {}
    _deep_update(data, settings)
    text = to_toml(data) + "\n"
    from_mapping(BuildConfig, tomllib.loads(text))
    return atomic_write_text(path, text)
