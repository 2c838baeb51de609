"""atc / amct_onnx command lines and the checks that run before either tool is started.

Pure where it can be: argv lists are built from the `ConvertRequest` alone (plus the calib set
manifests for amct's `--data_dir`). Program names are the bare `atc` / `amct_onnx`, as in the
rendered scripts that rely on `set_env.sh`; `atc.py` substitutes the resolved paths when running.

Routes: `fp16` (plain atc), `atc` (INT8 calibrated inside atc on an NPU through
`--compression_optimize_conf`, or `--enable_quantization` in the sample dialect) and `amct`
(`amct_onnx calibration` on the CPU, then atc on the `*_deploy_model.onnx`). Reference §1-§5.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ascend_quant.backends.base import ConvertRequest
from ascend_quant.backends.toolkit import Toolkit
from ascend_quant.config import (
    ATC_OWNED_FLAGS,
    TOOLKIT_NAME_HINT,
    AtcConfig,
    check_plain_text,
    format_input_shape,
    toolkit_name_problem,
)
from ascend_quant.data.calibset import CalibSet, batch_shape
from ascend_quant.errors import UsageError, not_a_model_file
from ascend_quant.gears import (
    ATC_FLAGS,
    EXCLUSIVE_ATC_FLAGS,
    MAX_GEARS,
    check_target,
    chosen_kind,
)
from ascend_quant.tensors import TensorSpec, graph_io

ROUTES = ("fp16", "atc", "amct", "w8")

PRECISION_MODES = (
    "force_fp16",
    "force_fp32",
    "cube_fp16in_fp32out",
    "allow_fp32_to_fp16",
    "must_keep_origin_dtype",
    "allow_mix_precision",
    "allow_mix_precision_fp16",
    "allow_mix_precision_bf16",
    "allow_fp32_to_bf16",
)
PRECISION_MODES_V2 = (
    "fp16",
    "origin",
    "cube_fp16in_fp32out",
    "mixed_float16",
    "mixed_bfloat16",
    "mixed_hif8",
    "cube_hif8",
)
OUTPUT_TYPES = (
    "FP32",
    "FP16",
    "UINT8",
    "INT8",
    "UINT16",
    "INT16",
    "UINT32",
    "INT32",
    "UINT64",
    "INT64",
    "DOUBLE",
    "HIF8",
    "FP8E5M2",
    "FP8E4M3FN",
)
LOG_LEVELS = ("debug", "info", "warning", "error", "null")
IMPLMODES = (
    "high_performance",
    "high_precision",
    "high_performance_for_all",
    "high_precision_for_all",
)
INPUT_FORMATS = ("NCHW", "NHWC", "NCDHW", "ND")
# Modes that ask for more precision than INT8 gives; atc refuses them with calibration (§3).
HIGH_PRECISION_MODES = ("force_fp32", "cube_fp16in_fp32out", "must_keep_origin_dtype")
HIGH_PRECISION_MODES_V2 = ("origin", "cube_fp16in_fp32out")

# Rendered by render.py into request.config_dir, with exactly these names.
SIMPLE_CONFIG = "simple_config.cfg"
AMCT_CONFIG = "amct_config.cfg"
COMPRESSION_CONFIG = "compression_optimize.cfg"
COMPRESSION_CONFIG_W8 = "compression_optimize_w8.cfg"  # weight-only INT8 (route "w8")
AIPP_CONFIG = "aipp.cfg"
QUANT_CONFIG_JSON = "quant_config.json"
KEEP_DTYPE_CONFIG = "keep_dtype.cfg"

# Flags this module sets itself; extra_args may not repeat them (checked in config.py).
MANAGED_FLAGS = ATC_OWNED_FLAGS
# Flags whose value is a file or directory: made absolute, since atc runs in its own directory.
PATH_FLAGS = (
    "op_precision_mode",
    "keep_dtype",
    "modify_mixlist",
    "fusion_switch_file",
    "op_compiler_cache_dir",
    "customize_dtypes",
    "op_debug_config",
    "debug_dir",
)


# ---------------------------------------------------------------- calibration sets


@dataclass(frozen=True)
class CalibInfo:
    """One calib set dir as its manifest.json describes it (see ascend_quant/data/calibset.py)."""

    input_name: str
    dir: Path
    shape: tuple[int, ...]  # per sample: 1 at the batch dim
    dtype: str
    batch: int
    batch_dir: Path
    batch_files: tuple[Path, ...]
    sample_files: tuple[Path, ...]
    batch_dim: int | None = 0  # None: the input has no batch dim

    @property
    def sample_bytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return batch_shape(self.shape, self.batch_dim, self.batch)


def load_calib(path: Path) -> CalibInfo:
    """Read and validate a calib set (CalibSet.load checks every file's size)."""

    calib = CalibSet.load(Path(path))
    return CalibInfo(
        input_name=calib.input_name,
        dir=calib.root,
        shape=tuple(calib.sample_shape),
        dtype=np.dtype(calib.dtype).name,
        batch=calib.batch,
        batch_dir=calib.batch_dir,
        batch_files=tuple(calib.batch_files),
        sample_files=tuple(calib.sample_files),
        batch_dim=calib.batch_dim,
    )


def calib_infos(request: ConvertRequest) -> list[CalibInfo]:
    """The calib sets of `request`, in model input order (amct pairs dirs by position)."""
    order = list(request.input_shapes) + [
        n for n in request.calib_dirs if n not in request.input_shapes
    ]
    return [load_calib(request.calib_dirs[name]) for name in order if name in request.calib_dirs]


# ---------------------------------------------------------------- paths


def output_stem(request: ConvertRequest) -> str:
    return f"{request.name}_{request.precision}"


def work_dir(request: ConvertRequest) -> Path:
    """atc's working directory (fusion_result.json lands here) and where it writes the .om."""
    return Path(request.out_dir) / "work" / output_stem(request)


def log_path(request: ConvertRequest, tool: str = "atc") -> Path:
    return Path(request.out_dir) / "logs" / f"{output_stem(request)}.{tool}.log"


def amct_save_path(request: ConvertRequest) -> Path:
    return work_dir(request) / "amct" / request.name


def deploy_model_path(request: ConvertRequest) -> Path:
    return Path(f"{amct_save_path(request)}_deploy_model.onnx")


def _config_file(request: ConvertRequest, name: str) -> Path:
    if request.config_dir is None:
        raise UsageError(
            f"the atc backend needs the rendered {name}, but no config directory was given",
            hint="render the configs first with `ascend-quant config`",
        )
    return Path(request.config_dir) / name


# ---------------------------------------------------------------- argv


def atc_input_shape(request: ConvertRequest) -> str:
    """--input_shape: the static shapes, or with gears their template (-1 on the gear dims)."""
    if request.gears is not None:
        return request.gears.atc_input_shape()
    return format_input_shape(request.input_shapes)


def _small_channel(request: ConvertRequest, route: str) -> bool:
    if request.atc.enable_small_channel:
        return True
    if route == "atc" and request.atc.enable_first_layer_quantization:
        return True
    if request.aipp.enabled:
        c_axis = 3 if request.atc.input_format == "NHWC" else 1
        return any(len(d) == 4 and d[c_axis] <= 4 for d in request.input_shapes.values())
    return False


def atc_command(request: ConvertRequest, route: str, model: Path) -> list[str]:
    """The atc argv for `route` on `model` (the source model, or AMCT's deploy model)."""
    atc = request.atc
    argv = [
        "atc",
        f"--model={model}",
        "--framework=5",
        f"--output={work_dir(request) / output_stem(request)}",
        f"--soc_version={request.soc}",
        f"--input_format={atc.input_format}",
        f"--input_shape={atc_input_shape(request)}",
        f"--log={atc.log}",
    ]
    if atc.precision_mode:
        argv.append(f"--precision_mode={atc.precision_mode}")
    if atc.precision_mode_v2:
        argv.append(f"--precision_mode_v2={atc.precision_mode_v2}")
    if atc.output_type:
        argv.append(f"--output_type={atc.output_type}")
    if request.aipp.enabled:
        argv.append(f"--insert_op_conf={_config_file(request, AIPP_CONFIG)}")
    if _small_channel(request, route):
        argv.append("--enable_small_channel=1")
    if request.gears is not None:
        argv.append(request.gears.atc_flag())
    if atc.op_select_implmode:
        argv.append(f"--op_select_implmode={atc.op_select_implmode}")
    if atc.optypelist_for_implmode:
        argv.append(f"--optypelist_for_implmode={','.join(atc.optypelist_for_implmode)}")
    if atc.op_precision_mode:
        argv.append(f"--op_precision_mode={_absolute_path(atc.op_precision_mode)}")
    if atc.keep_dtype:
        argv.append(f"--keep_dtype={_config_file(request, KEEP_DTYPE_CONFIG)}")
    if route == "w8":
        argv.append(f"--compression_optimize_conf={_config_file(request, COMPRESSION_CONFIG_W8)}")
    if route == "atc":
        if atc.flag_dialect == "sample":
            argv.append("--enable_quantization=true")
            argv.append(f"--quantization_config={_config_file(request, QUANT_CONFIG_JSON)}")
        else:
            argv.append(f"--compression_optimize_conf={_config_file(request, COMPRESSION_CONFIG)}")
    argv.extend(_absolute_extra_arg(arg) for arg in atc.extra_args)
    return argv


def _absolute_path(value: str) -> str:
    """A relative path that exists from here, made absolute (atc resolves it in its work dir)."""
    path = Path(value)
    return str(path.absolute()) if not path.is_absolute() and path.exists() else value


def _absolute_extra_arg(arg: str) -> str:
    name, sep, value = arg.partition("=")
    if sep and _flag_name(arg) in PATH_FLAGS:
        return f"{name}={_absolute_path(value)}"
    return arg


def amct_command(request: ConvertRequest, infos: Sequence[CalibInfo]) -> list[str]:
    """`amct_onnx calibration` on the CPU; one batch dir per input, `;`-joined in input order."""
    if not infos:
        raise UsageError(
            "INT8 through amct_onnx needs a calibration set",
            hint="pass --calib DIR (created by `ascend-quant calib`)",
        )
    shapes = format_input_shape({i.input_name: i.batch_shape for i in infos})
    return [
        "amct_onnx",
        "calibration",
        f"--model={request.model}",
        f"--save_path={amct_save_path(request)}",
        f"--input_shape={shapes}",
        f"--data_dir={';'.join(str(i.batch_dir) for i in infos)}",
        f"--data_types={';'.join(i.dtype for i in infos)}",
        f"--calibration_config={_config_file(request, AMCT_CONFIG)}",
    ]


def check_toolkit_text(request: ConvertRequest) -> None:
    """Refuse what the tools cannot receive intact: input names with atc's field separators,
    control characters in any path, `;` or `,` in a calibration directory (amct's --data_dir
    and ais_bench's --input join directories with them)."""
    for name in (*request.input_shapes, *request.calib_dirs):
        problem = toolkit_name_problem(name)
        if problem:
            raise UsageError(problem, hint=TOOLKIT_NAME_HINT)
    paths = [request.model, request.out_dir, *request.calib_dirs.values()]
    paths += [request.config_dir] if request.config_dir is not None else []
    for path in paths:
        check_plain_text(str(path), "path")
    for path in request.calib_dirs.values():
        if ";" in str(path) or "," in str(path):
            raise UsageError(
                f"calibration directory {str(path)!r} contains ';' or ',', which separate "
                "directories in amct_onnx's --data_dir and ais_bench's --input",
                hint="move the calibration set (or --out) to a path without ';' and ','",
            )


def commands_for(request: ConvertRequest, route: str) -> list[list[str]]:
    """Every command the route runs, in order, with bare program names."""
    check_toolkit_text(request)
    if route == "fp16":
        return [atc_command(request, route, Path(request.model))]
    if route in ("atc", "w8"):
        return [atc_command(request, route, Path(request.model))]
    if route == "amct":
        return [
            amct_command(request, calib_infos(request)),
            atc_command(request, route, deploy_model_path(request)),
        ]
    raise UsageError(f"unknown conversion route '{route}'", hint="use fp16, atc, amct or w8")


# ---------------------------------------------------------------- soc and route


def soc_supports_atc_calibration(soc: str) -> bool:
    """Whether atc can calibrate INT8 for `soc` (reference §3: not 950, not IPV350)."""
    from ascend_quant.soc import get_soc

    try:
        return get_soc(soc).atc_calibration
    except UsageError:
        return False


def choose_route(request: ConvertRequest, toolkit: Toolkit) -> str:
    """fp16; or the configured INT8 route. `auto` is atc when a visible NPU of this soc can
    calibrate and the ATC configs were rendered, else amct (CPU calibration)."""
    if request.precision in ("fp16", "w8"):
        return request.precision  # weight-only INT8 has one route: atc's weight_compress_only
    wanted = request.atc.int8_route
    if wanted != "auto":
        return wanted
    needed = QUANT_CONFIG_JSON if request.atc.flag_dialect == "sample" else COMPRESSION_CONFIG
    rendered = request.config_dir is not None and (Path(request.config_dir) / needed).is_file()
    if (
        rendered
        and toolkit.npu_visible
        and toolkit.npu_soc == request.soc
        and soc_supports_atc_calibration(request.soc)
    ):
        return "atc"
    return "amct"


# ---------------------------------------------------------------- pre-checks


def _choice(value: str | None, options: Sequence[str], flag: str) -> None:
    if value is None or value in options:
        return
    match = difflib.get_close_matches(value, list(options), n=1)
    hint = f"did you mean '{match[0]}'?" if match else f"use one of: {', '.join(options)}"
    raise UsageError(f"{flag}: '{value}' is not a value atc accepts", hint=hint)


def _flag_name(arg: str) -> str | None:
    match = re.match(r"^--([A-Za-z0-9_]+)", arg)
    return match.group(1) if match else None


def check_flag_values(atc: AtcConfig) -> None:
    _choice(atc.precision_mode, PRECISION_MODES, "--precision-mode")
    _choice(atc.precision_mode_v2, PRECISION_MODES_V2, "--precision-mode-v2")
    _choice(atc.log, LOG_LEVELS, "--log")
    _choice(atc.op_select_implmode, IMPLMODES, "--op-select-implmode")
    _choice(atc.input_format, INPUT_FORMATS, "--input-format")
    if atc.output_type and ":" not in atc.output_type:
        _choice(atc.output_type, OUTPUT_TYPES, "--output-type")
    if atc.optypelist_for_implmode and not atc.op_select_implmode:
        raise UsageError(
            "optypelist_for_implmode needs op_select_implmode",
            hint="also set --op-select-implmode high_precision (or high_performance)",
        )
    if atc.timeout_s <= 0:
        raise UsageError("atc.timeout_s must be positive", hint="e.g. timeout_s = 3600 under [atc]")
    for arg in atc.extra_args:
        name = _flag_name(arg)
        if name is None or "=" not in arg:
            raise UsageError(
                f"extra atc argument '{arg}' is not in atc's --flag=value form",
                hint="write each extra argument as --flag=value (gflags syntax)",
            )
        if name in MANAGED_FLAGS:
            raise UsageError(
                f"extra atc argument '{arg}' repeats a flag ascend-quant sets itself",
                hint=f"use the ascend-quant option for --{name} instead of extra_args",
            )


def check_exclusive(atc: AtcConfig) -> None:
    """precision_mode vs precision_mode_v2; two dynamic options in extra_args (E10009)."""
    if atc.precision_mode and atc.precision_mode_v2:
        raise UsageError(
            "precision_mode and precision_mode_v2 cannot be used together",
            hint="keep one: --precision-mode-v2 is the recommended one",
        )
    chosen_kind(extra_args=atc.extra_args)


def check_gears(request: ConvertRequest) -> None:
    """The gears fit the request: one dynamic option (E10009), the soc, AIPP, the shapes."""
    from ascend_quant.soc import get_soc

    gears = request.gears
    if gears is not None:
        clashing = [n for n in map(_flag_name, request.atc.extra_args) if n in EXCLUSIVE_ATC_FLAGS]
        if clashing:
            raise UsageError(
                f"atc rejects --{ATC_FLAGS[gears.kind]} with --{clashing[0]} (E10009: "
                "dynamic_batch_size, dynamic_image_size, input_shape_range and dynamic_dims "
                "are mutually exclusive)",
                hint=f"drop --{clashing[0]} from the extra atc arguments",
            )
        if gears.kind == "dims" and request.atc.input_format != "ND":
            raise UsageError(
                f"--dynamic-dims needs --input-format ND, not {request.atc.input_format}",
                hint="add --input-format ND",
            )
        if gears.kind == "image_size" and request.atc.input_format not in ("NCHW", "NHWC"):
            raise UsageError(
                "--dynamic-image-size needs --input-format NCHW or NHWC",
                hint="drop --input-format or set it to NCHW",
            )
        if set(gears.template) != set(request.input_shapes):
            raise UsageError(
                "the gears' input shapes name other inputs than the request "
                f"({', '.join(gears.template)} vs {', '.join(request.input_shapes)})",
                hint="run preflight again with the same --input-shape",
            )
    try:
        info = get_soc(request.soc)
        ranges, max_gears = info.dynamic_shape_range, info.max_gears
    except UsageError:
        ranges, max_gears = True, MAX_GEARS
    if gears is not None and len(gears) > max_gears:
        raise UsageError(
            f"{len(gears)} gears; atc allows at most {max_gears} for {request.soc} (E10001)",
            hint="keep fewer gears",
        )
    check_target(
        gears,
        soc=request.soc,
        shape_ranges=ranges,
        aipp_enabled=request.aipp.enabled,
        aipp_crop=request.aipp.crop,
        aipp_src_size=request.aipp.src_image_size,
        extra_args=request.atc.extra_args,
    )


def _high_precision_ini(value: str) -> bool:
    path = Path(value)
    if value == "high_precision":
        return True
    try:
        return path.is_file() and "high_precision" in path.read_text(errors="replace")
    except OSError:
        return False


def check_high_precision(atc: AtcConfig, calibrating: bool) -> None:
    """atc refuses high-precision modes together with INT8 calibration (reference §3)."""
    if not calibrating:
        return
    bad: str | None = None
    if atc.precision_mode in HIGH_PRECISION_MODES:
        bad = f"--precision_mode={atc.precision_mode}"
    elif atc.precision_mode_v2 in HIGH_PRECISION_MODES_V2:
        bad = f"--precision_mode_v2={atc.precision_mode_v2}"
    elif atc.op_precision_mode and _high_precision_ini(atc.op_precision_mode):
        bad = "high_precision in --op_precision_mode"
    if bad:
        raise UsageError(
            f"{bad} asks for more precision than INT8 gives; atc refuses it with calibration",
            hint="drop the precision option for --precision int8, or build --precision fp16",
        )


def check_aipp(request: ConvertRequest) -> None:
    if not request.aipp.enabled:
        return
    if request.atc.input_format not in ("NCHW", "NHWC"):
        raise UsageError(
            f"AIPP needs --input-format NCHW or NHWC, not {request.atc.input_format}",
            hint="set --input-format NCHW, or drop --aipp",
        )
    if any(_flag_name(a) == "dynamic_dims" for a in request.atc.extra_args):
        raise UsageError(
            "AIPP (--insert_op_conf) cannot be combined with --dynamic_dims",
            hint="drop --aipp or the --dynamic_dims extra argument",
        )


def model_inputs(model: Path) -> dict[str, TensorSpec]:
    """The graph inputs of an ONNX file that are not initializers (weights are not loaded)."""
    import onnx

    try:
        proto = onnx.load(str(model), load_external_data=False)
    except Exception as exc:
        raise UsageError(f"cannot read ONNX model {model}: {exc}") from None
    return {spec.name: spec for spec in graph_io(proto)[0]}


def check_inputs(request: ConvertRequest, inputs: dict[str, TensorSpec]) -> None:
    """Every --input_shape name and calib input exists in the model; every input has a shape."""
    known = ", ".join(inputs) or "(none)"
    for name in list(request.input_shapes) + list(request.calib_dirs):
        if name not in inputs:
            match = difflib.get_close_matches(name, list(inputs), n=1)
            raise UsageError(
                f"the model has no input named '{name}' (its inputs: {known})",
                hint=f"did you mean '{match[0]}'?" if match else "use the model's input names",
            )
    missing = [n for n in inputs if n not in request.input_shapes]
    if missing:
        raise UsageError(
            f"no shape for model input(s) {', '.join(missing)}",
            hint='give every input a static shape, e.g. --input-shape "input:1,3,224,224"',
        )


def check_calib(
    request: ConvertRequest, infos: Sequence[CalibInfo], inputs: dict[str, TensorSpec]
) -> None:
    """Every input has a calib set whose shape/dtype match and every .bin has the exact size."""
    have = {i.input_name: i for i in infos}
    for name in inputs:
        if name not in have:
            raise UsageError(
                f"INT8 needs calibration data for input '{name}'",
                hint="create it with `ascend-quant calib` and pass --calib DIR",
            )
    for info in infos:
        model_shape = tuple(request.input_shapes.get(info.input_name, ()))
        if len(info.shape) != len(model_shape) or any(
            have != want
            for i, (have, want) in enumerate(zip(info.shape, model_shape))
            if i != info.batch_dim
        ):
            raise UsageError(
                f"calibration set {info.dir} holds samples of shape {list(info.shape)} but input "
                f"'{info.input_name}' is {list(model_shape)}",
                hint="re-create the calibration set for this model's input shape",
            )
        model_dtype = inputs[info.input_name].dtype
        if not request.aipp.enabled and info.dtype != model_dtype:
            raise UsageError(
                f"calibration set {info.dir} is {info.dtype} but input '{info.input_name}' is "
                f"{model_dtype} (atc would fail with 'input image size ... is not equal to "
                "model input size')",
                hint=f"re-create the calibration set with dtype {model_dtype}",
            )
        if not info.batch_files:
            raise UsageError(
                f"calibration set {info.dir} has no batch files in {info.batch_dir}",
                hint="re-create it with `ascend-quant calib`",
            )
        checks = [(f, info.sample_bytes) for f in info.sample_files]
        checks += [(f, info.sample_bytes * info.batch) for f in info.batch_files]
        for path, expected in checks:
            _check_size(path, expected, f"{info.dtype} {list(info.shape)}")


def _check_size(path: Path, expected: int, what: str) -> None:
    try:
        size = path.stat().st_size
    except OSError:
        raise UsageError(
            f"calibration file {path} is missing",
            hint="re-create the set with `ascend-quant calib`",
        ) from None
    if size != expected:
        raise UsageError(
            f"calibration file {path} has {size} bytes, expected {expected} ({what})",
            hint="re-create the calibration set; a 2x gap usually means a float16/float32 mix-up",
        )


_CFG_FIELD = re.compile(r"^\s*(input_data_dir|input_shape)\s*:\s*\"?([^\"#\n]*)\"?", re.M)


def check_compression_data(
    config: Path, inputs: dict[str, TensorSpec], cwd: Path, atc_shape: str | None = None
) -> None:
    """The .bin files the compression config names hold exactly input_shape x dtype bytes, and
    that input_shape is atc's `--input_shape` (`atc_shape`): the reference says they match."""
    try:
        text = config.read_text()
    except OSError:
        raise UsageError(
            f"{config} is missing", hint="render it with `ascend-quant config`"
        ) from None
    fields = {m.group(1): m.group(2).strip() for m in _CFG_FIELD.finditer(text)}
    if "input_data_dir" not in fields or "input_shape" not in fields:
        raise UsageError(
            f"{config} lacks input_data_dir or input_shape in its calibration block",
            hint="re-render it with `ascend-quant config`",
        )
    files = [p.strip() for p in re.split(r"[,;]", fields["input_data_dir"]) if p.strip()]
    from ascend_quant.config import parse_input_shape

    shapes = list(parse_input_shape(fields["input_shape"]).items())
    if atc_shape is not None and dict(shapes) != parse_input_shape(atc_shape):
        raise UsageError(
            f"{config}: input_shape {fields['input_shape']} differs from atc's --input_shape "
            f"{atc_shape}; ATC-native calibration needs the same N",
            hint="re-render it with `ascend-quant config` (it writes the model's N in both)",
        )
    if len(files) != len(shapes):
        raise UsageError(
            f"{config}: {len(files)} calibration file(s) for {len(shapes)} input shape(s)",
            hint="give one calibration .bin per model input",
        )
    for raw, (name, dims) in zip(files, shapes):
        path = Path(raw) if Path(raw).is_absolute() else cwd / raw
        dtype = inputs[name].dtype if name in inputs else "float32"
        expected = math.prod(dims) * np.dtype(dtype).itemsize
        _check_size(path, expected, f"{dtype} {list(dims)} for '{name}' in {config.name}")


def check_route(request: ConvertRequest, route: str, toolkit: Toolkit) -> None:
    """The tools the route needs exist, and ATC-native calibration has an NPU to run on."""
    if route == "amct" and toolkit.amct_onnx is None:
        raise UsageError(
            "INT8 through amct_onnx, but amct_onnx was not found",
            hint="install the AMCT package of your CANN toolkit (pip install its amct_onnx wheel)",
        )
    if route == "w8":
        _check_w8(request, toolkit)
    if route != "atc":
        return
    if not soc_supports_atc_calibration(request.soc):
        raise UsageError(
            f"atc cannot calibrate INT8 for {request.soc}",
            hint="use --int8-route amct (amct_onnx calibrates on the CPU)",
        )
    if not toolkit.npu_visible:
        raise UsageError(
            "--int8-route atc calibrates on an NPU, and no NPU is visible (npu-smi info)",
            hint="use --int8-route amct to calibrate on the CPU, or run on a host with an NPU",
        )


def _check_w8(request: ConvertRequest, toolkit: Toolkit) -> None:
    """Weight-only INT8 runs inside atc's compression step, on a soc that supports it."""
    from ascend_quant.soc import get_soc

    refusal = get_soc(request.soc).w8_refusal
    if refusal:
        raise UsageError(refusal, hint="use --precision int8 (W8A8) or fp16 for this soc")
    if not toolkit.npu_visible:
        raise UsageError(
            "--precision w8 runs atc's compression step (weight_compress_only) on an NPU, and "
            "no NPU is visible (npu-smi info)",
            hint="run on a host with the target NPU, or use --backend sim to simulate it",
        )


def precheck(
    request: ConvertRequest, route: str, toolkit: Toolkit, cwd: Path | None = None
) -> None:
    """All checks before any tool runs; each failure is a UsageError naming the fix."""
    if route not in ROUTES:
        raise UsageError(f"unknown conversion route '{route}'", hint="use fp16, atc, amct or w8")
    atc = request.atc
    check_toolkit_text(request)
    check_flag_values(atc)
    check_exclusive(atc)
    check_gears(request)
    check_high_precision(atc, calibrating=route != "fp16")
    check_aipp(request)
    if not Path(request.model).is_file():
        raise not_a_model_file(request.model)
    inputs = model_inputs(Path(request.model))
    check_inputs(request, inputs)
    names = []
    if request.aipp.enabled:
        names.append(AIPP_CONFIG)
    if route == "amct":
        names.append(AMCT_CONFIG)
    if route == "atc":
        names.append(QUANT_CONFIG_JSON if atc.flag_dialect == "sample" else COMPRESSION_CONFIG)
    if route == "w8":
        names.append(COMPRESSION_CONFIG_W8)
    for name in names:
        path = _config_file(request, name)
        if not path.is_file():
            raise UsageError(
                f"{path} is missing", hint="render the configs with `ascend-quant config`"
            )
    check_route(request, route, toolkit)
    if route == "amct":
        check_calib(request, calib_infos(request), inputs)
    elif route == "atc":
        if request.calib_dirs:
            check_calib(request, calib_infos(request), inputs)
        if atc.flag_dialect == "documented":
            shape = atc_input_shape(request)
            static = "-1" not in shape and "~" not in shape  # dynamic gears: N is chosen later
            check_compression_data(
                _config_file(request, COMPRESSION_CONFIG),
                inputs,
                cwd or work_dir(request),
                shape if static else None,
            )
    elif route == "w8":
        check_compression_data(
            _config_file(request, COMPRESSION_CONFIG_W8), inputs, cwd or work_dir(request)
        )
