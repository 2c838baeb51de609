"""Render every toolkit config file and script from Jinja templates, validated before writing.

Templates live in `templates/` (inside the wheel too); `--templates DIR` overrides any of them by
file name. The environment is sandboxed with StrictUndefined, so an override template can neither
reach Python internals nor silently render a missing value as "". Values are escaped for their
target syntax by filters: `tojson` (JSON), `pstr`/`pval`/`cfgval` (protobuf text), `shquote`
(bash). Every file is parsed back and checked (a JSON schema for quant_config.json, the
protobuf-text reader with per-file schemas for the .cfg files, bash -n and shlex for scripts)
before it is written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ascend_quant import prototext
from ascend_quant.__about__ import __version__
from ascend_quant.config import (
    CONFIG_FILE_HINT,
    MAX_CONFIG_BYTES,
    TOOLKIT_ALGORITHMS,
    TOOLKIT_NAME_HINT,
    AtcConfig,
    BuildConfig,
    LayerOverride,
    format_input_shape,
    from_mapping,
    to_mapping,
    toolkit_name_problem,
)
from ascend_quant.data.calibset import batch_shape
from ascend_quant.errors import UsageError
from ascend_quant.quant.ops import QUANTIZABLE_TYPES
from ascend_quant.resources import templates_dir
from ascend_quant.soc import SocInfo, get_soc
from ascend_quant.workspace import atomic_write_text, read_user_file

log = logging.getLogger("ascend_quant")

QUANT_CONFIG = "quant_config.json"
SIMPLE_CONFIG = "simple_config.cfg"
AMCT_CONFIG = "amct_config.cfg"
COMPRESSION_CONFIG = "compression_optimize.cfg"
SIMPLE_CONFIG_W8 = "simple_config_w8.cfg"  # weight-only INT8 (weight_compress_only)
COMPRESSION_CONFIG_W8 = "compression_optimize_w8.cfg"
AIPP_CONFIG = "aipp.cfg"
KEEP_DTYPE_CONFIG = "keep_dtype.cfg"

# ---------------------------------------------------------------------------------------------
# Filters


def tojson(value: Any, indent: int | None = None, level: int = 0) -> str:
    """JSON for any config value (dataclasses, paths, tuples); nested lines indented by `level`."""
    text = json.dumps(to_mapping(value), indent=indent, ensure_ascii=False)
    return text.replace("\n", "\n" + " " * level) if level else text


def pstr(value: Any) -> str:
    """A protobuf-text string literal: quoted, with backslash, quotes and controls escaped.

    Non-ASCII characters stay as UTF-8, which protobuf's text format reads.
    """
    out = ['"']
    for char in str(value):
        if char == "\\":
            out.append("\\\\")
        elif char == '"':
            out.append('\\"')
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\{ord(char):03o}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _number(value: float) -> str:
    text = repr(float(f"{float(value):.15g}"))
    return text


def pval(value: Any) -> str:
    """A protobuf-text scalar: true/false, integers, floats (shortest form), strings quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number(value)
    return pstr(value)


_BARE_SAFE = re.compile(r"[A-Za-z0-9_./:,;+@=~-]+")


def cfgval(value: Any) -> str:
    """A value for the compression config, whose documented form writes paths unquoted.

    Plain ASCII paths and shapes stay bare (as the toolkit's own samples write them); anything
    with spaces, quotes or non-ASCII characters is quoted and escaped instead.
    """
    if isinstance(value, (bool, int, float)):
        return pval(value)
    text = str(value)
    return text if _BARE_SAFE.fullmatch(text) else pstr(text)


def shquote(value: Any) -> str:
    return shlex.quote(str(value))


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def comment(value: Any) -> str:
    """Text for a `#` comment line: control characters (a newline would end the comment and
    start a line of config) shown as `\\n`-style escapes instead."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(value))


# ---------------------------------------------------------------------------------------------
# Environment and template lookup


def environment(
    templates: Path | None = None, autoescape: bool = False
) -> ImmutableSandboxedEnvironment:
    """The Jinja environment: overrides in `templates` first, then the bundled templates.

    An override template is untrusted code: the immutable sandbox blocks Python internals and
    any method that mutates a list or dict, and `render_template` hands it plain values only.
    """
    search = [str(templates_dir())]
    if templates is not None:
        if not Path(templates).is_dir():
            raise UsageError(f"--templates: {templates} is not a directory")
        search.insert(0, str(templates))
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(search),
        undefined=jinja2.StrictUndefined,
        autoescape=autoescape,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        tojson=tojson, pstr=pstr, pval=pval, cfgval=cfgval, shquote=shquote, comment=comment
    )
    return env


def plain(value: Any) -> Any:
    """Only strings, numbers, booleans, None, lists and dicts: no `Path` or other object whose
    methods a template could call (to write, delete or read files)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return str(value)  # Path and anything else: its text, never the object


