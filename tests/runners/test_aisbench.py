"""AisBenchRunner against a stand-in for ais_bench's Python API (InferSession)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from ascend_quant.errors import ToolchainError, UsageError
from ascend_quant.runners.aisbench import AisBenchRunner


class _Desc:
    def __init__(self, name: str, datatype: str, shape: list[int]) -> None:
        self.name, self.datatype, self.shape = name, datatype, shape


class _Session:
    freed = False

    def __init__(self, device: int, path: str) -> None:
        if path.endswith("bad.om"):
            raise RuntimeError("ACL error 507011\nmore")
        self.device = device

    def get_inputs(self):  # type: ignore[no-untyped-def]
        return [_Desc("x", "dtype.float32", [1, 4])]

    def get_outputs(self):  # type: ignore[no-untyped-def]
        return [_Desc("y", "dtype.float16", [1, -1])]

    def infer(self, feeds, mode="static"):  # type: ignore[no-untyped-def]
        assert mode == "static"
        return [(feeds[0] * 2).astype(np.float16)]

    def free_resource(self) -> None:
        type(self).freed = True


@pytest.fixture
def fake_aisbench(monkeypatch):  # type: ignore[no-untyped-def]
    interface = types.ModuleType("ais_bench.infer.interface")
    interface.InferSession = _Session  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ais_bench", types.ModuleType("ais_bench"))
    monkeypatch.setitem(sys.modules, "ais_bench.infer", types.ModuleType("ais_bench.infer"))
    monkeypatch.setitem(sys.modules, "ais_bench.infer.interface", interface)
    return interface


def test_infers_through_infer_session(tmp_path, fake_aisbench) -> None:
    om = tmp_path / "m.om"
    om.write_bytes(b"IMOD")
    with AisBenchRunner(om, device=1) as runner:
        assert runner.input_specs()[0].dtype == "float32"
        assert runner.output_specs()[0].shape == (1, "?")
        out = runner.infer({"x": np.ones((1, 4), np.float32)})
        np.testing.assert_array_equal(out["y"], np.full((1, 4), 2, np.float16))
        with pytest.raises(UsageError, match="cannot expose intermediate tensors"):
            runner.with_outputs(["h"])
    assert _Session.freed


def test_load_failure_is_a_toolchain_error(tmp_path, fake_aisbench) -> None:
    om = tmp_path / "bad.om"
    om.write_bytes(b"IMOD")
    with pytest.raises(ToolchainError, match="507011"):
        AisBenchRunner(om)


def test_missing_ais_bench_says_how_to_install(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ais_bench.infer.interface", None)
    om = tmp_path / "m.om"
    om.write_bytes(b"IMOD")
    with pytest.raises(ToolchainError, match="not importable") as info:
        AisBenchRunner(om)
    assert "aclruntime" in (info.value.hint or "")
