"""Degenerate-data checks (`sanity.py`)."""

from __future__ import annotations

import numpy as np

from ascend_quant.sanity import DegenerateTracker, calibration_warning


def test_timestep_input_is_not_called_nearly_constant() -> None:
    tracker = DegenerateTracker()
    for i in range(3):
        # A recorded pipeline: one timestep per sample (twice under CFG), a flat image.
        feeds = {
            "timestep": np.full(2, 500.0, dtype=np.float32),
            "image": np.full((1, 3, 8, 8), 0.5, dtype=np.float32),
        }
        tracker.check_inputs(feeds, f"s{i}")
    warnings = tracker.warnings(3)
    assert len(warnings) == 1 and "'image'" in warnings[0], warnings


def test_calibration_warning_judges_all_samples_together() -> None:
    zeros = [np.zeros((1, 4, 8, 8), np.float32) for _ in range(3)]
    warning = calibration_warning("latent", zeros)
    assert warning is not None and "'latent'" in warning and "all 3 samples" in warning
    # each sample flat, but at different levels: the calibrated range is real
    levels = [np.full((1, 4, 8, 8), v, np.float32) for v in (0.0, 0.5, 1.0)]
    assert calibration_warning("latent", levels) is None
    spread = [np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)]
    assert calibration_warning("latent", spread) is None
    ids = [np.zeros((1, 7), np.int64)]  # token ids: no spread to judge
    assert calibration_warning("ids", ids) is None
    assert calibration_warning("latent", []) is None
