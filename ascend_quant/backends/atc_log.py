"""Reading atc / amct_onnx / ais_bench output: error codes, success markers, hints.

Error text has the shape `<CODE>: <message>` (E10001, EE1001, EZ9999, ...); reference §1.4 and
the pain points of §10 give the hints below.
"""

from __future__ import annotations

import re

ATC_START = "ATC start working now, please wait for a moment."
ATC_SUCCESS = "ATC run success"
ATC_FAILED = "ATC run failed"
CODE_RE = re.compile(r"\bE[0-9A-Z]\d{4}\b")

CODE_HINTS = {
    "E10001": "a flag value is invalid: check the value and reason atc names "
    "(soc_version, input_shape, file paths)",
    "E10002": "--input_shape is invalid: use name:n,c,h,w with the model's own input names "
    "(see `ascend-quant inspect MODEL`)",
    "E10003": "a parameter value is invalid, or the .om file is invalid: re-convert the model",
    "E10007": "atc was called without a required flag: report this as an ascend-quant bug",
    "E10009": "dynamic batch size, dynamic image size, input shape range and dynamic dims are "
    "mutually exclusive: keep one",
    "E10016": "a node or input name given to atc is not in the model: check the names with "
    "`ascend-quant inspect MODEL`",
    "E19999": "atc hit an internal error: re-run with --log info and "
    "ASCEND_SLOG_PRINT_TO_STDOUT=1, or read $HOME/ascend/log/debug/plog/",
    "EE1001": "the .om was built for a different soc than this NPU: re-convert with --soc set to "
    "the chip `npu-smi info` shows (Ascend + Name)",
}

# Known failures that carry no (useful) code; matched on the text, checked before the codes.
TEXT_HINTS = (
    (
        re.compile(r"input image size\s*\[\d+\] is not equal to model input size\s*\[\d+\]"),
        "the calibration data does not match the model input (a 2x gap is a dtype mix-up): "
        "re-create the calibration set with the model's input shape and dtype",
    ),
    (
        re.compile(r"Not support scale greater than 1 ?/ ?FLT_EPSILON"),
        "a layer cannot be quantized: add it to quant.skip_layers in ascend-quant.toml",
    ),
    (
        re.compile(r"build_main build graph\[infer_graph_info\] failed"),
        "the float model itself does not compile: convert with --precision fp16 first and fix "
        "that error",
    ),
    (
        re.compile(r"\b507011\b"),
        "the NPU calibration step failed (AI Core error 507011): lower the calibration batch "
        "(calib.batch) and re-create the calibration set",
    ),
    (
        re.compile(r"ModelCheckCompatibility failed"),
        CODE_HINTS["EE1001"],
    ),
)

_SKIP_LAYER_RE = re.compile(r"layer\s+(\S+)\s+run WeightFakeQuantArq failed")


def error_codes(text: str) -> tuple[str, ...]:
    """Distinct error codes in order of appearance."""
    seen: dict[str, None] = {}
    for code in CODE_RE.findall(text):
        seen.setdefault(code, None)
    return tuple(seen)


def hint_for(text: str, codes: tuple[str, ...]) -> str | None:
    """The most specific hint: a known text pattern first, then the first known code."""
    for pattern, hint in TEXT_HINTS:
        if pattern.search(text):
            layer = _SKIP_LAYER_RE.search(text)
            if layer and "skip_layers" in hint:
                return f"{hint} (layer '{layer.group(1)}': skip_layers = [\"{layer.group(1)}\"])"
            return hint
    for code in codes:
        if code in CODE_HINTS:
            return CODE_HINTS[code]
    return None


def first_error_line(text: str) -> str | None:
    """The first line that carries an error code or an [ERROR] tag, for the one-line message."""
    for line in text.splitlines():
        if CODE_RE.search(line) or "[ERROR]" in line or "Error" in line:
            return line.strip()
    return None
