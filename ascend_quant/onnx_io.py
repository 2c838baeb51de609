"""Saving ONNX models so that the installed ONNX Runtime can load them.

onnx >= 1.23 stamps new models with an IR version newer than ONNX Runtime reads; every model the
tool writes for ORT goes through `save_for_ort`, which sets the lowest IR version the opsets need.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import helper

from ascend_quant.workspace import atomic_write_bytes

# IR 10 is read by every onnxruntime this package supports (>= 1.18).
ORT_MAX_IR_VERSION = 10


def ort_ir_version(model: onnx.ModelProto) -> int:
    needed = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    return max(needed, min(model.ir_version or ORT_MAX_IR_VERSION, ORT_MAX_IR_VERSION))


def to_ort_bytes(model: onnx.ModelProto) -> bytes:
    """Serialized model with an IR version ORT accepts (the caller's proto is not changed)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.ir_version = ort_ir_version(model)
    return copy.SerializeToString()


def save_for_ort(model: onnx.ModelProto, path: Path) -> Path:
    """Atomically write `model` to `path` with an ORT-readable IR version."""
    return atomic_write_bytes(Path(path), to_ort_bytes(model))
