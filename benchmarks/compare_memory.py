"""Peak memory of `compare` for N vs 8N evaluation samples (target: ratio within 1.1x).

`compare` streams each candidate in-process against the recorded golden (`Backend.open` +
`comparator.compare_runs`), keeping only accumulators, so its memory must not grow with the
number of samples. The model is the deep conv net of quant_quality.py at --hw (default 64),
preflighted and converted to FP16 and INT8 by the simulator once; each comparison (golden
recorded, both candidates compared) runs in a fresh subprocess that reports its wall time and RSS
high-water mark (`ru_maxrss`). Prints JSON.

    .venv/bin/python benchmarks/compare_memory.py [--n 16] [--hw 64]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _measure import convert_fp16_int8, n_and_8n, print_report, random_set, rss_verdict, run_child

HERE = Path(__file__).resolve().parent

CHILD = """
import resource, sys, time
from pathlib import Path
from ascend_quant.compare import compare_models
model, fp16, int8, evals, out = map(Path, sys.argv[1:6])
started = time.perf_counter()
result = compare_models(model, [fp16, int8], [evals], out)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - started,
      result.samples)
"""


def _compare(model: Path, oms: dict[str, Path], evals: Path, out: Path) -> dict[str, float]:
    run = run_child(CHILD, model, oms["fp16"], oms["int8"], evals, out, fields=1)
    return {
        "samples": int(run.fields[0]),
        "peak_rss_mb": run.peak_rss_mb,
        "compare_s": run.seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=16, help="N (the large run uses 8N)")
    parser.add_argument("--hw", type=int, default=64, help="input size of the model")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from quant_quality import deep_conv_bn

    from ascend_quant.model import preflight
    from ascend_quant.onnx_io import save_for_ort

    with tempfile.TemporaryDirectory(prefix="aq-compare-") as tmp:
        work = Path(tmp)
        source = save_for_ort(deep_conv_bn(args.hw), work / "deep_conv_bn.onnx")
        pre = preflight(source, work / "model")
        (name, shape), *_ = pre.input_shapes.items()
        calib = random_set(work / "calib", args.n, shape, 1)
        oms, _ = convert_fp16_int8(pre, work / "om", {name: calib})
        started = time.perf_counter()
        runs = {
            label: _compare(
                pre.model_path,
                oms,
                random_set(work / f"eval_{label}", count, shape, 2),
                work / f"cmp_{label}",
            )
            for label, count in n_and_8n(args.n)
        }
        total_s = time.perf_counter() - started
    print_report(
        {
            "benchmark": "compare_memory",
            "model": f"deep_conv_bn {args.hw}x{args.hw}",
            "input_shape": list(shape),
            "n": runs["n"],
            "8n": runs["8n"],
            "total_s": round(total_s, 1),
            **rss_verdict(runs, 1.1),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
