"""Train, evaluate and export the bundled x2 super-resolution example (ESPCN-class).

Training data: every image in ``calib/images/`` (sorted), converted to RGB. Evaluation: the
held-apart photos in ``calib/holdout/`` (never trained on). Low-resolution inputs are made the
way the model is used: Pillow BICUBIC downscaling of 8-bit RGB images.

Outputs ``examples/sr/espcn_x2.onnx`` (static [1,3,128,128] -> [1,3,256,256], opset 17, IR 8)
and ``examples/sr/metrics.json``; prints the settings and the final metrics as JSON.

PyTorch is needed only here, never by the ascend_quant package. Run with the training venv:

    /tmp/trainenv/bin/python examples/sr/train.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-dir", type=Path, default=REPO / "calib" / "images")
    p.add_argument("--eval-dir", type=Path, default=REPO / "calib" / "holdout")
    p.add_argument("--out", type=Path, default=HERE / "espcn_x2.onnx")
    p.add_argument("--metrics", type=Path, default=HERE / "metrics.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=int, default=2, help="upscaling factor")
    p.add_argument("--epochs", type=int, default=70)
    p.add_argument("--steps-per-epoch", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--crop", type=int, default=96, help="HR training crop (pixels)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate at the start")
    p.add_argument("--lr-min", type=float, default=1e-5, help="cosine schedule floor")
    p.add_argument("--loss", choices=["l1", "mse"], default="l1")
    p.add_argument("--act", choices=["tanh", "relu"], default="relu")
    p.add_argument(
        "--residual",
        choices=["none", "nearest"],
        default="nearest",
        help="add the nearest-upsampled input to the output (exports as ONNX Resize + Add)",
    )
    p.add_argument("--onnx-size", type=int, default=128, help="static LR input size of the ONNX")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=10, help="evaluate every N epochs")
    return p.parse_args(argv)


# ---------------------------------------------------------------- data (numpy / Pillow only)


def list_images(folder: Path) -> list[Path]:
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        sys.exit(f"error: no images in {folder}")
    return files


def load_rgb(path: Path) -> np.ndarray:
    """8-bit RGB array (H, W, 3); greyscale photos are replicated to three channels."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def bicubic_resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BICUBIC))


def downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    return bicubic_resize(hr, hr.shape[1] // scale, hr.shape[0] // scale)


def mod_crop(rgb: np.ndarray, scale: int) -> np.ndarray:
    h, w = rgb.shape[0] - rgb.shape[0] % scale, rgb.shape[1] - rgb.shape[1] % scale
    return rgb[:h, :w]


def to_float(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / 255.0


def to_uint8(chw: np.ndarray) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8, as a saved image would be."""
    return (np.clip(chw, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two arrays on [0, 1]."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 Y on [0, 1] (studio range 16..235), the usual SR-paper convention."""
    x = rgb.astype(np.float64) / 255.0
    y = 16.0 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]
    return y / 255.0


def random_batch(
    images: list[np.ndarray],
    weights: np.ndarray,
    rng: np.random.Generator,
    args: argparse.Namespace,
) -> tuple[np.ndarray, np.ndarray]:
    """Random HR crops (flip/rot90 augmented) and their Pillow-bicubic LR versions."""
    lrs, hrs = [], []
    for _ in range(args.batch_size):
        img = images[rng.choice(len(images), p=weights)]
        y = int(rng.integers(0, img.shape[0] - args.crop + 1))
        x = int(rng.integers(0, img.shape[1] - args.crop + 1))
        hr = img[y : y + args.crop, x : x + args.crop]
        if rng.random() < 0.5:
            hr = hr[:, ::-1]
        hr = np.ascontiguousarray(np.rot90(hr, int(rng.integers(0, 4))))
        lrs.append(to_float(downscale(hr, args.scale)))
        hrs.append(to_float(hr))
    return np.stack(lrs), np.stack(hrs)


# ---------------------------------------------------------------- model (PyTorch)


def build_model(args: argparse.Namespace) -> Any:
    import torch
    from torch import nn

    act = nn.Tanh if args.act == "tanh" else nn.ReLU

    class ESPCN(nn.Module):
        """Shi et al. 2016: features at LR, sub-pixel convolution (PixelShuffle) to HR."""

        def __init__(self) -> None:
            super().__init__()
            r = args.scale
            self.body = nn.Sequential(
                nn.Conv2d(3, 64, 5, padding=2),
                act(),
                nn.Conv2d(64, 32, 3, padding=1),
                act(),
                nn.Conv2d(32, 3 * r * r, 3, padding=1),
                nn.PixelShuffle(r),
            )
            self.residual = args.residual == "nearest"
            if self.residual:  # start as plain nearest upsampling
                nn.init.zeros_(self.body[4].weight)
                nn.init.zeros_(self.body[4].bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.body(x)
            if self.residual:
                y = y + nn.functional.interpolate(x, scale_factor=args.scale, mode="nearest")
            return y

    return ESPCN()


def upscale(model: Any, lr_rgb: np.ndarray) -> np.ndarray:
    """Model output for one 8-bit LR image, as 8-bit RGB."""
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(to_float(lr_rgb))[None])[0].numpy()
    return to_uint8(out)


def evaluate(model: Any, holdout: list[tuple[str, np.ndarray]], scale: int) -> dict[str, Any]:
    """PSNR (RGB and Y) of Pillow bicubic vs the model on full held-apart images."""
    rows: dict[str, dict[str, float]] = {}
    for name, hr in holdout:
        lr = downscale(hr, scale)
        bic = bicubic_resize(lr, hr.shape[1], hr.shape[0])
        sr = upscale(model, lr)
        rows[name] = {
            "bicubic_psnr_rgb": psnr(bic / 255.0, hr / 255.0),
            "model_psnr_rgb": psnr(sr / 255.0, hr / 255.0),
            "bicubic_psnr_y": psnr(luma(bic), luma(hr)),
            "model_psnr_y": psnr(luma(sr), luma(hr)),
        }
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in next(iter(rows.values()))}
    return {"images": rows, "mean": mean}


