"""Parsing what `python -m ais_bench` reports: the `[INFO]` Performance Summary lines and the
`<output>/<ts>_summary.json` file (reference §7.1). Pure functions over text and dicts.

The JSON schema: `NPU_compute_time` / `H2D_latency` / `D2H_latency` are
`{min, max, mean, median, "percentile(99%)", count}` (newer ais_bench writes `P99`),
`throughput`, `npu_compute_time_list` (per-inference ms; newer multi-thread runs store
`[start, end]` pairs), `filesinfo` (`{sample_id: {infiles, outfiles}}`), `args`, `pid`.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from ascend_quant.backends.base import LatencyStats
from ascend_quant.errors import ToolchainError

_NUM = r"([-+0-9.eE]+|nan|inf)"
_STAT_LINE = re.compile(
    r"(NPU_compute_time|H2D_latency|D2H_latency) \(ms\): min = "
    + _NUM
    + r", max = "
    + _NUM
    + r", mean = "
    + _NUM
    + r", median = "
    + _NUM
    + r", percentile\(99%\) = "
    + _NUM
)
_THROUGHPUT = re.compile(
    r"throughput 1000\*batchsize\.mean\("
    + _NUM
    + r"\)/NPU_compute_time\.mean\("
    + _NUM
    + r"\): "
    + _NUM,
    re.IGNORECASE,
)
_SUMMARY_THROUGHPUT = re.compile(r"summary throughput:\s*" + _NUM)


def parse_summary_text(text: str) -> dict[str, Any]:
    """The printed summary as a dict shaped like the JSON file (first device's block)."""
    result: dict[str, Any] = {}
    for match in _STAT_LINE.finditer(text):
        key = match.group(1)
        if key in result:
            continue
        values = [float(v) for v in match.groups()[1:]]
        result[key] = dict(zip(("min", "max", "mean", "median", "percentile(99%)"), values))
    through = _THROUGHPUT.search(text)
    if through:
        result["batchsize"] = float(through.group(1))
        result["throughput"] = float(through.group(3))
    total = _SUMMARY_THROUGHPUT.search(text)
    if total:
        result["summary_throughput"] = float(total.group(1))
    return result


def find_summary_json(output: Path) -> Path | None:
    """The newest `*_summary.json` directly under ais_bench's --output directory."""
    files = sorted(Path(output).glob("*_summary.json"), key=lambda p: p.stat().st_mtime)
    return files[-1] if files else None


def load_summary_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ToolchainError(f"cannot read ais_bench summary {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ToolchainError(f"ais_bench summary {path} is not a JSON object")
    return data


def compute_times(summary: dict[str, Any]) -> list[float]:
    """Per-inference NPU compute times in ms, from either list form."""
    raw = summary.get("npu_compute_time_list") or []
    times: list[float] = []
    for item in raw:
        if isinstance(item, (list, tuple)) and len(item) == 2:
            times.append(float(item[1]) - float(item[0]))
        elif isinstance(item, (int, float)):
            times.append(float(item))
    return times


def _p99(block: dict[str, Any]) -> float | None:
    for key in ("percentile(99%)", "P99", "p99"):
        if key in block:
            return float(block[key])
    return None


def latency_stats(summary: dict[str, Any]) -> tuple[LatencyStats, list[str]]:
    """LatencyStats from NPU_compute_time; p90/p95 from the per-inference list when present.

    Returns the stats and the names of figures ais_bench did not provide (NaN in the stats).
    """
    block = summary.get("NPU_compute_time")
    if not isinstance(block, dict) or "mean" not in block:
        raise ToolchainError("ais_bench reported no NPU_compute_time")
    times = compute_times(summary)
    missing: list[str] = []
    if times:
        arr = np.asarray(times, dtype=np.float64)
        p90, p95 = (float(np.percentile(arr, q)) for q in (90, 95))
    else:
        p90 = p95 = math.nan
        missing += ["p90", "p95"]
    p99 = _p99(block)
    if p99 is None:
        p99 = float(np.percentile(times, 99)) if times else math.nan
        if not times:
            missing.append("p99")
    count = int(block.get("count", len(times)) or len(times))
    stats = LatencyStats(
        count=count,
        min=float(block.get("min", math.nan)),
        mean=float(block["mean"]),
        median=float(block.get("median", math.nan)),
        p90=p90,
        p95=p95,
        p99=p99,
        max=float(block.get("max", math.nan)),
    )
    return stats, missing


def group_outputs(summary: dict[str, Any]) -> list[list[Path]]:
    """outputs[i][k] from `filesinfo`, ordered by sample id."""
    info = summary.get("filesinfo") or {}
    if not isinstance(info, dict):
        return []

    def key(item: tuple[str, Any]) -> tuple[int, str]:
        sid = str(item[0])
        return (int(sid), sid) if sid.isdigit() else (1 << 30, sid)

    groups: list[list[Path]] = []
    for _, entry in sorted(info.items(), key=key):
        outfiles = entry.get("outfiles", []) if isinstance(entry, dict) else []
        groups.append([Path(p) for p in outfiles])
    return groups
