"""`ascend-quant build`: the whole job, from ONNX model to report, for one or more socs."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ascend_quant.backends.base import manifest_gears
from ascend_quant.bench import describe_settings
from ascend_quant.cli.common import (
    CALIB_GEAR_OPTION,
    DYNAMIC_BATCH_OPTION,
    DYNAMIC_DIMS_OPTION,
    DYNAMIC_IMAGE_SIZE_OPTION,
    GATE_OPTION,
    INPUT_FORMAT_OPTION,
    JSON_OPTION,
    METRIC_OPTION,
    OUTPUT_RANGE_OPTION,
    STRICT_OPTION,
    TASK_OPTION,
    accuracy_overrides,
    console,
    data_sources,
    err_console,
    gear_overrides,
    given,
    input_overrides,
    parse_floats,
    parse_size,
    print_json,
    progress_for,
    split_list,
    styled,
)
from ascend_quant.config import BenchConfig, load_build_config, write_project_settings
from ascend_quant.errors import EXIT_THRESHOLD, UsageError
from ascend_quant.pipeline import STAGES, BuildResult, StageRun, rerun_phases
from ascend_quant.pipeline import build as run_build

# Exactly what each `--from` name re-runs, from the pipeline's own table.
FROM_HELP = (
    "Re-run PHASE and the phases that read its results; reuse the rest. calib includes the eval "
    "set and golden, compare includes analyze. "
    + "; ".join(f"{phase}: {', '.join(rerun_phases(phase))}" for phase in STAGES)
    + "."
)


def build(
    model: Path = typer.Argument(..., help="The ONNX model."),
    soc: list[str] = typer.Option(None, "--soc", help="Target soc_version; repeat for several."),
    backend: str = typer.Option(None, "--backend", help="auto | atc | sim (default auto)."),
    out: Path = typer.Option(None, "--out", help="Workspace (default build/<model-stem>/)."),
    config_file: Path = typer.Option(None, "--config", help="ascend-quant.toml project file."),
    input_shape: str = typer.Option(None, "--input-shape", help='atc syntax: "in:1,3,224,224".'),
    calib: list[str] = typer.Option(
        None,
        "--calib",
        help="Calibration data: NAME=SOURCE per input (images or .npy/.bin/.npz), SOURCE for "
        "every input, or 'random' (data-free trial). Repeatable.",
    ),
    eval_images: list[str] = typer.Option(
        None, "--eval", help="Evaluation data, held apart: NAME=SOURCE or SOURCE. Repeatable."
    ),
    calib_batch: int = typer.Option(None, "--calib-batch", help="Calibration batch N."),
    limit: int = typer.Option(None, "--limit", help="Use at most this many calibration images."),
    color: str = typer.Option(None, "--color", help="rgb | bgr | gray."),
    resize: str = typer.Option(None, "--resize", help="stretch|letterbox|center-crop|shorter-side"),
    mean: str = typer.Option(None, "--mean", help="Per-channel mean, after --scale."),
    std: str = typer.Option(None, "--std", help="Per-channel std, after --scale."),
    scale: float = typer.Option(None, "--scale", help="Pixel scale (default 1/255)."),
    layout: str = typer.Option(None, "--layout", help="NCHW | NHWC."),
    size: str = typer.Option(None, "--size", help="HxW, when the model does not fix it."),
    resample: str = typer.Option(
        None, "--resample", help="nearest, bilinear, bicubic, lanczos, box or hamming."
    ),
    pad_value: int = typer.Option(None, "--pad-value", help="Letterbox/pad fill, 0-255."),
    dtype: str = typer.Option(None, "--dtype", help="Image sample dtype (default: the input's)."),
    algorithm: str = typer.Option(None, "--algorithm", help="ifmr|hfmg|minmax|percentile|entropy"),
    activation_offset: bool = typer.Option(
        None, "--activation-offset/--no-activation-offset", help="Asymmetric activations."
    ),
    channel_wise: bool = typer.Option(
        None, "--channel-wise/--no-channel-wise", help="Per-channel weight scales (ARQ)."
    ),
    skip_layers: str = typer.Option(None, "--skip-layers", help="Node names kept in float."),
    skip_layer_types: str = typer.Option(None, "--skip-layer-types", help="Op types kept float."),
    keep_dtype: str = typer.Option(
        None, "--keep-dtype", help="Ops atc keeps in FP32: node names or OpType::<type>."
    ),
    cosine_min: float = typer.Option(None, "--cosine-min", help="Accuracy gate (default 0.99)."),
    task: str = TASK_OPTION,
    output_range: str = OUTPUT_RANGE_OPTION,
    gate: list[str] = GATE_OPTION,
    metric: str = METRIC_OPTION,
    strict: bool = STRICT_OPTION,
    loop: int = typer.Option(None, "--loop", help="Benchmark iterations."),
    warmup: int = typer.Option(None, "--warmup", help="Benchmark warm-up iterations."),
    tune: bool = typer.Option(
        False, "--tune", help="When a build fails its gates, search for the cheapest that passes."
    ),
    tune_budget: str = typer.Option(
        None, "--tune-budget", help="Tune budget: trials (40) or time (300s, 5m)."
    ),
    max_float: float = typer.Option(
        None, "--max-float", help="Most share of quantizable MACs tune keeps in float (0.5)."
    ),
    write_config: Path = typer.Option(
        None, "--write-config", help="Write the tuned settings into this ascend-quant.toml."
    ),
    force: bool = typer.Option(False, "--force", help="Re-run every stage."),
    from_stage: str = typer.Option(None, "--from", metavar="PHASE", help=FROM_HELP),
    analyze: bool = typer.Option(
        False, "--analyze", help="Also rank layers by their own error (see `analyze`)."
    ),
    analyze_only: bool = typer.Option(False, "--analyze-only", hidden=True),
    dynamic_batch: str = DYNAMIC_BATCH_OPTION,
    dynamic_image_size: str = DYNAMIC_IMAGE_SIZE_OPTION,
    dynamic_dims: str = DYNAMIC_DIMS_OPTION,
    calib_gear: str = CALIB_GEAR_OPTION,
    input_format: str = INPUT_FORMAT_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Preflight, calibrate, render configs, convert to FP16/INT8, benchmark, compare, report."""
    calib_unnamed, calib_named = data_sources(calib, "--calib")
    eval_unnamed, eval_named = data_sources(eval_images, "--eval")
    overrides: dict[str, Any] = given(
        socs=tuple(soc) if soc else None,
        backend=backend,
        out=str(out) if out else None,
        input_shape=input_shape,
        eval_sources=eval_unnamed or None,
        calib=given(sources=calib_unnamed or None, batch=calib_batch, limit=limit),
        inputs=input_overrides(calib_named, eval_named) or None,
        preprocess=given(
            color=color,
            resize=resize,
            mean=parse_floats(mean, "--mean"),
            std=parse_floats(std, "--std"),
            scale=scale,
            layout=layout,
            size=parse_size(size),
            resample=resample,
            pad_value=pad_value,
            dtype=dtype,
        ),
        quant=given(
            algorithm=algorithm,
            activation_offset=activation_offset,
            channel_wise=channel_wise,
            skip_layers=split_list(skip_layers),
            skip_layer_types=split_list(skip_layer_types),
        ),
        atc=given(keep_dtype=split_list(keep_dtype), input_format=input_format),
        thresholds=given(cosine_min=cosine_min),
        accuracy=accuracy_overrides(
            task=task, output_range=output_range, gates=gate, metric=metric, strict=strict
        ),
        bench=given(loop=loop, warmup=warmup),
        gears=gear_overrides(dynamic_batch, dynamic_image_size, dynamic_dims, calib_gear),
        tune=given(enabled=True if tune else None, budget=tune_budget, max_float=max_float),
    )
    overrides = {k: v for k, v in overrides.items() if v != {}}
    config = load_build_config(config_file, overrides)
    if write_config is not None and not config.tune.enabled:
        raise UsageError("--write-config writes what --tune found", hint="add --tune")
    with progress_for(json_out) as progress:
        result = run_build(
            model,
            config,
            force=force,
            from_stage=from_stage,
            progress=progress,
            analyze="only" if analyze_only else "on" if analyze else "off",
        )
    written = None
    if write_config is not None:
        written = write_project_settings(write_config, tuned_settings(result))
    if json_out:
        print_json(result.socs[0].analysis if analyze_only and result.socs else result)
    else:
        if not analyze_only:
            _print_summary(result)
            _print_tune(result, written)
        for built in result.socs:
            if built.analysis:
                print_analysis(built.analysis, f"{result.model.name} on {built.soc}")
    if not result.passed and not analyze_only:
        raise typer.Exit(EXIT_THRESHOLD)


