from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ascend_quant.backends import backend_for_om
from ascend_quant.backends.simfile import (
    MAGIC,
    is_sim_om,
    read_sim_metadata,
    read_sim_om,
    write_sim_om,
)
from ascend_quant.errors import UsageError


def _real_om(path: Path) -> Path:
    head = bytearray(256)
    head[0:4] = b"IMOD"
    struct.pack_into("<I", head, 4, 256)
    struct.pack_into("<I", head, 8, 0x20000000)
    path.write_bytes(bytes(head) + b"\0" * 64)
    return path


def test_round_trip(tmp_path):
    meta = {"precision": "int8", "tensors": {"x": {"scale": [0.5], "zero_point": [-3]}}}
    path = write_sim_om(tmp_path / "m_int8.om", meta, b"onnx-bytes")
    assert is_sim_om(path)
    assert read_sim_om(path) == (meta, b"onnx-bytes")
    assert read_sim_metadata(path) == meta
    assert [p.name for p in tmp_path.iterdir()] == ["m_int8.om"]  # no temp file left


def test_never_imod(tmp_path):
    path = write_sim_om(tmp_path / "a.om", {}, b"")
    data = path.read_bytes()
    assert data.startswith(MAGIC) and not data.startswith(b"IMOD")
    assert b"IMOD" not in MAGIC


def test_real_om_is_a_clear_error(tmp_path):
    real = _real_om(tmp_path / "real.om")
    assert not is_sim_om(real)
    with pytest.raises(UsageError, match=r"real Ascend \.om") as info:
        read_sim_om(real)
    assert "--backend atc" in (info.value.hint or "")


def test_other_files_and_truncation(tmp_path):
    other = tmp_path / "x.om"
    other.write_bytes(b"hello world, not a model at all")
    with pytest.raises(UsageError, match="not an ascend-quant simulated"):
        read_sim_om(other)
    good = write_sim_om(tmp_path / "g.om", {"a": 1}, b"0123456789")
    cut = tmp_path / "cut.om"
    cut.write_bytes(good.read_bytes()[:-3])
    with pytest.raises(UsageError, match="its header says") as info:
        read_sim_om(cut)
    assert "truncated or damaged" in (info.value.hint or "")


def test_future_version_is_refused(tmp_path):
    path = write_sim_om(tmp_path / "v.om", {}, b"")
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 8, 99)
    path.write_bytes(bytes(data))
    with pytest.raises(UsageError, match="format version 99"):
        read_sim_om(path)


def test_dispatch_on_container(tmp_path):
    assert backend_for_om(write_sim_om(tmp_path / "s.om", {}, b"")).name == "sim"
    with pytest.raises(UsageError, match="neither a real"):
        other = tmp_path / "o.om"
        other.write_bytes(b"junk")
        backend_for_om(other)
