"""The diffusion example as a two-component pipeline: UNet (25 DDIM steps), then ESPCN x2.

`generate(runners, index)` is what `ascend-quant compare --pipeline pipeline:generate` calls:
`runners` maps "unet" and "sr" to Runners (FP32 ONNX, or a converted .om at some precision),
and `index` picks the noise, so every precision mix starts from the same noise. One call makes
16 samples, one per training photograph (the "prompts"), tiles them 4x4 into a 128x128 mosaic
(the SR model's static input) and upscales it to 256x256: that image is the final output.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import sampler  # noqa: E402  (this folder's NumPy DDIM sampler)

STEPS = 25
BATCH = 16  # the UNet's static batch; 4 x 4 mosaic of 32x32 samples = the SR model's 128x128
COLS = 4
SIZE = 32


def load_context(path: Path = HERE / "context.npz") -> tuple[list[str], np.ndarray]:
    """The label names and the (labels, tokens, dim) context table train.py exported."""
    with np.load(path) as data:
        return [str(n) for n in data["names"]], data["table"].astype(np.float32)


def context_for(table: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """Labels 0..batch-1 (cycling): one sample per photograph."""
    return table[np.arange(batch) % len(table)]


def noise_seed(index: int) -> int:
    """Sample `index`'s noise seed; capture.py uses other seeds, so calibration never sees these."""
    return 1000 + index


def sample_unet(
    unet: Any, index: int, table: np.ndarray, on_step: sampler.StepHook | None = None
) -> np.ndarray:
    """The UNet's 16 samples for `index`, in [-1, 1], shape (16, 3, 32, 32)."""
    noise = sampler.noise_for(noise_seed(index), (BATCH, 3, SIZE, SIZE))
    return sampler.ddim_sample(unet, context_for(table), noise, STEPS, on_step=on_step)


def generate(runners: Mapping[str, Any], index: int) -> dict[str, np.ndarray]:
    """UNet samples -> 4x4 mosaic in [0, 1] -> SR x2: {"image": (1, 3, 256, 256)}."""
    _, table = load_context()
    samples = sample_unet(runners["unet"], index, table)
    grid = sampler.mosaic(sampler.to_unit(samples), COLS)
    upscaled = runners["sr"].infer({"input": grid})["output"]
    return {"image": np.clip(upscaled, 0.0, 1.0).astype(np.float32)}
