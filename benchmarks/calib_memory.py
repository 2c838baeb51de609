"""Peak memory of INT8 calibration with N and 8N samples (images: within 1.2x; arrays: 1.1x).

Each measurement is a fresh subprocess that runs the simulator's INT8 convert (streaming
calibration + QDQ build + FP16 overflow pass) and reports its RSS high-water mark
(`ru_maxrss`). The model is the deep conv net of quant_quality.py at 64x64, so one sample's
activations are a few MB: holding them all would show up at once. Prints JSON.

    .venv/bin/python benchmarks/calib_memory.py [--n 16] [--kind images|arrays]

`--kind arrays` feeds the same model .npy files instead: the child process also checks the
files and writes the calib set (`data.arrays`), so its RSS covers both steps.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from _measure import n_and_8n, print_report, rss_verdict, run_child
from PIL import Image

HERE = Path(__file__).resolve().parent
HW = 64

CHILD = """
import resource, sys, time
from pathlib import Path
from ascend_quant.backends.base import ConvertRequest
from ascend_quant.backends.sim import SimBackend
model, calib, out = map(Path, sys.argv[1:4])
started = time.perf_counter()
artifact = SimBackend().convert(ConvertRequest(
    model=model, source_sha256="-", input_shapes={"input": (1, 3, HW, HW)}, soc="Ascend310P3",
    precision="int8", out_dir=out, name="m", calib_dirs={"input": calib}))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - started,
      artifact.manifest["calibration_batches"])
""".replace("HW", str(HW))

# arrays: check the .npy files and write the set, then convert, in one process
ARRAY_CHILD = """
import resource, sys, time
from pathlib import Path
from ascend_quant.backends.base import ConvertRequest
from ascend_quant.backends.sim import SimBackend
from ascend_quant.data import arrays
from ascend_quant.tensors import TensorSpec
model, npys, out = map(Path, sys.argv[1:4])
started = time.perf_counter()
plan = arrays.plan_source(str(npys), TensorSpec("input", "float32", (1, 3, HW, HW)), 0)
calib, _ = arrays.make_array_set(out / "calib", plan)
artifact = SimBackend().convert(ConvertRequest(
    model=model, source_sha256="-", input_shapes={"input": (1, 3, HW, HW)}, soc="Ascend310P3",
    precision="int8", out_dir=out, name="m", calib_dirs={"input": calib.root}))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - started,
      artifact.manifest["calibration_batches"])
""".replace("HW", str(HW))


def _images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 256, (HW, HW, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{i:05d}.png")


def _arrays(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        np.save(folder / f"{i:05d}.npy", rng.random((1, 3, HW, HW), dtype=np.float32))


def _measure(model: Path, calib: Path, out: Path, child: str = CHILD) -> dict[str, float]:
    run = run_child(child, model, calib, out, fields=1)
    return {
        "samples": int(run.fields[0]),
        "peak_rss_mb": run.peak_rss_mb,
        "convert_s": run.seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=16, help="N (the large run uses 8N)")
    parser.add_argument("--kind", choices=("images", "arrays"), default="images")
    args = parser.parse_args(argv)
    target = 1.2 if args.kind == "images" else 1.1
    sys.path.insert(0, str(HERE))
    from quant_quality import deep_conv_bn

    from ascend_quant.config import CalibConfig, PreprocessConfig
    from ascend_quant.data.images import make_calib_set
    from ascend_quant.onnx_io import save_for_ort

    with tempfile.TemporaryDirectory(prefix="aq-calibmem-") as tmp:
        work = Path(tmp)
        model = save_for_ort(deep_conv_bn(HW), work / "model.onnx")
        runs = {}
        for label, count in n_and_8n(args.n):
            if args.kind == "arrays":
                _arrays(work / f"npy_{label}", count)
                runs[label] = _measure(
                    model, work / f"npy_{label}", work / f"out_{label}", ARRAY_CHILD
                )
                continue
            _images(work / f"img_{label}", count)
            make_calib_set(
                work / f"calib_{label}",
                PreprocessConfig(size=(HW, HW)),
                CalibConfig(sources=(str(work / f"img_{label}"),), jobs=1),
            )
            runs[label] = _measure(model, work / f"calib_{label}", work / f"out_{label}")
    print_report(
        {
            "benchmark": "calib_memory",
            "kind": args.kind,
            "model": f"deep_conv_bn {HW}x{HW}",
            "n": runs["n"],
            "8n": runs["8n"],
            **rss_verdict(runs, target),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
