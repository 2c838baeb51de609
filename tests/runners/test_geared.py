"""GearedRunner: a gear model accepts only its gears' shapes, on ORT and through ais_bench's
InferSession (in the gear's inference mode)."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import tiny_models

from ascend_quant.errors import UsageError
from ascend_quant.gears import make_gears
from ascend_quant.runners.aisbench import AisBenchRunner
from ascend_quant.runners.geared import GearedRunner
from ascend_quant.runners.ort import OrtRunner

GEARS = make_gears("image_size", ((16, 32), (16, 64)), {"image": (1, 1, 16, "W")}, {})


class _Desc:
    def __init__(self, name: str, shape: list[int]) -> None:
        self.name, self.datatype, self.shape = name, "dtype.float32", shape


class _Session:
    modes: ClassVar[list[str]] = []

    def __init__(self, device: int, path: str) -> None:
        self.device = device

    def get_inputs(self):  # type: ignore[no-untyped-def]
        return [_Desc("image", [1, 1, -1, -1])]

    def get_outputs(self):  # type: ignore[no-untyped-def]
        return [_Desc("logits", [1, -1, 12])]

    def infer(self, feeds, mode="static"):  # type: ignore[no-untyped-def]
        type(self).modes.append(mode)
        return [np.zeros((1, feeds[0].shape[3], 12), np.float32)]


def test_ort_runner_at_its_gears(tmp_path: Path) -> None:
    model = tiny_models.text_recognizer(height=16)
    with GearedRunner(OrtRunner(model), GEARS) as runner:
        assert runner.infer({"image": np.zeros((1, 1, 16, 64), np.float32)})["logits"].shape == (
            1,
            64,
            12,
        )
        with pytest.raises(UsageError, match="not one of its image_size gears"):
            runner.infer({"image": np.zeros((1, 1, 16, 40), np.float32)})
        at = runner.at_gear("16x32")
        assert at.input_specs()[0].shape == (1, 1, 16, 32)
        assert at.with_outputs(["r"]).input_specs()[0].shape == (1, 1, 16, 32)


def test_aisbench_runner_uses_the_gear_mode(tmp_path: Path, monkeypatch) -> None:
    interface = types.ModuleType("ais_bench.infer.interface")
    interface.InferSession = _Session  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ais_bench", types.ModuleType("ais_bench"))
    monkeypatch.setitem(sys.modules, "ais_bench.infer", types.ModuleType("ais_bench.infer"))
    monkeypatch.setitem(sys.modules, "ais_bench.infer.interface", interface)
    om = tmp_path / "m.om"
    om.write_bytes(b"IMOD")
    runner = GearedRunner(AisBenchRunner(om, mode="dymhw"), GEARS).at_gear("16x64")
    out = runner.infer({"image": np.zeros((1, 1, 16, 64), np.float32)})
    assert out["logits"].shape == (1, 64, 12) and _Session.modes == ["dymhw"]
    with pytest.raises(UsageError, match="not one of its image_size gears"):
        runner.infer({"image": np.zeros((1, 1, 16, 48), np.float32)})
    assert _Session.modes == ["dymhw"]  # refused before the session saw it
