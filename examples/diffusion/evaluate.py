"""The figures in this example's README, from a finished `compare --pipeline` run.

Reads `build/diffusion/pipeline.json` (final-image metrics per mix) and the UNet's build
(`build/diffusion/unet/<soc>/`: sizes, bench), and adds what the pipeline verdict alone does
not show: the per-step cosine of each UNet build against the FP32 UNet on the very same inputs
(the FP32 trajectory), for contrast with the final-image figures. Writes `samples.png` (the
FP32 pipeline's final 256x256 image: 16 samples, one per training photograph) and prints JSON;
the side-by-side final images of every mix are in `pipeline.html`.

    python examples/diffusion/evaluate.py [--build build/diffusion]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import pipeline  # noqa: E402

from ascend_quant.backends import get_backend  # noqa: E402
from ascend_quant.metrics import cosine  # noqa: E402
from ascend_quant.runners.ort import OrtRunner  # noqa: E402


def to_png(image: np.ndarray, path: Path) -> Path:
    """(1, 3, H, W) in [0, 1] -> 8-bit RGB PNG."""
    pixels = (np.clip(image[0].transpose(1, 2, 0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    Image.fromarray(pixels).save(path, optimize=True)
    return path


def per_step_cosine(unet_fp32: Any, others: dict[str, Any], index: int = 0) -> dict[str, Any]:
    """Each UNet's eps vs the FP32 UNet's, step by step on the FP32 trajectory's own feeds."""
    _, table = pipeline.load_context()
    values: dict[str, list[float]] = {name: [] for name in others}

    def hook(_step: int, feeds: dict[str, np.ndarray], eps: np.ndarray) -> None:
        for name, runner in others.items():
            mine = runner.infer(feeds)["eps"]
            values[name].append(float(cosine(eps, mine)))

    pipeline.sample_unet(unet_fp32, index, table, on_step=hook)
    return {
        name: {
            "min": min(v),
            "min_at_step": int(np.argmin(v)),
            "mean": float(np.mean(v)),
            "per_step": [round(x, 7) for x in v],
        }
        for name, v in values.items()
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", type=Path, default=Path("build/diffusion"))
    p.add_argument("--soc", default="Ascend310P3")
    p.add_argument("--out", type=Path, default=HERE)
    args = p.parse_args(argv)

    report = json.loads((args.build / "pipeline.json").read_text())
    om_dir = args.build / "unet" / args.soc / "om"
    oms = {
        p: om_dir / f"unet_{p}.om"
        for p in ("fp16", "w8", "int8")
        if (om_dir / f"unet_{p}.om").is_file()
    }
    backend = get_backend(report["backend"])
    with OrtRunner(HERE / "unet.onnx") as golden_unet:
        runners = {name: backend.open(path) for name, path in oms.items()}
        try:
            steps = per_step_cosine(golden_unet, runners)
        finally:
            for runner in runners.values():
                runner.close()
        with OrtRunner(HERE.parent / "sr" / "espcn_x2.onnx") as sr:
            final = pipeline.generate({"unet": golden_unet, "sr": sr}, 0)["image"]
    to_png(final, args.out / "samples.png")

    bench = json.loads((args.build / "unet" / args.soc / "reports" / "bench.json").read_text())
    sizes = {"fp32 (unet.onnx)": (HERE / "unet.onnx").stat().st_size}
    memory = {}
    for row in bench["rows"]:
        r = row["result"]
        sizes[r["precision"]] = r["file_size_bytes"]
        memory[r["precision"]] = {
            "peak_memory_bytes": r.get("peak_memory_bytes"),
            "mean_ms": r["latency_ms"]["mean"],
        }
    mixes = {
        m["name"]: {
            "precisions": m["precisions"],
            **{
                k: m["outputs"]["image"].get(k)
                for k in ("cosine", "psnr_db", "ssim", "rel_euclidean")
            },
            "failures": m["failures"],
        }
        for m in report["mixes"]
    }
    result = {
        "verdict": report["verdict"],
        "final_image": mixes,
        "unet_per_step_cosine": steps,
        "unet_sizes_bytes": sizes,
        "unet_bench": memory,
        "samples_png": str(args.out / "samples.png"),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
