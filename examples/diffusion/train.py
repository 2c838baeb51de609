"""Train and export the diffusion example: a small conditional UNet denoiser, 32x32 RGB pixels.

Data: the bundled CC0/public-domain photographs in ``calib/images/`` (sorted), each downscaled to
a short side of 32 or 40 pixels (so a crop is most of the picture); a training sample is a random
32x32 crop (no flips by default: photographs and text have a left and right) labelled with its
photograph. The label is the "prompt": a learned table maps it to a
sequence of 4 context tokens of 32 values, which the UNet reads through cross-attention, as Stable
Diffusion's UNet reads its text encoder's output. The table ships beside the model
(``context.npz``), so NumPy alone turns a label into the UNet's ``context`` input.

The UNet predicts the noise (epsilon objective) at a timestep of the cosine schedule in
``sampler.py``; an exponential moving average of the weights is exported. Outputs
``unet.onnx`` (static batch 16, opset 17, IR 8), ``context.npz`` and ``metrics.json`` (settings,
loss every ``--log-every`` steps, export check). ``--checkpoint-every N`` also saves the EMA
weights every N steps (``OUT_DIR/checkpoints/``, not committed), to look at samples early.

PyTorch is needed only here, never by the ascend_quant package:

    pip install torch==2.13.0
    nice python examples/diffusion/train.py
"""

from __future__ import annotations

import argparse
import copy
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
sys.path.insert(0, str(HERE))
import sampler  # noqa: E402  (this folder's NumPy sampler: one noise schedule for both)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-dir", type=Path, default=REPO / "calib" / "images")
    p.add_argument("--out-dir", type=Path, default=HERE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=32, help="training crop and sample size")
    p.add_argument("--short-sides", default="32,40", help="photo short sides to crop from")
    p.add_argument("--flip", type=float, default=0.0, help="horizontal flip probability")
    p.add_argument("--steps", type=int, default=3200)
    p.add_argument("--batch-size", type=int, default=24)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--lr-min", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--ema", type=float, default=0.998, help="EMA decay (half-life ~350 steps)")
    p.add_argument("--width", type=int, default=32, help="channels at full resolution")
    p.add_argument("--tokens", type=int, default=4, help="context tokens per label")
    p.add_argument("--token-dim", type=int, default=32)
    p.add_argument("--onnx-batch", type=int, default=16, help="static batch of the export")
    p.add_argument("--threads", type=int, default=1, help="1: two threads spin on a busy machine")
    p.add_argument("--log-every", type=int, default=250)
    p.add_argument(
        "--checkpoint-every", type=int, default=0, help="save the EMA weights every N steps"
    )
    p.add_argument("--checkpoint-dir", type=Path, default=None, help="default: OUT_DIR/checkpoints")
    return p.parse_args(argv)


# ---------------------------------------------------------------- data (NumPy / Pillow)


