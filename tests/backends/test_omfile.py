from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ascend_quant.backends.omfile import is_real_om, read_om_header
from ascend_quant.errors import UsageError


def _om(path: Path, payload: bytes = b"x" * 100, version: int = 0x20000000, **over: int) -> Path:
    head = bytearray(256)
    struct.pack_into("<4sII", head, 0, b"IMOD", over.get("headsize", 256), version)
    struct.pack_into("<I", head, 76, over.get("length", len(payload)))
    head[84 : 84 + 32] = b"resnet".ljust(32, b"\0")
    head[160:180] = b"Ascend310P3".ljust(20, b"\0")
    struct.pack_into("<Q", head, 184, over.get("model_length", len(payload)))
    head[193] = over.get("dynamic", 0)
    path.write_bytes(bytes(head) + payload)
    return path


def test_reads_the_header_fields(tmp_path: Path) -> None:
    om = _om(tmp_path / "a.om", dynamic=1)
    assert is_real_om(om)
    header = read_om_header(om)
    assert header["name"] == "resnet"
    assert header["platform_version"] == "Ascend310P3"
    assert header["version"] == "0x20000000"
    assert header["length"] == 100 and header["model_length"] == 100
    assert header["dynamic"] is True
    assert header["warnings"] == []


def test_old_version_is_accepted(tmp_path: Path) -> None:
    assert read_om_header(_om(tmp_path / "a.om", version=0x10000000))["warnings"] == []


def test_unknown_version_and_size_mismatch_are_warnings(tmp_path: Path) -> None:
    om = _om(tmp_path / "a.om", version=0x30000000, length=5, model_length=7)
    header = read_om_header(om)
    assert any("unknown header version" in w for w in header["warnings"])
    assert any("payload is 100 bytes" in w for w in header["warnings"])


def test_either_length_field_may_match(tmp_path: Path) -> None:
    om = _om(tmp_path / "a.om", length=0)  # model_length still matches
    assert read_om_header(om)["warnings"] == []


@pytest.mark.parametrize("data", [b"", b"IMOD", b"NOPE" + bytes(300), b"PK\x03\x04" + bytes(300)])
def test_non_om_files(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "x.om"
    path.write_bytes(data)
    assert not is_real_om(path)
    with pytest.raises(UsageError, match=r"not an Ascend \.om"):
        read_om_header(path)


def test_wrong_headsize(tmp_path: Path) -> None:
    om = _om(tmp_path / "a.om", headsize=128)
    assert not is_real_om(om)
    with pytest.raises(UsageError, match="header size is 128"):
        read_om_header(om)


def test_missing_file(tmp_path: Path) -> None:
    assert not is_real_om(tmp_path / "nope.om")
    with pytest.raises(UsageError, match="cannot read"):
        read_om_header(tmp_path / "nope.om")


def test_a_truncated_om_is_an_error(tmp_path: Path) -> None:
    """A header that claims more bytes than the file holds: the copy stopped half-way."""
    om = _om(tmp_path / "a.om")
    om.write_bytes(om.read_bytes()[:-40])
    with pytest.raises(UsageError, match="truncated") as info:
        read_om_header(om)
    assert info.value.hint
