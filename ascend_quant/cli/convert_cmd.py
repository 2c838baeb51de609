"""`ascend-quant convert MODEL --soc S --precision fp16|int8|w8 [--backend auto|atc|sim]`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

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
    err_console,
    gear_overrides,
    given,
    print_json,
    progress_for,
    styled,
)
from ascend_quant.config import load_build_config
from ascend_quant.jobs import convert_model
from ascend_quant.progress import NULL_PROGRESS, Progress


@contextlib.contextmanager
def _status_line(backend: Any, json_mode: bool) -> Iterator[Progress]:
    """The atc backend streams tool output: show its last line on one live status line."""
    if json_mode or not err_console.is_terminal:
        yield NULL_PROGRESS
        return
    with err_console.status("starting ...") as status:

        class _StatusProgress:
            @contextlib.contextmanager
            def task(self, description: str, total: int | None = None) -> Iterator[Any]:
                status.update(description)
                yield lambda n=1: None

        backend.status = lambda line: status.update(line[:120])
        yield _StatusProgress()


def convert(
    model: Path = typer.Argument(..., help="The ONNX model."),
    soc: str = typer.Option(None, "--soc", help="soc_version, e.g. Ascend310P3."),
    precision: str = typer.Option(
        "fp16", "--precision", help="fp16, int8 (W8A8) or w8 (weight-only INT8, 310P/A2)."
    ),
    backend: str = typer.Option(None, "--backend", help="auto (default), atc or sim."),
    out: Path = typer.Option(None, "--out", help="Output directory (default build/<model>)."),
    calib: list[str] = typer.Option(
        None,
        "--calib",
        help=CALIB_HELP,
    ),
    input_shape: str = typer.Option(
        None, "--input-shape", help='atc syntax, e.g. "input:1,3,224,224;mask:1,4".'
    ),
    int8_route: str = typer.Option(None, "--int8-route", help="auto, atc (on an NPU) or amct."),
    flag_dialect: str = typer.Option(
        None, "--flag-dialect", help="documented (default) or sample (--enable_quantization)."
    ),
    precision_mode: str = typer.Option(None, "--precision-mode", help="atc --precision_mode."),
    precision_mode_v2: str = typer.Option(
        None, "--precision-mode-v2", help="atc --precision_mode_v2."
    ),
    output_type: str = typer.Option(None, "--output-type", help="atc --output_type, e.g. FP32."),
    dynamic_batch: str = DYNAMIC_BATCH_OPTION,
    dynamic_image_size: str = DYNAMIC_IMAGE_SIZE_OPTION,
    dynamic_dims: str = DYNAMIC_DIMS_OPTION,
    calib_gear: str = CALIB_GEAR_OPTION,
    input_format: str = INPUT_FORMAT_OPTION,
    aipp: bool = typer.Option(None, "--aipp/--no-aipp", help="Static AIPP (uint8 NHWC input)."),
    log_level: str = typer.Option(None, "--log", help="atc --log: debug|info|warning|error|null."),
    config_file: Path = typer.Option(None, "--config", help="ascend-quant.toml."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Convert an ONNX model to an .om for one soc, in FP16 or INT8."""
    atc = given(
        int8_route=int8_route,
        flag_dialect=flag_dialect,
        precision_mode=precision_mode,
        precision_mode_v2=precision_mode_v2,
        output_type=output_type,
        input_format=input_format,
        log=log_level,
    )
    calib_dirs, overrides = calib_arguments(calib)
    overrides.update(given(backend=backend, input_shape=input_shape))
    if atc:
        overrides["atc"] = atc
    gears = gear_overrides(dynamic_batch, dynamic_image_size, dynamic_dims, calib_gear)
    if gears:
        overrides["gears"] = gears
    if aipp is not None:
        overrides["aipp"] = {"enabled": aipp}
    config = load_build_config(config_file, overrides)
    soc_name = soc or config.socs[0]
    out_dir = Path(out or config.out or Path("build") / Path(model).stem)

    from ascend_quant.backends import get_backend

    backend_obj = get_backend(config.backend)
    live = (
        _status_line(backend_obj, json_out) if backend_obj.name == "atc" else progress_for(json_out)
    )
    with live as progress:
        artifact = convert_model(
            model,
            config,
            soc_name,
            precision,
            out_dir,
            calib_dirs,
            backend_obj,
            progress,
        )
    if json_out:
        print_json(
            {
                "path": str(artifact.path),
                "manifest": str(artifact.manifest_path),
                "backend": artifact.backend,
                "precision": artifact.precision,
                "soc": artifact.soc,
                "details": artifact.manifest,
            }
        )
        return
    size = artifact.path.stat().st_size
    console.print(
        styled(
            ("wrote", "green"),
            f" {artifact.path} ({size / 1e6:.2f} MB, {artifact.backend}, "
            f"{artifact.precision}, {artifact.soc})",
        )
    )
    route = artifact.manifest.get("route")
    if route:
        console.print(f"route: {route}; manifest: {artifact.manifest_path}")
