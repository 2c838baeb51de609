"""The diffusion example's NumPy DDIM sampler on a tiny untrained UNet, through an OrtRunner."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import tiny_models

from ascend_quant.runners.ort import OrtRunner

SAMPLER = Path(__file__).resolve().parents[2] / "examples" / "diffusion" / "sampler.py"


def _sampler() -> ModuleType:
    spec = importlib.util.spec_from_file_location("diffusion_sampler", SAMPLER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


sampler = _sampler()


@pytest.fixture(scope="module")
def unet() -> OrtRunner:
    return OrtRunner(tiny_models.tiny_unet(batch=2, hw=8))


def test_schedule_is_the_cosine_one() -> None:
    a = sampler.alphas_cumprod()
    assert a.shape == (1000,) and np.all(np.diff(a) < 0)
    assert 0.99 < a[0] < 1.0 and a[-1] < 1e-3
    steps = sampler.ddim_timesteps(25)
    assert steps[0] == 961 and steps[-1] == 1 and len(steps) == 25
    with pytest.raises(ValueError):
        sampler.ddim_timesteps(0)


def test_ddim_runs_the_unet_each_step_and_is_deterministic(unet: OrtRunner) -> None:
    noise = sampler.noise_for(3, (2, 3, 8, 8))
    context = np.ones((2, 4, 8), dtype=np.float32)
    seen: list[tuple[int, float]] = []
    out = sampler.ddim_sample(
        unet,
        context,
        noise,
        num_steps=5,
        on_step=lambda i, feeds, eps: seen.append((i, float(feeds["timestep"][0]))),
    )
    assert out.shape == (2, 3, 8, 8) and out.dtype == np.float32 and np.all(np.isfinite(out))
    assert [i for i, _ in seen] == [0, 1, 2, 3, 4]
    assert [t for _, t in seen] == sorted((t for _, t in seen), reverse=True)
    again = sampler.ddim_sample(unet, context, noise, num_steps=5)
    np.testing.assert_array_equal(out, again)  # same noise, same result: mixes are comparable
    other = sampler.ddim_sample(unet, context, sampler.noise_for(4, (2, 3, 8, 8)), num_steps=5)
    assert not np.array_equal(out, other)
    assert np.all(np.abs(out) <= 1.0 + 1e-5)  # x0 is clipped to the data range each step


def test_mosaic_tiles_row_major() -> None:
    images = np.arange(4 * 1 * 2 * 2, dtype=np.float32).reshape(4, 1, 2, 2)
    grid = sampler.mosaic(images, cols=2)
    assert grid.shape == (1, 1, 4, 4)
    np.testing.assert_array_equal(grid[0, 0, :2, 2:], images[1, 0])
    np.testing.assert_array_equal(grid[0, 0, 2:, :2], images[2, 0])
    with pytest.raises(ValueError):
        sampler.mosaic(images[:3], cols=2)
    assert sampler.to_unit(np.array([-2.0, 0.0, 1.0])).tolist() == [0.0, 0.5, 1.0]