def tuned_settings(result: BuildResult) -> dict[str, Any]:
    """The settings a tuned build used (the first soc's; socs on the simulator agree)."""
    for soc in result.socs:
        if soc.tune:
            return soc.settings
    return {}


def _print_tune(result: BuildResult, written: Path | None) -> None:
    for soc in result.socs:
        for precision, found in soc.tune.items():
            mark = ("", "") if found["passed"] else ("not passed: ", "red")
            err_console.print(
                styled(f"tune {precision} [{soc.soc}]: ", mark, found["message"]), soft_wrap=True
            )
        if soc.tune:
            err_console.print(styled(f"tune records: {soc.directory / 'tune'}"), soft_wrap=True)
    if written is not None:
        err_console.print(styled(f"tuned settings written to {written}"), soft_wrap=True)


def tune(**options: Any) -> None:
    """Build with --tune: from a failing INT8 (or FP16) build to the cheapest one that passes."""
    build(**{**options, "tune": True})


# `tune` takes every build option except --tune itself (it is always on).
tune.__signature__ = inspect.signature(build).replace(  # type: ignore[attr-defined]
    parameters=[p for p in inspect.signature(build).parameters.values() if p.name != "tune"]
)
# Typer resolves the (string) annotations through get_type_hints, which reads __annotations__,
# not __signature__: without them every option of `tune` was parsed as a plain string.
tune.__annotations__ = {k: v for k, v in build.__annotations__.items() if k != "tune"}


