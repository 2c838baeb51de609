"""Collect activation statistics by running the model one calibration batch at a time.

The model is augmented so that every tensor to be calibrated is also a graph output; each batch's
activations update fixed-size `TensorStats` and are dropped before the next batch, so memory
does not grow with the number of calibration samples.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper

from ascend_quant.errors import UsageError
from ascend_quant.onnx_io import to_ort_bytes
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.quant.stats import DEFAULT_BINS, RangeRequest, TensorStats, compute_range

if TYPE_CHECKING:
    import onnxruntime as ort

Feeds = dict[str, np.ndarray]


def augment(model: onnx.ModelProto, tensors: Iterable[str]) -> onnx.ModelProto:
    """A copy of `model` that also outputs `tensors` (graph inputs are read from the feeds)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph_inputs = {i.name for i in copy.graph.input}
    existing = {o.name for o in copy.graph.output}
    for name in tensors:
        if name in existing or name in graph_inputs:
            continue
        copy.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
        existing.add(name)
    return copy


def collect(
    model: onnx.ModelProto,
    tensors: list[str],
    batches: Iterable[Feeds],
    bins: int = DEFAULT_BINS,
    progress: Progress = NULL_PROGRESS,
    total: int | None = None,
) -> dict[str, TensorStats]:
    """Stream `batches` through the augmented model and return per-tensor statistics."""
    from ascend_quant.backends.sim import make_session

    session: ort.InferenceSession = make_session(to_ort_bytes(augment(model, tensors)))
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
