"""What every command shares: consoles, --json output, progress, and flag parsing helpers."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

from ascend_quant.config import to_mapping
from ascend_quant.data.calibset import MANIFEST
from ascend_quant.errors import UsageError
from ascend_quant.gates import parse_gate
from ascend_quant.gears import parse_gear_list
from ascend_quant.jobs import calib_dirs_by_input
from ascend_quant.progress import LineProgress, Progress, RichProgress

# Data goes to stdout, everything meant for a person's eyes (progress, warnings) to stderr.
# No markup: user text (file names like `photo[v1].jpg`, `run[/bold]`) prints literally; styled
# words are `Text` objects. No hard wrapping into a pipe or a file, where lines must stay whole.
console = Console(highlight=False, markup=False)
err_console = Console(stderr=True, highlight=False, markup=False)
for _console in (console, err_console):
    _console.soft_wrap = not _console.is_terminal


def styled(*parts: str | tuple[str, str]) -> Text:
    """Plain strings literally, (text, style) pairs styled: styled(("error:", "red"), " ", m)."""
    return Text.assemble(*parts)


JSON_OPTION = typer.Option(False, "--json", help="Print the result as JSON on stdout.")

# What the outputs mean and how they are judged: shared by `build` and `compare`.
TASK_OPTION = typer.Option(
    None,
    "--task",
    help="generic|image|classification|detection|segmentation|sequence (default: guessed "
    "from each output's shape where safe; per output in ascend-quant.toml).",
)
OUTPUT_RANGE_OPTION = typer.Option(
    None, "--output-range", help="Nominal LO,HI of image outputs for PSNR/SSIM, e.g. 0,1."
)
GATE_OPTION = typer.Option(
    [],
    "--gate",
    help="Extra gate [OUTPUT:][worst:]metric>=value (or <=); repeatable. 'worst:' applies it "
    "to every sample.",
)
METRIC_OPTION = typer.Option(
    None,
    "--metric",
    help="Your own metric: module:function or path/to/file.py[:function]; see docs/metrics.md.",
)
STRICT_OPTION = typer.Option(
    None, "--strict/--no-strict", help="Degenerate outputs or inputs are errors (exit 2)."
)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(to_mapping(data), indent=2, default=str) + "\n")


@contextlib.contextmanager
def progress_for(json_mode: bool) -> Iterator[Progress]:
    """Rich progress bars on a terminal; plain lines on stderr otherwise (logs, pipes, --json),
    so a long run in CI is never silent."""
    if json_mode or not err_console.is_terminal:
        yield LineProgress()
        return
    with RichProgress(err_console) as progress:
        yield progress


def parse_floats(text: str | None, what: str) -> tuple[float, ...] | None:
    """'0.485,0.456,0.406' -> (0.485, 0.456, 0.406)."""
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"{what}: '{text}' is not a comma-separated list of numbers") from None


def split_list(text: str | None) -> list[str] | None:
    """'a, b,c' -> ['a', 'b', 'c']; None when the flag was not given."""
    return None if text is None else [p.strip() for p in text.split(",") if p.strip()]


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'256x256' or '256' -> (H, W)."""
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) <= 0:
        raise UsageError(f"--size: '{text}' is not HxW", hint="e.g. --size 224x224")
    return values[0], values[1]


def accuracy_overrides(
    *,
    task: str | None,
    output_range: str | None,
    gates: list[str] | None,
    metric: str | None,
    strict: bool | None,
) -> dict[str, Any]:
    """The `accuracy` config section from the shared flags (only what was given).

    `--gate OUTPUT:...` lands in `outputs.<OUTPUT>.gates`, a plain gate in `gates`.
    """
    overrides = given(task=task, metric=metric, strict=strict)
    lo_hi = parse_floats(output_range, "--output-range")
    if lo_hi is not None:
        if len(lo_hi) != 2:
            raise UsageError(
                f"--output-range: '{output_range}' is not LO,HI", hint="e.g. --output-range 0,1"
            )
        overrides["output_range"] = lo_hi
    plain: list[dict[str, Any]] = []
    per_output: dict[str, list[dict[str, Any]]] = {}
    for text in gates or []:
        output, gate = parse_gate(text)
        entry = to_mapping(gate)
        (per_output.setdefault(output, []) if output else plain).append(entry)
    if plain:
        overrides["gates"] = plain
    if per_output:
        overrides["outputs"] = {name: {"gates": items} for name, items in per_output.items()}
    return overrides


