"""NumPy DDIM sampler for the diffusion example, running its networks through Runners.

Shared by `train.py` (the noise schedule it trains with), `pipeline.py` (the two-component
generator ascend-quant evaluates) and `capture.py` (calibration data from the middle steps).
NumPy only: no PyTorch at inference time.

The UNet predicts the noise `eps` in `x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps` (a_t = cumulative
product of the cosine schedule, Nichol & Dhariwal 2021) on images scaled to [-1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

# The schedule the model was trained with; the sampler must use the same one.
TRAIN_STEPS = 1000
COSINE_S = 0.008


class Infer(Protocol):
    """The one method of a Runner the sampler needs (ascend_quant's runners satisfy it)."""

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def alphas_cumprod(steps: int = TRAIN_STEPS, s: float = COSINE_S) -> np.ndarray:
    """Cosine schedule a_t for t = 0..steps-1 (float64), betas clipped at 0.999 as in the paper."""
    t = np.arange(steps + 1, dtype=np.float64) / steps
    f = np.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
    return np.cumprod(1.0 - betas)


def ddim_timesteps(num_steps: int, train_steps: int = TRAIN_STEPS) -> np.ndarray:
    """Evenly spaced training timesteps, highest first (DDIM's "uniform" skip)."""
    if not 1 <= num_steps <= train_steps:
        raise ValueError(f"num_steps must be in 1..{train_steps}, got {num_steps}")
    stride = train_steps // num_steps
    return (np.arange(num_steps, dtype=np.int64) * stride + 1)[::-1].copy()


@dataclass(frozen=True)
class UNetIO:
    """The UNet's input and output names (as exported by train.py)."""

    sample: str = "sample"
    timestep: str = "timestep"
    context: str = "context"
    output: str = "eps"


StepHook = Callable[[int, dict[str, np.ndarray], np.ndarray], None]


def ddim_sample(
    unet: Infer,
    context: np.ndarray,
    noise: np.ndarray,
    num_steps: int = 25,
    io: UNetIO = UNetIO(),
    on_step: StepHook | None = None,
) -> np.ndarray:
    """Deterministic DDIM (eta = 0) from `noise` (N, C, H, W) to images in [-1, 1].

    `context` is the (N, tokens, dim) conditioning sequence; `on_step(i, feeds, eps)` sees every
    UNet call (step index, the exact feeds, the predicted noise): capture.py records from it.
    """
    a = alphas_cumprod()
    steps = ddim_timesteps(num_steps)
    x = noise.astype(np.float32)
    n = x.shape[0]
    for i, t in enumerate(steps):
        feeds = {
            io.sample: x,
            io.timestep: np.full((n,), float(t), dtype=np.float32),
            io.context: context.astype(np.float32),
        }
        eps = unet.infer(feeds)[io.output].astype(np.float64)
        if on_step is not None:
            on_step(i, feeds, eps.astype(np.float32))
        a_t = a[t]
        a_prev = a[steps[i + 1]] if i + 1 < len(steps) else 1.0
        x0 = (x - math.sqrt(1.0 - a_t) * eps) / math.sqrt(a_t)
        x0 = np.clip(x0, -1.0, 1.0)  # the data range; stops rare early overshoots compounding
        eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1.0 - a_t)
        x = (math.sqrt(a_prev) * x0 + math.sqrt(1.0 - a_prev) * eps).astype(np.float32)
    return x


def to_unit(x: np.ndarray) -> np.ndarray:
    """[-1, 1] -> [0, 1], clipped (what an 8-bit image or the SR model expects)."""
    return np.clip((x + 1.0) * 0.5, 0.0, 1.0).astype(np.float32)


def mosaic(images: np.ndarray, cols: int) -> np.ndarray:
    """(N, C, H, W) -> (1, C, rows*H, cols*W), row-major; N must fill the grid."""
    n, c, h, w = images.shape
    rows = n // cols
    if rows * cols != n:
        raise ValueError(f"{n} images do not fill a grid {cols} wide")
    grid = images.reshape(rows, cols, c, h, w).transpose(2, 0, 3, 1, 4)
    return np.ascontiguousarray(grid.reshape(1, c, rows * h, cols * w))


def noise_for(seed: int, shape: Sequence[int]) -> np.ndarray:
    """The starting noise for a seed: identical for every precision mix compared."""
    return np.random.default_rng(seed).standard_normal(tuple(shape)).astype(np.float32)
