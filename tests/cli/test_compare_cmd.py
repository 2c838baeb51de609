"""`ascend-quant compare` on the command line (fake backends: outputs perturbed on purpose)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import tiny_models
from fake_backend import Perturb, install, make_om, write_inputs
from typer.testing import CliRunner

from ascend_quant.cli.app import app
from ascend_quant.cli.compare_cmd import parse_threshold_overrides
from ascend_quant.config import Thresholds
from ascend_quant.errors import UsageError

runner = CliRunner()


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    model = tiny_models.save(tiny_models.sr_net(), tmp_path / "sr.onnx")
    inputs = write_inputs(tmp_path / "eval", (1, 3, 16, 16), 3)
    fp16 = make_om(tmp_path / "sr_fp16.om")
    int8 = make_om(tmp_path / "sr_int8.om")
    install(
        monkeypatch,
        model,
        {"sr_fp16.om": Perturb(noise=0.001), "sr_int8.om": Perturb(noise=0.3)},
    )
    return model, inputs, fp16, int8


def test_passing_compare_exits_0_and_writes_json(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, inputs, fp16, _ = setup
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["compare", str(model), str(fp16), "--input", str(inputs), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output.splitlines()[-1]
    assert "cosine similarity" in result.output
    data = json.loads((out / "compare.json").read_text())
    assert data["passed"] is True and data["candidates"][0]["name"] == "sr_fp16"


def test_failing_compare_exits_1_with_verdict(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, inputs, fp16, int8 = setup
    out = tmp_path / "out"
    args = [
        "compare",
        str(model),
        str(fp16),
        str(int8),
        "-i",
        str(inputs),
        "-o",
        str(out),
        "--report",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("FAILED: sr_int8 output cosine ")
    assert re.fullmatch(
        r"FAILED: sr_int8 output cosine 0\.\d+ < 0\.99 \(\+\d+ other failed gates\)", last
    )
    assert (out / "report.html").is_file() and (out / "report.json").is_file()


def test_json_mode_and_threshold_flags(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, inputs, _, int8 = setup
    base = [
        "compare",
        str(model),
        str(int8),
        "-i",
        str(inputs),
        "-o",
        str(tmp_path / "o"),
        "--json",
    ]
    result = runner.invoke(app, base)
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["passed"] is False and data["verdict"].startswith("FAILED")
    loose = [
        "--cosine-min", "0.1", "--rel-euclidean-max", "5", "--kl-max", "1",
        "--rmse-max", "10", "--mean-rel-error-max", "1000",
        "--gate", "worst:psnr_db>=0", "--gate", "output:worst:ssim>=-1",
    ]  # fmt: skip
    result = runner.invoke(app, [*base, *loose])
    assert result.exit_code == 0, result.stdout
    assert json.loads(result.stdout)["thresholds"]["cosine_min"] == 0.1
    # a per-output override tightens one metric again
    result = runner.invoke(app, [*base, *loose, "--threshold", "output:cosine=0.999"])
    assert result.exit_code == 1
    assert "cosine" in json.loads(result.stdout)["verdict"]


def test_same_inputs_warning_and_bad_threshold(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, inputs, fp16, _ = setup
    args = [
        "compare",
        str(model),
        str(fp16),
        "-i",
        str(inputs),
        "-o",
        str(tmp_path / "o"),
        "--json",
    ]
    result = runner.invoke(app, [*args, "--calib", str(inputs)])
    assert json.loads(result.stdout)["warnings"][0].startswith("3 of 3 evaluation samples")
    result = runner.invoke(app, [*args, "--threshold", "output:cosine"])
    assert isinstance(result.exception, UsageError)


def test_parse_threshold_overrides() -> None:
    base = Thresholds(kl_max=0.01)
    parsed = parse_threshold_overrides(["a:cosine=0.9", "a:kl_max=0.1", "b/x:0:rmse=2"], base)
    assert parsed["a"] == Thresholds(cosine_min=0.9, kl_max=0.1)
    assert parsed["b/x:0"] == Thresholds(kl_max=0.01, rmse_max=2.0)
    for bad in ("nocolon", "a:unknown=1", "a:cosine=x", ":cosine=1"):
        with pytest.raises(UsageError):
            parse_threshold_overrides([bad], base)


def test_threshold_out_of_range_is_a_usage_error(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, inputs, fp16, _ = setup
    args = ["compare", str(model), str(fp16), "-i", str(inputs), "-o", str(tmp_path / "o")]
    for bad in (
        ["--cosine-min", "1.5"],
        ["--kl-max", "-1"],
        ["--gate", "worst:ssim>=7"],
        ["--threshold", "output:cosine=nan"],
        ["--output-range", "1,0"],
        ["--task", "pictures"],
    ):
        result = runner.invoke(app, [*args, *bad])
        assert isinstance(result.exception, UsageError), (bad, result.output)


def test_nan_candidate_exits_1_naming_the_reason(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    model = tiny_models.save(tiny_models.sr_net(), tmp_path / "sr.onnx")
    inputs = write_inputs(tmp_path / "eval", (1, 3, 16, 16), 3)
    fp16 = make_om(tmp_path / "sr_fp16.om")
    install(monkeypatch, model, {"sr_fp16.om": Perturb(noise=0.0, nan_sample="sample_2")})
    result = runner.invoke(
        app, ["compare", str(model), str(fp16), "-i", str(inputs), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("FAILED: sr_fp16 output cosine NaN (needs >= 0.99)")
    assert "NaN/Inf" in last


@pytest.mark.slow
def test_compare_at_an_input_shape_overriding_the_declared_size(tmp_path: Path) -> None:
    """An .om built with --input-shape changing the declared 24x24 to 32x32 is compared with
    the same --input-shape: the golden is the model at 32x32 (the source cannot take the feeds)."""
    from ascend_quant.config import BuildConfig, merge
    from ascend_quant.pipeline import build

    model = tiny_models.save(tiny_models.sr_net(hw=24), tmp_path / "sr.onnx")
    settings = {"backend": "sim", "out": str(tmp_path / "ws"), "input_shape": "input:1,3,32,32"}
    settings |= {"bench": {"warmup": 1, "loop": 2}, "calib": {"limit": 4, "jobs": 1}}
    built = build(model, merge(BuildConfig(), settings))
    int8 = built.socs[0].artifacts["int8"]
    samples = tmp_path / "ws" / "eval" / "input" / "samples"
    args = ["compare", str(model), int8, "--input", str(samples), "--out", str(tmp_path / "c")]
    result = runner.invoke(app, [*args, "--input-shape", "input:1,3,32,32", "--json"])
    assert result.exit_code == 0, result.output
    (candidate,) = json.loads(result.stdout)["candidates"]
    recorded = {Path(c["model"]).name: c for c in built.socs[0].compare["candidates"]}
    assert candidate["cosine_min"] == pytest.approx(recorded["sr_int8.om"]["cosine_min"])
