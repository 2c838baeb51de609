"""Degenerate data that makes accuracy figures meaningless: flagged, never silently averaged.

A golden output that is constant (all zero: a probability map of a photo without text) has no
cosine and no PSNR range; an input tensor whose per-sample spread is tiny is almost always a
preprocessing mistake (Paddle-style `--mean 127.5 --std 127.5` without `--scale 1` gives values
in -1.0 … -0.992), and then every model agrees with every other one: a confident, empty PASSED.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

# An input sample is nearly constant when max − min < this share of max(1, max |x|) (for 8-bit
# integer inputs: of 255), i.e. about 5 levels of an 8-bit image in whatever scale it is in.
NEAR_CONSTANT_SPREAD = 0.02
# Only inputs with at least this many values per sample can have a spread worth judging: a
# timestep or a scale is one value per sample by design (recorded pipelines repeat it per step).
MIN_SPREAD_VALUES = 16
PREPROCESS_HINT = (
    "check the preprocessing: --mean and --std apply after --scale (Paddle-style "
    "--mean 127.5 --std 127.5 needs --scale 1)"
)


def constant_golden(array: np.ndarray) -> str | None:
    """'all zero' or 'constant' for a degenerate golden sample, else None."""
    a = np.asarray(array)
    if a.size == 0:
        return None
    finite = a[np.isfinite(a)] if not np.all(np.isfinite(a)) else a
    if finite.size == 0:
        return None
    if not np.any(finite):
        return "all zero"
    if finite.min() == finite.max():
        return f"constant ({float(finite.flat[0]):g})"
    return None


def input_spread(array: np.ndarray) -> tuple[float, float, float] | None:
    """(min, max, spread relative to the input's scale) of one input sample, for numeric
    image-like inputs (floats and 8-bit integers); None for other dtypes (ids, masks) and for
    inputs too small to have a spread (MIN_SPREAD_VALUES)."""
    a = np.asarray(array)
    if a.size < MIN_SPREAD_VALUES or not (
        np.issubdtype(a.dtype, np.floating) or a.dtype in (np.uint8, np.int8)
    ):
        return None
    finite = a[np.isfinite(a)] if np.issubdtype(a.dtype, np.floating) else a
    if finite.size < 2:
        return None
    lo, hi = float(finite.min()), float(finite.max())
    scale = 255.0 if a.dtype in (np.uint8, np.int8) else max(1.0, abs(lo), abs(hi))
    return lo, hi, (hi - lo) / scale


def calibration_warning(name: str, samples: Iterable[np.ndarray]) -> str | None:
    """A warning when one input's calibration data, all samples together, is nearly constant.

    Every INT8 range calibrated on it collapses (all-zero latents saved before the encoder ran,
    a wrong --scale), and the build then fails or passes for reasons the eval data cannot show.
    """
    lo = hi = 0.0
    count = 0
    eight_bit = False
    for sample in samples:
        spread = input_spread(sample)
        if spread is None:
            return None  # ids, masks, scalars: no spread to judge
        lo, hi = (spread[0], spread[1]) if count == 0 else (min(lo, spread[0]), max(hi, spread[1]))
        eight_bit = np.asarray(sample).dtype in (np.uint8, np.int8)
        count += 1
    if count == 0:
        return None
    scale = 255.0 if eight_bit else max(1.0, abs(lo), abs(hi))
    if (hi - lo) / scale >= NEAR_CONSTANT_SPREAD:
        return None
    return (
        f"calibration input '{name}' is nearly constant over all {count} samples (values "
        f"{lo:.4g} … {hi:.4g}): the INT8 ranges calibrated on it are meaningless; check the "
        "calibration data (for arrays: what was saved) or the preprocessing"
    )


@dataclass
class DegenerateTracker:
    """Counts degenerate samples per tensor and words the warnings."""

    samples: int = 0
    golden: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    inputs: dict[str, list[tuple[str, float, float]]] = field(default_factory=dict)
    _seen_inputs: set[str] = field(default_factory=set)

    def check_inputs(self, feeds: dict[str, np.ndarray], sample: str) -> None:
        self.samples += 1
        for name, array in feeds.items():
            spread = input_spread(array)
            if spread is None:
                continue
            self._seen_inputs.add(name)
            lo, hi, relative = spread
            if relative < NEAR_CONSTANT_SPREAD:
                self.inputs.setdefault(name, []).append((sample, lo, hi))

    def check_golden(self, output: str, array: np.ndarray, sample: str) -> None:
        what = constant_golden(array)
        if what is not None:
            self.golden.setdefault(output, []).append((sample, what))

    def warnings(self, total: int) -> list[str]:
        out = []
        for name, hits in self.inputs.items():
            sample, lo, hi = hits[0]
            out.append(
                f"input '{name}' is nearly constant on {len(hits)} of {total} samples "
                f"(e.g. {sample}: values {lo:.4g} … {hi:.4g}): every model agrees on such "
                f"inputs, so the accuracy figures say little; {PREPROCESS_HINT}"
            )
        for name, constant in self.golden.items():
            sample, what = constant[0]
            out.append(
                f"output '{name}': the golden (FP32) output is {what} on "
                f"{len(constant)} of {total} "
                f"samples (e.g. {sample}); a sample's cosine is undefined there, and its "
                "mask IoU and Dice are reported as an empty golden"
            )
        return out
