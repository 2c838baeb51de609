from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from fake_backend import sample_results

from ascend_quant.config import to_mapping
from ascend_quant.report import (
    colormap,
    environment_info,
    json_safe,
    save_json,
    write_report,
)


def _write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_mapping: bool = False):  # type: ignore[no-untyped-def]
    bench, compare = sample_results(tmp_path, monkeypatch)
    if as_mapping:  # what `build` passes (possibly from its cache)
        bench, compare = to_mapping(bench), json.loads(json.dumps(json_safe(compare)))
    paths = write_report(
        tmp_path / "rep",
        environment=environment_info(),
        config={"thresholds": {"cosine_min": 0.99}, "note": "<script>alert(1)</script>"},
        bench=bench,
        compare=compare,
        title="sr <test>",
    )
    return paths, bench, compare


def test_html_has_tables_images_and_marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths, _, compare = _write(tmp_path, monkeypatch)
    html = paths["html"].read_text()
    assert compare.verdict.startswith("FAILED: sr_int8 output cosine ")
    assert 'id="bench-table"' in html and 'id="latency-plot"' in html
    assert html.count('class="accuracy-table"') == 1
    assert "simulated on CPU" in html
    assert "✗" in html and "✓" in html
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    # input, FP32, FP16, INT8, two heatmaps, the colour bar
    assert len(images) == 7
    assert "FAILED: sr_int8 output cosine" in html
    # self-contained and escaped
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html and "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "sr &lt;test&gt;" in html


def test_json_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths, bench, compare = _write(tmp_path, monkeypatch)
    data = json.loads(paths["json"].read_text())  # strict JSON: no NaN/Infinity tokens
    assert data["title"] == "sr <test>"
    assert data["compare"] == json_safe(compare)
    assert data["bench"] == json_safe(bench)
    assert data["compare"]["candidates"][1]["outputs"][0]["failures"]
    # the same report renders from the JSON mappings (what `build` passes)
    again, _, _ = _write(tmp_path / "again", monkeypatch, as_mapping=True)
    assert again["html"].read_text().count("<img") == 7


def test_json_safe_and_save_json(tmp_path: Path) -> None:
    value = {"a": math.inf, "b": [-math.inf, math.nan, 1.5], "c": np.float32(2.5), "p": Path("x")}
    assert json_safe(value) == {"a": "inf", "b": ["-inf", "nan", 1.5], "c": 2.5, "p": "x"}
    path = save_json(tmp_path / "d" / "v.json", value)
    assert json.loads(path.read_text())["a"] == "inf"
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["v.json"]  # no temp files left


def test_report_without_bench_or_images(tmp_path: Path) -> None:
    paths = write_report(
        tmp_path, environment={"x": 1}, config={}, bench=None, compare=None, title="empty"
    )
    html = paths["html"].read_text()
    assert "<table" in html and "latency-plot" not in html and "<img" not in html


def test_colormap_ends() -> None:
    rgb = colormap(np.array([0.0, 1.0, 2.0, np.nan]))
    assert rgb.dtype == np.uint8
    assert tuple(rgb[0]) == (0, 0, 4) and tuple(rgb[1]) == (252, 255, 164)
    assert tuple(rgb[2]) == tuple(rgb[1])


def test_input_crop_maps_outputs_that_are_not_a_multiple_of_the_input() -> None:
    from ascend_quant.report import input_span, output_geometry

    # valid convolutions then x2: out = 2·(H − 14) -> scale 2, a 7-pixel border trimmed
    assert output_geometry(2 * (64 - 14), 64) == (2.0, 7.0)
    assert input_span(0, 96, 100, 64) == (7, 55)  # output rows 0..96 <- input rows 7..55
    assert input_span(4, 96, 100, 64) == (9, 57)
    # exact multiples and same-size outputs keep the plain mapping
    assert output_geometry(256, 128) == (2.0, 0.0)
    assert input_span(32, 96, 256, 128) == (16, 64)
    assert output_geometry(60, 64) == (1.0, 2.0)  # same scale, valid 5x5 conv
    # an integer downscale (a 1/4-resolution map)
    assert output_geometry(16, 64) == (0.25, 0.0)
    assert input_span(4, 8, 16, 64) == (16, 48)


def test_worst_sample_gate_marks_the_worst_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 'worst' gate judges the worst sample: its ✓/✗ sits on the worst column, not the
    aggregate (an aggregate PSNR of 51.9 marked ✗ under 'worst ≥ 48' reads as a wrong verdict)."""
    paths, _, compare = _write(tmp_path, monkeypatch)
    assert any(f.metric == "psnr_db" and f.scope == "worst" for f in compare.gate_failures)
    html = paths["html"].read_text()
    row = next(r for r in re.findall(r"<tr>.*?</tr>", html, re.S) if "PSNR (dB)" in r)
    cells = re.findall(r'<td class="num ([a-z]*)">([^<]*)(<span class="mark">(.)</span>)?', row)
    # fp16 aggregate, fp16 worst, int8 aggregate, int8 worst
    assert [(c[0], c[3]) for c in cells] == [("", ""), ("pass", "✓"), ("", ""), ("fail", "✗")]
