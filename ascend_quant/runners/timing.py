"""Latency measurement: a timed loop and its statistics, shared by every runner and backend."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Per-inference latency in milliseconds."""

    count: int
    min: float
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    max: float


def latency_stats(samples_ms: list[float] | np.ndarray) -> LatencyStats:
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no latency samples")
    p90, p95, p99 = np.percentile(values, [90, 95, 99])
    return LatencyStats(
        count=int(values.size),
        min=float(values.min()),
        mean=float(values.mean()),
        median=float(np.median(values)),
        p90=float(p90),
        p95=float(p95),
        p99=float(p99),
        max=float(values.max()),
    )


def time_loop(
    step: Callable[[], object],
    warmup: int,
    loop: int,
    duration_s: float | None = None,
    advance: Callable[[int], None] | None = None,
) -> list[float]:
    """Call `step` warmup times untimed, then `loop` times (or for `duration_s`), timing each."""
    for _ in range(warmup):
        step()
    samples: list[float] = []
    clock = time.perf_counter
    deadline = clock() + duration_s if duration_s else None
    while (len(samples) < loop) if deadline is None else (clock() < deadline):
        start = clock()
        step()
        samples.append((clock() - start) * 1000.0)
        if advance is not None:
            advance(1)
    return samples
