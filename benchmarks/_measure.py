"""What the peak-memory benchmarks share: each measurement in a fresh Python process (one run's
allocations cannot raise the next one's high-water mark), N against 8N samples, and the ratio.

A child is a `python -c` snippet whose last words on stdout are `ru_maxrss seconds FIELD...`.
The scripts beside this file import it (`python benchmarks/X.py` puts this folder on sys.path).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ascend_quant.backends.base import ConvertRequest
from ascend_quant.backends.sim import SimBackend
from ascend_quant.data.calibset import write_samples
from ascend_quant.model import PreflightResult


@dataclass(frozen=True)
class ChildRun:
    """One child's report: its peak memory, its own timing and what else it printed."""

    peak_rss_mb: float  # ru_maxrss (KiB on Linux) in MiB, to 0.1
    seconds: float  # the child's own clock around its work, to 0.01
    fields: list[str]


def run_child(code: str, *args: object, fields: int) -> ChildRun:
    """Run `code` in a fresh interpreter with `args` as sys.argv[1:]; `fields` words follow
    the RSS and the seconds on its last line."""
    argv = [sys.executable, "-c", code, *(str(arg) for arg in args)]
    proc = subprocess.run(argv, check=True, capture_output=True, text=True)
    rss_kb, seconds, *rest = proc.stdout.split()[-(2 + fields) :]
    return ChildRun(round(int(rss_kb) / 1024, 1), round(float(seconds), 2), rest)


def n_and_8n(n: int) -> tuple[tuple[str, int], ...]:
    """The two runs every memory benchmark compares, as (label, sample count), N first."""
    return (("n", n), ("8n", 8 * n))


def rss_verdict(runs: dict[str, dict[str, Any]], target: float) -> dict[str, Any]:
    """The 8N/N peak-RSS ratio against its target: the last keys of every memory report."""
    ratio = runs["8n"]["peak_rss_mb"] / runs["n"]["peak_rss_mb"]
    return {
        "peak_rss_ratio_8n_over_n": round(ratio, 3),
        "target_ratio_max": target,
        "within_target": ratio <= target,
    }


def print_report(report: dict[str, Any]) -> None:
    """The benchmark's result, as indented JSON on stdout."""
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


def random_set(root: Path, count: int, shape: tuple[int, ...], seed: int) -> Path:
    """A calib set at `root` of `count` uniform float32 samples for the input named "input"."""
    rng = np.random.default_rng(seed)
    samples = (rng.random(shape, dtype=np.float32) for _ in range(count))
    write_samples(root, "input", samples, sample_shape=shape, dtype="float32", batch_dim=0)
    return root


def convert_fp16_int8(
    pre: PreflightResult, out_dir: Path, calib_dirs: dict[str, Path]
) -> tuple[dict[str, Path], dict[str, float]]:
    """The preflighted model converted by the simulator (Ascend310P3) to FP16 and to INT8:
    the .om paths and each conversion's seconds, by precision."""
    oms: dict[str, Path] = {}
    seconds: dict[str, float] = {}
    for precision in ("fp16", "int8"):
        request = ConvertRequest(
            model=pre.model_path,
            source_sha256=pre.source_sha256,
            input_shapes=pre.input_shapes,
            soc="Ascend310P3",
            precision=precision,  # type: ignore[arg-type]
            out_dir=out_dir,
            name="m",
            calib_dirs=calib_dirs,
        )
        started = time.perf_counter()
        oms[precision] = SimBackend().convert(request).path
        seconds[precision] = round(time.perf_counter() - started, 2)
    return oms, seconds
