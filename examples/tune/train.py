"""Train and export the tuning example: a small denoiser whose refinement head also reads the raw
0-255 image (a common export mistake: one branch kept the un-normalised pixels).

The body sees the image in [0, 1] and produces 16 feature channels of order 1; the head
concatenates them with `input * 255` and maps the 19 channels to the clean image. In FP32 this is
harmless. In INT8 the head's input is quantized per tensor over [0, 255], one step is about 1.0,
and the 16 feature channels fall into a handful of levels: the default INT8 build fails.

Training data: every image in ``calib/images/`` (sorted, RGB), 64x64 crops, Gaussian noise
sigma = 0.1 added; evaluation: the held-apart ``calib/holdout/`` photos. Exported at
[1, 3, 128, 128] to ``examples/tune/denoise_raw_head.onnx`` (opset 17, IR 8).

PyTorch is needed only here, never by the ascend_quant package:

    python examples/tune/train.py            # ~2 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def load(folder: Path) -> list[np.ndarray]:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    return [np.asarray(Image.open(p).convert("RGB"), np.float32) / 255.0 for p in paths]


def batch(images: list[np.ndarray], size: int, crop: int, sigma: float, rng: random.Random):
    clean = []
    for _ in range(size):
        img = images[rng.randrange(len(images))]
        y = rng.randrange(img.shape[0] - crop + 1)
        x = rng.randrange(img.shape[1] - crop + 1)
        clean.append(img[y : y + crop, x : x + crop].transpose(2, 0, 1))
    target = np.stack(clean)
    noise = np.random.default_rng(rng.randrange(1 << 30)).normal(0, sigma, target.shape)
    return np.clip(target + noise, 0, 1).astype(np.float32), target


def build_model():
    import torch
    from torch import nn

    class RawHeadDenoiser(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(3, 16, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(16, 16, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(16, 16, 3, padding=1),
                nn.ReLU(),
            )
            self.head = nn.Sequential(
                nn.Conv2d(19, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.cat([self.body(x), x * 255.0], dim=1))

    return RawHeadDenoiser()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-12)))


def main() -> None:
    import onnx
    import onnxruntime as ort
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--sigma", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=HERE / "denoise_raw_head.onnx")
    args = parser.parse_args()
    rng = random.Random(0)
    torch.manual_seed(0)
    torch.set_num_threads(2)
    train = load(REPO / "calib" / "images")
    holdout = load(REPO / "calib" / "holdout")
    model = build_model()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps, eta_min=1e-5)
    for step in range(args.steps):
        noisy, clean = batch(train, 16, 64, args.sigma, rng)
        loss = torch.nn.functional.l1_loss(model(torch.from_numpy(noisy)), torch.from_numpy(clean))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0:
            print(f"step {step} l1 {loss.item():.4f}", flush=True)
    model.eval()
    scores = []
    with torch.no_grad():
        for img in holdout:
            clean = img[:128, :128].transpose(2, 0, 1)[None].copy()
            noisy = np.clip(
                clean + np.random.default_rng(1).normal(0, args.sigma, clean.shape), 0, 1
            )
            out = model(torch.from_numpy(noisy.astype(np.float32))).numpy()
            scores.append((psnr(noisy, clean), psnr(np.clip(out, 0, 1), clean)))
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, 128, 128),),
            str(raw),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["output"],
            do_constant_folding=True,
        )
        proto = onnx.load(str(raw))
    proto.ir_version = 8
    proto.producer_name = "ascend-quant examples/tune/train.py"
    onnx.checker.check_model(proto)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    tile = np.random.default_rng(2).random((1, 3, 128, 128), dtype=np.float32)
    with torch.no_grad():
        worst = float(
            np.abs(sess.run(None, {"input": tile})[0] - model(torch.from_numpy(tile)).numpy()).max()
        )
    args.out.write_bytes(proto.SerializeToString())
    print(
        json.dumps(
            {
                "steps": args.steps,
                "sigma": args.sigma,
                "holdout_psnr_noisy_db": round(float(np.mean([s[0] for s in scores])), 2),
                "holdout_psnr_denoised_db": round(float(np.mean([s[1] for s in scores])), 2),
                "onnx_vs_torch_max_abs": worst,
                "out": str(args.out.relative_to(REPO)),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
