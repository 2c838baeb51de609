"""Faults while running: Ctrl-C, a hanging or lying CANN tool, a full disk, stale temp files.
Each ends with the documented exit code, one `error:` and its `hint:`, and no half-written
output under a final name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tiny_models
from fakes.cann import use_fakes_on_path
from harness import files_under, refused

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "env, message",
    [
        ({"FAKE_ATC_NO_OM": "1"}, "wrote no"),
        ({"FAKE_ATC_BAD_OM": "1"}, "without a valid IMOD header"),
        ({"FAKE_ATC_NO_MARKER": "1"}, "without printing"),
        ({"FAKE_ATC_FAIL": "E10001"}, "atc failed"),
    ],
)
def test_a_lying_or_failing_atc_is_exit_3_and_installs_nothing(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    message: str,
) -> None:
    use_fakes_on_path(monkeypatch, tmp_path, **env)
    model = tiny_models.save(tiny_models.conv_net(), tmp_path / "conv.onnx")
    out = tmp_path / "ws"
    err = refused(
        capsys, "convert", str(model), "--soc", "Ascend310P3", "--backend", "atc",
        "--out", str(out), code=3,
    )  # fmt: skip
    assert message in err
    assert not list((out / "Ascend310P3" / "om").glob("*.om"))


def test_a_hanging_atc_is_stopped_at_the_timeout(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fakes_on_path(monkeypatch, tmp_path, FAKE_ATC_SLEEP="60")
    model = tiny_models.save(tiny_models.conv_net(), tmp_path / "conv.onnx")
    project = tmp_path / "ascend-quant.toml"
    project.write_text("[atc]\ntimeout_s = 1\n")
    started = time.monotonic()
    err = refused(
        capsys, "convert", str(model), "--soc", "Ascend310P3", "--backend", "atc",
        "--config", str(project), "--out", str(tmp_path / "ws"), code=3,
    )  # fmt: skip
    assert time.monotonic() - started < 30
    assert "did not finish within 1 s" in err and "timeout_s" in err


@pytest.mark.slow
def test_ctrl_c_exits_130_and_the_next_build_completes(tmp_path: Path) -> None:
    model = tiny_models.save(tiny_models.sr_net(hw=24), tmp_path / "sr.onnx")
    ws = tmp_path / "ws"
    command = [sys.executable, "-m", "ascend_quant", "build", str(model), "--backend", "sim"]
    command += ["--out", str(ws), "--loop", "200", "--warmup", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (ws / ".state").is_dir() or len(list((ws / ".state").glob("*.json"))) < 2:
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    text = err.decode()
    # 130, or death by the signal itself, which a shell also reports as 130: seen twice under a
    # load average of 8 (the message was printed first), never reproduced on a quieter machine
    assert child.returncode in (130, -signal.SIGINT), text
    assert "Traceback" not in text and "error: interrupted" in text and "hint: " in text
    stale = [p for p in files_under(ws) if p.endswith(".tmp") or ".tmp." in p]
    assert stale == []
    done = subprocess.run(command, env=env, capture_output=True, timeout=300)
    assert done.returncode in (0, 1), done.stderr.decode()
    assert b"reused: preflight" in done.stderr


def test_stale_temp_files_of_a_killed_build_are_removed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from ascend_quant.workspace import remove_stale_temps

    ws = tmp_path / "ws"
    (ws / "calib" / ".input.abc123.tmp").mkdir(parents=True)
    (ws / "calib" / ".input.abc123.tmp" / "00000.bin").write_bytes(b"x")
    (ws / "model").mkdir()
    (ws / "model" / ".m.sim.onnx.k2j3.tmp").write_bytes(b"half")
    (ws / "model" / "m.sim.onnx").write_bytes(b"whole")
    removed = remove_stale_temps(ws)
    assert len(removed) == 2
    assert files_under(ws) == ["model/m.sim.onnx"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Path:
    """A 2 MiB tmpfs, where the machine allows mounting one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
            check=True,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True, timeout=30)


def test_a_full_disk_is_exit_2_and_leaves_no_half_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, small_disk: Path
) -> None:
    """A model bigger than the disk: preflight cannot write it; nothing half-written remains."""
    model = tiny_models.save(tiny_models.sr_net(hw=16), tmp_path / "sr.onnx")
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (2 * 1024 * 1024 - 4096))  # leave less than the model needs
    out = small_disk / "ws"
    err = refused(capsys, "inspect", str(model), "--out", str(out))
    assert "disk" in err or "space" in err
    assert [p for p in files_under(small_disk) if p != "filler" and ".tmp" in p] == []
