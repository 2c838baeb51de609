"""The simulator's own `.om` container: never mistaken for a real Ascend om.

Layout (all integers little-endian):

    offset 0   8 bytes  magic b"AQSIMOM\\0"  (a real om starts with b"IMOD")
    offset 8   u32      container format version (1)
    offset 12  u64      length M of the metadata block
    offset 20  u64      length K of the ONNX model block
    offset 28  M bytes  metadata: UTF-8 JSON object
    offset 28+M K bytes the ONNX model the simulator runs (IR version ONNX Runtime reads)

The file size must be exactly 28 + M + K. The metadata records the tool version, soc,
precision, calibration algorithm and parameters, per-tensor scales and zero points, the source
model's and the calibration manifest's sha256, FP16 overflow tensors and input/output specs.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from ascend_quant.errors import UsageError
from ascend_quant.workspace import atomic_write_bytes

MAGIC = b"AQSIMOM\x00"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sIQQ")
HEADER_LEN = _HEADER.size  # 28


def is_sim_om(path: Path) -> bool:
    """True when `path` starts with the simulator container's magic."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def pack_sim_om(metadata: dict[str, Any], onnx_bytes: bytes) -> bytes:
    meta = json.dumps(metadata, sort_keys=True, default=str).encode("utf-8")
    return _HEADER.pack(MAGIC, FORMAT_VERSION, len(meta), len(onnx_bytes)) + meta + onnx_bytes


def write_sim_om(path: Path, metadata: dict[str, Any], onnx_bytes: bytes) -> Path:
    """Atomically write the container (a half-written file never has the final name)."""
    return atomic_write_bytes(Path(path), pack_sim_om(metadata, onnx_bytes))


def _not_sim(path: Path) -> UsageError:
    from ascend_quant.backends.omfile import is_real_om

    if is_real_om(path):
        return UsageError(
            f"{path} is a real Ascend .om (IMOD header); the simulator cannot run it",
            hint="run it on an NPU with --backend atc (ais_bench), or convert the ONNX model "
            "with --backend sim",
        )
    return UsageError(
        f"{path} is not an ascend-quant simulated .om",
        hint="convert the ONNX model with `ascend-quant convert --backend sim`",
    )


def read_sim_metadata(path: Path) -> dict[str, Any]:
    """Only the metadata (does not read the model bytes)."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(HEADER_LEN)
        meta_len = _check_header(path, head)[0]
        return _decode_meta(path, handle.read(meta_len), meta_len)


def payload_size(path: Path) -> int:
    """Bytes of the model the simulator runs, without header and metadata: the figure that
    compares like for like with a real .om (whose size is its model)."""
    path = Path(path)
    with open(path, "rb") as handle:
        return _check_header(path, handle.read(HEADER_LEN))[1]


def read_sim_om(path: Path) -> tuple[dict[str, Any], bytes]:
    """(metadata, ONNX bytes); UsageError for real oms, other files and truncated containers."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    meta_len, model_len = _check_header(path, data[:HEADER_LEN])
    if len(data) != HEADER_LEN + meta_len + model_len:
        raise UsageError(
            f"{path}: simulated .om is {len(data)} bytes, its header says "
            f"{HEADER_LEN + meta_len + model_len}",
            hint="the file is truncated or damaged; convert the model again",
        )
    meta = _decode_meta(path, data[HEADER_LEN : HEADER_LEN + meta_len], meta_len)
    return meta, data[HEADER_LEN + meta_len :]


def _check_header(path: Path, head: bytes) -> tuple[int, int]:
    if len(head) < HEADER_LEN or head[: len(MAGIC)] != MAGIC:
        raise _not_sim(path)
    _, version, meta_len, model_len = _HEADER.unpack(head)
    if version != FORMAT_VERSION:
        raise UsageError(
            f"{path}: simulated .om format version {version} is not supported "
            f"(this ascend-quant reads version {FORMAT_VERSION})",
            hint="convert the model again with this version of ascend-quant",
        )
    return meta_len, model_len


def _decode_meta(path: Path, raw: bytes, expected: int) -> dict[str, Any]:
    if len(raw) != expected:
        raise UsageError(f"{path}: simulated .om is truncated", hint="convert the model again")
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UsageError(
            f"{path}: simulated .om metadata is not valid JSON", hint="convert the model again"
        ) from None
    if not isinstance(meta, dict):
        raise UsageError(f"{path}: simulated .om metadata is not a JSON object")
    return meta
