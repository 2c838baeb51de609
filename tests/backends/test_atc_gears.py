"""Gears through the CANN stand-ins: atc argv and what atc rejects, ais_bench flags from the
manifest, and the errors raised before ais_bench runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakes.cann import BIN, PYLIB

from ascend_quant.backends.atc import AtcBackend
from ascend_quant.config import AippConfig, BenchConfig
from ascend_quant.errors import UsageError
from ascend_quant.gears import make_gears

CONV = {"input": (1, 3, 16, 16)}
BATCH = make_gears("batch", ((1,), (4,), (8,)), CONV, {})
IMAGE = make_gears("image_size", ((16, 16), (32, 32)), CONV, {})
DIMS = make_gears("dims", ((16,), (32,)), CONV, {"input": (1, 3, 16, -1)}, input_format="ND")


def _argv_flags(manifest: dict) -> dict[str, str]:
    argv = manifest["commands"][-1]["argv"]
    return dict(a[2:].split("=", 1) for a in argv if a.startswith("--"))


@pytest.mark.parametrize(
    ("gears", "atc", "flag", "value", "shape"),
    [
        (BATCH, {}, "dynamic_batch_size", "1,4,8", "input:-1,3,16,16"),
        (IMAGE, {}, "dynamic_image_size", "16,16;32,32", "input:1,3,-1,-1"),
        (DIMS, {"input_format": "ND"}, "dynamic_dims", "16;32", "input:1,3,16,-1"),
    ],
)
def test_convert_each_kind(fake_cann, make_request, gears, atc, flag, value, shape) -> None:
    artifact = AtcBackend().convert(make_request(gears=gears, atc=atc))
    f = _argv_flags(artifact.manifest)
    assert f[flag] == value and f["input_shape"] == shape
    assert artifact.manifest["gears"]["kind"] == gears.kind
    assert artifact.manifest["gears"]["atc_flag"] == f"--{flag}={value}"
    saved = json.loads(artifact.manifest_path.read_text())
    assert saved["gears"]["labels"] == gears.labels


def test_int8_amct_calibrates_at_one_gear(fake_cann, make_request) -> None:
    fake_cann(FAKE_NPU_ABSENT="1")
    gears = make_gears("batch", ((1,), (2,)), CONV, {})
    artifact = AtcBackend().convert(make_request("int8", gears=gears))
    amct, atc = (c["argv"] for c in artifact.manifest["commands"])
    assert "--input_shape=input:2,3,16,16" in amct  # the calib set's batch, static
    assert "--input_shape=input:-1,3,16,16" in atc and "--dynamic_batch_size=1,2" in atc


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"gears": DIMS}, "needs --input-format ND"),
        ({"gears": IMAGE, "atc": {"input_format": "ND"}}, "NCHW or NHWC"),
        ({"gears": DIMS, "atc": {"input_format": "ND"}, "aipp": AippConfig(enabled=True)}, "AIPP"),
        (
            {"gears": IMAGE, "aipp": AippConfig(enabled=True, crop=True)},
            "neither crop nor padding",
        ),
        (
            {"gears": BATCH, "atc": {"extra_args": ("--input_shape_range=input:[1~4,3,16,16]",)}},
            "E10009",
        ),
        (
            {"soc": "Ascend310B1", "atc": {"extra_args": ("--input_shape_range=input:[1~4]",)}},
            "does not support shape ranges",
        ),
    ],
)
def test_prechecks_before_atc(fake_cann, make_request, tmp_path, over, message) -> None:
    with pytest.raises(UsageError, match=message):
        AtcBackend().convert(make_request(**over))
    assert not (tmp_path / "out" / "logs").exists()  # atc never ran


def _fake_atc(tmp_path: Path, model: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable,
        str(BIN / "atc"),
        f"--model={model}",
        "--framework=5",
        f"--output={tmp_path / 'x'}",
        "--soc_version=Ascend310P3",
        *extra,
    ]
    return subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, check=False)


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        (
            ("--input_shape=input:-1,3,-1,-1", "--dynamic_batch_size=1,2",
             "--dynamic_image_size=8,8;16,16"),
            "E10009",
        ),
        (("--input_shape=input:-1,3,16,16", "--dynamic_batch_size=4"), "(1,100]"),
        (
            ("--input_shape=input:-1,3,16,16",
             "--dynamic_batch_size=" + ",".join(map(str, range(1, 102)))),
            "(1,100]",
        ),
        (("--input_shape=input:1,3,-1,-1", "--dynamic_image_size=8,8"), "(1,100]"),
        (("--input_shape=input:1,3,16,-1", "--dynamic_dims=4;8"), "--input_format=ND"),
        (("--input_shape=input:1,3,16,-1", "--input_format=ND", "--dynamic_dims=4,4;8,8"),
         "one per -1"),
        (("--input_shape=input:1,3,16,16", "--dynamic_batch_size=1,2"), "E10018"),
        (("--input_shape=input:1,3,16,16", "--dynamic_image_size=8,8;9,9"), "E10019"),
    ],
)  # fmt: skip
def test_fake_atc_rejects_what_atc_rejects(tmp_path: Path, conv_model, extra, code) -> None:
    result = _fake_atc(tmp_path, conv_model, *extra)
    assert result.returncode == 255, result.stdout
    assert code in result.stdout and "ATC run failed" in result.stdout


def test_fake_atc_accepts_each_kind(tmp_path: Path, conv_model) -> None:
    for extra in (
        ("--input_shape=input:-1,3,16,16", "--dynamic_batch_size=1,2"),
        ("--input_shape=input:1,3,-1,-1", "--dynamic_image_size=8,8;16,16"),
        ("--input_shape=input:1,3,16,-1", "--input_format=ND", "--dynamic_dims=4;8"),
    ):
        result = _fake_atc(tmp_path, conv_model, *extra)
        assert result.returncode == 0, result.stdout


# ------------------------------------------------------------------ ais_bench


def test_bench_derives_the_gear_flag(fake_cann, make_request) -> None:
    om = AtcBackend().convert(make_request(gears=BATCH)).path
    result = AtcBackend().bench(om, BenchConfig(loop=3, warmup=0), gear="bs4")
    argv = result.extra["argv"]
    assert argv[argv.index("--dymBatch") + 1] == "4"
    assert result.batch_size == 4 and result.extra["gear"] == "bs4"


def test_bench_errors_before_ais_bench(fake_cann, make_request, tmp_path: Path) -> None:
    om = AtcBackend().convert(make_request(gears=IMAGE)).path
    with pytest.raises(UsageError, match="say which to run"):
        AtcBackend().bench(om, BenchConfig(loop=1))
    with pytest.raises(UsageError, match="not one of this model's image_size gears"):
        AtcBackend().bench(om, BenchConfig(loop=1), gear="64,64")
    static = AtcBackend().convert(make_request(out_dir=tmp_path / "static")).path
    with pytest.raises(UsageError, match="no gears in its manifest"):
        AtcBackend().bench(static, BenchConfig(loop=1), gear="4")


def test_run_picks_the_gear_of_the_files(fake_cann, make_request, tmp_path: Path) -> None:
    import numpy as np

    om = AtcBackend().convert(make_request(gears=IMAGE)).path
    inputs = tmp_path / "in"
    inputs.mkdir()
    np.zeros((1, 3, 32, 32), np.float32).tofile(inputs / "a.bin")
    run = AtcBackend().run(om, [inputs], tmp_path / "outs")
    assert len(run.outputs) == 1
    log = (tmp_path / "outs" / "ais_bench.log").read_text()
    assert "--dymHW 32,32" in log
    np.zeros((1, 3, 20, 20), np.float32).tofile(inputs / "a.bin")
    with pytest.raises(UsageError, match="fit none of the model's image_size gears"):
        AtcBackend().run(om, [inputs], tmp_path / "outs2")


def _fake_aisbench(om: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(PYLIB))
    argv = [sys.executable, "-m", "ais_bench", "--model", str(om), "--loop", "1", *extra]
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)


def test_fake_aisbench_needs_the_gear_flag(fake_cann, make_request, tmp_path: Path) -> None:
    om = AtcBackend().convert(make_request(gears=BATCH)).path
    missing = _fake_aisbench(om)
    assert missing.returncode == 1 and "pass --dymBatch" in missing.stdout
    wrong = _fake_aisbench(om, "--dymBatch", "3")
    assert wrong.returncode == 1 and "not one of the model's gears" in wrong.stdout
    other = _fake_aisbench(om, "--dymHW", "16,16")
    assert "dynamic_image_size parameter is not specified" in other.stdout
    assert _fake_aisbench(om, "--dymBatch", "8").returncode == 0
    static = AtcBackend().convert(make_request(out_dir=tmp_path / "static")).path
    refused = _fake_aisbench(static, "--dymBatch", "4")
    assert "dynamic_batch_size parameter is not specified" in refused.stdout
