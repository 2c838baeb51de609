"""The real-toolkit path from any working directory, with relative paths everywhere.

atc, amct_onnx and ais_bench run in directories of their own, so every path they receive (argv
and the .cfg files they read) must be absolute, and the rendered scripts must run from anywhere.
The stand-ins in tests/fakes refuse any relative path, so these tests fail on the first one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tiny_models
from fakes.cann import BIN, PYLIB, make_calib_set, use_fakes_on_path
from typer.testing import CliRunner

from ascend_quant.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
PYTHON_M = (sys.executable, "-m", "ascend_quant")
EXAMPLE = ROOT / "examples" / "sr" / "espcn_x2.onnx"


def _fake_env(tmp_path: Path) -> dict[str, str]:
    """A shell where set_env.sh was sourced: the stand-ins on PATH, this tree importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_", "ASCEND_"))}
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(PYLIB)])
    env["ASCEND_QUANT_CANN_ROOTS"] = str(tmp_path / "no-cann-here")
    return env


def _path_values(argv: list[str]) -> list[str]:
    """The values of atc/amct/ais_bench path flags in an argv."""
    flags = ("--model", "--output", "--save_path", "--data_dir", "--calibration_config")
    flags += ("--compression_optimize_conf", "--insert_op_conf", "--input")
    values = []
    for i, arg in enumerate(argv):
        name, sep, value = arg.partition("=")
        if name in flags:
            values.append(value if sep else argv[i + 1])
    return [v for value in values for v in value.replace(";", ",").split(",")]


@pytest.mark.slow
def test_readme_build_command_from_another_directory(tmp_path: Path) -> None:
    """`ascend-quant build examples/sr/espcn_x2.onnx --soc Ascend310P3`, default workspace."""
    project = tmp_path / "project"
    (project / "examples" / "sr").mkdir(parents=True)
    shutil.copy(EXAMPLE, project / "examples" / "sr")
    env = _fake_env(tmp_path)
    done = subprocess.run(
        [*PYTHON_M, "build", "examples/sr/espcn_x2.onnx", "--soc", "Ascend310P3"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in done.stderr, done.stderr
    # The stand-in ais_bench writes bytes that are not the model's outputs: an honest FAILED.
    assert done.returncode == 1, done.stderr
    last = done.stdout.rstrip().splitlines()[-1]
    assert last.startswith("FAILED: espcn_x2_fp16 output cosine "), last
    # The summary prints every path the same way: absolute, so it can be opened from anywhere.
    paths = dict(
        line.split(": ", 1)
        for line in done.stdout.splitlines()
        if line.startswith(("fp16: ", "int8: ", "report: "))
    )
    assert set(paths) == {"fp16", "int8", "report"}, done.stdout
    assert all(Path(p).is_absolute() and Path(p).exists() for p in paths.values()), paths
    soc_dir = project / "build" / "espcn_x2" / "Ascend310P3"
    for precision in ("fp16", "int8"):
        om = soc_dir / "om" / f"espcn_x2_{precision}.om"
        assert om.read_bytes()[:4] == b"IMOD"
        manifest = json.loads(om.with_suffix(".json").read_text())
        for command in manifest["commands"]:
            assert all(os.path.isabs(v) for v in _path_values(command["argv"])), command

    # Every rendered script runs from anywhere and reaches "ATC run success".
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    scripts = sorted((soc_dir / "configs").glob("*.sh"))
    assert {s.name for s in scripts} >= {"atc_fp16.sh", "amct_int8.sh", "atc_int8.sh"}
    for script in scripts:
        ran = subprocess.run(
            [str(script)], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
        )
        assert ran.returncode == 0, (script.name, ran.stdout, ran.stderr)
        assert "ATC run success" in ran.stdout
    assert list(elsewhere.iterdir()) == []  # nothing written to the caller's directory


def test_relative_paths_through_convert_run_and_bench(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--out ../ws, a relative model, calib set and .om: amct, atc and ais_bench all see
    absolute paths."""
    use_fakes_on_path(monkeypatch, tmp_path)
    tiny_models.save(tiny_models.conv_net(), tmp_path / "conv.onnx")
    make_calib_set(tmp_path / "calib")
    (tmp_path / "inputs").mkdir()
    shutil.copy(tmp_path / "calib" / "samples" / "00000_img0.bin", tmp_path / "inputs")
    cwd = tmp_path / "sub"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    runner = CliRunner()

    flags = "--soc Ascend310P3 --backend atc --precision int8 --int8-route amct --json"
    converted = runner.invoke(
        app, ["convert", "../conv.onnx", "--calib", "../calib", "--out", "../ws", *flags.split()]
    )
    assert converted.exit_code == 0, converted.output
    details = json.loads(converted.stdout)["details"]
    assert [c["tool"] for c in details["commands"]] == ["amct_onnx", "atc"]
    for command in details["commands"]:
        assert all(os.path.isabs(v) for v in _path_values(command["argv"])), command
    om = "../ws/Ascend310P3/om/conv_int8.om"

    ran = runner.invoke(
        app, ["run", om, "--input", "../inputs", "--output", "../outputs", "--backend", "atc"]
    )
    assert ran.exit_code == 0, ran.output
    assert len(list((tmp_path / "outputs").glob("*.bin"))) == 1

    benched = runner.invoke(app, ["bench", om, "--loop", "3", "--warmup", "1", "--json"])
    assert benched.exit_code == 0, benched.output
    assert json.loads(benched.stdout)["rows"][0]["result"]["device"] == "npu:0"
    assert list(cwd.iterdir()) == []


def test_stand_ins_refuse_relative_paths(tmp_path: Path) -> None:
    """Even a relative path that resolves from the tool's directory is refused."""
    tiny_models.save(tiny_models.conv_net(), tmp_path / "conv.onnx")
    flags = ["--model=conv.onnx", "--framework=5", "--output=/tmp/x", "--soc_version=Ascend310P3"]
    done = subprocess.run(
        [str(BIN / "atc"), *flags],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 255
    assert "E10001: Value [conv.onnx] for parameter [--model]" in done.stdout