def _print_summary(result: BuildResult) -> None:
    def label(run: StageRun) -> str:
        return run.stage + (f"[{run.soc}]" if run.soc else "")

    reused = [label(r) for r in result.stages if r.reused]
    shared = [f"{label(r)} from {r.shared_with}" for r in result.stages if r.shared_with]
    ran = [label(r) for r in result.stages if not r.reused and not r.shared_with]
    if reused:
        err_console.print(f"reused: {', '.join(reused)}")
    if shared:
        err_console.print(
            f"shared (the simulated model is identical across socs): {', '.join(shared)}"
        )
    if ran:
        err_console.print(f"ran: {', '.join(ran)}")
    for soc in result.socs:
        simulated = " (simulated on CPU)" if result.simulated else ""
        table = Table(title=f"{result.model.name} on {soc.soc}{simulated}")
        rows = summary_rows(soc.bench, soc.compare, soc.artifacts)
        geared = bool(soc.compare.get("gears"))
        for column in GEAR_COLUMNS if geared else SUMMARY_COLUMNS:
            table.add_column(column, no_wrap=True)
        for row in rows:
            table.add_row(*row)
        console.print(table)
        if result.simulated:
            console.print("latency and speedup: CPU timings of the simulation, not NPU latency")
        for line in bench_notes(soc.bench):
            console.print(line, soft_wrap=True)
        for line in task_lines(soc.compare):
            console.print(line, soft_wrap=True, markup=False)
        if geared and "int8" in soc.artifacts:
            gears = manifest_gears(Path(soc.artifacts["int8"]))
            if gears is not None:
                console.print(
                    f"int8 calibrated at gear {gears.label(gears.calib_index)} "
                    "(--calib-gear chooses another)"
                )
        for precision, path in soc.artifacts.items():
            size = Path(path).stat().st_size if geared and Path(path).is_file() else None
            console.print(
                f"{precision}: {path}" + (f" ({size / 1e6:.3f} MB)" if size else ""),
                soft_wrap=True,
            )
        html = soc.reports.get("html")
        console.print(f"report: {Path(html).resolve() if html else ''}", soft_wrap=True)
    style = "bold green" if result.passed else "bold red"
    console.print(styled((result.verdict, style)), soft_wrap=True)


def _db(value: Any) -> str:
    return "exact" if value is None else f"{float(value):.1f}"


def print_analysis(analysis: dict[str, Any], title: str, top: int = 10) -> None:
    """The ranked per-layer table (worst isolated SQNR first), the advice and the fix files."""
    layers = analysis.get("layers", {})
    for precision in ("int8", "fp16"):
        by_name = {x["name"]: x for x in layers.get(precision, [])}
        ranked = [by_name[n] for n in analysis.get("ranking", {}).get(precision, [])]
        if not ranked:
            continue
        table = Table(title=f"{title}: {precision.upper()} layers, worst first")
        for column in ("layer", "op", "isolated dB", "accum. dB", "accum. cos", "clip"):
            # A layer name is what the user copies into skip_layers: fold it, never cut it
            # ("/blocks/blocks.0/pro…" in an 80-column terminal named no layer at all).
            table.add_column(column, no_wrap=column != "layer", overflow="fold")
        for layer in ranked[:top]:
            clip = layer.get("clip_fraction")
            table.add_row(
                layer["name"],
                str(layer["op_type"]),
                _db(layer.get("isolated_sqnr_db")),
                _db(layer.get("accumulated_sqnr_db")),
                _cell((layer.get("accumulated") or {}).get("cosine"), ".4f"),
                "-" if clip is None else f"{100 * float(clip):.1f}%",
            )
        console.print(table)
        if len(ranked) > top:
            console.print(f"({len(ranked) - top} more layers in analysis.json)")
    for line in analysis.get("notes", []):
        console.print(f"note: {line}", soft_wrap=True, markup=False)
    for line in analysis.get("advice", []):
        console.print(f"advice: {line}", soft_wrap=True, markup=False)
    for name, path in analysis.get("files", {}).items():
        console.print(f"{name}: {path}", soft_wrap=True, markup=False)


