"""ONNX Runtime intra-op spinning on and off for the golden recording and compare passes.

Spinning threads poll for work between runs: they burn CPU while the caller writes outputs or
accumulates metrics, which on a shared machine slows everything else. This measures what turning
it off (`session.intra_op.allow_spinning = 0`) costs those passes in wall time and saves in CPU
time (all threads of the process), on the bundled example built once on the simulator: the
golden's `record_golden` over the evaluation set and `compare_models` of its FP16 and INT8
models against that golden. Rounds alternate on, off, off, on (ABBA) so a drifting machine hits
both alike; medians and per-round ratios (off / on) are printed as JSON.

    python benchmarks/ort_spin.py [--rounds 3] [--out /tmp/ort_spin]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ascend_quant.compare import compare_models  # noqa: E402
from ascend_quant.config import BuildConfig, merge  # noqa: E402
from ascend_quant.golden import GoldenSet, record_golden  # noqa: E402
from ascend_quant.pipeline import build  # noqa: E402
from ascend_quant.runners import ort as ort_module  # noqa: E402

MODEL = ROOT / "examples" / "sr" / "espcn_x2.onnx"


def _with_spin(spin: bool, work: Callable[[], Any]) -> tuple[float, float]:
    """(wall, cpu) seconds of `work` with every new ORT session spinning or not."""
    original = ort_module.session_options

    def forced(_spin: bool = True) -> Any:
        return original(spin)

    ort_module.session_options = forced  # type: ignore[assignment]
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        ort_module.session_options = original  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="ort_spin-"))
    config = merge(
        BuildConfig(),
        {
            "backend": "sim",
            "out": str(out / "ws"),
            "calib": {"sources": [str(ROOT / "calib" / "images")]},
            "eval_sources": [str(ROOT / "calib" / "images")],  # 16 samples (holdout has 4)
            "bench": {"warmup": 1, "loop": 2},
        },
    )
    result = build(MODEL, config)
    workspace = result.workspace
    eval_dirs = sorted(p for p in (workspace / "eval").iterdir() if p.is_dir())
    samples = [d / "samples" for d in eval_dirs]
    golden = GoldenSet.load(workspace / "golden")
    soc = result.socs[0]
    oms = [Path(soc.artifacts[p]) for p in ("fp16", "int8")]

    passes: dict[str, Callable[[], Any]] = {
        "golden": lambda: record_golden(MODEL, samples, out / "golden"),
        "compare": lambda: compare_models(MODEL, oms, samples, out / "compare", golden=golden),
    }
    figures: dict[str, Any] = {}
    for name, work in passes.items():
        work()  # warm the page cache and imports
        times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for _ in range(args.rounds):
            for spin in (True, False, False, True):
                times[spin].append(_with_spin(spin, work))
        on, off = times[True], times[False]
        figures[name] = {
            "samples": len(golden.stems),
            "wall_s_on": statistics.median(w for w, _ in on),
            "wall_s_off": statistics.median(w for w, _ in off),
            "cpu_s_on": statistics.median(c for _, c in on),
            "cpu_s_off": statistics.median(c for _, c in off),
            "wall_ratio_off_on": statistics.median(w for w, _ in off)
            / statistics.median(w for w, _ in on),
            "cpu_ratio_off_on": statistics.median(c for _, c in off)
            / statistics.median(c for _, c in on),
            "wall_ratio_per_round": [
                round((off[2 * i][0] + off[2 * i + 1][0]) / (on[2 * i][0] + on[2 * i + 1][0]), 3)
                for i in range(args.rounds)
            ],
        }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
