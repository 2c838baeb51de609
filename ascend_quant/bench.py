"""Benchmark tables: several models timed with the same settings, side by side.

The timing itself (`time_loop`, `latency_stats`) lives in `runners/timing.py`, below the backends.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ascend_quant import backends
from ascend_quant.backends.base import BenchResult, manifest_gears
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
    speedup: float | None  # the first model's latency / this model's (see `bench_table`)
    size_ratio: float | None  # this model's file size / the first model's
    throughput_ratio: float | None  # this model's throughput / the first model's
    speedup_rounds: list[float] | None = None  # per interleaved round: its medians' ratio
    speedup_spread: float | None = None  # max - min of speedup_rounds: how stable it is


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


def _round_speedups(base: BenchResult, result: BenchResult) -> list[float] | None:
    """Per-round ratios of median latencies, when both models ran in the same rounds."""
    a = base.extra.get("round_medians_ms")
    b = result.extra.get("round_medians_ms")
    if not a or not b or len(a) != len(b) or len(a) < 2:
        return None
    return [float(x) / float(y) for x, y in zip(a, b) if float(y) > 0]


def bench_table(results: list[BenchResult], config: BenchConfig) -> BenchTable:
    """Rows with speedup, size and throughput ratios against the first result of the same gear
    (the first result, for static models): each gear is compared like with like.

    Interleaved models: the speedup is the median of the per-round ratios of median latencies
    (robust to a noisy machine) and its spread is reported; otherwise the ratio of the means.
    """
    rows = []
    baselines: dict[str | None, BenchResult] = {}
    for result in results:
        base = baselines.setdefault(result.gear, result)
        if base is result:
            rows.append(BenchRow(result, None, None, None))
            continue
        per_round = _round_speedups(base, result)
        speedup = (
            float(np.median(per_round))
            if per_round
            else _ratio(base.latency_ms.mean, result.latency_ms.mean)
        )
        rows.append(
            BenchRow(
                result,
                speedup=speedup,
                size_ratio=_ratio(result.file_size_bytes, base.file_size_bytes),
                throughput_ratio=_ratio(result.throughput, base.throughput),
                speedup_rounds=per_round,
                speedup_spread=max(per_round) - min(per_round) if per_round else None,
            )
        )
    return BenchTable(config=config, rows=rows)


def describe_settings(config: BenchConfig, rows: int | None = None) -> str:
    """The loop settings in one line, for output beside the figures; `rows`: how many rows
    (models x gears) shared the time budget."""
    budget = ""
    if config.duration_s:
        budget = f"a {config.duration_s:g} s budget in all"
        if rows and rows > 1:
            budget += f" ({config.duration_s / rows:.2g} s for each of the {rows} rows)"
        budget += ", "
    return (
        f"{config.warmup} warm-up run(s) per model, then {budget}at most {config.loop} and at "
        f"least {min(config.min_loop, config.loop)} timed runs per model"
    )


def _share(config: BenchConfig, parts: int) -> BenchConfig:
    """`config` with its time budget divided among `parts` separately timed runs."""
    if config.duration_s is None or parts <= 1:
        return config
    return replace(config, duration_s=config.duration_s / parts)


def bench_models(
    models: list[Path], config: BenchConfig, progress: Progress = NULL_PROGRESS
) -> BenchTable:
    """Benchmark each .om with its own backend under identical settings, first one = baseline.

    `config.duration_s` is the budget of the whole table: split evenly between gears, and
    between models (interleaved models share theirs inside `bench_many`)."""
    if not models:
        raise UsageError("no models to benchmark", hint="pass one or more .om files")
    if config.loop < 1:
        raise UsageError("--loop must be at least 1")
    if config.min_loop < 1:
        raise UsageError("bench.min_loop must be at least 1")
    if config.warmup < 0:
        raise UsageError("--warmup cannot be negative")
    if config.duration_s is not None and config.duration_s <= 0:
        raise UsageError("--duration must be positive")
    if config.batch_size is not None and config.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    chosen = [(Path(m), backends.backend_for_om(Path(m))) for m in models]  # validate all first
    kinds = {type(backend) for _path, backend in chosen}
    bench_many = getattr(chosen[0][1], "bench_many", None)
    results: list[BenchResult] = []
    gears = bench_gears([path for path, _b in chosen], config.gears)
    per_gear = _share(config, len(gears))
    for gear in gears:
        extra = {"gear": gear} if gear is not None else {}  # static models: the plain call
        if len(kinds) == 1 and bench_many is not None:  # one backend that interleaves the models
            results += bench_many([path for path, _b in chosen], per_gear, progress, **extra)
        else:
            each = _share(per_gear, len(chosen))
            results += [backend.bench(p, each, progress, **extra) for p, backend in chosen]
    return bench_table(results, config)


def bench_gears(models: list[Path], wanted: tuple[str, ...] = ()) -> list[str | None]:
    """The gears to time, read from the models' manifests: every gear (or those `wanted`) of gear
    models, which must share them; [None] for static models. Errors before anything runs."""
    gear_sets = [manifest_gears(m) for m in models]
    if all(g is None for g in gear_sets):
        if wanted:
            raise UsageError(
                f"--gear {wanted[0]}: the models have no gears (converted with static shapes)",
                hint="drop --gear",
            )
        return [None]
    first = next(g for g in gear_sets if g is not None)
    for model, gears in zip(models, gear_sets):
        if gears is None or gears.labels != first.labels:
            raise UsageError(
                f"{model.name} has "
                + (f"gears {', '.join(gears.labels)}" if gears else "no gears")
                + f", the other models {', '.join(first.labels)}: a per-gear table needs the same "
                "gears in every model",
                hint="benchmark models converted with the same gears together",
            )
    if not wanted:
        return list(first.labels)
    return [first.label(first.index(g)) for g in wanted]