def task_lines(compare: dict[str, Any]) -> list[str]:
    """'task: <output> = <task> (<why>)' per output, and the PSNR range where it applies."""
    candidates = compare.get("candidates", [])
    lines = []
    for out in candidates[0]["outputs"] if candidates else []:
        if out.get("task") == "user":
            continue
        lines.append(f"task: {out['output']} = {out.get('task')} ({out.get('task_source')})")
        if out.get("range_source"):
            value = _cell(out.get("value_range"), ".4g")
            lines.append(f"  PSNR/SSIM range L = {value}: {out['range_source']}")
    return lines


def _cell(value: Any, spec: str) -> str:
    """A number from compare.json (non-finite numbers are strings there) or '-'."""
    if value is None:
        return "-"
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return str(value)


def bench_notes(bench: dict[str, Any]) -> list[str]:
    """The benchmark's loop settings and each speedup's spread over the interleaved rounds."""
    lines = []
    settings = bench.get("config") or {}
    if settings:
        rows = bench.get("timed", len(bench.get("rows", [])))  # a shared table: as timed
        lines.append("bench: " + describe_settings(BenchConfig(**settings), rows))
    for row in bench.get("rows", []):
        rounds = row.get("speedup_rounds")
        if rounds:
            gear = row["result"].get("gear")
            lines.append(
                f"{Path(row['result']['model']).name}{f' at {gear}' if gear else ''}: "
                f"speedup {row['speedup']:.2f}x, per round "
                f"{min(rounds):.2f}x to {max(rounds):.2f}x over {len(rounds)} alternating rounds"
            )
    return lines


# The median latency: the speedup beside it is a ratio of medians (per alternating round), so a
# mean that one 20 ms stall of a shared machine pulls up cannot contradict it.
SUMMARY_COLUMNS = (
    "precision",
    "size",
    "median ms",
    "speedup",
    "cosine",
    "PSNR dB",
    "verdict",
)


def _lowest_psnr(candidate: dict[str, Any]) -> str:
    """The worst output's PSNR against FP32, for image outputs; '-' when there is none."""
    values = [o["metrics"].get("psnr_db") for o in candidate.get("outputs", [])]
    numbers = [float(v) for v in values if v is not None]
    return f"{min(numbers):.1f}" if numbers else "-"


GEAR_COLUMNS = (SUMMARY_COLUMNS[0], "gear", *SUMMARY_COLUMNS[2:])


def summary_rows(
    bench: dict[str, Any], compare: dict[str, Any], artifacts: dict[str, str]
) -> list[tuple[str, ...]]:
    """One row per precision from bench.json and compare.json, in `SUMMARY_COLUMNS`; for gear
    models one per gear and precision, in `GEAR_COLUMNS` (the size is the same at every gear)."""
    rows: list[tuple[str, ...]] = []
    gears: list[str | None] = list(compare.get("gears") or []) or [None]
    bench_by_model = {
        (Path(r["result"]["model"]).name, r["result"].get("gear")): r for r in bench.get("rows", [])
    }
    compare_by_model = {
        (Path(c["model"]).name, c.get("gear")): c for c in compare.get("candidates", [])
    }
    for gear in gears:  # gear-major: FP16 and INT8 of one gear side by side
        for precision, path in artifacts.items():
            name = Path(path).name
            row = bench_by_model.get((name, gear))
            c = compare_by_model.get((name, gear), {})
            full = _summary_row(precision, gear, row, c)
            rows.append(full[:2] + full[3:] if gear is not None else full[:1] + full[2:])
    return rows


def _summary_row(
    precision: str, gear: str | None, row: dict[str, Any] | None, c: dict[str, Any]
) -> tuple[str, ...]:
    size = row["result"]["file_size_bytes"] if row else None
    return (
        precision,
        gear or "-",
        f"{size / 1e6:.3f} MB" if size else "-",
        f"{row['result']['latency_ms']['median']:.2f}" if row else "-",
        f"{row['speedup'] or 1.0:.2f}x" if row else "-",
        _cell(c.get("cosine_min"), ".6f"),
        _lowest_psnr(c),
        ("PASSED" if c.get("passed") else "FAILED") if c else "-",
    )
