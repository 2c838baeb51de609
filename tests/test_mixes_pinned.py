"""Pipeline figures pinned: how `evaluate_pipeline` runs the mixes and accumulates their metrics
(all samples in memory, or streamed with a few kept for the report) must not change them.

`golden/pipeline_figures.json` was recorded with every sample's outputs kept in lists, on the
two-component pipeline of test_mixes.py with 3 samples (every mix, output and sample's metrics,
failures included); the values must stay equal to float precision, and so must the sample the
report shows full size.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
from test_mixes import project  # noqa: F401  (the fixture)

from ascend_quant.mixes import evaluate_pipeline, load_pipeline_spec
from ascend_quant.report import write_pipeline_report

PINNED = Path(__file__).parent / "golden" / "pipeline_figures.json"


def assert_same(found: Any, pinned: Any, where: str = "") -> None:
    """Equal structures; floats equal to float precision (strings "inf"/"nan" compared as is)."""
    if isinstance(pinned, dict):
        assert isinstance(found, dict) and sorted(found) == sorted(pinned), where
        for key, value in pinned.items():
            assert_same(found[key], value, f"{where}/{key}")
    elif isinstance(pinned, list):
        assert isinstance(found, list) and len(found) == len(pinned), where
        for index, (f, p) in enumerate(zip(found, pinned)):
            assert_same(f, p, f"{where}[{index}]")
    elif isinstance(pinned, float) and not isinstance(found, str):
        assert math.isfinite(pinned) and found == pytest.approx(pinned, rel=1e-6, abs=1e-12), where
    else:
        assert found == pinned, where


@pytest.mark.slow
def test_pipeline_figures_are_pinned(project: Path) -> None:  # noqa: F811
    project.write_text(project.read_text().replace("samples = 2", "samples = 3"))
    spec = load_pipeline_spec(project)
    try:
        result, outputs = evaluate_pipeline(spec)
    finally:
        sys.modules.pop("twostage", None)  # test_mixes counts the calls of its own import
    paths = write_pipeline_report(Path(spec.out), result, outputs, title="pinned")
    saved = json.loads(paths["json"].read_text())
    found = {
        m["name"]: {k: m[k] for k in ("outputs", "per_sample", "failures")} for m in saved["mixes"]
    }
    assert_same(found, json.loads(PINNED.read_text()))
    html = paths["html"].read_text()
    assert "image: sample 1, side by side" in html and "mid: sample 1, side by side" in html
