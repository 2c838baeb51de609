"""Degenerate-data checks (`sanity.py`)."""

from __future__ import annotations

import numpy as np

from ascend_quant.sanity import DegenerateTracker


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
