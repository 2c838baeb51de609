from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes.cann import isolate, use_fakes_on_path
from typer.testing import CliRunner

from ascend_quant.cli.app import app

runner = CliRunner()


def test_doctor_with_fake_toolkit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_fakes_on_path(monkeypatch, tmp_path, FAKE_NPU_NAME="910B3")
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["toolkit"]["found"] is True
    assert data["toolkit"]["tools"]["atc"].endswith("fakes/bin/atc")
    assert data["toolkit"]["tools"]["ais_bench"].endswith("-m ais_bench")
    assert data["toolkit"]["npu_visible"] is True
    assert data["toolkit"]["npu_soc"] == "Ascend910B3"
    assert data["auto_backend"] == "atc"
    assert set(data["packages"]) >= {"onnx", "onnxruntime", "numpy", "pillow"}
    assert data["packages"]["onnx"]
    assert "socs" not in data


def test_doctor_without_toolkit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)
    result = runner.invoke(app, ["doctor", "--json", "--socs"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["toolkit"]["found"] is False and data["auto_backend"] == "sim"
    assert data["toolkit"]["npu_visible"] is False
    names = [s["name"] for s in data["socs"]]
    assert "Ascend310P3" in names


def test_doctor_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)
    result = runner.invoke(app, ["doctor", "--socs"])
    assert result.exit_code == 0, result.output
    assert "CANN toolkit" in result.stdout and "set_env.sh" in result.stdout
    assert "Ascend310P3" in result.stdout
