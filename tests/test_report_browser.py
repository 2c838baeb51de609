"""Render a report in headless chromium: screenshot it and check its tables and images loaded."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fake_backend import sample_results

from ascend_quant.report import environment_info, write_report

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Appended to a copy of the report (the report itself has no scripts): writes what the browser
# actually rendered into the DOM, which --dump-dom then prints.
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const probe = {
    tables: document.querySelectorAll("table").length,
    accuracy_rows: document.querySelectorAll(".accuracy-table tr").length,
    images: imgs.length,
    decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    widths: imgs.map(i => i.naturalWidth),
    svg_bars: document.querySelectorAll("#latency-plot rect").length,
    verdict: document.getElementById("verdict").textContent
  };
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(probe);
  document.body.appendChild(pre);
});
</script>"""


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    argv = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,2000",
        *args,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench, compare = sample_results(tmp_path, monkeypatch)
    paths = write_report(
        tmp_path / "rep",
        environment=environment_info(),
        config={"thresholds": {"cosine_min": 0.99}},
        bench=bench,
        compare=compare,
        title="sr browser test",
    )
    screenshot = tmp_path / "report.png"
    shot = _chromium(tmp_path, f"--screenshot={screenshot}", paths["html"].as_uri())
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000, shot.stderr[-2000:]
    from PIL import Image

    with Image.open(screenshot) as image:
        assert image.size == (1280, 2000)
        colours = image.convert("RGB").resize((64, 100)).getcolors(64 * 100)
        assert colours is not None and len(colours) > 20  # not a blank page

    probed = tmp_path / "probed.html"
    probed.write_text(paths["html"].read_text().replace("</body>", PROBE + "</body>"))
    dom = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probed.as_uri())
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert match, dom.stderr[-2000:]
    probe = json.loads(match.group(1).replace("&quot;", '"'))
    assert probe["tables"] >= 3  # environment, bench, accuracy (+ config)
    assert probe["accuracy_rows"] > 10
    assert probe["images"] == 7 and probe["decoded"] == 7, probe
    assert all(width > 0 for width in probe["widths"])
    assert probe["svg_bars"] == 2
    assert probe["verdict"].startswith("FAILED: sr_int8")
