"""The gear flags on config/convert through the real entry point: scripts, errors, exit codes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import tiny_models

sys.path.insert(0, str(Path(__file__).parent))
from clirun import run_cli


def test_config_renders_gear_scripts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tiny_models.save(tiny_models.token_net(), tmp_path / "tok.onnx")
    code, _, err = run_cli(
        capsys,
        "config", str(model), "--soc", "Ascend310P3", "--out", str(tmp_path / "cfg"),
        "--dynamic-dims", "16;32;64", "--input-format", "ND",
    )  # fmt: skip
    assert code == 0, err
    script = (tmp_path / "cfg" / "atc_fp16.sh").read_text()
    assert "'--dynamic_dims=16;32;64'" in script  # shell-quoted: ';' ends a command
    assert "--input_shape=tokens:1,-1,4" in script and "--input_format=ND" in script
    assert "FP16, dims gears 16 32 64" in script


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--dynamic-dims", "16;32", "--dynamic-batch", "1,2", "--input-format", "ND"), "E10009"),
        (("--dynamic-dims", "16;32"), "needs --input-format ND"),
        (("--dynamic-dims", "16", "--input-format", "ND"), "needs 2 to 100"),
        (("--dynamic-batch", "1,2"), "'seq') but --dynamic-batch does not cover it"),
        (("--dynamic-batch", "1,2", "--input-shape", "tokens:1,-1,4"), "E10018"),
    ],
)
def test_gear_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: tuple[str, ...], message: str
) -> None:
    model = tiny_models.save(tiny_models.token_net(), tmp_path / "tok.onnx")
    code, _, err = run_cli(
        capsys, "config", str(model), "--soc", "Ascend310P3", "--out", str(tmp_path / "c"), *flags
    )
    assert code == 2 and message in err and "hint:" in err


def test_aipp_with_dims_gears(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tiny_models.save(tiny_models.token_net(), tmp_path / "tok.onnx")
    code, _, err = run_cli(
        capsys,
        "config", str(model), "--soc", "Ascend310P3", "--out", str(tmp_path / "c"),
        "--dynamic-dims", "16;32", "--input-format", "ND", "--aipp",
    )  # fmt: skip
    assert code == 2 and "AIPP" in err and "dynamic_dims" in err


def test_toml_gears(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tiny_models.save(tiny_models.text_recognizer(height=32), tmp_path / "ocr.onnx")
    project = tmp_path / "ascend-quant.toml"
    project.write_text('[gears]\nimage_size = [[32, 64], [32, 128]]\ncalib_gear = "32x64"\n')
    code, _, err = run_cli(
        capsys,
        "config", str(model), "--soc", "Ascend310P3", "--out", str(tmp_path / "c"),
        "--config", str(project),
    )  # fmt: skip
    assert code == 0, err
    script = (tmp_path / "c" / "atc_fp16.sh").read_text()
    assert "'--dynamic_image_size=32,64;32,128'" in script
    assert "--input_shape=image:1,1,-1,-1" in script


def test_inspect_suggests_width_gears(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from PIL import Image

    model = tiny_models.save(tiny_models.text_recognizer(height=32), tmp_path / "ocr.onnx")
    lines = tmp_path / "lines"
    lines.mkdir()
    for i, (h, w) in enumerate([(32, 100), (32, 150), (64, 400), (32, 250), (32, 90)]):
        Image.new("L", (w, h), color=200).save(lines / f"line{i}.png")
    code, out, err = run_cli(capsys, "inspect", str(model), "--calib", str(lines))
    assert code == 0, err
    assert "3 ('W')" in out and "width at height 32" in out
    assert 'suggested: --dynamic-image-size "32,128;32,160;32,224;32,256"' in out
    code, out, err = run_cli(capsys, "inspect", str(model), "--calib", str(lines), "--json")
    record = json.loads(out)
    assert record["dynamic_dims"] == {"image": [{"dim": 3, "name": "W"}]}
    assert record["suggested_gears"][0]["values"][-1] == [32, 256]
    assert record["gears"]["labels"] == ["32x128", "32x160", "32x224", "32x256"]
