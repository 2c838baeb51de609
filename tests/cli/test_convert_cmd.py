from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes.cann import isolate, make_calib_set, use_fakes_on_path
from typer.testing import CliRunner

from ascend_quant.cli.app import app
from ascend_quant.errors import ToolchainError, UsageError

runner = CliRunner()


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    def install(**env: str) -> None:
        use_fakes_on_path(monkeypatch, tmp_path, **env)

    install()
    return install


def _convert(*args: str):
    return runner.invoke(app, ["convert", *args])


def _error(result, kind: type, exit_code: int):
    """The library error the command raised (main() turns it into `exit_code`)."""
    assert isinstance(result.exception, kind), result.output
    assert result.exception.exit_code == exit_code
    return result.exception


def test_fp16_with_atc(fakes, conv_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "build"
    result = _convert(
        str(conv_model), "--soc", "Ascend310P3", "--backend", "atc", "--out", str(out), "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    om = out / "Ascend310P3" / "om" / "conv_fp16.om"
    assert data["path"] == str(om) and om.read_bytes()[:4] == b"IMOD"
    assert data["details"]["route"] == "fp16"
    argv = data["details"]["commands"][0]["argv"]
    assert f"--model={out / 'model' / 'conv.sim.onnx'}" in argv  # the preflighted model
    assert "--input_shape=input:1,3,16,16" in argv


def test_options_reach_atc(fakes, conv_model: Path, tmp_path: Path) -> None:
    result = _convert(
        str(conv_model),
        "--soc",
        "Ascend310P3",
        "--backend",
        "atc",
        "--out",
        str(tmp_path / "b"),
        "--precision-mode-v2",
        "mixed_float16",
        "--output-type",
        "FP16",
        "--dynamic-batch",
        "1,2,4",
        "--log",
        "info",
        "--json",
    )
    assert result.exit_code == 0, result.output
    argv = json.loads(result.stdout)["details"]["commands"][0]["argv"]
    for flag in (
        "--precision_mode_v2=mixed_float16",
        "--output_type=FP16",
        "--dynamic_batch_size=1,2,4",
        "--log=info",
        "--input_shape=input:-1,3,16,16",
    ):
        assert flag in argv


@pytest.mark.parametrize("route", ["amct", "atc"])
def test_int8_routes(fakes, conv_model: Path, tmp_path: Path, route: str) -> None:
    calib = make_calib_set(tmp_path / "calib")
    result = _convert(
        str(conv_model),
        "--soc",
        "Ascend310P3",
        "--backend",
        "atc",
        "--precision",
        "int8",
        "--calib",
        str(calib),
        "--int8-route",
        route,
        "--out",
        str(tmp_path / "b"),
        "--json",
    )
    assert result.exit_code == 0, result.output
    details = json.loads(result.stdout)["details"]
    assert details["route"] == route and details["precision"] == "int8"
    configs = tmp_path / "b" / "Ascend310P3" / "configs"
    tools = [c["tool"] for c in details["commands"]]
    if route == "amct":
        assert tools == ["amct_onnx", "atc"]
        assert (
            f"--calibration_config={configs / 'amct_config.cfg'}" in details["commands"][0]["argv"]
        )
    else:
        assert tools == ["atc"]
        flag = f"--compression_optimize_conf={configs / 'compression_optimize.cfg'}"
        assert flag in details["commands"][0]["argv"]


def test_int8_auto_route_without_npu(fakes, conv_model: Path, tmp_path: Path) -> None:
    fakes(FAKE_NPU_ABSENT="1")
    calib = make_calib_set(tmp_path / "calib")
    result = _convert(
        str(conv_model),
        "--soc",
        "Ascend310P3",
        "--backend",
        "atc",
        "--precision",
        "int8",
        "--calib",
        str(calib),
        "--out",
        str(tmp_path / "b"),
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["details"]["route"] == "amct"


def test_int8_needs_calibration(fakes, conv_model: Path, tmp_path: Path) -> None:
    result = _convert(
        str(conv_model), "--backend", "atc", "--precision", "int8", "--out", str(tmp_path / "b")
    )
    assert "needs calibration data" in _error(result, UsageError, 2).message


def test_usage_error_exit_code(fakes, conv_model: Path, tmp_path: Path) -> None:
    result = _convert(
        str(conv_model),
        "--backend",
        "atc",
        "--out",
        str(tmp_path / "b"),
        "--precision-mode",
        "force_fp16",
        "--precision-mode-v2",
        "fp16",
    )
    assert "cannot be used together" in _error(result, UsageError, 2).message


def test_toolchain_failure_exit_code(fakes, conv_model: Path, tmp_path: Path) -> None:
    fakes(FAKE_ATC_FAIL="E10016")
    result = _convert(str(conv_model), "--backend", "atc", "--out", str(tmp_path / "b"))
    assert _error(result, ToolchainError, 3).codes == ("E10016",)


def test_atc_backend_without_toolkit(monkeypatch, conv_model: Path, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)
    result = _convert(str(conv_model), "--backend", "atc", "--out", str(tmp_path / "b"))
    assert "set_env.sh" in (_error(result, ToolchainError, 3).hint or "")


def test_unknown_soc(fakes, conv_model: Path, tmp_path: Path) -> None:
    result = _convert(
        str(conv_model), "--soc", "Ascend310p3", "--backend", "atc", "--out", str(tmp_path / "b")
    )
    assert "Ascend310P3" in (_error(result, UsageError, 2).hint or "")


def test_bad_dynamic_image_size(fakes, conv_model: Path, tmp_path: Path) -> None:
    result = _convert(
        str(conv_model),
        "--backend",
        "atc",
        "--dynamic-image-size",
        "16;32,32",
        "--out",
        str(tmp_path / "b"),
    )
    assert "is not H,W" in _error(result, UsageError, 2).message


def test_exit_codes_through_main(fakes, conv_model: Path, tmp_path: Path, capsys) -> None:
    from ascend_quant.cli.app import main

    fakes(FAKE_ATC_FAIL="E10001")
    with pytest.raises(SystemExit) as info:
        main(["convert", str(conv_model), "--backend", "atc", "--out", str(tmp_path / "b")])
    assert info.value.code == 3
    err = capsys.readouterr().err
    assert "E10001" in err and "hint:" in err and "conv_fp16.atc.log" in err


def test_sim_backend(monkeypatch, conv_model: Path, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)
    result = _convert(str(conv_model), "--backend", "sim", "--out", str(tmp_path / "b"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["backend"] == "sim" and Path(data["path"]).is_file()
    assert not (tmp_path / "b" / "Ascend310P3" / "configs").exists()
