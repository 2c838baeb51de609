"""examples/deploy/deploy.sh on the simulated backend: release contents and loud failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tiny_models

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "deploy" / "deploy.sh"


def _deploy(tmp_path: Path, model: Path, extra: str, *socs: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "ASCEND_QUANT_ARGS": f"--backend sim --limit 4 --loop 3 --warmup 1 {extra}",
    }
    return subprocess.run(
        ["bash", str(SCRIPT), str(model), str(tmp_path / "release"), *socs],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return tiny_models.save(tiny_models.sr_net(hw=16), tmp_path / "sr.onnx")


def test_release_holds_models_manifests_scripts_and_checksums(tmp_path: Path, model: Path) -> None:
    done = _deploy(tmp_path, model, "", "Ascend310P3", "Ascend310B1")
    assert done.returncode == 0, done.stderr
    release = tmp_path / "release"
    for soc in ("Ascend310P3", "Ascend310B1"):
        names = {p.name for p in (release / soc).iterdir()}
        assert {"sr_fp16.om", "sr_fp16.json", "sr_int8.om", "sr_int8.json"} <= names
        assert {"atc_fp16.sh", "amct_int8.sh", "quant_config.json", "report.html"} <= names
    sums = (release / "SHA256SUMS").read_text().splitlines()
    assert any(line.endswith("Ascend310P3/sr_int8.om") for line in sums)
    assert json.loads((release / "build.json").read_text())["passed"] is True
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=release, capture_output=True)
    assert check.returncode == 0


def test_accuracy_gate_failure_exits_1_and_releases_nothing(tmp_path: Path, model: Path) -> None:
    done = _deploy(tmp_path, model, "--cosine-min 0.9999999", "Ascend310P3")
    assert done.returncode == 1
    assert "FAILED" in done.stderr
    assert not (tmp_path / "release").exists()


def test_bad_input_passes_the_tools_exit_code_through(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"junk")
    done = _deploy(tmp_path, bad, "", "Ascend310P3")
    assert done.returncode == 2
    assert "exited with 2" in done.stderr
