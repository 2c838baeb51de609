"""IFMR calibration time against ONNX Runtime's MinMax `quantize_static` on the same model and data.

Both sides do the same job: calibrate activation ranges over the same 16 samples and write a QDQ
INT8 model. Ours is `quant.qdq.quantize_model` with the default settings (IFMR, the Ascend
default); ONNX Runtime's is `quantize_static` with its defaults (QDQ, MinMax, per-tensor). The
model is the ~1 GMAC conv stack of `build_cost.py` at 128x128. Rounds run ours, ORT, ORT, ours
(ABBA) so a drifting machine hits both alike; wall and CPU seconds (all threads) are reported
(medians over the rounds, and each round's CPU ratio), with the histogram updates' share of our
time. Prints JSON.

    python benchmarks/calib_speed.py [--hw 128] [--samples 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from build_cost import conv_model  # noqa: E402

from ascend_quant.config import QuantConfig  # noqa: E402
from ascend_quant.onnx_io import save_for_ort  # noqa: E402
from ascend_quant.quant import stats as stats_module  # noqa: E402
from ascend_quant.quant.qdq import quantize_model  # noqa: E402


def _ours(model_path: Path, feeds: list[dict[str, np.ndarray]]) -> dict[str, float]:
    import onnx

    model = onnx.load(str(model_path))
    hist = [0.0]
    lock = threading.Lock()
    real_update = stats_module.TensorStats.update

    def timed_update(
        self: stats_module.TensorStats,
        data: np.ndarray,
        buffers: stats_module.UpdateBuffers | None = None,
    ) -> None:
        start = time.thread_time()  # the updating thread's own CPU (ORT runs alongside)
        real_update(self, data, buffers)
        with lock:
            hist[0] += time.thread_time() - start

    stats_module.TensorStats.update = timed_update  # type: ignore[method-assign]
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        quantize_model(model, QuantConfig(), iter(feeds), total=len(feeds))
        return {
            "wall_s": time.perf_counter() - wall,
            "cpu_s": time.process_time() - cpu,
            "histogram_cpu_s": hist[0],
        }
    finally:
        stats_module.TensorStats.update = real_update  # type: ignore[method-assign]


def _ort(model_path: Path, feeds: list[dict[str, np.ndarray]], out: Path) -> dict[str, float]:
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    wall, cpu = time.perf_counter(), time.process_time()
    quantize_static(str(model_path), str(out), Reader())
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hw", type=int, default=128)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    feeds = [
        {"input": rng.random((1, 3, args.hw, args.hw), dtype=np.float32)}
        for _ in range(args.samples)
    ]
    ours: list[dict[str, float]] = []
    theirs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="calib_speed_") as tmp:
        model_path = save_for_ort(conv_model(args.hw), Path(tmp) / "conv.onnx")
        _ours(model_path, feeds[:1])  # warm both paths (imports, first session)
        _ort(model_path, feeds[:1], Path(tmp) / "warm.onnx")
        for r in range(args.rounds):
            ours.append(_ours(model_path, feeds))
            theirs.append(_ort(model_path, feeds, Path(tmp) / f"ort{r}a.onnx"))
            theirs.append(_ort(model_path, feeds, Path(tmp) / f"ort{r}b.onnx"))
            ours.append(_ours(model_path, feeds))

    def median(rows: list[dict[str, float]], key: str) -> float:
        return round(statistics.median(row[key] for row in rows), 3)

    result = {
        "model": f"conv stack {args.hw}x{args.hw}",
        "samples": args.samples,
        "ifmr_wall_s": median(ours, "wall_s"),
        "ifmr_cpu_s": median(ours, "cpu_s"),
        "ifmr_histogram_cpu_s": median(ours, "histogram_cpu_s"),
        "ort_minmax_wall_s": median(theirs, "wall_s"),
        "ort_minmax_cpu_s": median(theirs, "cpu_s"),
    }
    result["ratio_wall"] = round(result["ifmr_wall_s"] / result["ort_minmax_wall_s"], 2)
    result["ratio_cpu"] = round(result["ifmr_cpu_s"] / result["ort_minmax_cpu_s"], 2)
    # Each ABBA round on its own (ours A+A over ORT's B+B): the spread says how noisy it was.
    result["ratio_cpu_per_round"] = [
        round(
            (ours[2 * r]["cpu_s"] + ours[2 * r + 1]["cpu_s"])
            / (theirs[2 * r]["cpu_s"] + theirs[2 * r + 1]["cpu_s"]),
            2,
        )
        for r in range(args.rounds)
    ]
    result["target_ratio"] = 1.0
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
