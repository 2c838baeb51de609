"""`ascend-quant config MODEL --soc S --out DIR`: render every toolkit config file and script."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ascend_quant.cli.common import (
    CALIB_GEAR_OPTION,
    CALIB_HELP,
    DYNAMIC_BATCH_OPTION,
    DYNAMIC_DIMS_OPTION,
    DYNAMIC_IMAGE_SIZE_OPTION,
    INPUT_FORMAT_OPTION,
    JSON_OPTION,
    calib_arguments,
    console,
    gear_overrides,
    given,
    print_json,
    progress_for,
    split_list,
)
from ascend_quant.config import (
    BuildConfig,
    from_mapping,
    load_project_file,
    merge,
    to_mapping,
    to_toml,
)
from ascend_quant.errors import UsageError
from ascend_quant.jobs import render_configs

log = logging.getLogger("ascend_quant")


def load_config_file(path: Path) -> dict[str, Any]:
    """`ascend-quant.toml` or a `quant_config.json` written earlier, as plain overrides."""
    from ascend_quant.render import read_quant_config

    if Path(path).suffix.lower() == ".json":
        return read_quant_config(path)
    return load_project_file(path)


def _search_range(text: str | None) -> dict[str, float]:
    if text is None:
        return {}
    try:
        start, end = (float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(
            f"--search-range: '{text}' is not START,END", hint="e.g. --search-range 0.7,1.3"
        ) from None
    if not 0 < start <= end:
        raise UsageError(f"--search-range: need 0 < START <= END, got {start},{end}")
    return {"search_range_start": start, "search_range_end": end}


def flag_overrides(**flags: Any) -> dict[str, Any]:
    """The quantization flags the user gave, as a nested BuildConfig override mapping."""
    ifmr = {
        **_search_range(flags.get("search_range")),
        **given(
            search_step=flags.get("search_step"),
            max_percentile=flags.get("max_percentile"),
            min_percentile=flags.get("min_percentile"),
        ),
    }
    hfmg = given(num_of_bins=flags.get("num_of_bins"))
    quant = given(
        activation_offset=flags.get("activation_offset"),
        channel_wise=flags.get("channel_wise"),
        algorithm=flags.get("algorithm"),
        batch_num=flags.get("batch_num"),
        skip_layers=split_list(flags.get("skip_layers")),
        skip_layer_types=split_list(flags.get("skip_layer_types")),
    )
    if ifmr:
        quant["ifmr"] = ifmr
    if hfmg:
        quant["hfmg"] = hfmg
    overrides: dict[str, Any] = given(
        input_shape=flags.get("input_shape"), templates=flags.get("templates")
    )
    if flags.get("soc") is not None:
        overrides["socs"] = [flags["soc"]]
    sections = {
        "quant": quant,
        "calib": given(batch=flags.get("calib_batch")),
        "aipp": given(enabled=flags.get("aipp")),
        "atc": given(
            keep_dtype=split_list(flags.get("keep_dtype")), input_format=flags.get("input_format")
        ),
        "gears": gear_overrides(
            flags.get("dynamic_batch"),
            flags.get("dynamic_image_size"),
            flags.get("dynamic_dims"),
            flags.get("calib_gear"),
        ),
    }
    overrides.update({k: v for k, v in sections.items() if v})
    return overrides


def effective_config(config_file: Path | None, overrides: dict[str, Any]) -> BuildConfig:
    """defaults < config file (TOML or quant_config.json) < flags."""
    data = load_config_file(config_file) if config_file is not None else {}
    return merge(from_mapping(BuildConfig, data), overrides)


def config(
    model: Path | None = typer.Argument(None, help="The .onnx model (not needed with --show)."),
    soc: str | None = typer.Option(None, "--soc", help="soc_version, e.g. Ascend310P3."),
    out: Path | None = typer.Option(None, "--out", help="Directory for the rendered files."),
    config_file: Path | None = typer.Option(
        None, "--config", help="ascend-quant.toml, or a quant_config.json written before."
    ),
    show: bool = typer.Option(False, "--show", help="Print the effective config and exit."),
    json_output: bool = JSON_OPTION,
    activation_offset: bool | None = typer.Option(
        None, "--activation-offset/--no-activation-offset", help="Asymmetric activations."
    ),
    channel_wise: bool | None = typer.Option(
        None, "--channel-wise/--no-channel-wise", help="Per-channel weight scales (ARQ)."
    ),
    algorithm: str | None = typer.Option(
        None, "--algorithm", help="Activation algorithm: ifmr or hfmg (simulator: more)."
    ),
    search_range: str | None = typer.Option(
        None, "--search-range", help="IFMR search_range_start,search_range_end (0.7,1.3)."
    ),
    search_step: float | None = typer.Option(None, "--search-step", help="IFMR search_step."),
    max_percentile: float | None = typer.Option(None, "--max-percentile"),
    min_percentile: float | None = typer.Option(None, "--min-percentile"),
    num_of_bins: int | None = typer.Option(None, "--num-of-bins", help="HFMG num_of_bins."),
    skip_layers: str | None = typer.Option(
        None, "--skip-layers", help="Comma-separated ONNX node names kept in float."
    ),
    skip_layer_types: str | None = typer.Option(
        None, "--skip-layer-types", help="Comma-separated layer types (Conv2D, MatMulV2 or Gemm)."
    ),
    keep_dtype: str | None = typer.Option(
        None, "--keep-dtype", help="Ops atc keeps in FP32: node names or OpType::<type>."
    ),
    batch_num: int | None = typer.Option(None, "--batch-num", help="Calibration batches."),
    calib_batch: int | None = typer.Option(
        None, "--calib-batch", help="Samples per calibration batch (N)."
    ),
    aipp: bool | None = typer.Option(None, "--aipp/--no-aipp", help="Write a static aipp.cfg."),
    input_shape: str | None = typer.Option(
        None, "--input-shape", help='Dynamic dims, atc syntax: "name:1,3,224,224;..."'
    ),
    templates: Path | None = typer.Option(
        None, "--templates", help="Directory of templates overriding the bundled ones by name."
    ),
    calib: list[str] | None = typer.Option(None, "--calib", help=CALIB_HELP),
    no_simplify: bool = typer.Option(False, "--no-simplify", help="Do not run onnxsim."),
    dynamic_batch: str | None = DYNAMIC_BATCH_OPTION,
    dynamic_image_size: str | None = DYNAMIC_IMAGE_SIZE_OPTION,
    dynamic_dims: str | None = DYNAMIC_DIMS_OPTION,
    calib_gear: str | None = CALIB_GEAR_OPTION,
    input_format: str | None = INPUT_FORMAT_OPTION,
) -> None:
    """Render quant_config.json, the .cfg files and the atc/amct scripts for one model and soc."""
    overrides = flag_overrides(
        soc=soc,
        activation_offset=activation_offset,
        channel_wise=channel_wise,
        algorithm=algorithm,
        search_range=search_range,
        search_step=search_step,
        max_percentile=max_percentile,
        min_percentile=min_percentile,
        num_of_bins=num_of_bins,
        skip_layers=skip_layers,
        skip_layer_types=skip_layer_types,
        keep_dtype=keep_dtype,
        batch_num=batch_num,
        calib_batch=calib_batch,
        aipp=aipp,
        input_shape=input_shape,
        templates=str(templates) if templates is not None else None,
        dynamic_batch=dynamic_batch,
        dynamic_image_size=dynamic_image_size,
        dynamic_dims=dynamic_dims,
        calib_gear=calib_gear,
        input_format=input_format,
    )
    calib_dirs, calib_overrides = calib_arguments(calib)
    effective = merge(effective_config(config_file, overrides), calib_overrides)
    if show:
        if json_output:
            print_json(to_mapping(effective))
        else:
            console.print(to_toml(to_mapping(effective)), markup=False, highlight=False)
        return
    if model is None:
        raise UsageError("missing MODEL", hint="ascend-quant config model.onnx --soc S --out DIR")
    if out is None:
        raise UsageError("missing --out DIR", hint="the rendered files go there")
    with progress_for(json_output) as progress:
        written = render_configs(
            model, effective, out, calib_dirs, simplify=not no_simplify, progress=progress
        )
    if json_output:
        print_json({soc: {k: str(v) for k, v in files.items()} for soc, files in written.items()})
        return
    table = Table(title="rendered", title_justify="left")
    for column in ("soc", "file", "path"):
        table.add_column(column)
    for soc_name, files in written.items():
        for name, path in files.items():
            table.add_row(soc_name, name, str(path))
    console.print(table)
