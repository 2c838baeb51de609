"""`ascend-quant inspect MODEL`: preflight an ONNX model (or describe an .om) and show it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ascend_quant.cli.common import JSON_OPTION, console, print_json, progress_for
from ascend_quant.model import PreflightResult, preflight, preflight_record


def _shape(shape: tuple[int | str, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _print_result(result: PreflightResult, kept: bool) -> None:
    summary = result.summary
    facts = Table(show_header=False, title=str(result.source_path), title_justify="left")
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    facts.add_row("IR version", str(summary.ir_version))
    facts.add_row("opsets", ", ".join(f"{d} {v}" for d, v in summary.opsets.items()))
    facts.add_row("producer", summary.producer or "-")
    facts.add_row("parameters", f"{summary.param_count:,} ({_human_bytes(summary.param_bytes)})")
    facts.add_row("sha256", result.source_sha256)
    where = str(result.model_path) if kept else "(temporary: pass --out DIR to keep it)"
    facts.add_row("model to convert", f"{where}; simplified: {result.simplified}")
    facts.add_row("ops in subgraphs", str(summary.subgraph_ops))
    facts.add_row("already quantized", "yes (INT8 refused)" if summary.already_quantized else "no")
    console.print(facts)

    tensors = Table(title="inputs and outputs", title_justify="left")
    for column in ("", "name", "dtype", "declared shape", "resolved shape"):
        tensors.add_column(column)
    for kind, infos, resolved in (
        ("in", summary.inputs, result.input_shapes),
        ("out", summary.outputs, result.output_shapes),
    ):
        for info in infos:
            shape = resolved.get(info.name)
            tensors.add_row(
                kind, info.name, info.dtype, _shape(info.shape), _shape(shape) if shape else "-"
            )
    console.print(tensors)

    ops = Table(title="op types", title_justify="left")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for op, count in sorted(summary.op_counts.items(), key=lambda kv: (-kv[1], kv[0])):
        ops.add_row(op, str(count))
    console.print(ops)

    quant = Table(
        title=f"quantizable layers ({len(summary.quantizable_nodes)})", title_justify="left"
    )
    for column in ("node", "onnx op", "ascend ir type"):
        quant.add_column(column)
    for name, op, ascend in summary.quantizable_nodes:
        quant.add_row(name or "(unnamed)", op, ascend)
    console.print(quant)

    for title, items in (("repairs", result.repairs), ("warnings", result.warnings)):
        if items:
            console.print(title, style="bold")
            for item in items:
                console.print(f"  - {item}")


def _describe_om(path: Path, json_output: bool) -> None:
    from ascend_quant.backends import describe_om

    info: dict[str, Any] = describe_om(path)
    if json_output:
        print_json(info)
        return
    table = Table(show_header=False, title=str(path), title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in info.items():
        table.add_row(str(key), str(value))
    console.print(table)


def inspect(
    model: Path = typer.Argument(..., help="The .onnx model (or an .om to describe)."),
    input_shape: str | None = typer.Option(
        None, "--input-shape", help='Values for dynamic dims, atc syntax: "name:1,3,224,224;..."'
    ),
    json_output: bool = JSON_OPTION,
    no_simplify: bool = typer.Option(False, "--no-simplify", help="Do not run onnxsim."),
    out: Path | None = typer.Option(
        None, "--out", help="Keep the preflighted model and its summary JSON in this directory."
    ),
) -> None:
    """Check, repair and summarise an ONNX model: inputs, ops, quantizable layers, warnings."""
    if model.suffix.lower() == ".om":
        _describe_om(model, json_output)
        return
    with progress_for(json_output) as progress, tempfile.TemporaryDirectory() as tmp:
        result = preflight(
            model,
            out if out is not None else Path(tmp),
            input_shape=input_shape,
            simplify=not no_simplify,
            progress=progress,
        )
        if json_output:
            record = preflight_record(result)
            if out is None:
                record["model_path"] = None  # the temporary copy is gone
            print_json(record)
        else:
            _print_result(result, kept=out is not None)
