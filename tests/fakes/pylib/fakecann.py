"""Shared code of the CANN stand-ins (stdlib only: the system python has no numpy or onnx).

- a minimal protobuf wire reader for the ONNX graph inputs/outputs atc and amct_onnx check;
- the 256-byte IMOD header writer/reader (reference §9) and the JSON payload the stand-ins
  put after it so that the fake ais_bench knows the model's tensors;
- the fake NPU's identity (FAKE_NPU_NAME, FAKE_NPU_ABSENT).
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time

# ONNX TensorProto.DataType -> (name, itemsize)
DTYPES = {
    1: ("float32", 4),
    2: ("uint8", 1),
    3: ("int8", 1),
    4: ("uint16", 2),
    5: ("int16", 2),
    6: ("int32", 4),
    7: ("int64", 8),
    9: ("bool", 1),
    10: ("float16", 2),
    11: ("float64", 8),
    12: ("uint32", 4),
    13: ("uint64", 8),
}
ITEMSIZE = {name: size for name, size in DTYPES.values()}
ITEMSIZE["float"] = 4

KNOWN_SOCS = (
    "Ascend310",
    "Ascend310P1",
    "Ascend310P3",
    "Ascend310P5",
    "Ascend310P7",
    "Ascend310B1",
    "Ascend910",
    "Ascend910A",
    "Ascend910B",
    "Ascend910ProA",
    "Ascend910ProB",
    "Ascend910PremiumA",
    "Ascend910B1",
    "Ascend910B2",
    "Ascend910B3",
    "Ascend910B4",
    "Ascend910_9391",
    "Ascend910_9381",
    "Ascend910_9372",
    "Ascend910_9362",
    "Ascend035",
)


# ------------------------------------------------------------------ protobuf wire format


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(buf: bytes):
    """Yield (field number, wire type, value) for one message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _value_info(buf: bytes) -> dict:
    info = {"name": "", "dtype": "float32", "shape": []}
    for number, _, value in fields(buf):
        if number == 1:
            info["name"] = value.decode()
        elif number == 2:  # TypeProto
            for n2, _, v2 in fields(value):
                if n2 != 1:  # tensor_type
                    continue
                for n3, _, v3 in fields(v2):
                    if n3 == 1:
                        info["dtype"] = DTYPES.get(v3, ("float32", 4))[0]
                    elif n3 == 2:  # TensorShapeProto
                        for n4, _, v4 in fields(v3):
                            if n4 != 1:
                                continue
                            dim: object = "?"
                            for n5, _, v5 in fields(v4):
                                if n5 == 1:
                                    dim = v5
                                elif n5 == 2:
                                    dim = v5.decode()
                            info["shape"].append(dim)
    return info


def onnx_io(path: str) -> tuple[list[dict], list[dict]]:
    """(graph inputs that are not initializers, graph outputs) of an ONNX file."""
    with open(path, "rb") as handle:
        data = handle.read()
    graph = b""
    for number, wire, value in fields(data):
        if number == 7 and wire == 2:
            graph = value
    if not graph:
        raise ValueError("no graph in the model")
    inputs, outputs, inits = [], [], set()
    for number, _, value in fields(graph):
        if number == 11:
            inputs.append(_value_info(value))
        elif number == 12:
            outputs.append(_value_info(value))
        elif number == 5:
            for n2, _, v2 in fields(value):
                if n2 == 8:
                    inits.add(v2.decode())
    return [i for i in inputs if i["name"] not in inits], outputs


# ------------------------------------------------------------------ .om files

HEAD_LEN = 256


def write_om(path: str, name: str, soc: str, info: dict, dynamic: bool, good: bool = True) -> None:
    payload = json.dumps(info, sort_keys=True).encode()
    # partition table first: num=1, {type=MODEL_DEF(0), mem_offset, mem_size}
    table = struct.pack("<IIQQ", 1, 0, 24, len(payload))
    body = table + payload
    head = bytearray(HEAD_LEN)
    struct.pack_into("<4sII", head, 0, b"IMOD" if good else b"NOPE", HEAD_LEN, 0x20000000)
    struct.pack_into("<I", head, 76, len(body))
    head[82] = 1  # modeltype: standard
    head[84 : 84 + 32] = name.encode()[:31].ljust(32, b"\0")
    struct.pack_into("<I", head, 116, len(info.get("nodes", [])) or 3)
    struct.pack_into("<I", head, 156, 1)  # model_num
    head[160:180] = soc.encode()[:19].ljust(20, b"\0")
    struct.pack_into("<Q", head, 184, len(body))
    head[193] = 1 if dynamic else 0
    with open(path, "wb") as handle:
        handle.write(bytes(head) + body)


def read_om(path: str) -> dict | None:
    """The JSON payload of an om written by write_om, or None if it is not one."""
    with open(path, "rb") as handle:
        data = handle.read()
    if len(data) < HEAD_LEN + 24 or data[:4] != b"IMOD":
        return None
    try:
        return json.loads(data[HEAD_LEN + 24 :])
    except ValueError:
        return None


# ------------------------------------------------------------------ the fake NPU


def npu_name() -> str | None:
    """The chip name npu-smi shows (`310P3`), or None when no NPU is visible."""
    if os.environ.get("FAKE_NPU_ABSENT") == "1":
        return None
    return os.environ.get("FAKE_NPU_NAME", "310P3")


def npu_soc() -> str | None:
    name = npu_name()
    if name is None:
        return None
    return name if name.startswith("Ascend") else "Ascend" + name


# ------------------------------------------------------------------ paths


def relative_paths(values: dict[str, str]) -> list[tuple[str, str]]:
    """(flag, path) for each relative path among `values`, whose entries may be `;`/`,` lists.

    ascend-quant runs every tool in a directory of its own (atc's work dir, ais_bench's output
    dir), so a relative path there names a file the user never meant: real atc reports it as
    missing or writes to the wrong place. The stand-ins refuse every relative path outright, so
    a test catches the bug even when the relative path happens to resolve.
    """
    bad = []
    for flag, value in values.items():
        for part in value.replace(";", ",").split(","):
            if part.strip() and not os.path.isabs(part.strip()):
                bad.append((flag, part.strip()))
    return bad


def stamp() -> str:
    return time.strftime("%Y-%m-%d-%H:%M:%S")


def emit(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
