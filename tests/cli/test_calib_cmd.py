"""`ascend-quant calib` on the command line."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ascend_quant.cli.app import app, main

runner = CliRunner()


def images(root: Path, count: int = 3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (4, 2), (10 * i, 20, 30)).save(root / f"p{i}.png")
    return root


def test_every_preprocessing_flag_reaches_the_output(tmp_path: Path) -> None:
    src = images(tmp_path / "src")
    args = [
        "calib", str(src), "--out", str(tmp_path / "out"), "--size", "2x2",
        "--color", "bgr", "--resize", "center-crop", "--resample", "nearest",
        "--pad-value", "3", "--scale", "1", "--mean", "1,2,3", "--std", "1,2,4",
        "--layout", "nhwc", "--dtype", "int8", "--batch", "2", "--limit", "2", "--seed", "1",
        "-j", "1", "--info", "--json",
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["reused"] is False and summary["count"] == 2
    assert summary["shape"] == [1, 2, 2, 3] and summary["dtype"] == "int8"
    assert summary["batch_files"] == 1 and summary["padded_samples"] == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    pre = manifest["preprocess"]
    assert pre == {
        "size": [2, 2], "color": "bgr", "resize": "center-crop", "resample": "nearest",
        "pad_value": 3, "scale": 1.0, "mean": [1.0, 2.0, 3.0], "std": [1.0, 2.0, 4.0],
        "layout": "NHWC", "dtype": "int8",
    }  # fmt: skip
    first = manifest["samples"][0]
    data = np.fromfile(tmp_path / "out" / first["file"], dtype=np.int8)
    i = int(Path(first["source"]).stem[1:])
    # BGR (30, 20, 10*i): (30-1)/1, (20-2)/2, (10*i-3)/4 rounded half-even, saturated
    expected = [29, 9, int(np.rint((10 * i - 3) / 4))]
    assert data.reshape(2, 2, 3)[0, 0].tolist() == expected
    assert (tmp_path / "out" / "samples.info").exists()


def test_table_output_and_reuse_message(tmp_path: Path) -> None:
    src = images(tmp_path / "src")
    args = ["calib", str(src), "--out", str(tmp_path / "out"), "--size", "4", "-j", "1"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "calib set written" in first.stdout and "[1, 3, 4, 4]" in first.stdout
    second = runner.invoke(app, args)
    assert second.exit_code == 0
    assert "reused" in second.stdout


def test_config_file_with_flag_overrides(tmp_path: Path) -> None:
    src = images(tmp_path / "src")
    project = tmp_path / "ascend-quant.toml"
    project.write_text(
        f'[preprocess]\nsize = [3, 5]\ndtype = "float16"\n[calib]\nsources = ["{src}"]\nbatch = 2\n'
    )
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["calib", "--out", str(out), "--config", str(project), "--batch", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["shape"] == [1, 3, 3, 5] and summary["dtype"] == "float16"
    assert summary["batch"] == 3 and summary["count"] == 3


def test_model_flag(tmp_path: Path, conv_model: Path) -> None:
    src = images(tmp_path / "src", 1)
    result = runner.invoke(
        app, ["calib", str(src), "--out", str(tmp_path / "o"), "--model", str(conv_model), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["shape"] == [1, 3, 16, 16]


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    logger = logging.getLogger("ascend_quant")
    handlers, propagate, argv_before = list(logger.handlers), logger.propagate, list(sys.argv)
    try:
        with pytest.raises(SystemExit) as info:
            main(argv)
    finally:  # main() installs its console handler; leave the logger as other tests expect
        logger.handlers[:] = handlers
        logger.propagate = propagate
        sys.argv[:] = argv_before
    return int(info.value.code or 0), capsys.readouterr().err


def test_bad_images_exit_2_listing_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = images(tmp_path / "src", 1)
    (src / "a.jpg").write_bytes(b"")
    (src / "b.png").write_bytes(b"nope")
    code, err = run_main(["calib", str(src), "--out", str(tmp_path / "o"), "--size", "4"], capsys)
    assert code == 2
    assert "2 of 3 images are unusable" in err and "a.jpg" in err and "b.png" in err
    assert "--skip-bad" in err
    assert not (tmp_path / "o").exists()
    code, err = run_main(
        ["calib", str(src), "--out", str(tmp_path / "o"), "--size", "4", "--skip-bad"], capsys
    )
    assert code == 0 and "warning:" in err and "skipping" in err


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run_main(["calib", str(empty), "--out", str(tmp_path / "o"), "--size", "4"], capsys)
    assert code == 2 and "no images found in" in err and str(empty) in err
    code, err = run_main(["calib", str(empty), "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    src = images(tmp_path / "src", 1)
    code, err = run_main(
        ["calib", str(src), "--out", str(tmp_path / "o"), "--size", "4", "--resize", "strech"],
        capsys,
    )
    assert code == 2 and "did you mean 'stretch'" in err
    code, err = run_main(["calib", str(src), "--out", str(tmp_path / "o"), "--size", "x"], capsys)
    assert code == 2 and "--size" in err


def test_ctrl_c_exits_130_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ascend_quant.cli import calib_cmd

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(calib_cmd, "make_calib_set", interrupted)
    src = images(tmp_path / "src", 1)
    code, err = run_main(["calib", str(src), "--out", str(tmp_path / "o"), "--size", "4"], capsys)
    assert code == 130
    assert err.splitlines()[0] == "error: interrupted" and "Traceback" not in err
