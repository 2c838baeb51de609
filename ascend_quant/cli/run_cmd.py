"""`ascend-quant run`: infer an .om (real or simulated) over input files, ais_bench style."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ascend_quant.aisbench_io import OUTFMTS, parse_input_arg
from ascend_quant.backends import backend_for_om, get_backend
from ascend_quant.backends.base import RunResult
from ascend_quant.cli.common import JSON_OPTION, console, print_json, progress_for
from ascend_quant.errors import UsageError


def run_model(
    model: Path,
    inputs: list[Path],
    output: Path,
    outfmt: str = "BIN",
    backend: str = "auto",
    gear: str | None = None,
) -> RunResult:
    """Run `model` on the input dirs with the backend that can execute it (or the one asked);
    a gear model at `gear`, or at the gear the input files are shaped for."""
    chosen = backend_for_om(model)
    if backend != "auto" and backend != chosen.name:
        get_backend(backend)  # an unknown name is reported as such
        raise UsageError(
            f"{model} is a {'simulated' if chosen.name == 'sim' else 'real'} .om; "
            f"--backend {backend} cannot run it",
            hint=f"use --backend {chosen.name} or --backend auto",
        )
    if gear is not None:
        return chosen.run(model, inputs, output, outfmt, gear=gear)
    return chosen.run(model, inputs, output, outfmt)


def run(
    model: Path = typer.Argument(..., help="The .om to run (real or simulated)."),
    inputs: list[str] = typer.Option(
        ...,
        "--input",
        "-i",
        help="One directory (or file) per model input, in input order, comma-separated or "
        "repeated.",
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Directory for the output files."),
    outfmt: str = typer.Option("BIN", "--outfmt", help=f"Output format: {', '.join(OUTFMTS)}."),
    backend: str = typer.Option("auto", "--backend", help="auto, atc or sim."),
    gear: str | None = typer.Option(
        None, "--gear", help="Gear models: the gear to run (default: the one the inputs fit)."
    ),
    json_mode: bool = JSON_OPTION,
) -> None:
    """Run a model over input files; outputs are named as ais_bench names them."""
    outfmt = outfmt.upper()
    if outfmt not in OUTFMTS:
        raise UsageError(f"unknown --outfmt '{outfmt}'", hint="use BIN, NPY or TXT")
    input_paths = parse_input_arg(",".join(inputs))
    if not input_paths:
        raise UsageError("--input is empty", hint="pass one directory per model input")
    with progress_for(json_mode):
        result = run_model(model, input_paths, output, outfmt, backend, gear)
    latencies = result.latencies_ms
    summary = {
        "model": str(model),
        "output_dir": str(result.output_dir),
        "output_names": result.output_names,
        "inferences": len(result.outputs),
        "outputs": [[str(p) for p in paths] for paths in result.outputs],
        "latencies_ms": latencies,
        "mean_latency_ms": sum(latencies) / len(latencies) if latencies else None,
    }
    if json_mode:
        print_json(summary)
        return
    table = Table(title=f"run {model.name}")
    table.add_column("inferences", justify="right")
    table.add_column("outputs")
    table.add_column("mean latency (ms)", justify="right")
    table.add_column("written to")
    mean = summary["mean_latency_ms"]
    table.add_row(
        str(len(result.outputs)),
        ", ".join(result.output_names),
        f"{mean:.3f}" if mean is not None else "-",
        str(result.output_dir),
    )
    console.print(table)
