"""The diffusion example's README command, run as written on the simulated backend.

The commands between `<!-- pipeline-command -->` and the end of the next bash block are run
verbatim (with `python` and `ascend-quant` taken from this interpreter) in a copy of the example
folders, so the README cannot drift from what works.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "examples" / "diffusion" / "README.md"


def readme_commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- pipeline-command -->\s*```bash\n(.*?)```", text, re.S)
    assert match, "examples/diffusion/README.md lost its <!-- pipeline-command --> block"
    commands = []
    for line in match.group(1).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        argv = shlex.split(line)
        if argv[0] == "python":
            argv[0] = sys.executable
        elif argv[0] == "ascend-quant":
            argv[:1] = [sys.executable, "-m", "ascend_quant"]
        commands.append(argv)
    return commands


@pytest.mark.slow
def test_readme_pipeline_command_runs_on_the_simulator(tmp_path: Path) -> None:
    if not (REPO / "examples" / "diffusion" / "unet.onnx").is_file():
        pytest.fail("examples/diffusion/unet.onnx is missing (run examples/diffusion/train.py)")
    shutil.copytree(
        REPO / "examples" / "diffusion",
        tmp_path / "examples" / "diffusion",
        ignore=shutil.ignore_patterns("captured", "__pycache__"),
    )
    (tmp_path / "examples" / "sr").mkdir()
    shutil.copy(REPO / "examples" / "sr" / "espcn_x2.onnx", tmp_path / "examples" / "sr")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    commands = readme_commands()
    assert any("--pipeline" in argv for argv in commands)
    for argv in commands:
        done = subprocess.run(
            [*argv, "--backend", "sim"] if "--pipeline" in argv else argv,
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert done.returncode in (0, 1), f"{argv}: {done.stdout}\n{done.stderr}"
    report = json.loads((tmp_path / "build" / "diffusion" / "pipeline.json").read_text())
    names = {m["name"] for m in report["mixes"]}
    assert {"declared", "all-fp16", "unet-w8"} <= names
    by_name = {m["name"]: m["outputs"]["image"] for m in report["mixes"]}
    # FP16 everywhere is the closest mix to the all-FP32 pipeline
    assert by_name["all-fp16"]["psnr_db"] >= by_name["declared"]["psnr_db"]
    assert (tmp_path / "build" / "diffusion" / "pipeline.html").is_file()