MAX_RENDERED_CHARS = 64 * 2**20  # far above any config, script or report with its images


def _bounded(chunks: Iterator[str], name: str) -> str:
    """Join a template's output, refusing one that grows without end (an override's loop)."""
    parts, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_RENDERED_CHARS:
            raise UsageError(
                f"template '{name}' renders more than {MAX_RENDERED_CHARS // 2**20} MiB",
                hint="fix the override template in --templates (a loop without end?)",
            )
        parts.append(chunk)
    return "".join(parts)


def render_template(
    name: str, context: dict[str, Any], templates: Path | None = None, autoescape: bool = False
) -> str:
    """Render one template by file name with a plain copy of `context`; template errors
    (including a template that includes itself) become UsageError."""
    env = environment(templates, autoescape)
    try:
        return _bounded(env.get_template(name).generate(**plain(context)), name)
    except OverflowError as exc:  # the sandbox refuses huge ranges
        raise UsageError(
            f"template '{name}': {exc}",
            hint="fix the override template in --templates (a loop over a huge range?)",
        ) from None
    except RecursionError:
        raise UsageError(
            f"template '{name}' includes or calls itself without end",
            hint="fix the override template in --templates",
        ) from None
    except jinja2.TemplateNotFound:
        raise UsageError(
            f"template '{name}' not found",
            hint="--templates overrides bundled templates by file name; check the name",
        ) from None
    except jinja2.UndefinedError as exc:
        raise UsageError(
            f"template '{name}': {exc.message}",
            hint="an override template uses a value the renderer does not provide",
        ) from None
    except jinja2.TemplateError as exc:  # includes SecurityError from the sandbox
        raise UsageError(
            f"template '{name}': {type(exc).__name__}: {exc}",
            hint="fix the override template in --templates (it sees plain values only)",
        ) from None


# ---------------------------------------------------------------------------------------------
# quant_config.json schema (hand-written, a small subset of JSON Schema)

_OVERRIDE_KEYS = [f.name for f in dataclasses.fields(LayerOverride)]


