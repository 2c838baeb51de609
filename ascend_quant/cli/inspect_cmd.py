"""`ascend-quant inspect MODEL`: preflight an ONNX model (or describe an .om) and show it."""

from __future__ import annotations

import glob
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.table import Table

from ascend_quant.cli.common import JSON_OPTION, console, print_json, progress_for
from ascend_quant.config import GearsConfig
from ascend_quant.errors import UsageError
from ascend_quant.gears import MIN_GEARS, Proposal, propose_dims_gears, propose_image_gears
from ascend_quant.model import PreflightResult, load_model, preflight, preflight_record
from ascend_quant.tensors import TensorSpec, graph_io


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


def dynamic_dims(inputs: list[TensorSpec]) -> dict[str, list[tuple[int, str]]]:
    """Each input's dims the graph leaves dynamic: (index, symbolic name)."""
    return {
        t.name: [(i, str(d)) for i, d in enumerate(t.shape) if not isinstance(d, int)]
        for t in inputs
        if any(not isinstance(d, int) for d in t.shape)
    }


def propose(
    inputs: list[TensorSpec],
    sources: list[str],
    layout: str,
    multiple: int | None,
    count: int,
) -> list[Proposal]:
    """Gears for the dynamic inputs from the data: image sizes for 4-D inputs (a width
    histogram for text lines), .npy/.bin lengths for the others."""
    from ascend_quant.data.images import discover, image_sizes

    found = []
    dynamic = dynamic_dims(inputs)
    for spec in inputs:
        if spec.name not in dynamic:
            continue
        if spec.rank == 4:
            sizes = image_sizes(discover(sources))
            proposal = propose_image_gears(
                spec.name, spec.shape, sizes, layout, multiple or 32, count
            )
        else:
            shapes = [
                np.load(p, mmap_mode="r", allow_pickle=False).shape for p in _array_files(sources)
            ]
            proposal = propose_dims_gears(spec.name, spec.shape, shapes, multiple or 16, count)
        if proposal is not None:
            found.append(proposal)
    return found


def _array_files(sources: list[str]) -> list[Path]:
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        files += sorted(path.glob("*.npy")) if path.is_dir() else [path]
    return [f for f in files if f.suffix == ".npy" and f.is_file()]


def _print_gears(inputs: list[TensorSpec], proposals: list[Proposal], sampled: bool) -> None:
    """The dynamic dims and the gears proposed for them; `sampled`: --calib data was given."""
    dynamic = dynamic_dims(inputs)
    if not dynamic:
        return
    table = Table(title="dynamic dims", title_justify="left")
    for column in ("input", "declared shape", "dynamic dims"):
        table.add_column(column)
    for spec in inputs:
        if spec.name in dynamic:
            dims = ", ".join(f"{i} ('{d}')" for i, d in dynamic[spec.name])
            table.add_row(spec.name, _shape(spec.shape), dims)
    console.print(table)
    for proposal in proposals:
        console.print(f"{proposal.input}: {proposal.measured} (rounded up), samples per bucket:")
        most = max(proposal.histogram.values())
        for bucket, n in proposal.histogram.items():
            console.print(f"  {bucket:>6} {'#' * max(1, round(30 * n / most))} {n}")
        console.print(f"suggested: {proposal.flag()}", soft_wrap=True)
    if not proposals and sampled:
        console.print(
            "gears: none suggested: the --calib samples have one size for each dynamic dim, or "
            "only the batch dim is dynamic (give it with --input-shape, or --dynamic-batch)"
        )
    elif not proposals:
        console.print(
            "gears: pass --calib with sample images or .npy files to get suggested gears "
            "(--dynamic-batch / --dynamic-image-size / --dynamic-dims)"
        )


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
    calib: list[str] | None = typer.Option(
        None, "--calib", help="Sample images or .npy files: suggest gears for dynamic dims."
    ),
    gear_multiple: int | None = typer.Option(
        None, "--gear-multiple", help="Round suggested gears up to this (32 images, 16 dims)."
    ),
    gear_count: int = typer.Option(4, "--gear-count", help="Gears to suggest (at most)."),
    layout: str = typer.Option("NCHW", "--layout", help="NCHW or NHWC, for image inputs."),
) -> None:
    """Check, repair and summarise an ONNX model: inputs, ops, quantizable layers, warnings;
    which dims are dynamic, and gears for them from sample data (--calib)."""
    if model.suffix.lower() == ".om":
        _describe_om(model, json_output)
        return
    if gear_count < MIN_GEARS or (gear_multiple is not None and gear_multiple < 1):
        raise UsageError(
            f"--gear-count must be at least {MIN_GEARS} and --gear-multiple positive",
            hint="e.g. --gear-count 4 --gear-multiple 32",
        )
    inputs, _ = graph_io(load_model(model))
    missing = [c for c in calib or [] if not glob.has_magic(c) and not Path(c).exists()]
    if missing:  # a static model reads no --calib data, so a typo would otherwise pass unseen
        source = missing[0].partition("=")[2]
        if source and Path(source).exists():  # build's NAME=SOURCE, copied from its command
            raise UsageError(
                f"--calib {missing[0]}: inspect takes the samples without NAME=",
                hint=f"write --calib {source} (it reads the samples for every dynamic input)",
            )
        raise UsageError(
            f"--calib: {missing[0]} does not exist",
            hint="pass a folder, glob or list file of sample images or .npy files",
        )
    proposals = propose(inputs, list(calib), layout, gear_multiple, gear_count) if calib else []
    gears_config = None
    input_format = "NCHW"
    if proposals and input_shape is None:
        # preflight then runs the model at every suggested gear (a gear it cannot run is an error)
        first = proposals[0]
        if first.kind == "image_size":
            gears_config = GearsConfig(image_size=first.values, inputs=(first.input,))  # type: ignore[arg-type]
        else:
            gears_config, input_format = GearsConfig(dims=first.values), "ND"
    if not json_output:
        _print_gears(inputs, proposals, sampled=bool(calib))
    with progress_for(json_output) as progress, tempfile.TemporaryDirectory() as tmp:
        result = preflight(
            model,
            out if out is not None else Path(tmp),
            input_shape=input_shape,
            simplify=not no_simplify,
            progress=progress,
            gears_config=gears_config,
            input_format=input_format,
        )
        if json_output:
            record = preflight_record(result)
            if out is None:
                record["model_path"] = None  # the temporary copy is gone
            record["dynamic_dims"] = {
                k: [{"dim": i, "name": d} for i, d in v] for k, v in dynamic_dims(inputs).items()
            }
            record["suggested_gears"] = [
                {
                    "input": p.input,
                    "kind": p.kind,
                    "values": [list(v) for v in p.values],
                    "flag": p.flag(),
                    "measured": p.measured,
                    "histogram": p.histogram,
                }
                for p in proposals
            ]
            print_json(record)
        else:
            _print_result(result, kept=out is not None)