def export_onnx(
    model: Any, args: argparse.Namespace, holdout: list[tuple[str, np.ndarray]]
) -> float:
    """Static-shape ONNX export, verified on ONNX Runtime; returns max |ORT - PyTorch|."""
    import warnings

    import onnx
    import onnxruntime as ort
    import torch

    s = args.onnx_size
    dummy = torch.zeros(1, 3, s, s)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                model,
                (dummy,),
                str(raw),
                dynamo=False,  # TorchScript exporter: plain ops, no onnxscript needed
                opset_version=17,
                input_names=["input"],
                output_names=["output"],
                do_constant_folding=True,
            )
        proto = onnx.load(str(raw))
    proto.ir_version = 8  # onnxruntime and ATC read IR 8; newer onnx may stamp a higher one
    proto.producer_name = "ascend-quant examples/sr/train.py"
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()

    # Verify on LR tiles of the held-apart photos (real content, not zeros).
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    worst = 0.0
    for _, hr in holdout:
        lr = downscale(hr, args.scale)
        tile = to_float(lr[:s, :s])[None]
        with torch.no_grad():
            ref = model(torch.from_numpy(tile)).numpy()
        (got,) = sess.run(["output"], {"input": tile})
        assert got.shape == (1, 3, s * args.scale, s * args.scale), got.shape
        worst = max(worst, float(np.max(np.abs(got - ref))))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_name(args.out.name + ".tmp")
    tmp_out.write_bytes(data)
    os.replace(tmp_out, args.out)
    return worst


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(args.threads)

    train_files = list_images(args.train_dir)
    eval_files = list_images(args.eval_dir)
    if {f.name for f in train_files} & {f.name for f in eval_files}:
        sys.exit("error: a held-apart image is also in the training folder")
    images = [load_rgb(f) for f in train_files]
    usable = [i for i, im in enumerate(images) if min(im.shape[:2]) >= args.crop]
    if not usable:
        sys.exit(f"error: no training image is at least {args.crop}x{args.crop}")
    images = [images[i] for i in usable]
    areas = np.array([im.shape[0] * im.shape[1] for im in images], dtype=np.float64)
    weights = areas / areas.sum()  # each pixel equally likely to be in a crop
    holdout = [(f.stem, mod_crop(load_rgb(f), args.scale)) for f in eval_files]

    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    settings["train_images"] = [train_files[i].name for i in usable]
    settings["skipped_small"] = [f.name for i, f in enumerate(train_files) if i not in usable]
    settings["eval_images"] = [f.name for f in eval_files]
    settings["torch"] = torch.__version__
    print(json.dumps({"settings": settings}, indent=2), flush=True)

    model = build_model(args)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    total = args.epochs * args.steps_per_epoch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=args.lr_min)
    loss_fn = torch.nn.L1Loss() if args.loss == "l1" else torch.nn.MSELoss()
    rng = np.random.default_rng(args.seed)

    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        t0, running = time.perf_counter(), 0.0
        for _ in range(args.steps_per_epoch):
            lr_np, hr_np = random_batch(images, weights, rng, args)
            loss = loss_fn(model(torch.from_numpy(lr_np)), torch.from_numpy(hr_np))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            running += loss.item()
        line = {
            "epoch": epoch,
            "loss": running / args.steps_per_epoch,
            "lr": sched.get_last_lr()[0],
            "epoch_s": round(time.perf_counter() - t0, 1),
        }
        if epoch % args.log_every == 0 or epoch == args.epochs:
            model.eval()
            line["holdout_mean"] = evaluate(model, holdout, args.scale)["mean"]
        print(json.dumps(line), flush=True)
    train_s = time.perf_counter() - start

    model.eval()
    quality = evaluate(model, holdout, args.scale)
    max_diff = export_onnx(model, args, holdout)
    mean = quality["mean"]
    metrics = {
        "model": "ESPCN x2 (Conv5x5 3-64, Conv3x3 64-32, Conv3x3 32-12, PixelShuffle 2)",
        "activation": args.act,
        "residual": args.residual,
        "parameters": n_params,
        "onnx": args.out.name,
        "onnx_bytes": args.out.stat().st_size,
        "onnx_input": [1, 3, args.onnx_size, args.onnx_size],
        "onnx_output": [1, 3, args.onnx_size * args.scale, args.onnx_size * args.scale],
        "onnx_vs_torch_max_abs_diff": max_diff,
        "train_seconds": round(train_s, 1),
        "train_threads": args.threads,
        "train_images": settings["train_images"],
        "eval_images": settings["eval_images"],
        "psnr_note": (
            "dB on [0,1]; HR holdout photos cropped to a multiple of the scale, Pillow-bicubic "
            "downscaled, upscaled by Pillow bicubic or the model, both rounded to 8 bits; no "
            "border shave; Y = ITU-R BT.601 luma"
        ),
        "psnr": quality["images"],
        "psnr_mean": mean,
        "beats_bicubic": mean["model_psnr_rgb"] > mean["bicubic_psnr_rgb"],
        "command": "examples/sr/train.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    tmp_metrics = args.metrics.with_name(args.metrics.name + ".tmp")
    tmp_metrics.write_text(json.dumps(metrics, indent=2) + "\n")
    os.replace(tmp_metrics, args.metrics)
    print(json.dumps({"metrics": metrics}, indent=2), flush=True)
    return 0 if metrics["beats_bicubic"] else 1


if __name__ == "__main__":
    sys.exit(main())