def _obj(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_ANY: dict[str, Any] = {}
_STR = {"type": "string"}
_INT = {"type": "integer", "minimum": 1}
_SHAPE = {"type": "array", "items": {"type": "integer", "minimum": 1}}

QUANT_CONFIG_SCHEMA: dict[str, Any] = _obj(
    {
        "version": {"type": "integer", "enum": [1]},
        "generator": _STR,
        "soc_version": _STR,
        "dataset_info": _obj(
            {
                "calib_batch_size": _INT,
                "batch_num": {"type": ["integer", "null"], "minimum": 1},
                "sources": {"type": "array", "items": _STR},
                "limit": {"type": ["integer", "null"], "minimum": 1},
                "seed": {"type": "integer"},
                "data_files": {"type": "object", "additionalProperties": _STR},
                "preprocess": {"type": "object"},
            },
            ("calib_batch_size", "data_files", "preprocess"),
        ),
        "model_info": _obj(
            {
                "model_path": {"type": ["string", "null"]},
                "input_format": _STR,
                "input_tensor_info": {
                    "type": "array",
                    "items": _obj(
                        {
                            "name": _STR,
                            "shape": _SHAPE,
                            "calib_shape": _SHAPE,
                            "data_type": _STR,
                            "data_file": {"type": ["string", "null"]},
                        },
                        ("name", "shape"),
                    ),
                },
            },
            ("input_tensor_info",),
        ),
        "quantize_info": {"type": "object"},
        "atc_info": {"type": "object"},
        "aipp_info": {"type": "object"},
    },
    ("version", "soc_version", "dataset_info", "model_info", "quantize_info"),
)

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def check_json(value: Any, schema: dict[str, Any], path: str = "$") -> None:
    """Validate `value` against the JSON-Schema subset used here; UsageError names the path."""
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        ok = any(
            isinstance(value, _JSON_TYPES[k])
            and not (k in ("integer", "number") and isinstance(value, bool))
            for k in kinds
        )
        if not ok:
            raise UsageError(f"{path}: expected {' or '.join(kinds)}, got {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise UsageError(f"{path}: {value!r} is not one of {schema['enum']}")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if "minimum" in schema and number and value < schema["minimum"]:
        raise UsageError(f"{path}: {value} is below {schema['minimum']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", ()):
            if key not in value:
                raise UsageError(f"{path}: missing '{key}'")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                check_json(item, properties[key], f"{path}.{key}")
            elif extra is False:
                import difflib

                match = difflib.get_close_matches(key, list(properties), n=1)
                raise UsageError(
                    f"{path}: unknown key '{key}'",
                    hint=f"did you mean '{match[0]}'?" if match else None,
                )
            elif isinstance(extra, dict):
                check_json(item, extra, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            check_json(item, schema["items"], f"{path}[{i}]")


def validate_quant_config(data: Any, source: str = QUANT_CONFIG) -> None:
    """Schema check plus a typed round trip of each settings block through BuildConfig."""
    try:
        check_json(data, QUANT_CONFIG_SCHEMA)
        from_mapping(BuildConfig, _overrides_from_quant_config(data))
    except UsageError as exc:
        raise UsageError(f"{source}: {exc.message}", hint=exc.hint) from None


def _overrides_from_quant_config(data: dict[str, Any]) -> dict[str, Any]:
    dataset = data["dataset_info"]
    tensors = data["model_info"]["input_tensor_info"]
    overrides: dict[str, Any] = {
        "socs": [data["soc_version"]],
        "quant": data["quantize_info"],
        "calib": {
            key: dataset[src]
            for key, src in (
                ("batch", "calib_batch_size"),
                ("sources", "sources"),
                ("limit", "limit"),
                ("seed", "seed"),
            )
            if src in dataset
        },
        "preprocess": dataset["preprocess"],
    }
    if tensors:
        overrides["input_shape"] = format_input_shape(
            {t["name"]: tuple(t["shape"]) for t in tensors}
        )
    if "atc_info" in data:
        overrides["atc"] = data["atc_info"]
    if "aipp_info" in data:
        overrides["aipp"] = data["aipp_info"]
    return overrides


def read_quant_config(path: Path) -> dict[str, Any]:
    """quant_config.json back into BuildConfig overrides (for `--config quant_config.json`)."""
    raw = read_user_file(path, "config file", MAX_CONFIG_BYTES, CONFIG_FILE_HINT)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"{path}: not valid JSON (UTF-8): {exc}",
            hint="pass a quant_config.json that ascend-quant config wrote",
        ) from None
    validate_quant_config(data, str(path))
    return _overrides_from_quant_config(data)


# ---------------------------------------------------------------------------------------------
# Context: plain data the templates format (pure functions)


def ascend_layer_types(types: tuple[str, ...] | list[str]) -> list[str]:
    """ONNX op types to the Ascend IR types the simple config uses; Ascend names pass through."""
    out: list[str] = []
    for name in types:
        mapped = [QUANTIZABLE_TYPES[name]] if name in QUANTIZABLE_TYPES else [name]
        if name == "Conv":
            mapped.append("Conv3D")
        out.extend(m for m in mapped if m not in out)
    return out


def _overrides(config: BuildConfig) -> list[dict[str, Any]]:
    quant = config.quant
    items: list[dict[str, Any]] = []
    for key, table in (
        ("layer_type", quant.override_layer_types),
        ("layer_name", quant.override_layer_configs),
    ):
        for name, override in table.items():
            names = ascend_layer_types([name]) if key == "layer_type" else [name]
            algorithm = override.algorithm
            if algorithm is None and (override.ifmr is None) != (override.hfmg is None):
                algorithm = "ifmr" if override.ifmr is not None else "hfmg"
            for target in names:
                items.append(
                    {
                        "key": key,
                        "name": target,
                        "channel_wise": quant.channel_wise
                        if override.channel_wise is None
                        else override.channel_wise,
                        "algorithm": algorithm or quant.algorithm,
                        "ifmr": override.ifmr or quant.ifmr,
                        "hfmg": override.hfmg or quant.hfmg,
                    }
                )
    return items


def _batch_num(config: BuildConfig, calib_batch_files: dict[str, Path]) -> int:
    """Calibration batches: the configured batch_num, else every batch file in the directory of
    the first input's batch file (calib sets keep their batches in a directory of their own)."""
    if config.quant.batch_num is not None:
        return config.quant.batch_num
    if not calib_batch_files:
        return 1
    first = Path(next(iter(calib_batch_files.values())))
    return max(1, len(list(first.parent.glob(f"*{first.suffix}"))))


def _calib_shapes(
    input_shapes: dict[str, tuple[int, ...]],
    batch: int,
    batch_dims: Mapping[str, int | None] | None = None,
) -> dict[str, tuple[int, ...]]:
    """Each input's calibration shape: N at its batch dim (dim 0 unless the calib set says
    otherwise; an input without a batch dim keeps its shape)."""
    shapes = {}
    for name, shape in input_shapes.items():
        dim = (batch_dims or {}).get(name, 0) if shape else None
        shapes[name] = batch_shape(shape, dim, batch) if dim is not None else tuple(shape)
    return shapes


def atc_calibration_files(
    input_shapes: dict[str, tuple[int, ...]],
    batch: int,
    batch_dims: Mapping[str, int | None],
    batch_files: Mapping[str, Path],
    sample_files: Mapping[str, Path],
) -> tuple[dict[str, Path], tuple[str, int] | None, bool]:
    """The one .bin per input that ATC-native calibration reads, with the model's own batch.

    atc builds the .om with `--input_shape` and calibrates with compression_optimize.cfg's
    input_shape, whose N must be the same (reference §3.1): a calibration batch of the model's N
    when the set has one, else (model N = 1) the set's first sample. Returns (files, (why the
    route cannot be served, the N the set needs) or None, whether only one sample is used).
    """
    files: dict[str, Path] = {}
    one_sample = False
    for name, shape in input_shapes.items():
        if name not in batch_files:
            continue
        dim = batch_dims.get(name, 0) if shape else None
        model_n = shape[dim] if dim is not None else batch
        if model_n == batch:
            files[name] = batch_files[name]
        elif model_n == 1 and name in sample_files:
            files[name], one_sample = sample_files[name], True
        else:
            why = (
                f"ATC-native calibration reads one .bin per input with the model's batch "
                f"({name}: N={model_n}), but the calibration set's batches hold {batch} samples"
            )
            return {}, (why, model_n), False
    return files, None, one_sample


def _abs(path: Path | str) -> str:
    return os.path.abspath(os.fspath(path))


def _compression_log(atc: AtcConfig) -> str:
    return atc.log if atc.log in ("debug", "info", "warning", "error") else "info"


def _image_inputs(
    config: BuildConfig, input_shapes: dict[str, tuple[int, ...]]
) -> list[tuple[int, str, int, int, int]]:
    """(rank, name, channels, H, W) of every 4-D input with 1 or 3 channels in its layout."""
    found = []
    for rank, (name, shape) in enumerate(input_shapes.items()):
        if len(shape) != 4:
            continue
        if config.preprocess.layout == "NCHW":
            channels, height, width = shape[1], shape[2], shape[3]
        else:
            height, width, channels = shape[1], shape[2], shape[3]
        if channels in (1, 3):
            found.append((rank, name, channels, height, width))
    return found


def aipp_ops(config: BuildConfig, input_shapes: dict[str, tuple[int, ...]]) -> list[dict[str, Any]]:
    """The static aipp_op blocks: AIPP does uint8 -> (x*scale - mean)/std on the NPU.

    AIPP computes out = (in - mean_chn - min_chn) * var_reci_chn (reference §6). With the tool's
    preprocessing x' = (x*scale - mean)/std = (x - mean/scale) * (scale/std), so
    min_chn_i = mean_i/scale and var_reci_chn_i = scale/std_i (255*mean and 1/(255*std) for
    scale = 1/255), mean_chn_i = 0 because it must be an integer.
    """
    pre, aipp = config.preprocess, config.aipp
    images = _image_inputs(config, input_shapes)
    if not images:
        raise UsageError(
            "--aipp: no image input (4-D with 1 or 3 channels) in "
            + format_input_shape(input_shapes),
            hint="AIPP only applies to image inputs; drop --aipp",
        )
    if pre.scale <= 0:
        raise UsageError(f"--aipp: preprocess scale must be positive, got {pre.scale}")
    ops = []
    for rank, name, channels, height, width in images:
        means = _per_channel(pre.mean, channels, "mean")
        stds = _per_channel(pre.std, channels, "std")
        chans = []
        for i, (mean, std) in enumerate(zip(means, stds)):
            if std == 0:
                raise UsageError(f"--aipp: std[{i}] is 0")
            min_chn = mean / pre.scale
            var_reci = pre.scale / std
            if not 0.0 <= min_chn <= 255.0:
                raise UsageError(
                    f"--aipp: mean[{i}]={mean} at scale {pre.scale} gives min_chn_{i}="
                    f"{min_chn:g}, outside AIPP's [0, 255]",
                    hint="AIPP subtracts in the 0-255 pixel domain; preprocess on the host instead",
                )
            if abs(var_reci) > 65504:
                raise UsageError(f"--aipp: var_reci_chn_{i}={var_reci:g} overflows fp16")
            chans.append({"mean_chn": 0, "min_chn": min_chn, "var_reci_chn": var_reci})
        src_h, src_w = aipp.src_image_size or (height, width)
        if not (2 <= src_w <= 4096 and 1 <= src_h <= 4096):
            raise UsageError(f"--aipp: source image {src_h}x{src_w} is outside AIPP's 4096x4096")
        op: dict[str, Any] = {
            "rank": rank,
            "name": name,
            "input_format": "YUV400_U8" if channels == 1 else aipp.input_format,
            "src_image_size_w": src_w,
            "src_image_size_h": src_h,
            "rbuv_swap_switch": pre.color == "bgr",
            "crop": None,
            "channels": chans,
            "model_shape": [height, width],
        }
        if aipp.crop:
            if src_h < height or src_w < width:
                raise UsageError(
                    f"--aipp crop: source {src_h}x{src_w} is smaller than the input "
                    f"{height}x{width}"
                )
            op["crop"] = {
                "load_start_pos_w": (src_w - width) // 2,
                "load_start_pos_h": (src_h - height) // 2,
                "crop_size_w": width,
                "crop_size_h": height,
            }
        elif (src_h, src_w) != (height, width):
            raise UsageError(
                f"--aipp: source image {src_h}x{src_w} differs from the input {height}x{width}",
                hint="AIPP cannot resize; set aipp.crop = true or use the input size",
            )
        ops.append(op)
    return ops


def _per_channel(values: tuple[float, ...], channels: int, what: str) -> tuple[float, ...]:
    if len(values) == channels:
        return values
    if len(values) == 1:
        return values * channels
    if channels == 1:
        raise UsageError(f"--aipp: a 1-channel input needs one {what} value, got {len(values)}")
    raise UsageError(f"--aipp: {what} has {len(values)} values for {channels} channels")


def render_context(
    config: BuildConfig,
    soc: SocInfo,
    input_shapes: dict[str, tuple[int, ...]],
    calib_batch_files: dict[str, Path],
    out_dir: Path,
    model_path: Path | None,
    data_types: Mapping[str, str] | None = None,
    batch_dims: Mapping[str, int | None] | None = None,
    atc_data_files: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """Everything the config templates read, computed once. `data_types`/`batch_dims`: what
    each input's calib set holds (default: the image preprocessing's dtype, dim 0)."""
    quant = config.quant
    atc_files = dict(atc_data_files or {})
    calib_shapes = _calib_shapes(input_shapes, config.calib.batch, batch_dims)
    data_files = {name: _abs(calib_batch_files[name]) for name in calib_batch_files}
    tensors = [
        {
            "name": name,
            "shape": list(shape),
            "calib_shape": list(calib_shapes[name]),
            "data_type": (data_types or {}).get(name, config.preprocess.dtype),
            "data_file": data_files.get(name),
        }
        for name, shape in input_shapes.items()
    ]
    first_layer = config.atc.enable_first_layer_quantization and soc.first_layer_quantization
    return {
        "generator": f"ascend-quant {__version__}",
        "soc": soc,
        "config": config,
        "quant": quant,
        "quant_mapping": to_mapping(quant),
        "atc": config.atc,
        "aipp": config.aipp,
        "calib": config.calib,
        "preprocess": config.preprocess,
        "model_path": _abs(model_path) if model_path is not None else None,
        "tensors": tensors,
        "data_files": data_files,
        "batch_num": _batch_num(config, calib_batch_files),
        "skip_layer_types": ascend_layer_types(quant.skip_layer_types),
        "overrides": _overrides(config),
        # ATC-native calibration: the model's own shapes, one .bin of that batch per input.
        "input_data_dir": ",".join(
            _abs(atc_files[name]) for name in input_shapes if name in atc_files
        ),
        "atc_input_shape": format_input_shape(input_shapes),
        "calib_input_shape": format_input_shape(calib_shapes),
        "config_file": _abs(Path(out_dir) / SIMPLE_CONFIG),
        "compression_log": _compression_log(config.atc),
        "file_name": COMPRESSION_CONFIG,
        "enable_first_layer_quantization": first_layer,
        "keep_dtype": list(config.atc.keep_dtype),
    }


# ---------------------------------------------------------------------------------------------
# Rendering


def _atc_route_problem(config: BuildConfig, soc: SocInfo) -> str | None:
    """Why the ATC-native INT8 files cannot be rendered for this config and soc, or None."""
    if config.quant.algorithm != "ifmr":
        return (
            f"ATC-native calibration implements only IFMR (no batch_num, no hfmg_quantize in its "
            f"simple config); algorithm '{config.quant.algorithm}' needs the amct route"
        )
    if not soc.atc_calibration:
        return f"{soc.name} ({soc.family}) does not support ATC-native calibration"
    if any(o["algorithm"] != "ifmr" for o in _overrides(config)):
        return "an override asks for an algorithm other than IFMR, which ATC calibration lacks"
    return None


def _amct_route_problem(config: BuildConfig) -> str | None:
    algorithms = {config.quant.algorithm} | {o["algorithm"] for o in _overrides(config)}
    unsupported = sorted(algorithms - set(TOOLKIT_ALGORITHMS))
    if unsupported:
        return (
            f"algorithm {', '.join(unsupported)} exists only in the simulator; amct_onnx "
            f"implements {', '.join(TOOLKIT_ALGORITHMS)}"
        )
    return None


def render_configs(
    config: BuildConfig,
    soc: str,
    input_shapes: dict[str, tuple[int, ...]],
    calib_batch_files: dict[str, Path],
    out_dir: Path,
    model_path: Path | None = None,
    data_types: Mapping[str, str] | None = None,
    batch_dims: Mapping[str, int | None] | None = None,
    calib_sample_files: Mapping[str, Path] | None = None,
) -> dict[str, Path]:
    """Render and write the quantization records and toolkit configs for one soc.

    Writes quant_config.json always; simple_config.cfg + compression_optimize.cfg when the
    ATC-native route can serve the config (IFMR, a soc with ATC calibration); amct_config.cfg when
    amct_onnx can (IFMR or HFMG); simple_config_w8.cfg + compression_optimize_w8.cfg (weight-only
    INT8) on the socs with weight_compress_only; aipp.cfg when AIPP is enabled. Asking for a
    route explicitly (atc.int8_route) that cannot serve the config is an error.
    Returns {file name: path}.
    """
    info = get_soc(soc)
    out_dir = Path(out_dir)
    route = config.atc.int8_route
    atc_problem = _atc_route_problem(config, info)
    amct_problem = _amct_route_problem(config)
    if route == "atc" and atc_problem:
        raise UsageError(atc_problem, hint="use --algorithm ifmr, or set atc.int8_route = 'amct'")
    if route == "amct" and amct_problem:
        raise UsageError(amct_problem, hint="use --algorithm ifmr or hfmg")
    names_problem = next(filter(None, map(toolkit_name_problem, input_shapes)), None)
    if names_problem is None:
        bad_paths = [str(p) for p in calib_batch_files.values() if _CONTROL.search(_abs(p))]
        if bad_paths:
            names_problem = f"calibration file path {bad_paths[0]!r} contains a control character"
    if names_problem:
        if route in ("atc", "amct"):
            raise UsageError(names_problem, hint=TOOLKIT_NAME_HINT)
        atc_problem = atc_problem or names_problem
        amct_problem = amct_problem or names_problem
    missing = [name for name in input_shapes if name not in calib_batch_files]
    atc_files, batch_problem, one_sample = atc_calibration_files(
        input_shapes, config.calib.batch, batch_dims or {}, calib_batch_files,
        calib_sample_files or {},
    )  # fmt: skip
    if batch_problem and atc_problem is None:
        why, model_n = batch_problem
        if route == "atc":
            raise UsageError(
                why,
                hint=f"re-create the calibration set with --calib-batch {model_n}, or use "
                "--int8-route amct (amct_onnx calibrates on every batch)",
            )
        atc_problem = f"{why} (re-create it with --calib-batch {model_n})"
    elif one_sample and atc_problem is None and not missing:
        log.warning(
            f"{COMPRESSION_CONFIG}: ATC-native calibration reads one .bin per input with the "
            "model's batch (1), so it calibrates on the first sample only; amct_int8.sh "
            "calibrates on every batch. For more samples with atc, give the model a batch of N "
            "(--input-shape) and the set --calib-batch N"
        )
    if missing and route == "atc" and atc_problem is None:
        raise UsageError(
            f"no calibration batch file for input(s): {', '.join(missing)}",
            hint="ATC-native INT8 needs calibration data: run `ascend-quant calib` first",
        )
    w8_problem = info.w8_refusal or names_problem or (batch_problem[0] if batch_problem else None)
    if missing and w8_problem is None:
        w8_problem = f"no calibration batch file for {', '.join(missing)}"
    w8_renders = w8_problem is None
    if atc_problem is None or w8_renders:
        commas = [str(p) for p in atc_files.values() if "," in _abs(p)]
        if commas:
            raise UsageError(
                f"calibration file path contains ',': {commas[0]}",
                hint="input_data_dir separates files with ','; use a path without commas",
            )
    if config.atc.enable_first_layer_quantization and not info.first_layer_quantization:
        log.warning(
            f"enable_first_layer_quantization is ignored: {info.name} does not support it "
            "(Atlas inference 310P and 200I/500 A2 310B only)"
        )
    if config.quant.tensor_quantize and route != "atc":
        log.warning("tensor_quantize is written only to the ATC simple config (not amct_onnx's)")

    context = render_context(
        config, info, input_shapes, calib_batch_files, out_dir, model_path, data_types, batch_dims,
        atc_files,
    )  # fmt: skip
    planned: list[tuple[str, str]] = [(QUANT_CONFIG, "quant_config.json.j2")]
    if atc_problem is None:
        planned += [(SIMPLE_CONFIG, "simple_config.cfg.j2")]
        if missing:
            log.warning(
                f"{COMPRESSION_CONFIG} not written: no calibration batch file for "
                f"{', '.join(missing)} (run `ascend-quant calib` first)"
            )
        else:
            planned += [(COMPRESSION_CONFIG, "compression_optimize.cfg.j2")]
    else:
        log.info(f"{SIMPLE_CONFIG} and {COMPRESSION_CONFIG} not written: {atc_problem}")
    if amct_problem is None:
        planned += [(AMCT_CONFIG, "amct_config.cfg.j2")]
    else:
        log.warning(f"{AMCT_CONFIG} not written: {amct_problem}")
    if w8_renders:
        planned += [(SIMPLE_CONFIG_W8, "simple_config_w8.cfg.j2")]
        planned += [(COMPRESSION_CONFIG_W8, "compression_optimize.cfg.j2")]
    else:
        log.info(f"{SIMPLE_CONFIG_W8} and {COMPRESSION_CONFIG_W8} not written: {w8_problem}")
    if config.aipp.enabled:
        context["aipp_ops"] = aipp_ops(config, input_shapes)
        planned += [(AIPP_CONFIG, "aipp.cfg.j2")]
    if config.atc.keep_dtype:
        check_keep_dtype(config.atc.keep_dtype)
        planned += [(KEEP_DTYPE_CONFIG, "keep_dtype.cfg.j2")]

    w8_context = {
        **context,
        "file_name": COMPRESSION_CONFIG_W8,
        "config_file": _abs(out_dir / SIMPLE_CONFIG_W8),
        "enable_first_layer_quantization": False,  # it fuses AIPP with an activation Quant
    }
    rendered = {
        name: render_template(
            template, w8_context if name == COMPRESSION_CONFIG_W8 else context, config.templates
        )
        for name, template in planned
    }
    for name, text in rendered.items():
        validate_rendered(name, text)
    return {name: atomic_write_text(out_dir / name, text) for name, text in rendered.items()}


_SCHEMAS = {
    SIMPLE_CONFIG: prototext.ATC_SIMPLE_CONFIG,
    SIMPLE_CONFIG_W8: prototext.ATC_SIMPLE_CONFIG,
    COMPRESSION_CONFIG_W8: prototext.COMPRESSION_OPTIMIZE_CONFIG,
    AMCT_CONFIG: prototext.AMCT_SIMPLE_CONFIG,
    COMPRESSION_CONFIG: prototext.COMPRESSION_OPTIMIZE_CONFIG,
    AIPP_CONFIG: prototext.AIPP_CONFIG,
}


def check_keep_dtype(entries: tuple[str, ...] | list[str]) -> None:
    """Each entry fits on one line of atc's --keep_dtype file: `OpName` or `OpType::TypeName`."""
    for entry in entries:
        if not entry or entry != entry.strip() or any(c in entry for c in "\r\n"):
            raise UsageError(
                f"keep_dtype entry {entry!r} cannot be written as one line of keep_dtype.cfg",
                hint="an ONNX node name or OpType::<type>, without surrounding spaces",
            )
        if entry.startswith("OpType::") and not entry[len("OpType::") :]:
            raise UsageError("keep_dtype entry 'OpType::' names no type", hint="e.g. OpType::Exp")


def read_keep_dtype(text: str) -> list[str]:
    """The entries of a keep_dtype.cfg (atc's format: one per line; blank lines ignored)."""
    return [line for line in text.splitlines() if line.strip()]


def validate_rendered(name: str, text: str) -> Any:
    """Parse a rendered file back and check it against its schema; returns the parsed data."""
    if name == KEEP_DTYPE_CONFIG:
        entries = read_keep_dtype(text)
        check_keep_dtype(entries)
        return entries
    if name.endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"rendered {name} is not valid JSON: {exc}") from None
        validate_quant_config(data, f"rendered {name}")
        return data
    return prototext.parse_and_validate(text, _SCHEMAS[name], f"rendered {name}")


def render_script(
    commands: list[list[str]],
    out_path: Path,
    templates: Path | None = None,
    comment: str = "",
    workdir: Path | None = None,
) -> Path:
    """Write a runnable bash script (chmod +x) running `commands` in `workdir` (absolute), every
    argv element quoted, so that it behaves the same from any directory."""
    if not commands or any(not cmd for cmd in commands):
        raise UsageError("render_script: no command to write")
    argvs = [[str(a) for a in cmd] for cmd in commands]
    context = {
        "commands": argvs,
        "comment": comment,
        "generator": f"ascend-quant {__version__}",
        "workdir": str(Path(workdir).absolute()) if workdir is not None else "",
    }
    text = render_template("script.sh.j2", context, templates)
    _check_script(text, argvs, Path(out_path).name)
    path = atomic_write_text(Path(out_path), text)
    path.chmod(0o755)
    return path


def _check_script(text: str, commands: list[list[str]], name: str) -> None:
    """Every command appears as one line that shlex splits back into the same argv."""
    for argv in commands:
        line = " ".join(shlex.quote(a) for a in argv)
        if f"\n{line}\n" not in text or shlex.split(line) != argv:
            raise UsageError(f"rendered {name} does not contain the command {argv[0]} verbatim")
    bash = shutil.which("bash")
    if bash:
        check = subprocess.run(
            [bash, "-n"], input=text.encode(), capture_output=True, check=False, timeout=30
        )
        if check.returncode != 0:
            raise UsageError(f"rendered {name} is not valid bash: {check.stderr.decode().strip()}")
