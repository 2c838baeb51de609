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
from ascend_quant.compare import compare_models
model, fp16, int8, evals, out = map(Path, sys.argv[1:6])
started = time.perf_counter()
result = compare_models(model, [fp16, int8], [evals], out)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - started,
      result.samples)
"""


def _set(root: Path, count: int, shape: tuple[int, ...], seed: int) -> Path:
    from ascend_quant.data.calibset import write_samples

    rng = np.random.default_rng(seed)
    samples = (rng.random(shape, dtype=np.float32) for _ in range(count))
    write_samples(root, "input", samples, sample_shape=shape, dtype="float32", batch_dim=0)
    return root


def _compare(model: Path, oms: dict[str, Path], evals: Path, out: Path) -> dict[str, float]:
    argv = [sys.executable, "-c", CHILD, str(model), str(oms["fp16"]), str(oms["int8"])]
    proc = subprocess.run([*argv, str(evals), str(out)], check=True, capture_output=True, text=True)
    rss_kb, seconds, samples = proc.stdout.split()[-3:]
    return {
        "samples": int(samples),
        "peak_rss_mb": round(int(rss_kb) / 1024, 1),
        "compare_s": round(float(seconds), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=16, help="N (the large run uses 8N)")
    parser.add_argument("--hw", type=int, default=64, help="input size of the model")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from quant_quality import deep_conv_bn

    from ascend_quant.backends.base import ConvertRequest
    from ascend_quant.backends.sim import SimBackend
    from ascend_quant.model import preflight
    from ascend_quant.onnx_io import save_for_ort

    with tempfile.TemporaryDirectory(prefix="aq-compare-") as tmp:
        work = Path(tmp)
        source = save_for_ort(deep_conv_bn(args.hw), work / "deep_conv_bn.onnx")
        pre = preflight(source, work / "model")
        (name, shape), *_ = pre.input_shapes.items()
        calib = _set(work / "calib", args.n, shape, 1)
        oms: dict[str, Path] = {}
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
            oms[precision] = SimBackend().convert(request).path
        started = time.perf_counter()
        runs = {
            label: _compare(
                pre.model_path,
                oms,
                _set(work / f"eval_{label}", count, shape, 2),
                work / f"cmp_{label}",
            )
            for label, count in (("n", args.n), ("8n", 8 * args.n))
        }
        total_s = time.perf_counter() - started
    ratio = runs["8n"]["peak_rss_mb"] / runs["n"]["peak_rss_mb"]
    json.dump(
        {
            "benchmark": "compare_memory",
            "model": f"deep_conv_bn {args.hw}x{args.hw}",
            "input_shape": list(shape),
            "n": runs["n"],
            "8n": runs["8n"],
            "total_s": round(total_s, 1),
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
