from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import tiny_models

sys.path.insert(0, str(Path(__file__).parent))
from clirun import run_cli


def test_inspect_json_reports_repairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tiny_models.conv_net(batch="N")
    model.opset_import[0].version = 11
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    code, out, err = run_cli(
        capsys,
        "inspect",
        str(path),
        "--json",
        "--input-shape",
        "input:2,3,16,16",
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["repairs"] == ["opset 11 -> 13 (per-channel QDQ needs 13)"]
    assert data["input_shapes"] == {"input": [2, 3, 16, 16]}
    assert data["output_shapes"] == {"output": [2, 4, 16, 16]}
    assert data["summary"]["op_counts"] == {"Conv": 2, "Relu": 1}
    assert data["int8_refused"] is None
    assert Path(data["model_path"]).is_file()
    assert (tmp_path / "o" / "m.json").is_file()


def test_inspect_table(conv_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "inspect", str(conv_model), "--no-simplify")
    assert code == 0
    for text in ("IR version", "quantizable layers (2)", "Conv2D", "conv1", "[1, 4, 16, 16]"):
        assert text in out
    assert "pass --out DIR to keep it" in out


def test_inspect_dynamic_without_shape_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tiny_models.save(tiny_models.conv_net(batch="batch"), tmp_path / "d.onnx")
    code, _, err = run_cli(capsys, "inspect", str(path))
    assert code == 2
    assert "dims 0 ('batch')" in err and "--input-shape" in err


def test_inspect_batch_only_dynamic_with_samples_says_why_no_gears(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --calib given, the gears line said "pass --calib" when only the batch is dynamic."""
    from PIL import Image

    path = tiny_models.save(tiny_models.conv_net(batch="batch"), tmp_path / "d.onnx")
    samples = tmp_path / "samples"
    samples.mkdir()
    for i in range(3):
        Image.new("RGB", (16, 16), (i, i, i)).save(samples / f"s{i}.png")
    args = ["inspect", str(path), "--input-shape", "input:1,3,16,16", "--calib", str(samples)]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "only the batch dim is dynamic" in out and "pass --calib" not in out


def test_inspect_missing_and_not_onnx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "inspect", str(tmp_path / "none.onnx"))
    assert code == 2 and "model not found" in err
    junk = tmp_path / "junk.onnx"
    junk.write_text("hello")
    code, _, err = run_cli(capsys, "inspect", str(junk))
    assert code == 2 and "not an ONNX model" in err


def test_inspect_refuses_a_missing_calib_source_on_a_static_model(
    conv_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A static model reads no --calib data; a mistyped folder was silently ignored (exit 0)."""
    code, _, err = run_cli(capsys, "inspect", str(conv_model), "--calib", "no/such/dir")
    assert code == 2 and "error: --calib: no/such/dir does not exist" in err and "hint:" in err


def test_inspect_calib_with_build_name_syntax_says_drop_the_name(
    conv_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--calib latent=DIR` copied from a build command was 'latent=DIR does not exist'."""
    data = tmp_path / "lat"
    data.mkdir()
    code, _, err = run_cli(capsys, "inspect", str(conv_model), "--calib", f"input={data}")
    err = " ".join(err.split())
    assert code == 2 and "inspect takes the samples without NAME=" in err, err
    assert f"hint: write --calib {data}" in err and "does not exist" not in err


def test_inspect_om_uses_describe_om(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "x.om"
    fake.write_bytes(b"not an om at all")
    code, _, err = run_cli(capsys, "inspect", str(fake))
    assert code == 2 and "not an .om file" in err


def test_inspect_already_quantized_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from test_model import _quantized_model

    path = tiny_models.save(_quantized_model(), tmp_path / "q.onnx")
    code, out, _ = run_cli(capsys, "inspect", str(path), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["summary"]["already_quantized"] is True
    assert "already quantized" in data["int8_refused"]
    assert data["model_path"] is None
