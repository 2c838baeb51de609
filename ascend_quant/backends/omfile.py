"""Recognising and reading real Ascend `.om` files (the 256-byte little-endian IMOD header).

The layout comes from GE's `struct ModelFileHeader` (reference §9). The size identity
`length + 256 == file size` is not verified on a real file (encrypted or multi-model oms may
differ), so a larger file is reported as a warning in the result; a file shorter than its header
claims is truncated (a copy that stopped half-way) and is an error.
"""

from __future__ import annotations

import stat
import struct
from pathlib import Path
from typing import Any

from ascend_quant.errors import UsageError

MAGIC = b"IMOD"  # u32 0x444F4D49 little-endian
HEAD_LEN = 256
KNOWN_VERSIONS = (0x20000000, 0x10000000)
MODEL_TYPES = {0: "IR", 1: "standard", 2: "OM-Tiny", 3: "flow"}


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", errors="replace")


def _read_head(path: Path) -> tuple[bytes, int]:
    path = Path(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO would block the open
            raise UsageError(f"{path} is not a regular file", hint="pass an .om file")
        with open(path, "rb") as handle:
            head = handle.read(HEAD_LEN)
        return head, path.stat().st_size
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def is_real_om(path: Path) -> bool:
    """True when `path` starts with the IMOD magic and declares a 256-byte header."""
    try:
        head, _ = _read_head(path)
    except UsageError:
        return False
    return (
        len(head) == HEAD_LEN
        and head[:4] == MAGIC
        and struct.unpack_from("<I", head, 4)[0] == HEAD_LEN
    )


def read_om_header(path: Path) -> dict[str, Any]:
    """Decode the header fields; raise UsageError when `path` is not a real om.

    `warnings` lists anything odd that does not make the file unusable (unknown version,
    size identity not holding).
    """
    head, size = _read_head(path)
    if len(head) < HEAD_LEN or head[:4] != MAGIC:
        raise UsageError(
            f"{path} is not an Ascend .om file (no IMOD header)",
            hint="convert the ONNX model with atc, or check that the file was copied completely",
        )
    headsize, version = struct.unpack_from("<II", head, 4)
    if headsize != HEAD_LEN:
        raise UsageError(f"{path}: IMOD header size is {headsize}, expected {HEAD_LEN}")
    length = struct.unpack_from("<I", head, 76)[0]
    model_length = struct.unpack_from("<Q", head, 184)[0]
    warnings: list[str] = []
    if version not in KNOWN_VERSIONS:
        warnings.append(f"unknown header version 0x{version:08X}")
    payload = size - HEAD_LEN
    declared = [n for n in (length, model_length) if n > 0]
    if declared and payload < min(declared):
        raise UsageError(
            f"{path} is truncated: its header declares {min(declared)} bytes after the "
            f"{HEAD_LEN}-byte header, the file holds {payload}",
            hint="copy or convert the .om again (the copy stopped before the end)",
        )
    if payload not in (length, model_length):
        warnings.append(
            f"payload is {payload} bytes but the header declares length={length}"
            f" and model_length={model_length}"
        )
    return {
        "magic": "IMOD",
        "headsize": headsize,
        "version": f"0x{version:08X}",
        "length": length,
        "is_encrypt": head[80],
        "is_checksum": head[81],
        "modeltype": MODEL_TYPES.get(head[82], str(head[82])),
        "genmode": "online" if head[83] == 1 else "offline",
        "name": _cstr(head[84:116]),
        "ops": struct.unpack_from("<I", head, 116)[0],
        "om_ir_version": struct.unpack_from("<I", head, 152)[0],
        "model_num": struct.unpack_from("<I", head, 156)[0],
        "platform_version": _cstr(head[160:180]),
        "platform_type": head[180],
        "model_length": model_length,
        "need_check_os_cpu_info": head[192],
        "is_unknow_model": head[193],
        "dynamic": head[193] == 1,
        "file_size": size,
        "warnings": warnings,
    }
