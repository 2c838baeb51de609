"""Record the UNet's calibration and evaluation data from the middle denoising steps.

What the Ascend Stable Diffusion recipe does (ModelZoo `quant_unet.py`): run the real pipeline,
keep the UNet's `[latent, t, text_emb]` from the steps centred on the middle of the schedule,
and calibrate on those. Here the FP32 UNet runs through ONNX Runtime (an `OrtRunner`), the
sampler's step hook offers every UNet call to `ascend_quant.data.Recorder`, and the kept calls
become one calib set per UNet input (`sample`, `timestep`, `context`):

    python examples/diffusion/capture.py            # -> examples/diffusion/captured/{calib,eval}

Calibration and evaluation use different noise seeds from each other and from the pipeline's
samples (`pipeline.noise_seed`), so nothing is judged on data it was calibrated on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import pipeline  # noqa: E402  (this folder's pipeline: sampler settings, context table)

from ascend_quant.data import Recorder  # noqa: E402
from ascend_quant.runners.ort import OrtRunner  # noqa: E402

CALIB_SEEDS = (0, 1)  # noise seeds: pipeline samples use 1000+
EVAL_SEEDS = (500,)


def middle_steps(steps: int, keep: int) -> tuple[int, int]:
    """The window of `keep` steps centred on the middle of `steps` (ModelZoo's dump_num)."""
    start = max(0, steps // 2 - keep // 2)
    return start, min(steps, start + keep)


def capture(out: Path, seeds: tuple[int, ...], keep: int, model: Path) -> dict[str, Path]:
    """Run the FP32 UNet for each seed and record its middle `keep` steps under `out`."""
    _, table = pipeline.load_context()
    window = middle_steps(pipeline.STEPS, keep)
    with OrtRunner(model) as unet, Recorder(out, model, steps=window) as recorder:
        for seed in seeds:
            noise = pipeline.sampler.noise_for(
                seed, (pipeline.BATCH, 3, pipeline.SIZE, pipeline.SIZE)
            )
            pipeline.sampler.ddim_sample(
                unet,
                pipeline.context_for(table),
                noise,
                pipeline.STEPS,
                on_step=lambda i, feeds, _eps: recorder.record(feeds, step=i),
            )
    return dict(recorder.sets)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=HERE / "captured")
    p.add_argument("--model", type=Path, default=HERE / "unet.onnx")
    p.add_argument("--keep", type=int, default=10, help="middle steps kept per run")
    args = p.parse_args(argv)
    for name, seeds in (("calib", CALIB_SEEDS), ("eval", EVAL_SEEDS)):
        sets = capture(args.out / name, seeds, args.keep, args.model)
        print(
            f"{name}: {len(seeds) * args.keep} UNet calls -> " + ", ".join(map(str, sets.values()))
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
