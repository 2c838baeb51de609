"""ATC-native INT8: the N in compression_optimize.cfg's input_shape, the N of the .bin it names
and the N of atc_int8.sh's --input_shape are one N, the model's (reference §3.1)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import tiny_models
from fakes.cann import make_calib_set, use_fakes_on_path
from harness import refused, run_cli

from ascend_quant import prototext


def _rendered(configs: Path) -> tuple[str, str, int]:
    """(cfg input_shape, script --input_shape, bytes of the cfg's calibration .bin)."""
    calibration = prototext.parse((configs / "compression_optimize.cfg").read_text())["calibration"]
    script = (configs / "atc_int8.sh").read_text()
    flag = re.search(r"--input_shape=(\S+)", script)
    assert flag is not None
    return (
        calibration["input_shape"],
        flag.group(1),
        Path(calibration["input_data_dir"]).stat().st_size,
    )


@pytest.mark.parametrize("model_n, calib_batch", [(1, 4), (2, 2), (1, 1)])
def test_one_batch_everywhere(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model_n: int, calib_batch: int
) -> None:
    model = tiny_models.save(tiny_models.conv_net(batch=model_n), tmp_path / "conv.onnx")
    calib = make_calib_set(tmp_path / "calib", samples=4, batch=calib_batch)
    out = tmp_path / "cfg"
    code, _, err = run_cli(
        capsys,
        "config",
        str(model),
        "--soc",
        "Ascend310P3",
        "--calib",
        str(calib),
        "--out",
        str(out),
    )
    assert code == 0, err
    cfg_shape, script_shape, size = _rendered(out)
    assert cfg_shape == script_shape == f"input:{model_n},3,16,16"
    assert size == model_n * 3 * 16 * 16 * 4
    if model_n != calib_batch:
        assert "calibrates on the first sample only" in err


def test_a_batch_the_set_cannot_give_is_refused_with_the_fix(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model = tiny_models.save(tiny_models.conv_net(batch=2), tmp_path / "conv.onnx")
    calib = make_calib_set(tmp_path / "calib", shape=(1, 3, 16, 16), samples=4, batch=4)
    out = tmp_path / "cfg"
    args = ["config", str(model), "--soc", "Ascend310P3", "--calib", str(calib), "--out", str(out)]
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err  # the amct route still serves it; the ATC-native files are left out
    assert not (out / "compression_optimize.cfg").exists() and not (out / "atc_int8.sh").exists()
    assert "--calib-batch 2" in err
    project = tmp_path / "ascend-quant.toml"
    project.write_text('[atc]\nint8_route = "atc"\n')
    err = refused(capsys, *args, "--config", str(project), "--out", str(tmp_path / "cfg2"))
    assert "--calib-batch 2" in err and "N=2" in err


def test_atc_calibrates_with_the_models_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the stand-in atc, which fails when the two N differ (as the reference says)."""
    use_fakes_on_path(monkeypatch, tmp_path)
    model = tiny_models.save(tiny_models.conv_net(), tmp_path / "conv.onnx")
    calib = make_calib_set(tmp_path / "calib", samples=4, batch=4)
    code, out, err = run_cli(
        capsys, "convert", str(model), "--soc", "Ascend310P3", "--backend", "atc",
        "--precision", "int8", "--int8-route", "atc", "--calib", str(calib),
        "--out", str(tmp_path / "ws"), "--json",
    )  # fmt: skip
    assert code == 0, err
    details = json.loads(out)["details"]
    assert details["route"] == "atc"
    assert "--input_shape=input:1,3,16,16" in details["commands"][0]["argv"]
