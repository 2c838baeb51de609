"""`ascend-quant compare`: FP32 ONNX golden vs .om candidates, per output, with a verdict."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from ascend_quant import metrics, tasks
from ascend_quant.aisbench_io import parse_input_arg
from ascend_quant.cli.common import (
    GATE_OPTION,
    JSON_OPTION,
    METRIC_OPTION,
    OUTPUT_RANGE_OPTION,
    STRICT_OPTION,
    TASK_OPTION,
    accuracy_overrides,
    console,
    data_sources,
    given,
    input_overrides,
    print_json,
    progress_for,
    styled,
)
from ascend_quant.compare import THRESHOLD_METRICS, CompareResult, compare_models
from ascend_quant.config import (
    AccuracyConfig,
    Thresholds,
    load_build_config,
    merge,
    parse_input_shape,
    to_mapping,
)
from ascend_quant.data.inputs import model_data_sets
from ascend_quant.errors import EXIT_THRESHOLD, UsageError
from ascend_quant.gates import limits_by_metric, parse_gate
from ascend_quant.mixes import PipelineResult, evaluate_pipeline, load_pipeline_spec
from ascend_quant.model import save_reference
from ascend_quant.report import (
    environment_info,
    json_safe,
    save_json,
    worst_sample,
    write_pipeline_report,
    write_report,
)

# Accepted spellings in --threshold OUTPUT:metric=value.
_THRESHOLD_ALIASES = {
    **{attr: attr for attr in THRESHOLD_METRICS},
    **{key: attr for attr, (key, _op) in THRESHOLD_METRICS.items()},
    "cos": "cosine_min",
    "cosine-min": "cosine_min",
    "rel-euclidean": "rel_euclidean_max",
    "rel-euclidean-max": "rel_euclidean_max",
    "kl-max": "kl_max",
    "rmse-max": "rmse_max",
    "mean-rel-error": "mean_rel_error_max",
    "mean-rel-error-max": "mean_rel_error_max",
}


def parse_threshold_overrides(items: list[str], base: Thresholds) -> dict[str, Thresholds]:
    """['output:cosine=0.95', 'output:kl=0.01'] -> {'output': Thresholds(cosine_min=0.95, ...)}."""
    per_output: dict[str, dict[str, float]] = {}
    for item in items:
        output, sep, assignment = item.rpartition(":")
        metric, eq, value = assignment.partition("=")
        attr = _THRESHOLD_ALIASES.get(metric.strip().lower())
        if not sep or not output or not eq or attr is None:
            raise UsageError(
                f"--threshold '{item}' is not OUTPUT:metric=value",
                hint="metrics: " + ", ".join(THRESHOLD_METRICS) + "; e.g. output:cosine_min=0.98",
            )
        try:
            per_output.setdefault(output, {})[attr] = float(value)
        except ValueError:
            raise UsageError(f"--threshold '{item}': '{value}' is not a number") from None
    return {name: merge(base, values) for name, values in per_output.items()}


def compare(
    model: Path | None = typer.Argument(None, help="The original FP32 ONNX model (the golden)."),
    candidates: list[Path] | None = typer.Argument(None, help="One or more converted .om files."),
    inputs: list[str] = typer.Option(
        [],
        "--input",
        "-i",
        help="Evaluation inputs as ais_bench reads them: one directory of .bin/.npy per model "
        "input, in input order, comma-separated or repeated.",
    ),
    evals: list[str] = typer.Option(
        [],
        "--eval",
        help="Evaluation data instead of --input: NAME=SOURCE per input (images, .npy/.bin/.npz "
        "folders, list files) or SOURCE for every input; prepared as for `build`. Repeatable.",
    ),
    config_file: Path | None = typer.Option(
        None,
        "--config",
        help="ascend-quant.toml: [inputs.NAME] tables (value = pins it, as build does); with "
        "--pipeline, its [pipeline] tables (components, mixes).",
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output directory (default compare-out; pipelines: from TOML)."
    ),
    pipeline: str | None = typer.Option(
        None,
        "--pipeline",
        help="module:function running a multi-model pipeline; compares its final outputs "
        "per precision mix declared in --config (see docs/pipelines.md).",
    ),
    soc: str | None = typer.Option(None, "--soc", help="Pipelines: the soc to build for."),
    backend: str | None = typer.Option(None, "--backend", help="Pipelines: auto, atc or sim."),
    samples: int | None = typer.Option(None, "--samples", help="Pipelines: samples per mix."),
    cosine_min: float | None = typer.Option(None, "--cosine-min", help="Default 0.99."),
    rel_euclidean_max: float | None = typer.Option(
        None, "--rel-euclidean-max", help="Default 0.05."
    ),
    kl_max: float | None = typer.Option(None, "--kl-max", help="Default 0.005."),
    rmse_max: float | None = typer.Option(None, "--rmse-max", help="Default 1.0."),
    mean_rel_error_max: float | None = typer.Option(
        None, "--mean-rel-error-max", help="Default 1.0."
    ),
    threshold: list[str] = typer.Option(
        [], "--threshold", help="Per-output override OUTPUT:metric=value (repeatable)."
    ),
    calib: list[str] = typer.Option(
        [],
        "--calib",
        help="Calibration data (dirs, or NAME=DIR); warns when it is the evaluation data.",
    ),
    input_shape: str | None = typer.Option(
        None,
        "--input-shape",
        help='Shapes for dynamic ONNX inputs, atc syntax "input:1,3,224,224".',
    ),
    task: str | None = TASK_OPTION,
    output_range: str | None = OUTPUT_RANGE_OPTION,
    gate: list[str] = GATE_OPTION,
    metric: str | None = METRIC_OPTION,
    strict: bool = STRICT_OPTION,
    report: bool = typer.Option(False, "--report", help="Also write report.json and report.html."),
    json_mode: bool = JSON_OPTION,
) -> None:
    """Compare .om outputs with the FP32 ONNX model on the same inputs; exit 1 on any failure.

    With --pipeline module:function --config pipeline.toml: build each component, run the
    function with every precision mix and compare the final outputs with the all-FP32 run.
    """
    thresholds_given = given(
        cosine_min=cosine_min,
        rel_euclidean_max=rel_euclidean_max,
        kl_max=kl_max,
        rmse_max=rmse_max,
        mean_rel_error_max=mean_rel_error_max,
    )
    thresholds = merge(Thresholds(), thresholds_given)
    if pipeline is not None:
        _compare_pipeline(
            pipeline,
            config_file,
            given(soc=soc, backend=backend, samples=samples, out=str(out) if out else None),
            thresholds_given=thresholds_given,
            gates=gate,
            json_mode=json_mode,
        )
        return
    if model is None or not candidates:
        raise UsageError(
            "compare needs MODEL and one or more candidate .om files",
            hint="or compare a whole pipeline: --pipeline module:function --config pipeline.toml",
        )
    out = out or Path("compare-out")
    overrides = parse_threshold_overrides(threshold, thresholds)
    unnamed, named = data_sources(calib, "--calib")
    calib_paths = [Path(p) for item in unnamed for p in item.split(",") if p]
    calib_paths += [Path(p) for sources in named.values() for p in sources]
    shapes = parse_input_shape(input_shape) if input_shape else None
    if (not inputs) == (not evals):
        raise UsageError(
            "give the evaluation data once: --input DIRS or --eval NAME=SOURCE",
            hint="--input takes ais_bench folders; --eval prepares data as build does",
        )
    accuracy = merge(
        AccuracyConfig(),
        accuracy_overrides(
            task=task, output_range=output_range, gates=gate, metric=metric, strict=strict
        ),
    )
    with progress_for(json_mode) as progress:
        eval_unnamed, eval_named = data_sources(evals, "--eval")
        eval_config = load_build_config(
            config_file,
            given(
                eval_sources=eval_unnamed or None,
                inputs=input_overrides({}, eval_named) or None,
            ),
        )
        if inputs:
            input_dirs = parse_input_arg(",".join(inputs))
        else:
            sets = model_data_sets(model, eval_config, "eval", out / "eval", shapes, progress)
            input_dirs = [calib_set.samples_dir for calib_set in sets.values()]
        # the .om was converted with these inputs folded in, at these sizes: so is the golden
        pinned = {n: s.value for n, s in eval_config.inputs.items() if s.value is not None}
        golden_model = model
        if pinned or shapes:
            golden_model = save_reference(model, pinned, shapes, out / "eval" / "reference.onnx")
        result = compare_models(
            golden_model,
            candidates,
            input_dirs,
            out,
            thresholds=thresholds,
            output_thresholds=overrides,
            calib_sources=calib_paths or None,
            progress=progress,
            input_shapes=shapes,
            accuracy=accuracy,
        )
    written = [save_json(out / "compare.json", result)]
    if report:
        paths = write_report(
            out,
            environment=environment_info(),
            config={
                "thresholds": to_mapping(thresholds),
                "output_thresholds": to_mapping(overrides),
                "accuracy": to_mapping(accuracy),
                "inputs": ",".join(inputs) or list(evals),
                "calib": [str(p) for p in calib_paths],
            },
            bench=None,
            compare=result,
            title=f"{model.stem}: accuracy",
        )
        written += [paths["json"], paths["html"]]
    if json_mode:
        print_json(json_safe(result))
    else:
        for table in compare_rich_tables(result):
            console.print(table)
        for path in written:
            console.print(f"wrote {path}", style="dim")
        style = "bold green" if result.passed else "bold red"
        console.print(result.verdict, style=style, markup=False, highlight=False, soft_wrap=True)
    if not result.passed:
        raise typer.Exit(EXIT_THRESHOLD)


def _compare_pipeline(
    function: str | None,
    config: Path | None,
    overrides: dict[str, Any],
    *,
    thresholds_given: dict[str, float],
    gates: list[str],
    json_mode: bool,
) -> None:
    """`compare --pipeline`: build the components, run every mix, gate the final outputs."""
    if config is None:
        raise UsageError(
            "--pipeline needs --config FILE.toml declaring the components and mixes",
            hint='[pipeline.components.unet] model = "unet.onnx", precision = "int8"',
        )
    spec = load_pipeline_spec(config, function, overrides)
    if thresholds_given:
        spec = replace(spec, thresholds=merge(spec.thresholds, thresholds_given))
    if gates:
        spec = replace(spec, gates=(*spec.gates, *(parse_gate(text) for text in gates)))
    with progress_for(json_mode) as progress:
        result, outputs = evaluate_pipeline(spec, progress=progress)
    paths = write_pipeline_report(
        Path(spec.out), result, outputs, title=f"pipeline {spec.function}"
    )
    if json_mode:
        print_json(json_safe(result))
    else:
        console.print(pipeline_rich_table(result))
        for path in paths.values():
            console.print(f"wrote {path}", style="dim")
        style = "bold green" if result.passed else "bold red"
        console.print(result.verdict, style=style, markup=False, highlight=False, soft_wrap=True)
    if not result.passed:
        raise typer.Exit(EXIT_THRESHOLD)


def pipeline_rich_table(result: PipelineResult) -> Table:
    """One row per mix and final output: the precisions and the metrics that gate."""
    title = f"{result.function}: final outputs vs all-FP32 ({result.samples} samples)"
    if result.simulated:
        title += ", simulated on CPU"
    table = Table(title=title, title_justify="left")
    columns = ("mix", "components", "output", "cosine", "PSNR dB", "SSIM", "worst PSNR", "gate")
    for column in columns:
        table.add_column(column, justify="left" if column in ("mix", "components") else "right")
    for mix in result.mixes:
        for output, values in mix.outputs.items():
            failed = [f for f in mix.failures if f.startswith(f"{output}: ")]
            table.add_row(
                Text(mix.name),
                Text(mix.label or ", ".join(f"{c}={p}" for c, p in mix.precisions.items())),
                Text(output),
                metrics.format_value("cosine", values.get("cosine")),
                metrics.format_value("psnr_db", values.get("psnr_db")),
                metrics.format_value("ssim", values.get("ssim")),
                _worst(mix.per_sample.get(output, []), "psnr_db"),
                styled(("✗ " + "; ".join(failed), "red") if failed else ("✓", "green")),
            )
    return table


def _worst(per_sample: list[dict[str, Any]], metric: str) -> str:
    """`15.06 (#3)`: the worst sample's value and index; n/a without the metric."""
    worst = worst_sample(per_sample, metric)
    return "n/a" if worst is None else f"{metrics.format_value(metric, worst[0])} (#{worst[1]})"


