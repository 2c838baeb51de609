"""`analyze` and `build --analyze` end to end on the simulated backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tiny_models
from typer.testing import CliRunner

from ascend_quant.cli import build_cmd
from ascend_quant.cli.app import app

runner = CliRunner()


@pytest.fixture
def sr_onnx(tmp_path: Path) -> Path:
    return tiny_models.save(tiny_models.sr_net(hw=24), tmp_path / "sr.onnx")


def _args(command: str, model: Path, tmp_path: Path) -> list[str]:
    return [
        command, str(model), "--soc", "Ascend310P3", "--backend", "sim",
        "--out", str(tmp_path / "ws"), "--limit", "4",
    ]  # fmt: skip


@pytest.mark.slow
def test_analyze_ranks_layers_and_writes_the_fix_files(sr_onnx: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, _args("analyze", sr_onnx, tmp_path))
    assert result.exit_code == 0, result.output
    assert "INT8 layers, worst first" in result.output and "conv" in result.output
    reports = tmp_path / "ws" / "Ascend310P3" / "reports"
    data = json.loads((reports / "analysis.json").read_text())
    assert set(data["ranking"]["int8"]) == {"conv1", "conv2"}
    assert data["layers"]["fp16"][0]["name"] == "conv1"
    assert (reports / "skip_layers.toml").read_text().startswith("[quant]\nskip_layers = [")
    html = (reports / "report.html").read_text()
    assert 'id="layer-plot"' in html and "Per-layer error" in html
    assert not (reports / "bench.json").exists()  # analyze neither benchmarks nor compares

    as_json = runner.invoke(app, [*_args("analyze", sr_onnx, tmp_path), "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert (
        json.loads(as_json.stdout)["ranking"]["int8"] == data["ranking"]["int8"]
    )  # stderr: progress


@pytest.mark.slow
def test_build_analyze_adds_the_section_to_a_full_build(sr_onnx: Path, tmp_path: Path) -> None:
    args = [*_args("build", sr_onnx, tmp_path), "--loop", "3", "--warmup", "1", "--analyze"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "INT8 layers, worst first" in result.output and "PASSED" in result.output
    reports = tmp_path / "ws" / "Ascend310P3" / "reports"
    assert (reports / "analysis.json").is_file() and (reports / "compare.json").is_file()
    report = json.loads((reports / "report.json").read_text())
    assert report["analysis"]["ranking"]["int8"]


def test_the_ranked_table_shows_whole_layer_names_in_80_columns(capsys, monkeypatch) -> None:
    monkeypatch.setattr(build_cmd.console, "width", 80)
    name = "/blocks/blocks.0/attention/projection/MatMul"
    layer = {"name": name, "op_type": "MatMul", "isolated_sqnr_db": 40.3, "clip_fraction": 0.0}
    analysis = {"layers": {"fp16": [layer]}, "ranking": {"fp16": [name]}}
    build_cmd.print_analysis(analysis, "vit.onnx on Ascend310P3")
    rows = [line.split("│") for line in capsys.readouterr().out.splitlines()]
    first_cells = "".join(r[1].strip() for r in rows if len(r) > 2)  # a folded name spans rows
    assert name in first_cells
