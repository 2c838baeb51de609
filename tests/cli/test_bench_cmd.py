"""`ascend-quant bench` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tiny_models
from fake_backend import Perturb, install, make_om
from typer.testing import CliRunner

from ascend_quant.cli.app import app

runner = CliRunner()


@pytest.fixture
def oms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    model = tiny_models.save(tiny_models.conv_net(), tmp_path / "m.onnx")
    install(
        monkeypatch,
        model,
        {"m_fp16.om": Perturb(latency_ms=3.0), "m_int8.om": Perturb(latency_ms=1.5)},
    )
    return [make_om(tmp_path / "m_fp16.om", 2000), make_om(tmp_path / "m_int8.om", 1000)]


def test_table_side_by_side(oms: list[Path]) -> None:
    result = runner.invoke(app, ["bench", *map(str, oms), "--loop", "4", "--warmup", "0"])
    assert result.exit_code == 0, result.output
    assert "m_fp16.om" in result.output and "m_int8.om" in result.output
    assert "simulated on CPU" in result.output
    assert "2.00×" in result.output  # speedup of the second model
    assert "0.50×" in result.output  # size ratio


def test_json_and_out_file(oms: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = [
        "bench",
        *map(str, oms),
        "--loop",
        "6",
        "--batch-size",
        "2",
        "--json",
        "--out",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == json.loads(out.read_text())
    assert data["config"]["loop"] == 6
    assert data["rows"][0]["result"]["batch_size"] == 2
    assert data["rows"][1]["speedup"] == pytest.approx(2.0)
    assert data["rows"][0]["result"]["latency_ms"]["count"] == 6


def test_bad_loop_is_a_usage_error(oms: list[Path]) -> None:
    from ascend_quant.errors import UsageError

    result = runner.invoke(app, ["bench", str(oms[0]), "--loop", "0"])
    assert isinstance(result.exception, UsageError)