def load_photos(folder: Path, short_sides: list[int]) -> tuple[list[str], list[list[np.ndarray]]]:
    """Per photograph: its name and float32 (3, H, W) copies in [-1, 1] at each short side."""
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        sys.exit(f"error: no images in {folder}")
    names, scaled = [], []
    for f in files:
        with Image.open(f) as im:
            rgb = im.convert("RGB")
        copies = []
        for side in short_sides:
            k = side / min(rgb.size)
            size = (max(side, round(rgb.size[0] * k)), max(side, round(rgb.size[1] * k)))
            arr = np.asarray(rgb.resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
            copies.append(np.ascontiguousarray(arr.transpose(2, 0, 1)) / 127.5 - 1.0)
        names.append(f.stem)
        scaled.append(copies)
    return names, scaled


def random_batch(
    photos: list[list[np.ndarray]], rng: np.random.Generator, n: int, size: int, flip: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Random crops (flipped with probability `flip`) and their photograph labels, each photo
    equally likely."""
    xs, labels = [], []
    for _ in range(n):
        label = int(rng.integers(len(photos)))
        img = photos[label][int(rng.integers(len(photos[label])))]
        y = int(rng.integers(img.shape[1] - size + 1))
        x = int(rng.integers(img.shape[2] - size + 1))
        crop = img[:, y : y + size, x : x + size]
        if rng.random() < flip:
            crop = crop[:, :, ::-1]
        xs.append(crop)
        labels.append(label)
    return np.stack(xs).astype(np.float32), np.array(labels, dtype=np.int64)


# ---------------------------------------------------------------- model (PyTorch)


def build_model(args: argparse.Namespace, n_labels: int) -> Any:
    import torch
    from torch import nn

    def norm(ch: int) -> nn.GroupNorm:
        return nn.GroupNorm(8, ch)

    class ResBlock(nn.Module):
        """GroupNorm-SiLU-Conv twice, the timestep embedding added in between (DDPM style)."""

        def __init__(self, cin: int, cout: int, temb: int) -> None:
            super().__init__()
            self.n1, self.c1 = norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
            self.t = nn.Linear(temb, cout)
            self.n2, self.c2 = norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
            self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
            nn.init.zeros_(self.c2.weight)
            nn.init.zeros_(self.c2.bias)

        def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
            h = self.c1(nn.functional.silu(self.n1(x)))
            h = h + self.t(temb)[:, :, None, None]
            h = self.c2(nn.functional.silu(self.n2(h)))
            return self.skip(x) + h

    class Attention(nn.Module):
        """Multi-head attention of the feature map over `ctx` (cross) or over itself (self)."""

        def __init__(self, ch: int, ctx_dim: int | None, heads: int = 4) -> None:
            super().__init__()
            self.heads = heads
            self.norm = norm(ch)
            kv_dim = ch if ctx_dim is None else ctx_dim
            self.q = nn.Linear(ch, ch, bias=False)
            self.k = nn.Linear(kv_dim, ch, bias=False)
            self.v = nn.Linear(kv_dim, ch, bias=False)
            self.out = nn.Linear(ch, ch)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

        def forward(self, x: torch.Tensor, ctx: torch.Tensor | None = None) -> torch.Tensor:
            b, c, h, w = x.shape
            seq = self.norm(x).flatten(2).transpose(1, 2)  # (b, hw, c)
            src = seq if ctx is None else ctx
            d = c // self.heads

            def split(t: torch.Tensor) -> torch.Tensor:
                return t.reshape(b, -1, self.heads, d).transpose(1, 2)  # (b, heads, n, d)

            q, k, v = split(self.q(seq)), split(self.k(src)), split(self.v(src))
            att = torch.softmax(q @ k.transpose(2, 3) * (1.0 / math.sqrt(d)), dim=-1)
            o = (att @ v).transpose(1, 2).reshape(b, h * w, c)
            return x + self.out(o).transpose(1, 2).reshape(b, c, h, w)

    class Up(nn.Module):
        """x2 nearest-neighbour upsampling, then a 3x3 convolution: no checkerboard, unlike a
        transposed convolution (its kernels overlap unevenly) or PixelShuffle (each pixel of a
        2x2 block comes from its own channel)."""

        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))

    class UNet(nn.Module):
        """32 -> 16 -> 8 -> 4 and back, a ResBlock at every level including the full 32x32.

        Channels w, 2w, 2w, 2w; cross-attention over the context at 16, 8 and 4 (as SD's UNet
        reads its text embedding at every level but the outermost), self-attention at 4; skip
        connections at each level; 3x3 convolutions in and out at full resolution.
        """

        def __init__(self) -> None:
            super().__init__()
            w, temb, ctx = args.width, args.width * 4, args.token_dim
            self.temb_dim = w
            self.time = nn.Sequential(nn.Linear(w, temb), nn.SiLU(), nn.Linear(temb, temb))
            self.inp = nn.Conv2d(3, w, 3, padding=1)
            self.d0 = ResBlock(w, w, temb)  # 32x32
            self.down0 = nn.Conv2d(w, w, 3, stride=2, padding=1)
            self.d1 = ResBlock(w, 2 * w, temb)  # 16x16
            self.down1 = nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1)
            self.d2 = ResBlock(2 * w, 2 * w, temb)  # 8x8
            self.d2x = Attention(2 * w, ctx)
            self.down2 = nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1)
            self.m1 = ResBlock(2 * w, 2 * w, temb)  # 4x4
            self.mself = Attention(2 * w, None)
            self.mx = Attention(2 * w, ctx)
            self.m2 = ResBlock(2 * w, 2 * w, temb)
            self.up2 = Up(2 * w, 2 * w)
            self.u2 = ResBlock(4 * w, 2 * w, temb)  # 8x8
            self.u2x = Attention(2 * w, ctx)
            self.up1 = Up(2 * w, 2 * w)
            self.u1 = ResBlock(4 * w, 2 * w, temb)  # 16x16
            self.u1x = Attention(2 * w, ctx)
            self.up0 = Up(2 * w, w)
            self.u0 = ResBlock(2 * w, w, temb)  # 32x32
            self.out_norm = norm(w)
            self.out = nn.Conv2d(w, 3, 3, padding=1)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

        def timestep_embedding(self, t: torch.Tensor) -> torch.Tensor:
            half = self.temb_dim // 2
            freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
            ang = t[:, None] * freqs[None, :]
            return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)

        def forward(
            self, sample: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor
        ) -> torch.Tensor:
            temb = self.time(self.timestep_embedding(timestep))
            h0 = self.d0(self.inp(sample), temb)
            h1 = self.d1(self.down0(h0), temb)
            h2 = self.d2x(self.d2(self.down1(h1), temb), context)
            m = self.m1(self.down2(h2), temb)
            m = self.m2(self.mx(self.mself(m), context), temb)
            u = self.u2x(self.u2(torch.cat([self.up2(m), h2], dim=1), temb), context)
            u = self.u1x(self.u1(torch.cat([self.up1(u), h1], dim=1), temb), context)
            u = self.u0(torch.cat([self.up0(u), h0], dim=1), temb)
            return self.out(nn.functional.silu(self.out_norm(u)))

    class Denoiser(nn.Module):
        """The UNet plus the label -> context table (the example's "text encoder")."""

        def __init__(self) -> None:
            super().__init__()
            self.unet = UNet()
            self.table = nn.Parameter(torch.randn(n_labels, args.tokens, args.token_dim) * 0.5)

        def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return self.unet(x, t, self.table[labels])

    return Denoiser()


# ---------------------------------------------------------------- export


def export(model: Any, args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    """unet.onnx and context.npz, checked on ONNX Runtime against PyTorch; returns facts."""
    import warnings

    import onnx
    import onnxruntime as ort
    import torch

    b, s = args.onnx_batch, args.size
    gen = torch.Generator().manual_seed(args.seed + 1)
    x = torch.randn(b, 3, s, s, generator=gen)
    t = torch.linspace(999, 1, b)
    table = model.table.detach()
    ctx = table[torch.arange(b) % table.shape[0]]
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model.unet,
                (x, t, ctx),
                str(raw),
                dynamo=False,  # TorchScript exporter: plain ops, no onnxscript needed
                opset_version=17,
                input_names=["sample", "timestep", "context"],
                output_names=["eps"],
                do_constant_folding=True,
            )
        proto = onnx.load(str(raw))
    proto.ir_version = 8  # ONNX Runtime and ATC read IR 8; newer onnx may stamp a higher one
    proto.producer_name = "ascend-quant examples/diffusion/train.py"
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()

    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = model.unet(x, t, ctx).numpy()
    (got,) = sess.run(["eps"], {"sample": x.numpy(), "timestep": t.numpy(), "context": ctx.numpy()})
    max_diff = float(np.max(np.abs(got - ref)))

    out = args.out_dir / "unet.onnx"
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_out.write_bytes(data)
    os.replace(tmp_out, out)
    ctx_path = args.out_dir / "context.npz"
    tmp_ctx = args.out_dir / "context.tmp.npz"
    np.savez(tmp_ctx, names=np.array(names), table=table.numpy().astype(np.float32))
    os.replace(tmp_ctx, ctx_path)
    ops = sorted({n.op_type for n in proto.graph.node})
    return {"onnx_bytes": len(data), "onnx_vs_torch_max_abs_diff": max_diff, "onnx_ops": ops}


def save_checkpoint(model: Any, path: Path, step: int) -> Path:
    """The EMA weights at `step` (atomic), to look at samples before training ends."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"step": step, "state_dict": model.state_dict()}, tmp)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(args.threads)

    sides = [int(v) for v in args.short_sides.split(",")]
    names, photos = load_photos(args.train_dir, sides)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    settings.update(train_images=names, torch=torch.__version__)
    print(json.dumps({"settings": settings}), flush=True)

    model = build_model(args, len(names))
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    n_params = sum(p.numel() for p in model.unet.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        frac = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr_min + 0.5 * (args.lr - args.lr_min) * (1 + math.cos(math.pi * frac))

    a_bar = torch.from_numpy(sampler.alphas_cumprod()).float()
    rng = np.random.default_rng(args.seed)
    start, running, last_loss = time.perf_counter(), 0.0, float("nan")
    history: list[dict[str, Any]] = []
    checkpoint_dir = args.checkpoint_dir or args.out_dir / "checkpoints"
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        x0_np, labels_np = random_batch(photos, rng, args.batch_size, args.size, args.flip)
        x0, labels = torch.from_numpy(x0_np), torch.from_numpy(labels_np)
        t = torch.randint(0, sampler.TRAIN_STEPS, (args.batch_size,))
        noise = torch.randn_like(x0)
        a = a_bar[t][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = torch.nn.functional.mse_loss(model(xt, t.float(), labels), noise)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(args.ema, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
        running += loss.item()
        if (step + 1) % args.log_every == 0:
            line = {
                "step": step + 1,
                "loss": round(running / args.log_every, 5),
                "lr": round(lr_at(step), 6),
                "elapsed_s": round(time.perf_counter() - start, 1),
            }
            print(json.dumps(line), flush=True)
            history.append(line)
            running, last_loss = 0.0, line["loss"]
        if args.checkpoint_every and (step + 1) % args.checkpoint_every == 0:
            save_checkpoint(ema, checkpoint_dir / f"ema_{step + 1:06d}.pt", step + 1)
    train_s = time.perf_counter() - start

    facts = export(ema, args, names)
    metrics = {
        "model": f"conditional UNet 32x32 RGB: 3x3 conv in and out at full resolution, ResBlocks "
        f"{args.width}/{2 * args.width}/{2 * args.width}/{2 * args.width} channels at 32/16/8/4, "
        "nearest upsampling + conv, cross-attention at 16x16, 8x8 and 4x4 over a "
        f"{args.tokens}x{args.token_dim} context, self-attention at 4x4, epsilon objective",
        "parameters_unet": n_params,
        "labels": names,
        "train_seconds": round(train_s, 1),
        "train_threads": args.threads,
        "final_loss": last_loss,
        "loss_history": history,
        **facts,
        "command": " ".join([Path(__file__).name, *(sys.argv[1:] if argv is None else argv)]),
    }
    tmp_metrics = args.out_dir / "metrics.json.tmp"
    tmp_metrics.write_text(json.dumps(metrics, indent=2) + "\n")
    os.replace(tmp_metrics, args.out_dir / "metrics.json")
    print(json.dumps({"metrics": metrics}, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
