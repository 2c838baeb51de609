"""PSNR against the true high-resolution photos for FP32, FP16 and INT8 builds of espcn_x2.

`ascend-quant build` compares FP16 and INT8 with FP32; this script answers the question an SR
user asks next: how far from the real high-resolution image is each build? It runs the FP32 ONNX
model and the simulated FP16/INT8 .om files (from a `build` workspace) over the held-apart photos,
tile by tile (the model takes 128x128 LR tiles; tiles overlap by a margin so seams do not count),
with the same degradation as train.py (Pillow bicubic x2 downscaling), and prints JSON.

    python examples/sr/evaluate.py [--workspace build/espcn_x2/Ascend310P3]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ascend_quant.backends.sim import open_runner
from ascend_quant.runners.ort import OrtRunner

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from train import downscale, list_images, load_rgb, luma, mod_crop, psnr, to_float, to_uint8  # noqa: E402

MARGIN = 8  # LR pixels of context on each side of a tile's kept core


def upscale(runner: OrtRunner, lr: np.ndarray, tile: int, scale: int) -> np.ndarray:
    """(3, H, W) LR in [0, 1] -> (3, sH, sW), running `runner` on overlapping tiles."""
    core = tile - 2 * MARGIN
    _, height, width = lr.shape
    rows, cols = -(-height // core), -(-width // core)
    padded = np.pad(
        lr,
        ((0, 0), (MARGIN, rows * core - height + MARGIN), (MARGIN, cols * core - width + MARGIN)),
        mode="edge",
    )
    out = np.zeros((3, rows * core * scale, cols * core * scale), np.float32)
    name = runner.input_specs()[0].name
    for r in range(rows):
        for c in range(cols):
            patch = padded[:, r * core : r * core + tile, c * core : c * core + tile]
            sr = next(iter(runner.infer({name: patch[None]}).values()))[0]
            kept = sr[
                :,
                MARGIN * scale : (MARGIN + core) * scale,
                MARGIN * scale : (MARGIN + core) * scale,
            ]
            out[
                :,
                r * core * scale : (r + 1) * core * scale,
                c * core * scale : (c + 1) * core * scale,
            ] = kept
    return out[:, : height * scale, : width * scale]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=HERE / "espcn_x2.onnx")
    parser.add_argument("--workspace", type=Path, default=REPO / "build/espcn_x2/Ascend310P3")
    parser.add_argument("--eval-dir", type=Path, default=REPO / "calib/holdout")
    parser.add_argument("--scale", type=int, default=2)
    args = parser.parse_args()

    stem = args.model.stem
    runners = {
        "fp32": OrtRunner(args.model),
        "fp16": open_runner(args.workspace / "om" / f"{stem}_fp16.om"),
        "int8": open_runner(args.workspace / "om" / f"{stem}_int8.om"),
    }
    tile = int(runners["fp32"].input_specs()[0].shape[-1])
    results: dict[str, dict[str, dict[str, float]]] = {}
    for path in list_images(args.eval_dir):
        hr = mod_crop(load_rgb(path), args.scale)
        lr = to_float(downscale(hr, args.scale))
        results[path.stem] = {}
        for precision, runner in runners.items():
            sr = to_uint8(upscale(runner, lr, tile, args.scale))
            results[path.stem][precision] = {
                "psnr_rgb": round(psnr(sr / 255.0, hr / 255.0), 3),
                "psnr_y": round(psnr(luma(sr), luma(hr)), 3),
            }
    mean = {
        precision: {
            key: round(float(np.mean([r[precision][key] for r in results.values()])), 3)
            for key in ("psnr_rgb", "psnr_y")
        }
        for precision in runners
    }
    print(json.dumps({"per_image": results, "mean": mean}, indent=2))


if __name__ == "__main__":
    main()
