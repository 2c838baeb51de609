"""Pipeline evaluation: the user's function over precision mixes, golden = every component FP32."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tiny_models
from typer.testing import CliRunner

from ascend_quant.cli.app import app
from ascend_quant.errors import UsageError
from ascend_quant.mixes import evaluate_pipeline, load_pipeline_spec
from ascend_quant.report import write_pipeline_report

FUNCTION = '''
import numpy as np

CALLS = []

def run(runners, index):
    """Two components: noise -> first (8 -> 16 px) -> second (16 -> 32 px)."""
    CALLS.append((sorted(runners), index))
    x = np.random.default_rng(index).random((1, 3, 8, 8), dtype=np.float32)
    mid = np.clip(runners["first"].infer({"input": x})["output"], 0.0, 1.0)
    out = runners["second"].infer({"input": mid})["output"]
    return {"image": out, "mid": mid}
'''


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    tiny_models.save(tiny_models.sr_net(hw=8), tmp_path / "first.onnx")
    tiny_models.save(tiny_models.sr_net(hw=16), tmp_path / "second.onnx")
    (tmp_path / "twostage.py").write_text(FUNCTION)
    toml = tmp_path / "pipeline.toml"
    toml.write_text(
        textwrap.dedent(
            f"""
            [pipeline]
            function = "twostage:run"
            samples = 2
            backend = "sim"
            gates = ["image:worst:psnr_db>=30"]
            out = "{tmp_path / "out"}"

            [pipeline.components.first]
            model = "first.onnx"
            precision = "int8"
            build = {{ bench = {{ duration_s = 0.05, min_loop = 1, warmup = 0 }} }}

            [pipeline.components.second]
            model = "second.onnx"
            precision = "fp16"
            build = {{ bench = {{ duration_s = 0.05, min_loop = 1, warmup = 0 }} }}

            [pipeline.mixes]
            "second-w8" = {{ second = "w8" }}
            "all-fp32" = {{ first = "fp32", second = "fp32" }}
            """
        )
    )
    return toml


@pytest.mark.slow
def test_two_components_two_mixes_against_the_fp32_golden(project: Path) -> None:
    spec = load_pipeline_spec(project)
    assert spec.mixes == {
        "declared": {"first": "int8", "second": "fp16"},
        "second-w8": {"first": "int8", "second": "w8"},
        "all-fp32": {"first": "fp32", "second": "fp32"},
    }
    result, outputs = evaluate_pipeline(spec)

    import twostage  # the function's module, imported from beside the TOML

    # golden + 3 mixes, 2 samples each, every call handed both components
    assert len(twostage.CALLS) == 8 and {tuple(c[0]) for c in twostage.CALLS} == {
        ("first", "second")
    }
    assert [c[1] for c in twostage.CALLS[:2]] == [0, 1]
    by_name = {m.name: m for m in result.mixes}
    exact = by_name["all-fp32"].outputs["image"]
    assert exact["cosine"] == 1.0 and exact["rmse"] == 0.0  # same noise, same models
    declared = by_name["declared"].outputs["image"]
    assert 0.99 < declared["cosine"] < 1.0 and declared["psnr_db"] > 30
    assert len(by_name["declared"].per_sample["image"]) == 2
    assert set(by_name["second-w8"].outputs) == {"image", "mid"}
    # the w8 mix changes only the second component: its intermediate equals the declared one's
    np.testing.assert_array_equal(outputs["second-w8"][0]["mid"], outputs["declared"][0]["mid"])
    assert not np.array_equal(outputs["second-w8"][0]["image"], outputs["declared"][0]["image"])
    assert result.passed and result.verdict == "PASSED"
    assert set(result.artifacts["first"]) >= {"fp32", "fp16", "int8", "w8"}
    assert Path(result.artifacts["second"]["w8"]).is_file()

    paths = write_pipeline_report(Path(spec.out), result, outputs, title="two-stage")
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") >= 2 * (1 + 3 + 3)  # 2 image outputs
    assert "|declared − FP32|" in html and "second=w8" in html
    saved = json.loads(paths["json"].read_text())
    assert saved["verdict"] == "PASSED" and len(saved["mixes"]) == 3


@pytest.mark.slow
def test_strict_gate_fails_the_mix_and_the_cli_exits_1(project: Path) -> None:
    text = (
        project.read_text()
        .replace('"second-w8" = { second = "w8" }', "")
        .replace('"all-fp32" = { first = "fp32", second = "fp32" }', "")
    )
    text = text.replace('precision = "int8"', 'precision = "fp32"')
    project.write_text(text)
    argv = ["compare", "--pipeline", "twostage:run", "--config", str(project), "--samples", "1"]
    result = CliRunner().invoke(app, [*argv, "--gate", "image:worst:psnr_db>=200"])
    assert result.exit_code == 1, result.output
    assert "FAILED: declared image: psnr_db" in result.output
    assert "< 200 sample 0" in result.output  # the per-sample gate names the sample
    assert "pipeline.html" in result.output


def test_spec_errors_name_the_fix(project: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[pipeline.components.x]\nmodel = "first.onnx"\nprecision = "int4"\n')
    with pytest.raises(UsageError, match="precision 'int4'"):
        load_pipeline_spec(bad, "twostage:run")
    bad.write_text(project.read_text() + '\n[pipeline.mixes.extra]\nthird = "fp16"\n')
    with pytest.raises(UsageError, match="unknown component"):
        load_pipeline_spec(bad)
    spec = load_pipeline_spec(project, "nosuchmodule:run")
    with pytest.raises(UsageError, match="cannot import pipeline module"):
        evaluate_pipeline(spec)
    result = CliRunner().invoke(app, ["compare", "--pipeline", "twostage:run"])
    assert isinstance(result.exception, UsageError) and "--config" in result.exception.message
