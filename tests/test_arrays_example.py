"""examples/arrays: capture with the Recorder from a multi-step loop, then one build."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "arrays" / "capture_and_build.py"


@pytest.mark.slow
def test_the_example_captures_the_window_and_builds(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("capture_and_build", SCRIPT)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.main(["--out", str(tmp_path / "w"), "--runs", "2"]) == 0
    steps = json.loads((tmp_path / "w" / "calib" / "timestep" / "manifest.json").read_text())
    assert steps["kind"] == "recorded" and steps["count"] == 8  # 2 runs x steps 8..11
    om = tmp_path / "w" / "build" / "Ascend310P3" / "om" / "denoiser_int8.json"
    assert json.loads(om.read_text())["quantized_layers"] > 0
