"""A small protobuf-text reader and schema check for the toolkit's `.cfg` files.

The real `.proto` files for AMCT/ATC configs are not public in full (reference §3.2, §4.2), so
`google.protobuf.text_format` cannot be used; this reader covers the subset the toolkit's
documents show: `key : value`, nested `key : { ... }` / `key { ... }`, repeated keys, quoted
strings with C escapes, bare values (enums, and the unquoted paths of the compression config)
and `#` comments. Every rendered `.cfg` is read back and checked against a schema, so a template
typo or an unknown key never reaches atc.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Union

from ascend_quant.errors import UsageError

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "'": "'", "\\": "\\", "a": "\a"}
_ESCAPES.update({"b": "\b", "f": "\f", "v": "\v", "?": "?"})
_BARE_STOP = set(" \t\r\n{}#\"'")


class ProtoTextError(UsageError):
    """A `.cfg` file that is not valid protobuf text or breaks its schema."""


class _Reader:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.pos = 0
        self.source = source

    def error(self, message: str) -> ProtoTextError:
        line = self.text.count("\n", 0, self.pos) + 1
        return ProtoTextError(f"{self.source}:{line}: {message}")

    def skip(self) -> None:
        """Skip whitespace, `;`/`,` field separators and `#` comments."""
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char in " \t\r\n;,":
                self.pos += 1
            elif char == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end + 1
            else:
                return

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def identifier(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and (
            self.text[self.pos].isalnum() or self.text[self.pos] in "_-."
        ):
            self.pos += 1
        if start == self.pos:
            raise self.error(
                f"expected a field name, found {self.text[self.pos : self.pos + 10]!r}"
            )
        return self.text[start : self.pos]

    def message(self, closing: str | None) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        while True:
            char = self.peek()
            if not char:
                if closing:
                    raise self.error(f"missing '{closing}'")
                return fields
            if closing and char == closing:
                self.pos += 1
                return fields
            name = self.identifier()
            self.skip_inline()
            has_colon = self.pos < len(self.text) and self.text[self.pos] == ":"
            if has_colon:
                self.pos += 1
            char = self.peek()
            if char in "{<":
                self.pos += 1
                value: Any = self.message("}" if char == "{" else ">")
            elif not has_colon:
                raise self.error(f"expected ':' or '{{' after '{name}'")
            else:
                value = self.scalar()
            if name in fields:
                previous = fields[name]
                if isinstance(previous, _Repeated):
                    previous.append(value)
                else:
                    fields[name] = _Repeated([previous, value])
            else:
                fields[name] = value

    def skip_inline(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def scalar(self) -> Any:
        char = self.peek()
        if char in "\"'":
            parts = [self.string()]
            while self.peek() in ('"', "'"):  # adjacent literals concatenate
                parts.append(self.string())
            return "".join(parts)
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _BARE_STOP:
            self.pos += 1
        token = self.text[start : self.pos]
        if not token:
            raise self.error("expected a value")
        return _bare_value(token)

    def string(self) -> str:
        quote = self.text[self.pos]
        self.pos += 1
        out = bytearray()
        text = self.text
        while True:
            if self.pos >= len(text) or text[self.pos] == "\n":
                raise self.error("unterminated string")
            char = text[self.pos]
            if char == quote:
                self.pos += 1
                return out.decode("utf-8", errors="strict")
            if char != "\\":
                out += char.encode("utf-8")
                self.pos += 1
                continue
            self.pos += 1
            esc = text[self.pos : self.pos + 1]
            if esc in _ESCAPES:
                out += _ESCAPES[esc].encode()
                self.pos += 1
            elif esc.isdigit():  # octal byte, up to 3 digits
                digits = ""
                while len(digits) < 3 and text[self.pos : self.pos + 1] in set("01234567"):
                    digits += text[self.pos]
                    self.pos += 1
                out.append(int(digits, 8) & 0xFF)
            elif esc == "x":
                self.pos += 1
                digits = ""
                while len(digits) < 2 and text[self.pos : self.pos + 1].lower() in set(
                    "0123456789abcdef"
                ):
                    digits += text[self.pos]
                    self.pos += 1
                if not digits:
                    raise self.error("bad \\x escape")
                out.append(int(digits, 16))
            else:
                raise self.error(f"unknown escape '\\{esc}'")


class _Repeated(list[Any]):
    """A field that occurred more than once (kept distinct from a list-valued scalar)."""


def _bare_value(token: str) -> Any:
    lowered = token.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(token, 0) if lowered.lstrip("+-")[:2] in ("0x",) else int(token)
    except ValueError:
        pass
    try:
        return float(token)
    except ValueError:
        return token  # an enum identifier, or a bare path/shape (compression config)


def parse(text: str, source: str = "<text>") -> dict[str, Any]:
    """Parse protobuf text into nested dicts; a repeated key becomes a list of its values."""
    reader = _Reader(text, source)
    try:
        result = reader.message(None)
    except UnicodeDecodeError:
        raise reader.error("string is not valid UTF-8") from None
    return _plain(result)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, _Repeated):
        return [_plain(v) for v in value]
    return value


# ----------------------------------------------------------------------------------------------
# Schemas: a field spec is a scalar type, an Enum, or a nested Schema; `Field(spec, repeated)`.


@dataclass(frozen=True)
class Enum:
    values: tuple[str, ...]


Spec = Union[type, Enum, "Schema"]


@dataclass(frozen=True)
class Field:
    spec: Spec
    repeated: bool = False


Schema = dict[str, Field]


def _f(spec: Spec) -> Field:
    return Field(spec)


def _r(spec: Spec) -> Field:
    return Field(spec, repeated=True)


_DST = Enum(("INT8", "INT16"))

FMR_QUANTIZE: Schema = {
    "search_range_start": _f(float),
    "search_range_end": _f(float),
    "search_step": _f(float),
    "max_percentile": _f(float),
    "min_percentile": _f(float),
    "asymmetric": _f(bool),
    "dst_type": _f(_DST),
}
HFMG_QUANTIZE: Schema = {"num_of_bins": _f(int), "asymmetric": _f(bool), "dst_type": _f(_DST)}
ARQ_QUANTIZE: Schema = {"channel_wise": _f(bool), "asymmetric": _f(bool), "quant_bits": _f(int)}

# ATC / AMCT-ACL simple config, reference §3.2 ([GE] references/quantization_simple_config.md).
ATC_CALIBRATION_CONFIG: Schema = {
    "arq_quantize": _f(ARQ_QUANTIZE),
    "ifmr_quantize": _f(FMR_QUANTIZE),
    "weight_compress_only": _f(bool),
}
ATC_SIMPLE_CONFIG: Schema = {
    "version": _f(int),
    "activation_offset": _f(bool),
    "joint_quant": _f(bool),
    "enable_auto_nuq": _f(bool),
    "skip_layers": _r(str),
    "skip_layer_types": _r(str),
    "common_config": _f(ATC_CALIBRATION_CONFIG),
    "override_layer_types": _r(
        {"layer_type": _f(str), "calibration_config": _f(ATC_CALIBRATION_CONFIG)}
    ),
    "override_layer_configs": _r(
        {"layer_name": _f(str), "calibration_config": _f(ATC_CALIBRATION_CONFIG)}
    ),
    "do_fusion": _f(bool),
    "skip_fusion_layers": _r(str),
    "tensor_quantize": _r(
        {"layer_name": _f(str), "input_index": _f(int), "ifmr_quantize": _f(FMR_QUANTIZE)}
    ),
}

# amct_onnx simple config, reference §4.2 (calibration_config_*.proto).
AMCT_CALIBRATION_CONFIG: Schema = {
    "arq_quantize": _f(ARQ_QUANTIZE),
    "ada_quantize": _f({"num_iteration": _f(int)}),
    "ifmr_quantize": _f(FMR_QUANTIZE),
    "hfmg_quantize": _f(HFMG_QUANTIZE),
    "dmq_balancer": _f({"migration_strength": _f(float)}),
}
AMCT_SIMPLE_CONFIG: Schema = {
    "batch_num": _f(int),
    "activation_offset": _f(bool),
    "skip_layers": _r(str),
    "skip_layer_types": _r(str),
    "fakequant_precision_mode": _f(Enum(("FORCE_FP16_QUANT",))),
    "common_config": _f(AMCT_CALIBRATION_CONFIG),
    "override_layer_types": _r(
        {"layer_type": _f(str), "calibration_config": _f(AMCT_CALIBRATION_CONFIG)}
    ),
    "override_layer_configs": _r(
        {"layer_name": _f(str), "calibration_config": _f(AMCT_CALIBRATION_CONFIG)}
    ),
    "do_fusion": _f(bool),
    "skip_fusion_layers": _r(str),
}

# atc --compression_optimize_conf, reference §3.1.
COMPRESSION_OPTIMIZE_CONFIG: Schema = {
    "enable_first_layer_quantization": _f(bool),
    "calibration": _f(
        {
            "input_data_dir": _f(str),
            "input_shape": _f(str),
            "config_file": _f(str),
            "infer_soc": _f(str),
            "infer_aicore_num": _f(int),
            "infer_device_id": _f(int),
            "infer_ip": _f(str),
            "infer_port": _f(int),
            "log": _f(Enum(("debug", "info", "warning", "error"))),
        }
    ),
}

# atc --insert_op_conf, reference §6 ([GE] AIPP/config_file_template.md).
_AIPP_OP: Schema = {
    "aipp_mode": _f(Enum(("static", "dynamic"))),
    "related_input_rank": _f(int),
    "related_input_name": _f(str),
    "max_src_image_size": _f(int),
    "support_rotation": _f(bool),
    "input_format": _f(Enum(("YUV420SP_U8", "RGB888_U8", "XRGB8888_U8", "YUV400_U8"))),
    "src_image_size_w": _f(int),
    "src_image_size_h": _f(int),
    "crop": _f(bool),
    "load_start_pos_w": _f(int),
    "load_start_pos_h": _f(int),
    "crop_size_w": _f(int),
    "crop_size_h": _f(int),
    "resize": _f(bool),
    "resize_output_w": _f(int),
    "resize_output_h": _f(int),
    "padding": _f(bool),
    "left_padding_size": _f(int),
    "right_padding_size": _f(int),
    "top_padding_size": _f(int),
    "bottom_padding_size": _f(int),
    "padding_value": _f(float),
    "rotation": _f(bool),
    "rotation_angle": _f(int),
    "csc_switch": _f(bool),
    "rbuv_swap_switch": _f(bool),
    "ax_swap_switch": _f(bool),
    "single_line_mode": _f(bool),
    **{f"matrix_r{r}c{c}": _f(int) for r in range(3) for c in range(3)},
    **{f"{kind}_bias_{i}": _f(int) for kind in ("input", "output") for i in range(3)},
    **{f"mean_chn_{i}": _f(int) for i in range(4)},
    **{f"min_chn_{i}": _f(float) for i in range(4)},
    **{f"var_reci_chn_{i}": _f(float) for i in range(4)},
}
AIPP_CONFIG: Schema = {"aipp_op": _r(_AIPP_OP)}


def validate(data: dict[str, Any], schema: Schema, where: str = "") -> dict[str, Any]:
    """Check `data` against `schema`; return it with repeated fields always as lists.

    Unknown keys are rejected with a "did you mean" suggestion; a non-repeated key given twice,
    a message where a scalar belongs (or the reverse) and a wrong scalar type are errors.
    """
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        field = schema.get(key)
        if field is None:
            match = difflib.get_close_matches(key, list(schema), n=1, cutoff=0.6)
            raise ProtoTextError(
                f"unknown key '{path}'",
                hint=f"did you mean '{match[0]}'?" if match else None,
            )
        values = value if isinstance(value, list) else [value]
        if not field.repeated and len(values) > 1:
            raise ProtoTextError(f"'{path}' is given {len(values)} times but is not repeated")
        checked = [_check(v, field.spec, path) for v in values]
        out[key] = checked if field.repeated else checked[0]
    return out


def _check(value: Any, spec: Spec, path: str) -> Any:
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise ProtoTextError(f"'{path}' must be a message {{ ... }}, got {value!r}")
        return validate(value, spec, path)
    if isinstance(value, dict):
        raise ProtoTextError(f"'{path}' must be a value, not a message")
    if isinstance(spec, Enum):
        if value not in spec.values:
            raise ProtoTextError(f"'{path}': {value!r} is not one of {', '.join(spec.values)}")
        return value
    if spec is bool:
        ok = isinstance(value, bool)
    elif spec is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif spec is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:  # str: a quoted string, or a bare token the reader could not read as anything else
        ok = isinstance(value, str)
        if not ok and not isinstance(value, bool):
            value, ok = str(value), True  # bare numbers in string fields (e.g. infer_soc)
    if not ok:
        raise ProtoTextError(f"'{path}': expected {spec.__name__}, got {value!r}")
    return value


def parse_and_validate(text: str, schema: Schema, source: str = "<text>") -> dict[str, Any]:
    """`parse` then `validate`; the error names the file and line or key."""
    data = parse(text, source)
    try:
        return validate(data, schema)
    except ProtoTextError as exc:
        raise ProtoTextError(f"{source}: {exc.message}", hint=exc.hint) from None
