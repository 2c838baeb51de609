"""Collect activation statistics by running the model one calibration batch at a time.

Every tensor to be calibrated is exposed as a graph output (`runners.ort.expose_outputs`); each
batch's activations update fixed-size `TensorStats` (on a worker thread, while the session runs the
next batch) and are dropped after that, so memory does not grow with the number of calibration
samples.
"""

from __future__ import annotations

import math
import queue
import threading
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
from ascend_quant.runners.ort import data_rejected, expose_outputs, make_session

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


class _BackgroundUpdates:
    """Histogram updates of the session's outputs on one worker thread, a batch behind.

    ONNX Runtime releases the GIL while it runs the next batch, so binning overlaps inference
    (wall time; the CPU time is the same). One worker applies the batches in arrival order, so
    every histogram is bit for bit the one a serial loop builds.
    """

    def __init__(self, stats: dict[str, TensorStats]) -> None:
        self._stats = stats
        self._buffers = UpdateBuffers()
        self._queue: queue.Queue[list[tuple[str, np.ndarray]] | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="calibration-histograms")
        self._thread.daemon = True
        self._thread.start()

    def _work(self) -> None:
        while (batch := self._queue.get()) is not None:
            try:
                if self._error is None:  # after an error, only drain: the producer never blocks
                    for name, value in batch:
                        self._stats[name].update(value, self._buffers)
            except BaseException as exc:  # re-raised in the calling thread
                self._error = exc
            finally:
                del batch
                self._queue.task_done()

    def put(self, batch: list[tuple[str, np.ndarray]]) -> None:
        """Hand over one batch of (tensor, value) once the previous one is binned (so at most
        two batches of activations are alive); raises an earlier update's error."""
        self._queue.join()
        if self._error is not None:
            raise self._error
        self._queue.put(batch)

    def stop(self) -> BaseException | None:
        """Finish the queued batches and end the worker; the first update error, if any."""
        self._queue.put(None)
        self._thread.join()
        return self._error


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
    session: ort.InferenceSession = make_session(expose_outputs(augmented, outputs))
    fetch = outputs + list(reduced_names.values())
    stats = {t: TensorStats(bins) for t in tensors}
    absmax = dict.fromkeys(reduced, 0.0)
    input_buffers = UpdateBuffers()
    binning = _BackgroundUpdates(stats)
    seen = 0
    try:
        with progress.task(label, total=total) as advance:
            for feeds in batches:
                with data_rejected(f"calibration batch {seen + 1}"):
                    values = session.run(fetch, feeds) if fetch else []
                binning.put(list(zip(outputs, values)))
                for name, value in zip(reduced, values[len(outputs) :]):
                    top = float(value)
                    absmax[name] = top if math.isnan(top) else max(absmax[name], top)
                for name in tensors:
                    if name in graph_inputs:  # the caller's arrays: binned before they change
                        stats[name].update(feeds[name], input_buffers)
                del values
                seen += 1
                advance(1)
    finally:
        error = binning.stop()
    if error is not None:
        raise error
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