def given(**options: Any) -> dict[str, Any]:
    """Only the options the user actually set (None means 'not given'), for config merging."""
    return {key: value for key, value in options.items() if value is not None}


DYNAMIC_BATCH_OPTION = typer.Option(
    None, "--dynamic-batch", help="Batch gears (atc --dynamic_batch_size), e.g. 1,4,8."
)
DYNAMIC_IMAGE_SIZE_OPTION = typer.Option(
    None, "--dynamic-image-size", help='H,W gears (atc --dynamic_image_size), e.g. "32,128;32,256".'
)
DYNAMIC_DIMS_OPTION = typer.Option(
    None,
    "--dynamic-dims",
    help='Gears for the -1 dims of --input-shape (atc --dynamic_dims, ND), e.g. "16;32;64".',
)
CALIB_GEAR_OPTION = typer.Option(
    None, "--calib-gear", help="The gear INT8 calibrates at (default: the largest), e.g. 32,256."
)
INPUT_FORMAT_OPTION = typer.Option(
    None, "--input-format", help="atc --input_format: NCHW (default), NHWC, NCDHW or ND."
)


def gear_overrides(
    batch: str | None, image_size: str | None, dims: str | None, calib_gear: str | None
) -> dict[str, Any]:
    """The [gears] overrides from the gear flags (only those given)."""
    values = given(
        batch=parse_gear_list(batch, "batch"),
        image_size=parse_gear_list(image_size, "image_size"),
        dims=parse_gear_list(dims, "dims"),
        calib_gear=calib_gear,
    )
    if "batch" in values:
        values["batch"] = [v[0] for v in values["batch"]]
    return {
        k: [list(x) for x in v] if k in ("image_size", "dims") else v for k, v in values.items()
    }


def data_sources(
    items: list[str] | None, flag: str
) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """`--calib NAME=SOURCE` / `--calib SOURCE` items -> (unnamed sources, {input: sources}).

    An item is named when it has a `=` whose left side is not a path (no `/`) and the item is
    not itself an existing path; a repeated NAME collects several sources.
    """
    unnamed: list[str] = []
    named: dict[str, tuple[str, ...]] = {}
    for item in items or []:
        name, sep, source = item.partition("=")
        if sep and name and "/" not in name and not Path(item).exists():
            if not source:
                raise UsageError(
                    f"{flag} {item}: no source after '='", hint=f"write {flag} NAME=DIR"
                )
            named[name] = (*named.get(name, ()), source)
        else:
            unnamed.append(item)
    return tuple(unnamed), named


def _is_calib_set(item: str) -> bool:
    return all((Path(p.strip()) / MANIFEST).is_file() for p in item.split(",") if p.strip())


def calib_arguments(items: list[str] | None) -> tuple[dict[str, Path], dict[str, Any]]:
    """`--calib` items, as every command reads them -> (calib set dirs by input, config
    overrides for the other sources: `calib.sources` and `inputs.NAME.calib`)."""
    sets = [item for item in items or [] if _is_calib_set(item)]
    unnamed, named = data_sources([i for i in items or [] if i not in sets], "--calib")
    if sets and (unnamed or named):
        raise UsageError(
            "--calib mixes calib set dirs with other sources",
            hint="pass calib sets (from `ascend-quant calib`) or NAME=SOURCE data, not both",
        )
    overrides = given(
        calib=given(sources=unnamed or None) or None,
        inputs=input_overrides(named, {}) or None,
    )
    return calib_dirs_by_input(sets), overrides


CALIB_HELP = (
    "Calibration data: NAME=SOURCE per input (images, .npy/.bin/.npz, a calib set), "
    "SOURCE for every input, calib set dirs from `ascend-quant calib`, or 'random'."
)


def input_overrides(
    calib: dict[str, tuple[str, ...]], evals: dict[str, tuple[str, ...]]
) -> dict[str, dict[str, Any]]:
    """{input: {"calib": ..., "eval": ...}} for the `inputs` section of the config."""
    inputs: dict[str, dict[str, Any]] = {}
    for name, sources in calib.items():
        inputs.setdefault(name, {})["calib"] = sources
    for name, sources in evals.items():
        inputs.setdefault(name, {})["eval"] = sources
    return inputs
