"""Cost of `analyze`: time as a multiple of one simulated INT8 conversion, and peak memory for N
vs 8N evaluation samples (target: ratio within 1.1x: only accumulators are kept).

The model is preflighted, then converted to FP16 and INT8 once (calibration on N samples, the
INT8 conversion timed). Each analysis runs in a fresh subprocess that reports its wall time and
RSS high-water mark (`ru_maxrss`), on N and on 8N evaluation samples. Prints JSON.

    .venv/bin/python benchmarks/analyze_cost.py [--n 16] [--model examples/sr/espcn_x2.onnx]

Without --model, the deep conv net of quant_quality.py at --hw (default 64).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _measure import convert_fp16_int8, n_and_8n, print_report, random_set, rss_verdict, run_child

HERE = Path(__file__).resolve().parent

CHILD = """
import resource, sys, time
from pathlib import Path
from ascend_quant.analysis.analyze import analyze_models
model, fp16, int8, evals = map(Path, sys.argv[1:5])
started = time.perf_counter()
analysis = analyze_models(model, {"fp16": fp16, "int8": int8}, {"input": evals})
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - started,
      analysis.samples, len(analysis.layers["int8"]), len(analysis.layers["fp16"]))
"""


def _analyze(model: Path, oms: dict[str, Path], evals: Path) -> dict[str, float]:
    run = run_child(CHILD, model, oms["fp16"], oms["int8"], evals, fields=3)
    samples, int8_layers, fp16_layers = run.fields
    return {
        "samples": int(samples),
        "int8_layers": int(int8_layers),
        "fp16_layers": int(fp16_layers),
        "peak_rss_mb": run.peak_rss_mb,
        "analyze_s": run.seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=16, help="N (the large run uses 8N)")
    parser.add_argument("--model", type=Path, help="an ONNX model with one image input")
    parser.add_argument("--hw", type=int, default=64, help="input size of the built-in model")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from quant_quality import deep_conv_bn

    from ascend_quant.model import preflight
    from ascend_quant.onnx_io import save_for_ort

    with tempfile.TemporaryDirectory(prefix="aq-analyze-") as tmp:
        work = Path(tmp)
        source = args.model or save_for_ort(deep_conv_bn(args.hw), work / "deep_conv_bn.onnx")
        pre = preflight(Path(source), work / "model")
        (name, shape), *_ = pre.input_shapes.items()
        calib = random_set(work / "calib", args.n, shape, 1)
        oms, convert_s = convert_fp16_int8(pre, work / "om", {name: calib})
        runs = {
            label: _analyze(
                pre.model_path, oms, random_set(work / f"eval_{label}", count, shape, 2)
            )
            for label, count in n_and_8n(args.n)
        }
    print_report(
        {
            "benchmark": "analyze_cost",
            "model": str(args.model) if args.model else f"deep_conv_bn {args.hw}x{args.hw}",
            "input_shape": list(shape),
            "int8_convert_s": convert_s["int8"],
            "fp16_convert_s": convert_s["fp16"],
            "n": runs["n"],
            "8n": runs["8n"],
            "analyze_over_int8_convert": round(runs["n"]["analyze_s"] / convert_s["int8"], 2),
            **rss_verdict(runs, 1.1),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
