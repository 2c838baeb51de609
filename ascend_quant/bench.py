"""Benchmark tables: several models timed with the same settings, side by side.

The timing itself (`time_loop`, `latency_stats`) lives in `runners/timing.py`, below the backends.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ascend_quant import backends
from ascend_quant.backends.base import BenchResult
from ascend_quant.config import BenchConfig
from ascend_quant.errors import UsageError
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.runners.timing import LatencyStats, latency_stats, time_loop

__all__ = [
    "BenchRow",
    "BenchTable",
    "LatencyStats",
    "bench_models",
    "bench_table",
    "latency_stats",
    "time_loop",
]


@dataclass
class BenchRow:
    """One model's benchmark and how it compares with the first model of the table."""

    result: BenchResult
    speedup: float | None  # mean latency of the first model / this model's
    size_ratio: float | None  # this model's file size / the first model's
    throughput_ratio: float | None  # this model's throughput / the first model's


@dataclass
class BenchTable:
    """Several models benchmarked with the same settings, side by side."""

    config: BenchConfig
    rows: list[BenchRow]

    @property
    def simulated(self) -> bool:
        return any(row.result.simulated for row in self.rows)


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def bench_table(results: list[BenchResult], config: BenchConfig) -> BenchTable:
    """Rows with speedup, size and throughput ratios against the first result."""
    rows = []
    for i, result in enumerate(results):
        if i == 0:
            rows.append(BenchRow(result, None, None, None))
            continue
        base = results[0]
        rows.append(
            BenchRow(
                result,
                speedup=_ratio(base.latency_ms.mean, result.latency_ms.mean),
                size_ratio=_ratio(result.file_size_bytes, base.file_size_bytes),
                throughput_ratio=_ratio(result.throughput, base.throughput),
            )
        )
    return BenchTable(config=config, rows=rows)


def bench_models(
    models: list[Path], config: BenchConfig, progress: Progress = NULL_PROGRESS
) -> BenchTable:
    """Benchmark each .om with its own backend under identical settings, first one = baseline."""
    if not models:
        raise UsageError("no models to benchmark", hint="pass one or more .om files")
    if config.loop < 1 and not config.duration_s:
        raise UsageError("--loop must be at least 1 (or give --duration)")
    if config.warmup < 0:
        raise UsageError("--warmup cannot be negative")
    if config.duration_s is not None and config.duration_s <= 0:
        raise UsageError("--duration must be positive")
    if config.batch_size is not None and config.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    chosen = [(Path(m), backends.backend_for_om(Path(m))) for m in models]  # validate all first
    results = [backend.bench(path, config, progress) for path, backend in chosen]
    return bench_table(results, config)
