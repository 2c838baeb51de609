"""Faulty and hostile input files: pickled, corrupt or lying .npy, truncated .om, FIFOs and
devices, directories where a file is expected. Each is exit 2 with a hint, leaves no output,
and nothing blocks on a special file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tiny_models
from harness import files_under, refused, run_cli

from ascend_quant.backends import get_backend
from ascend_quant.config import load_build_config
from ascend_quant.jobs import convert_model
from ascend_quant.resources import calib_images_dir


@pytest.fixture(scope="module")
def sim_om(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated FP16 .om of a tiny SR net (1x3x8x8 input)."""
    root = tmp_path_factory.mktemp("om")
    model = tiny_models.save(tiny_models.sr_net(hw=8), root / "sr.onnx")
    config = load_build_config(overrides={"backend": "sim"})
    backend = get_backend("sim")
    return convert_model(model, config, "Ascend310P3", "fp16", root / "ws", {}, backend).path


def _npy_cases(root: Path) -> dict[str, Path]:
    pickled = root / "pickled.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    corrupt = root / "corrupt.npy"
    corrupt.write_bytes(b"\x93NUMPY\x01\x00\xff\xffgarbage")
    huge_header = root / "huge_header.npy"
    huge_header.write_bytes(b"\x93NUMPY\x02\x00" + (10**9).to_bytes(4, "little") + b"{")
    lying = root / "lying.npy"
    np.save(lying, np.zeros((1, 3, 8, 8), np.float32))
    lying.write_bytes(lying.read_bytes()[:-100])  # header claims more than the file holds
    return {"pickled": pickled, "corrupt": corrupt, "huge_header": huge_header, "lying": lying}


@pytest.mark.parametrize("case", ["pickled", "corrupt", "huge_header", "lying"])
def test_bad_npy_inputs_to_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, sim_om: Path, case: str
) -> None:
    source = _npy_cases(tmp_path)[case]
    out = tmp_path / "outputs"
    err = refused(
        capsys, "run", str(sim_om), "--input", str(source), "--output", str(out),
        "--backend", "sim", out=out,
    )  # fmt: skip
    assert str(source) in err
    assert files_under(out) == []


def test_special_files_are_refused_by_type(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, sim_om: Path
) -> None:
    """A FIFO among the images or inputs, /dev/zero as a source: refused, never read."""
    images = tmp_path / "images"
    images.mkdir()
    first = sorted(calib_images_dir().iterdir())[0]
    shutil.copy(first, images)
    os.mkfifo(images / "pipe.jpg")
    model = tiny_models.save(tiny_models.sr_net(hw=8), tmp_path / "sr.onnx")
    out = tmp_path / "calib"
    err = refused(capsys, "calib", str(images), "--model", str(model), "--out", str(out), out=out)
    assert "pipe.jpg" in err
    err = refused(capsys, "calib", "/dev/zero", "--model", str(model), "--out", str(out), out=out)
    assert "not a regular file" in err

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    os.mkfifo(inputs / "0.bin")
    out = tmp_path / "outputs"
    err = refused(
        capsys, "run", str(sim_om), "--input", str(inputs), "--output", str(out),
        "--backend", "sim", out=out,
    )  # fmt: skip
    assert "not a regular file" in err
    fifo_om = tmp_path / "fifo.om"
    os.mkfifo(fifo_om)
    refused(capsys, "bench", str(fifo_om))
    fifo_onnx = tmp_path / "fifo.onnx"
    os.mkfifo(fifo_onnx)
    refused(capsys, "build", str(fifo_onnx), "--backend", "sim", "--out", str(tmp_path / "w"))
    assert "not a regular file" in refused(capsys, "inspect", str(fifo_onnx))


def test_truncated_om_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, sim_om: Path
) -> None:
    cut = tmp_path / "cut.om"
    cut.write_bytes(sim_om.read_bytes()[:300])
    err = refused(capsys, "bench", str(cut), "--loop", "2", "--warmup", "0")
    assert "cut.om" in err


def test_directories_where_files_are_expected(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, sim_om: Path
) -> None:
    model = tiny_models.save(tiny_models.sr_net(hw=8), tmp_path / "sr.onnx")
    assert "is a directory" in refused(capsys, "bench", str(tmp_path))
    assert "is a directory" in refused(
        capsys, "build", str(tmp_path), "--backend", "sim", "--out", str(tmp_path / "w")
    )
    err = refused(
        capsys, "config", str(model), "--soc", "Ascend310P3", "--calib", str(model),
        "--out", str(tmp_path / "c"),
    )  # fmt: skip
    assert "sr.onnx" in err and "nor a UTF-8 text list file" in err  # a file, but not data
    err = refused(
        capsys, "config", str(model), "--soc", "Ascend310P3", "--templates", str(model),
        "--out", str(tmp_path / "c"),
    )  # fmt: skip
    assert "not a directory" in err
    code, _, err = run_cli(capsys, "inspect", str(tmp_path))
    assert code == 2 and "is a directory" in err


def test_several_bad_image_sources_are_one_error_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = [str(tmp_path / f"missing{i}") for i in range(5)]
    out = tmp_path / "out"
    err = refused(capsys, "calib", *missing, "--out", str(out), "--size", "4")
    line = next(x for x in err.splitlines() if x.startswith("error: "))
    assert "missing0" in line and "missing2" in line and "(+2 more)" in line
    assert not out.exists()
