"""`ascend-quant bench`: latency and throughput of one or more .om files, side by side."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ascend_quant.bench import BenchTable, bench_models, describe_settings
from ascend_quant.cli.common import JSON_OPTION, console, given, print_json, progress_for
from ascend_quant.config import BenchConfig, merge
from ascend_quant.report import json_safe, save_json


def bench(
    models: list[Path] = typer.Argument(
        ..., help="One or more .om files; the first is the baseline."
    ),
    warmup: int | None = typer.Option(None, "--warmup", help="Untimed runs first (default 2)."),
    loop: int | None = typer.Option(None, "--loop", help="At most this many timed runs (50)."),
    duration: float | None = typer.Option(
        None,
        "--duration",
        help="Time budget in seconds for all models together (default 2; >= 5 runs each).",
    ),
    device: int | None = typer.Option(None, "--device", help="NPU device id (default 0)."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Batch size for throughput (default: the input's leading dim)."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Also write the results to this JSON file."
    ),
    gear: list[str] | None = typer.Option(
        None, "--gear", help="Gear models: time this gear (repeat; default every gear)."
    ),
    json_mode: bool = JSON_OPTION,
) -> None:
    """Benchmark .om models with identical settings; speedup and size ratio against the first
    (per gear, for models converted with gears)."""
    config = merge(
        BenchConfig(),
        given(
            warmup=warmup,
            loop=loop,
            duration_s=duration,
            device=device,
            batch_size=batch_size,
            gears=list(gear) if gear else None,
        ),
    )
    with progress_for(json_mode) as progress:
        table = bench_models(models, config, progress)
    if out is not None:
        save_json(out, table)
    if json_mode:
        print_json(json_safe(table))
        return
    console.print(bench_rich_table(table))
    console.print(describe_settings(table.config, len(table.rows)), soft_wrap=True)
    for line in stability_lines(table):
        console.print(line, soft_wrap=True)
    if out is not None:
        console.print(f"wrote {out}")


def stability_lines(table: BenchTable) -> list[str]:
    """How far apart the interleaved rounds put each speedup (the figure's stability)."""
    lines = []
    for row in table.rows:
        if row.speedup_rounds:
            low, high = min(row.speedup_rounds), max(row.speedup_rounds)
            lines.append(
                f"{Path(row.result.model).name}"
                + (f" at {row.result.gear}" if row.result.gear else "")
                + f": speedup {row.speedup:.2f}x, per round "
                f"{low:.2f}x to {high:.2f}x over {len(row.speedup_rounds)} alternating rounds"
            )
    return lines


def _ratio(value: float | None) -> str:
    return "baseline" if value is None else f"{value:.2f}×"


def bench_rich_table(table: BenchTable) -> Table:
    """Models as columns, statistics as rows."""
    grid = Table(title="latency per inference (ms)", title_justify="left")
    grid.add_column("")
    for row in table.rows:
        r = row.result
        header = Path(r.model).name
        if r.precision:
            header += f"\n{r.precision}"
        if r.gear:
            header += f"\ngear {r.gear}"
        header += "\nsimulated on CPU" if r.simulated else f"\n{r.device}"
        grid.add_column(header, justify="right")
    stats = ("min", "mean", "median", "p90", "p95", "p99", "max")
    for name in stats:
        grid.add_row(name, *(f"{getattr(row.result.latency_ms, name):.3f}" for row in table.rows))
    grid.add_row("runs", *(str(row.result.latency_ms.count) for row in table.rows))
    grid.add_row("batch size", *(str(row.result.batch_size) for row in table.rows))
    grid.add_row("throughput /s", *(f"{row.result.throughput:.1f}" for row in table.rows))
    grid.add_row("file size", *(_mib(row.result.file_size_bytes) for row in table.rows))
    grid.add_row("peak memory", *(_memory(row.result.peak_memory_bytes) for row in table.rows))
    grid.add_row("speedup", *(_ratio(row.speedup) for row in table.rows), style="bold")
    grid.add_row("size ratio", *(_ratio(row.size_ratio) for row in table.rows))
    grid.add_row("throughput ratio", *(_ratio(row.throughput_ratio) for row in table.rows))
    if table.simulated:
        grid.caption = "simulated on CPU: relative cost on this machine, not NPU latency"
    sources = sorted({row.result.memory_source for row in table.rows})
    caption = str(grid.caption or "")
    grid.caption = "\n".join([caption, *(f"peak memory: {s}" for s in sources)]).strip()
    return grid


def _memory(size: int | None) -> str:
    return "unknown" if size is None else _mib(size)


def _mib(size: int) -> str:
    return f"{size / 1024:.1f} KiB" if size < 1 << 20 else f"{size / (1 << 20):.2f} MiB"
