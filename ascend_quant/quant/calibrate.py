"""Collect activation statistics by running the model one calibration batch at a time.

Every tensor to be calibrated is exposed as a graph output (`runners.ort.expose_outputs`); each
batch's activations update fixed-size `TensorStats` and are dropped before the next batch, so memory
does not grow with the number of calibration samples.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import onnx

from ascend_quant.errors import UsageError
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.quant.stats import DEFAULT_BINS, RangeRequest, TensorStats, compute_range
from ascend_quant.runners.ort import expose_outputs, make_session

if TYPE_CHECKING:
    import onnxruntime as ort

Feeds = dict[str, np.ndarray]


def collect(
    model: onnx.ModelProto,
    tensors: list[str],
    batches: Iterable[Feeds],
    bins: int = DEFAULT_BINS,
    progress: Progress = NULL_PROGRESS,
    total: int | None = None,
) -> dict[str, TensorStats]:
    """Stream `batches` through the augmented model and return per-tensor statistics."""
    session: ort.InferenceSession = make_session(expose_outputs(model, tensors))
    graph_inputs = {i.name for i in model.graph.input}
    outputs = [t for t in tensors if t not in graph_inputs]
    stats = {t: TensorStats(bins) for t in tensors}
    seen = 0
    with progress.task("calibrating", total=total) as advance:
        for feeds in batches:
            values = session.run(outputs, feeds) if outputs else []
            for name, value in zip(outputs, values):
                stats[name].update(value)
            for name in tensors:
                if name in graph_inputs:
                    stats[name].update(feeds[name])
            del values
            seen += 1
            advance(1)
    if seen == 0:
        raise UsageError(
            "the calibration set is empty", hint="run `ascend-quant calib` with some images"
        )
    for name, value in stats.items():
        if value.count == 0:
            raise UsageError(
                f"calibration saw no finite values in tensor '{name}'",
                hint="check the calibration data (all NaN/inf?) or skip that layer",
            )
    return stats


def ranges(
    stats: dict[str, TensorStats], requests: dict[str, RangeRequest]
) -> dict[str, tuple[float, float]]:
    """The calibrated (lo, hi) of each tensor under its algorithm."""
    return {name: compute_range(stats[name], request) for name, request in requests.items()}
