"""`ascend-quant calib`: images -> calibration .bin tensors (see ascend_quant.data.images)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ascend_quant.cli.common import (
    JSON_OPTION,
    console,
    data_sources,
    given,
    input_overrides,
    parse_floats,
    parse_size,
    print_json,
    progress_for,
)
from ascend_quant.config import load_build_config, parse_input_shape
from ascend_quant.data.images import make_calib_set
from ascend_quant.data.inputs import model_data_sets
from ascend_quant.errors import UsageError


def calib(
    sources: list[str] | None = typer.Argument(
        None,
        help="Image directories (recursive), globs or list files. Default: the bundled photos.",
        show_default=False,
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (replaced atomically)."),
    size: str | None = typer.Option(None, "--size", help="Target HxW, e.g. 224x224."),
    model: Path | None = typer.Option(
        None, "--model", help="Read layout, channels, size and dtype from this ONNX input."
    ),
    input_name: str = typer.Option("input", "--input", help="Model input name."),
    color: str | None = typer.Option(None, "--color", help="rgb, bgr or gray."),
    resize: str | None = typer.Option(
        None, "--resize", help="stretch, letterbox, center-crop or shorter-side."
    ),
    resample: str | None = typer.Option(
        None, "--resample", help="nearest, bilinear, bicubic, lanczos, box or hamming."
    ),
    pad_value: int | None = typer.Option(None, "--pad-value", help="Letterbox/pad fill, 0-255."),
    scale: float | None = typer.Option(None, "--scale", help="Pixel multiplier (default 1/255)."),
    mean: str | None = typer.Option(
        None, "--mean", help="Per-channel mean, after --scale, e.g. 0.485,0.456,0.406."
    ),
    std: str | None = typer.Option(
        None, "--std", help="Per-channel std, after --scale, e.g. 0.229,0.224,0.225."
    ),
    layout: str | None = typer.Option(None, "--layout", help="NCHW or NHWC."),
    dtype: str | None = typer.Option(None, "--dtype", help="float32, float16, uint8 or int8."),
    batch: int | None = typer.Option(None, "--batch", help="Samples per batched .bin (N)."),
    limit: int | None = typer.Option(None, "--limit", help="Use a subset of K images."),
    seed: int | None = typer.Option(None, "--seed", help="Seed that picks the --limit subset."),
    jobs: int | None = typer.Option(None, "--jobs", "-j", help="Worker processes (default: all)."),
    skip_bad: bool | None = typer.Option(
        None, "--skip-bad/--no-skip-bad", help="Skip unusable images with a warning."
    ),
    info: bool = typer.Option(False, "--info", help="Also write a ModelZoo-style samples.info."),
    data: list[str] = typer.Option(
        [],
        "--calib",
        help="Per-input data with --model: NAME=SOURCE (images, .npy/.bin/.npz folders, list "
        "files) or 'random'; writes OUT/<NAME>/ for every model input. Repeatable.",
    ),
    input_shape: str | None = typer.Option(
        None, "--input-shape", help='Shapes of dynamic inputs, atc syntax "x:1,4,64,64".'
    ),
    config_file: Path | None = typer.Option(
        None, "--config", help="Project file (ascend-quant.toml); flags override it."
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Turn images into the raw .bin tensors that atc, amct_onnx and ais_bench read."""
    overrides: dict[str, Any] = {
        "preprocess": given(
            size=parse_size(size),
            color=color,
            resize=resize,
            resample=resample,
            pad_value=pad_value,
            scale=scale,
            mean=parse_floats(mean, "--mean"),
            std=parse_floats(std, "--std"),
            layout=layout.upper() if layout else None,
            dtype=dtype,
        ),
        "calib": given(
            sources=tuple(sources) if sources else None,
            batch=batch,
            limit=limit,
            seed=seed,
            jobs=jobs,
            skip_bad=skip_bad,
        ),
    }
    if data:
        _per_input(data, sources, model, input_shape, config_file, overrides, out, json_out)
        return
    config = load_build_config(config_file, overrides)
    with progress_for(json_out) as progress:
        calib_set, reused = make_calib_set(
            out,
            config.preprocess,
            config.calib,
            input_name=input_name,
            model=model if model is not None else config.model,
            progress=progress,
            info=info,
        )
    manifest = calib_set.manifest
    summary = {
        "out": str(calib_set.root),
        "reused": reused,
        "count": len(calib_set),
        "input_name": calib_set.input_name,
        "shape": list(calib_set.sample_shape),
        "dtype": calib_set.dtype,
        "layout": calib_set.layout,
        "batch": calib_set.batch,
        "batch_dir": str(calib_set.batch_dir),
        "batch_files": len(calib_set.batch_files),
        "padded_samples": manifest["padded_samples"],
        "skipped": len(manifest["skipped"]),
        "list_file": str(calib_set.root / manifest["list_file"]),
        "manifest": str(calib_set.root / "manifest.json"),
        "manifest_sha256": calib_set.manifest_sha256,
    }
    if json_out:
        print_json(summary)
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("samples", f"{summary['count']} ({summary['skipped']} skipped)")
    table.add_row("input", f"{calib_set.input_name} {summary['shape']} {calib_set.dtype}")
    table.add_row(
        "batches",
        f"{summary['batch_files']} x bs{calib_set.batch} in {summary['batch_dir']}"
        + (f" ({summary['padded_samples']} padded)" if summary["padded_samples"] else ""),
    )
    table.add_row("list", summary["list_file"])
    table.add_row("manifest", summary["manifest"])
    console.print(table)
    state = "reused (inputs and parameters unchanged)" if reused else "written"
    console.print(f"calib set {state}: {calib_set.root}")


def _per_input(
    data: list[str],
    sources: list[str] | None,
    model: Path | None,
    input_shape: str | None,
    config_file: Path | None,
    overrides: dict[str, Any],
    out: Path,
    json_out: bool,
) -> None:
    """`--calib NAME=SOURCE ...`: one set per model input under OUT, planned as `build` does."""
    if model is None:
        raise UsageError(
            "--calib NAME=SOURCE needs the model", hint="pass --model m.onnx to read its inputs"
        )
    if sources:
        raise UsageError(
            "give the data once: image SOURCES or --calib NAME=SOURCE",
            hint="with several inputs, name each: --calib NAME=SOURCE",
        )
    unnamed, named = data_sources(data, "--calib")
    overrides["calib"]["sources"] = unnamed or None
    overrides["calib"] = {k: v for k, v in overrides["calib"].items() if v is not None}
    overrides["inputs"] = input_overrides(named, {})
    config = load_build_config(config_file, overrides)
    shapes = parse_input_shape(input_shape) if input_shape else None
    with progress_for(json_out) as progress:
        sets = model_data_sets(model, config, "calib", out, shapes, progress)
    rows = [
        {
            "input_name": name,
            "out": str(calib_set.root),
            "kind": calib_set.kind,
            "count": len(calib_set),
            "shape": list(calib_set.sample_shape),
            "dtype": calib_set.dtype,
            "batch_dim": calib_set.batch_dim,
            "batch": calib_set.batch,
        }
        for name, calib_set in sets.items()
    ]
    if json_out:
        print_json(rows)
        return
    table = Table()
    for column in ("input", "kind", "samples", "shape", "dtype", "batch dim", "set"):
        table.add_column(column)
    for name, calib_set in sets.items():
        table.add_row(
            name,
            calib_set.kind,
            str(len(calib_set)),
            str(list(calib_set.sample_shape)),
            calib_set.dtype,
            "none" if calib_set.batch_dim is None else str(calib_set.batch_dim),
            str(calib_set.root),
        )
    console.print(table)