def compare_rich_tables(result: CompareResult) -> list[Table]:
    """One table per model output (and user metric): metrics as rows, candidates as columns."""
    tables = []
    first_outputs = result.candidates[0].outputs if result.candidates else []
    labels = {**metrics.METRIC_LABELS, **tasks.TASK_METRIC_LABELS}
    for k, first in enumerate(first_outputs):
        if first.task == "user":
            title = f"user metric {first.output} ({first.task_source}, {first.samples} samples)"
        else:
            title = (
                f"output {first.output}: task {first.task} ({first.task_source}), "
                f"shape {first.shape}, {first.samples} samples"
            )
        table = Table(title=Text(title), title_justify="left")
        table.add_column("metric")
        table.add_column("gate", justify="right")
        for cand in result.candidates:
            mark = ("✓", "green") if cand.outputs[k].passed else ("✗", "red")
            table.add_column(styled(f"{cand.name} ", mark), justify="right")
            table.add_column("worst", justify="right", style="dim")
        limits = limits_by_metric(first.gates)
        keys = [key for key in labels if key in first.metrics]
        keys += [key for key in first.metrics if key not in keys]
        for key in keys:
            cells: list[str | Text] = [labels.get(key, key), limits.get(key, "")]
            for cand in result.candidates:
                comp = cand.outputs[k]
                value: str | Text = metrics.format_value(key, comp.metrics.get(key))
                if key in limits and comp.metrics.get(key) is not None:
                    failed = any(f.metric == key for f in comp.gate_failures)
                    value = styled((f"{value} ✗", "red") if failed else (str(value), "green"))
                cells += [value, metrics.format_value(key, comp.worst.get(key))]
            table.add_row(*cells)
        # a note every candidate shares (e.g. "KL not applicable") is shown once, unprefixed
        shared = set.intersection(*(set(c.outputs[k].notes) for c in result.candidates))
        notes = [n for n in first.notes if n in shared] + [
            f"{c.name}: {n}"
            for c in result.candidates
            for n in c.outputs[k].notes
            if n not in shared
        ]
        if first.range_source:
            notes.insert(0, f"PSNR/SSIM range L = {first.value_range:.4g}: {first.range_source}")
        if notes:
            table.caption = Text("\n".join(dict.fromkeys(notes)))
            table.caption_justify = "left"
        tables.append(table)
    return tables
