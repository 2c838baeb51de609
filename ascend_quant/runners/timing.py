"""Latency measurement: a timed loop and its statistics, shared by every runner and backend."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
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


ROUNDS = 4  # interleaved rounds per benchmark: enough for a spread, few enough to stay cheap


def round_sizes(total: int, rounds: int) -> list[int]:
    """`total` runs split into `rounds` near-equal rounds (earlier rounds take the remainder)."""
    rounds = max(1, min(rounds, total))
    return [total // rounds + (1 if i < total % rounds else 0) for i in range(rounds)]


def interleaved_loop(
    steps: Sequence[Callable[[], object]],
    warmup: int,
    loop: int,
    duration_s: float | None,
    min_count: int,
    rounds: int = ROUNDS,
    advance: Callable[[int], None] | None = None,
) -> list[list[list[float]]]:
    """Time several models in alternating rounds (A B, B A, A B, ...); samples[model][round].

    `duration_s` is the budget of all models together; each gets an equal share. Each model
    first runs `warmup` times untimed (at least once: that run's time estimates how many runs
    its share allows). A model then runs min(loop, share) runs, but at least `min_count` (or
    `loop`, if lower: `loop` is always the most), split into the same number of rounds as every
    other model. Alternating the order round by round
    cancels a machine that drifts (thermal, other load) over the run.
    """
    clock = time.perf_counter
    share = duration_s / max(len(steps), 1) if duration_s is not None else None
    counts = []
    for step in steps:
        probe = 0.0
        for _ in range(max(warmup, 1)):
            start = clock()
            step()
            probe = clock() - start
        target = loop
        if share is not None:
            target = min(loop, int(share / probe) if probe > 0 else loop)
        counts.append(max(target, min(min_count, loop), 1))
    n_rounds = max(1, min(rounds, min(counts)))
    plans = [round_sizes(count, n_rounds) for count in counts]
    samples: list[list[list[float]]] = [[[] for _ in range(n_rounds)] for _ in steps]
    for r in range(n_rounds):
        order = range(len(steps)) if r % 2 == 0 else reversed(range(len(steps)))
        for m in order:
            for _ in range(plans[m][r]):
                start = clock()
                steps[m]()
                samples[m][r].append((clock() - start) * 1000.0)
                if advance is not None:
                    advance(1)
    return samples


def round_medians(samples: list[list[float]]) -> list[float]:
    return [float(np.median(s)) for s in samples if s]


def relative_spread(values: list[float]) -> float | None:
    """(max - min) / median of per-round figures: how far apart the rounds landed."""
    if len(values) < 2:
        return None
    middle = float(np.median(values))
    return (max(values) - min(values)) / middle if middle > 0 else None
