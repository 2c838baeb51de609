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
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

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


def _set(root: Path, count: int, shape: tuple[int, ...], seed: int) -> Path:
    from ascend_quant.data.calibset import write_samples

    rng = np.random.default_rng(seed)
    samples = (rng.random(shape, dtype=np.float32) for _ in range(count))
    write_samples(root, "input", samples, sample_shape=shape, dtype="float32", batch_dim=0)
    return root


def _analyze(model: Path, oms: dict[str, Path], evals: Path) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(model), str(oms["fp16"]), str(oms["int8"]), str(evals)],
        check=True,
        capture_output=True,
        text=True,
    )
    rss_kb, seconds, samples, int8_layers, fp16_layers = proc.stdout.split()[-5:]
    return {
        "samples": int(samples),
        "int8_layers": int(int8_layers),
        "fp16_layers": int(fp16_layers),
        "peak_rss_mb": round(int(rss_kb) / 1024, 1),
        "analyze_s": round(float(seconds), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=16, help="N (the large run uses 8N)")
    parser.add_argument("--model", type=Path, help="an ONNX model with one image input")
    parser.add_argument("--hw", type=int, default=64, help="input size of the built-in model")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from quant_quality import deep_conv_bn

    from ascend_quant.backends.base import ConvertRequest
    from ascend_quant.backends.sim import SimBackend
    from ascend_quant.model import preflight
    from ascend_quant.onnx_io import save_for_ort

    with tempfile.TemporaryDirectory(prefix="aq-analyze-") as tmp:
        work = Path(tmp)
        source = args.model or save_for_ort(deep_conv_bn(args.hw), work / "deep_conv_bn.onnx")
        pre = preflight(Path(source), work / "model")
        (name, shape), *_ = pre.input_shapes.items()
        calib = _set(work / "calib", args.n, shape, 1)
        oms: dict[str, Path] = {}
        convert_s: dict[str, float] = {}
        for precision in ("fp16", "int8"):
            request = ConvertRequest(
                model=pre.model_path,
                source_sha256=pre.source_sha256,
                input_shapes=pre.input_shapes,
                soc="Ascend310P3",
                precision=precision,  # type: ignore[arg-type]
                out_dir=work / "om",
                name="m",
                calib_dirs={name: calib},
            )
            started = time.perf_counter()
            oms[precision] = SimBackend().convert(request).path
            convert_s[precision] = round(time.perf_counter() - started, 2)
        runs = {
            label: _analyze(pre.model_path, oms, _set(work / f"eval_{label}", count, shape, 2))
            for label, count in (("n", args.n), ("8n", 8 * args.n))
        }
    ratio = runs["8n"]["peak_rss_mb"] / runs["n"]["peak_rss_mb"]
    json.dump(
        {
            "benchmark": "analyze_cost",
            "model": str(args.model) if args.model else f"deep_conv_bn {args.hw}x{args.hw}",
            "input_shape": list(shape),
            "int8_convert_s": convert_s["int8"],
            "fp16_convert_s": convert_s["fp16"],
            "n": runs["n"],
            "8n": runs["8n"],
            "analyze_over_int8_convert": round(runs["n"]["analyze_s"] / convert_s["int8"], 2),
            "peak_rss_ratio_8n_over_n": round(ratio, 3),
            "target_ratio_max": 1.1,
            "within_target": ratio <= 1.1,
        },
        sys.stdout,
        indent=2,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
