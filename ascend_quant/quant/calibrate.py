"""Collect activation statistics by running the model one calibration batch at a time.

Every tensor to be calibrated is exposed as a graph output (`runners.ort.expose_outputs`); each
batch's activations update fixed-size `TensorStats` and are dropped before the next batch, so memory
does not grow with the number of calibration samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper

from ascend_quant.errors import UsageError
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.quant.stats import (
    DEFAULT_BINS,
    RangeRequest,
    TensorStats,
    UpdateBuffers,
    compute_range,
)
from ascend_quant.runners.ort import expose_outputs, make_session

if TYPE_CHECKING:
    import onnxruntime as ort

Feeds = dict[str, np.ndarray]
ABSMAX_SUFFIX = "__absmax"


def with_absmax_outputs(
    model: onnx.ModelProto, tensors: Iterable[str]
) -> tuple[onnx.ModelProto, dict[str, str]]:
    """A copy of `model` that also outputs max |x| of each of `tensors` as a scalar.

    The reduction runs inside the graph (Abs -> ReduceMax), so no activation is copied out of
    ONNX Runtime: the cost is one cheap elementwise pass per tensor. Returns (model, tensor ->
    output name).
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    names: dict[str, str] = {}
    for tensor in dict.fromkeys(tensors):
        absolute, output = f"{tensor}{ABSMAX_SUFFIX}_abs", f"{tensor}{ABSMAX_SUFFIX}"
        copy.graph.node.extend(
            [
                helper.make_node("Abs", [tensor], [absolute], name=absolute),
                helper.make_node("ReduceMax", [absolute], [output], name=output, keepdims=0),
            ]
        )
        copy.graph.output.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, None))
        names[tensor] = output
    return copy, names


@dataclass
class Collected:
    """One calibration pass: histograms of the calibrated tensors, max |x| of the others."""

    stats: dict[str, TensorStats]
    absmax: dict[str, float] = field(default_factory=dict)  # FP32 max |x| over all batches

    def all_absmax(self) -> dict[str, float]:
        """max |x| of every tensor seen, calibrated ones included."""
        found = dict(self.absmax)
        for name, value in self.stats.items():
            if value.count:
                found[name] = max(abs(value.min), abs(value.max))
        return found


def collect_pass(
    model: onnx.ModelProto,
    tensors: list[str],
    batches: Iterable[Feeds],
    bins: int = DEFAULT_BINS,
    progress: Progress = NULL_PROGRESS,
    total: int | None = None,
    absmax_of: Iterable[str] = (),
    label: str = "calibrating",
) -> Collected:
    """Stream `batches` through the model once: histograms of `tensors` and, in the same
    session pass, max |x| of the float tensors `absmax_of` (for the FP16 overflow check)."""
    graph_inputs = {i.name for i in model.graph.input}
    outputs = [t for t in tensors if t not in graph_inputs]
    reduced = [t for t in dict.fromkeys(absmax_of) if t not in set(tensors)]
    augmented, reduced_names = with_absmax_outputs(model, reduced)
    session: ort.InferenceSession = make_session(expose_outputs(augmented, outputs), spin=False)
    fetch = outputs + list(reduced_names.values())
    stats = {t: TensorStats(bins) for t in tensors}
    absmax = dict.fromkeys(reduced, 0.0)
    buffers = UpdateBuffers()
    seen = 0
    with progress.task(label, total=total) as advance:
        for feeds in batches:
            values = session.run(fetch, feeds) if fetch else []
            for name, value in zip(outputs, values):
                stats[name].update(value, buffers)
            for name, value in zip(reduced, values[len(outputs) :]):
                top = float(value)
                absmax[name] = top if math.isnan(top) else max(absmax[name], top)
            for name in tensors:
                if name in graph_inputs:
                    stats[name].update(feeds[name], buffers)
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
    return Collected(stats, absmax)


def collect(
    model: onnx.ModelProto,
    tensors: list[str],
    batches: Iterable[Feeds],
    bins: int = DEFAULT_BINS,
    progress: Progress = NULL_PROGRESS,
    total: int | None = None,
) -> dict[str, TensorStats]:
    """Stream `batches` through the augmented model and return per-tensor statistics."""
    return collect_pass(model, tensors, batches, bins, progress, total).stats


def ranges(
    stats: dict[str, TensorStats], requests: dict[str, RangeRequest]
) -> dict[str, tuple[float, float]]:
    """The calibrated (lo, hi) of each tensor under its algorithm."""
    return {name: compute_range(stats[name], request) for name, request in requests.items()}
