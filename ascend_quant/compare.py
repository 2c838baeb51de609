"""FP32 golden vs converted candidates on identical inputs: metrics, thresholds and a verdict.

The golden is the original ONNX model in FP32 on ONNX Runtime, recorded once (`golden.py`) and
replayed sample by sample. Each candidate .om is opened in-process (`Backend.open`) and streamed
against it through `comparator.compare_runs`, so memory stays flat in the number of samples and
no candidate output files are written. Only where an .om cannot be loaded in-process (an NPU
host without ais_bench's Python API) does its backend's `run` write ais_bench files, read back
per sample. Golden and candidates read the same inputs through `calibset.iter_eval_feeds` (calib
sets joined along each input's batch dim, plain files by `aisbench_io`'s conventions).

Per candidate and output, the metrics of `metrics.py` and of the output's task (`tasks.py`) are
computed over all samples at once and per sample. Gates (`gates.py`: msit's thresholds, the
task's defaults and the user's) judge the aggregate or the worst sample; the verdict is one line
naming the first failure. A user metric hook (`usermetric.py`) is judged the same way.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ascend_quant import aisbench_io, backends, metrics, tasks
from ascend_quant.backends.base import RunResult
from ascend_quant.comparator import ErrorAccumulator, compare_runs
from ascend_quant.config import AccuracyConfig, Thresholds
from ascend_quant.data.calibset import iter_eval_feeds
from ascend_quant.errors import InProcessUnavailable, UsageError, not_a_model_file
from ascend_quant.gates import Extremes, Gate, GateFailure, judge, merge_gates, verdict_line
from ascend_quant.golden import GoldenSet, golden_runner, resolve_inputs, write_golden
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.runners.base import Feeds, Runner
from ascend_quant.runners.geared import GearedRunner
from ascend_quant.runners.recorded import RecordedRunner
from ascend_quant.sanity import DegenerateTracker
from ascend_quant.tensors import TensorSpec
from ascend_quant.usermetric import DEFAULT_GATES as USER_METRIC_GATES
from ascend_quant.usermetric import UserMetric, UserMetricAccumulator, load_metric
from ascend_quant.workspace import atomic_directory, read_json, sha256_file

log = logging.getLogger("ascend_quant")

# Thresholds field -> (metric key, comparison) ; ">=" means the metric must be at least the value.
THRESHOLD_METRICS: dict[str, tuple[str, str]] = {
    "cosine_min": ("cosine", ">="),
    "rel_euclidean_max": ("rel_euclidean", "<="),
    "kl_max": ("kl", "<="),
    "rmse_max": ("rmse", "<="),
    "mean_rel_error_max": ("mean_rel_error", "<="),
}

BATCH_HINT = (
    "the .om was probably converted with a different input or batch shape; pass --input-shape "
    "to match the .om"
)
OPTIMISTIC_WARNING = (
    "{n} of {total} evaluation samples are also calibration samples: the INT8 accuracy figures "
    "are optimistic; evaluate on inputs kept apart from calibration"
)


@dataclass
class OutputComparison:
    """One candidate's output against the golden, over all evaluation samples."""

    output: str
    kind: str  # "image" | "classes" | "tensor": which built-in metrics apply
    shape: list[int]  # per inference
    samples: int
    metrics: dict[str, float | None]  # aggregate over all samples
    worst: dict[str, float | None]  # worst single sample per metric
    worst_sample: dict[str, str]  # metric -> the sample (output file stem) that was worst
    thresholds: Thresholds
    failures: list[str]  # e.g. "cosine 0.9712 < 0.99", "psnr_db 28.1 < 30 sample img_3"
    notes: list[str]
    passed: bool
    task: str = "generic"  # tasks.Task, or "user" for a user metric hook
    task_source: str = ""  # why this task: "--task", "accuracy.outputs.<name>", "guessed ..."
    value_range: float | None = None  # L of PSNR/SSIM
    range_source: str | None = None  # "nominal 0..1 (--output-range)" or "golden min..max"
    gates: list[Gate] = field(default_factory=list)
    gate_failures: list[GateFailure] = field(default_factory=list)


@dataclass
class CandidateResult:
    name: str
    model: str  # the .om path
    backend: str
    precision: str | None
    outputs: list[OutputComparison]
    passed: bool
    cosine_min: float | None  # the lowest aggregate cosine over the outputs (None: undefined)
    gear: str | None = None  # the gear these inputs ran at (a gear model), e.g. "32x256"


@dataclass
class ImageSample:
    """The first sample of an image-to-image model, kept as .npy files for the report."""

    output: str
    layout: str  # of the output: "NCHW" | "NHWC"
    value_range: float
    input: str | None  # .npy of the first image-like model input (None if there is none)
    input_layout: str | None
    golden: str
    candidates: dict[str, str]  # candidate name -> .npy


@dataclass
class CompareResult:
    model: str
    model_sha256: str
    inputs: list[str]
    samples: int
    candidates: list[CandidateResult]
    passed: bool
    verdict: str  # "PASSED" or "FAILED: <what failed>"
    failures: list[str]
    warnings: list[str]
    thresholds: Thresholds
    output_thresholds: dict[str, Thresholds] = field(default_factory=dict)
    image_samples: list[ImageSample] = field(default_factory=list)
    out_dir: str = ""
    gate_failures: list[GateFailure] = field(default_factory=list)
    metric_hook: str | None = None
    gears: list[str] = field(default_factory=list)  # gear models: every gear compared, in order


# --- thresholds ------------------------------------------------------------------------------


def check_thresholds(values: dict[str, float | None], thresholds: Thresholds) -> list[str]:
    """Failed checks as text, e.g. 'cosine 0.9712 < 0.99'. Undefined (None) metrics are skipped
    (their reason is in the notes); NaN always fails."""
    failures = []
    for attr, (key, op) in THRESHOLD_METRICS.items():
        limit = getattr(thresholds, attr)
        value = values.get(key)
        if value is None:
            continue
        if math.isnan(value):
            failures.append(f"{key} is NaN")
        elif op == ">=" and not value >= limit:
            failures.append(f"{key} {_fmt(value)} < {limit:g}")
        elif op == "<=" and not value <= limit:
            failures.append(f"{key} {_fmt(value)} > {limit:g}")
    return failures


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def verdict_text(candidates: list[CandidateResult]) -> tuple[str, list[GateFailure]]:
    """The verdict line ('PASSED' or 'FAILED: <first failure> (+N other ...)') and every
    failed gate, candidate by candidate and output by output."""
    failures = [f for c in candidates for o in c.outputs for f in o.gate_failures]
    return verdict_line(failures), failures


def resolve_task(
    accuracy: AccuracyConfig, output: str, shape: tuple[int, ...]
) -> tuple[tasks.TaskOptions, str]:
    """The output's options with a concrete task, and where the task came from."""
    options = accuracy.outputs.get(output, tasks.TaskOptions())
    if options.task != "auto":
        task, source = options.task, f"accuracy.outputs.{output}.task"
    elif accuracy.task != "auto":
        task, source = accuracy.task, "--task"
    else:
        task, source = tasks.guess_task(shape)
    if options.output_range is None and accuracy.output_range is not None:
        options = replace(options, output_range=accuracy.output_range)
    options = replace(options, task=task)
    problem = tasks.check_shape(options, shape, output)
    if problem is not None:
        raise UsageError(
            problem,
            hint=f"set the task per output in ascend-quant.toml ([accuracy.outputs.{output}] "
            'task = "generic"), or judge it with --metric',
        )
    return options, source


def _value_range(options: tasks.TaskOptions, lo: float, hi: float) -> tuple[float, str]:
    """L for PSNR/SSIM: the nominal range when given, else the golden's (stated either way)."""
    if options.output_range is not None:
        a, b = options.output_range
        return float(b - a), f"nominal {a:g}..{b:g} (--output-range)"
    if lo > hi:
        return 0.0, "the golden has no finite values"
    value = metrics.data_range(lo, hi)
    if lo >= 0.0 and hi <= 1.0:
        return value, f"golden within 0..1 ({lo:.4g}..{hi:.4g}); --output-range sets it"
    return value, f"golden min..max ({lo:.4g}..{hi:.4g}); --output-range sets it"


def _nan_reason(notes: list[str]) -> str | None:
    bad = [n for n in notes if "NaN/Inf" in n]
    return "; ".join(bad) if bad else None


def _worst_of(
    extremes: Extremes, keys: list[str], higher_better: Mapping[str, bool] | None = None
) -> tuple[dict[str, float | None], dict[str, str]]:
    """The worst sample per metric by its direction (NaN is the worst of all)."""
    worst: dict[str, float | None] = {}
    at: dict[str, str] = {}
    for key in keys:
        if key in extremes.nan_at:
            worst[key], at[key] = math.nan, extremes.nan_at[key]
            continue
        higher = metrics.HIGHER_IS_BETTER.get(key, tasks.HIGHER_IS_BETTER.get(key, False))
        if higher_better is not None:
            higher = higher_better.get(key, True)
        source, where = (
            (extremes.low, extremes.low_at) if higher else (extremes.high, extremes.high_at)
        )
        if key in source:
            worst[key], at[key] = source[key], where[key]
    return worst, at


# --- same-inputs check -----------------------------------------------------------------------


def _sample_files(path: Path) -> list[Path]:
    if path.is_dir():
        return [
            p
            for p in sorted(path.iterdir())
            if p.is_file() and p.suffix.lower() in aisbench_io.INPUT_SUFFIXES
        ]
    return [path] if path.is_file() and path.suffix.lower() != ".json" else []


def _manifest_sample_hashes(value: Any, in_list: bool = False) -> Iterator[str]:
    """sha256 strings of per-sample records (dicts inside lists) in a calib manifest."""
    if isinstance(value, dict):
        for key, item in value.items():
            if in_list and "sha256" in key and isinstance(item, str):
                yield item
            else:
                yield from _manifest_sample_hashes(item, in_list)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str) and in_list is False and re.fullmatch(r"[0-9a-f]{64}", item):
                yield item
            else:
                yield from _manifest_sample_hashes(item, True)


def _manifest_for(path: Path) -> Path | None:
    for candidate in (path / "manifest.json", path.parent / "manifest.json", path):
        if candidate.is_file() and candidate.name == "manifest.json":
            return candidate
    return None


def sample_hashes(paths: list[Path]) -> tuple[set[str], set[str]]:
    """(sha256 of the sample files, sha256s of the samples listed in a nearby manifest)."""
    files: set[str] = set()
    listed: set[str] = set()
    for path in paths:
        path = Path(path)
        for f in _sample_files(path):
            files.add(sha256_file(f))
        manifest = _manifest_for(path) if path.exists() else None
        if manifest is not None:
            with contextlib.suppress(ValueError, OSError):
                listed.update(_manifest_sample_hashes(read_json(manifest)))
    return files, listed


def overlap_warning(input_dirs: list[Path], calib_sources: list[Path]) -> str | None:
    """The optimistic-figures warning when evaluation samples are calibration samples."""
    eval_files, eval_listed = sample_hashes(input_dirs)
    calib_files, calib_listed = sample_hashes(calib_sources)
    total = len(eval_files) or len(eval_listed)
    shared = len(eval_files & calib_files) or len((eval_listed | eval_files) & calib_listed)
    if shared:
        return OPTIMISTIC_WARNING.format(n=shared, total=max(total, shared))
    return None


# --- the comparison --------------------------------------------------------------------------


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "output"


def _candidate_names(candidates: list[Path]) -> list[str]:
    names: list[str] = []
    for path in candidates:
        name = path.stem
        n = 2
        while name in names:
            name = f"{path.stem}-{n}"
            n += 1
        names.append(name)
    return names


def _precision_of(om: Path) -> str | None:
    manifest = om.with_suffix(".json")
    if manifest.is_file():
        try:
            value = read_json(manifest).get("precision")
            if isinstance(value, str):
                return value
        except (ValueError, AttributeError, OSError):
            pass
    match = re.search(r"(fp16|int8|w8|fp32)", om.stem.lower())
    return match.group(1) if match else None


def _check_output_thresholds(
    output_thresholds: Mapping[str, Any], output_names: list[str], what: str = "threshold"
) -> None:
    for name in output_thresholds:
        if name not in output_names:
            close = difflib.get_close_matches(name, output_names, n=1)
            raise UsageError(
                f"{what} for unknown output '{name}'",
                hint=(f"did you mean '{close[0]}'? " if close else "")
                + f"the model's outputs are: {', '.join(output_names)}",
            )


def _read_candidate(path: Path, spec: TensorSpec, name: str) -> np.ndarray:
    """A candidate output file as an array of the golden's shape (dtype from the file size)."""
    dtype = np.dtype(spec.dtype)
    size = int(np.prod([int(d) for d in spec.shape]))
    if path.suffix.lower() == ".bin":
        nbytes = path.stat().st_size
        if nbytes == size * 2 and dtype.itemsize != 2:
            dtype = np.dtype("float16")
        elif nbytes != size * dtype.itemsize:
            raise UsageError(
                f"{name}: output file {path.name} has {nbytes} bytes, expected {size} "
                f"values like the golden output of shape {list(spec.shape)}",
                hint=BATCH_HINT,
            )
    return aisbench_io.read_output(path, replace(spec, dtype=dtype.name)).reshape(spec.shape)


def _candidate_array(value: np.ndarray, golden: np.ndarray, name: str) -> np.ndarray:
    """A candidate output shaped like the golden (UsageError when its size differs)."""
    value = np.asarray(value)
    if value.size != golden.size:
        raise UsageError(
            f"{name}: an output has {value.size} values, expected {golden.size} like the "
            f"golden output of shape {list(golden.shape)}",
            hint=BATCH_HINT,
        )
    return value.reshape(golden.shape)


def _check_batch(name: str, runner: Runner, fed: list[TensorSpec]) -> None:
    """UsageError when a static candidate takes other input shapes than the golden is fed."""
    shapes = {s.name: tuple(s.shape) for s in fed}
    for spec in runner.input_specs():
        shape = shapes.get(spec.name)
        if shape is not None and spec.is_static and tuple(spec.shape) != shape:
            raise UsageError(
                f"{name} takes '{spec.name}' of shape {list(spec.shape)} but the ONNX model is "
                f"fed {list(shape)}: one inference would not match the other",
                hint=BATCH_HINT,
            )


@dataclass
class _OutputAccumulator:
    """One candidate output: its metrics, its task's metrics, and each metric's worst sample.

    The accumulator `compare_runs` updates per sample; the sample's own figures feed the
    worst-sample gates (`Extremes`), named by the golden's stems in input order.
    """

    errors: ErrorAccumulator
    task: tasks.TaskAccumulator
    stems: list[str]
    candidate: str
    extremes: Extremes = field(default_factory=Extremes)
    seen: int = 0

    def update(self, golden: np.ndarray, mine: np.ndarray) -> dict[str, Any]:
        mine = _candidate_array(mine, golden, self.candidate)
        sample = self.errors.update(golden, mine)
        sample.pop("notes", None)
        sample.update(
            {
                key: value
                for key, value in self.task.update(golden, mine).items()
                if not isinstance(value, metrics.Undefined)
            }
        )
        self.extremes.update(sample, self.stems[self.seen])
        self.seen += 1
        return sample

    def result(self) -> dict[str, Any]:
        return self.errors.result()


def _golden_replay(golden: GoldenSet) -> RecordedRunner:
    """The recorded golden as a runner (the ONNX model is not run again per candidate)."""
    names = [o.name for o in golden.outputs]
    return RecordedRunner(
        "golden",
        golden.inputs,
        golden.outputs,
        len(golden.stems),
        lambda i: dict(zip(names, golden.read(golden.stems[i]))),
    )


def _files_replay(
    name: str, run: RunResult, golden: GoldenSet, mapping: list[int]
) -> RecordedRunner:
    """What `Backend.run` wrote for a candidate, read back one inference at a time."""
    if len(run.outputs) != len(golden.stems) or any(
        Path(files[0]).stem.rsplit("_", 1)[0] != stem
        for files, stem in zip(run.outputs, golden.stems)
    ):
        raise UsageError(
            f"{name} ran {len(run.outputs)} inference(s) on these inputs but the ONNX "
            f"model ran {len(golden.stems)}",
            hint=BATCH_HINT,
        )
    # The golden output each file holds gives its shape (and dtype, unless the file is FP16).
    specs = {
        run.output_names[mapping[k]]: replace(spec, name=run.output_names[mapping[k]])
        for k, spec in enumerate(golden.outputs)
    }

    def read(i: int) -> Feeds:
        return {
            out: _read_candidate(Path(path), specs[out], name)
            for out, path in zip(run.output_names, run.outputs[i])
        }

    return RecordedRunner(name, golden.inputs, list(specs.values()), len(run.outputs), read)


def _open_candidate(
    name: str,
    om: Path,
    backend: backends.Backend,
    gear: str | None,
    golden: GoldenSet,
    input_dirs: list[Path],
    files_dir: Path,
    progress: Progress,
) -> tuple[Runner, list[str], str | None]:
    """The candidate as a runner, its output names, and a note when it ran through files.

    In-process (`Backend.open`) wherever the model can be loaded here; otherwise (on an NPU host
    without ais_bench's Python API) the backend's `run` writes ais_bench files into `files_dir`
    through its command-line tool (ais_bench or msame), and those are read back per sample.
    """
    golden_names = [o.name for o in golden.outputs]
    try:
        runner = backend.open(om)
    except InProcessUnavailable as exc:
        extra = {"gear": gear} if gear is not None else {}
        run = backend.run(om, input_dirs, files_dir, "BIN", progress, **extra)
        mapping, _ = _match_outputs(golden_names, list(run.output_names), name)
        note = f"ran through output files ({exc.message})"
        return _files_replay(name, run, golden, mapping), list(run.output_names), note
    if isinstance(runner, GearedRunner):
        if gear is not None:
            runner = runner.at_gear(gear)  # feeds of any other gear are refused
    elif gear is not None:
        runner.close()
        raise UsageError(
            f"{om.name} has no gears (converted with static shapes); gear {gear} does not apply",
            hint="compare it without a gear, or re-convert with --dynamic-batch/"
            "--dynamic-image-size/--dynamic-dims",
        )
    try:
        _check_batch(name, runner, golden.inputs)
    except UsageError:
        runner.close()
        raise
    return runner, [o.name for o in runner.output_specs()], None


def _match_outputs(
    golden_names: list[str], names: list[str], candidate: str
) -> tuple[list[int], str | None]:
    """Index of each golden output among the candidate's outputs."""
    if sorted(names) == sorted(golden_names):
        return [names.index(n) for n in golden_names], None
    if len(names) == len(golden_names):
        note = (
            f"{candidate}: output names {names} differ from the ONNX model's {golden_names}; "
            "matched by position"
        )
        return list(range(len(names))), note
    raise UsageError(
        f"{candidate} has {len(names)} outputs but the ONNX model has {len(golden_names)}",
        hint="compare the .om with the ONNX model it was converted from",
    )


def compare_models(
    onnx_model: Path,
    candidates: list[Path],
    input_dirs: list[Path],
    out_dir: Path,
    thresholds: Thresholds | None = None,
    output_thresholds: dict[str, Thresholds] | None = None,
    calib_sources: list[Path] | None = None,
    progress: Progress = NULL_PROGRESS,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    accuracy: AccuracyConfig | None = None,
    golden: GoldenSet | None = None,
    gear: str | None = None,
) -> CompareResult:
    """Run the FP32 golden and every candidate on the same inputs and judge each output.

    `golden`: outputs already recorded on these inputs (`golden.record_golden`); without it the
    golden runs here into `out_dir/outputs/golden/`. `gear`: the gear the candidates (gear
    models) run at; the inputs and `input_shapes` must be that gear's.

    Output files go to `out_dir/outputs/` (`golden/`, `samples/` with the first image sample as
    .npy for the report, and a folder per candidate only for those run through files), replaced
    as a whole on success.
    `accuracy` says what each output means (its task), adds gates and a user metric hook.
    """
    onnx_model = Path(onnx_model)
    out_dir = Path(out_dir)
    input_dirs = [Path(p) for p in input_dirs]
    thresholds = thresholds or Thresholds()
    output_thresholds = dict(output_thresholds or {})
    accuracy = accuracy or AccuracyConfig()
    if not onnx_model.is_file():
        raise not_a_model_file(onnx_model)
    if not candidates:
        raise UsageError("no .om candidates to compare", hint="pass one or more .om files")
    candidates = [Path(c) for c in candidates]
    hook: UserMetric | None = load_metric(accuracy.metric) if accuracy.metric else None
    runners = [backends.backend_for_om(c) for c in candidates]  # validates the files early
    names = _candidate_names(candidates)

    runner = None
    if golden is None:
        runner = golden_runner(onnx_model)
        golden_names = [o.name for o in runner.output_specs()]
        specs = resolve_inputs(runner.input_specs(), input_dirs, input_shapes, candidates)
    else:
        golden_names = [o.name for o in golden.outputs]
        specs = golden.inputs
    _check_output_thresholds(output_thresholds, golden_names)
    _check_output_thresholds(
        accuracy.outputs, golden_names + ([hook.name] if hook else []), "accuracy settings"
    )

    warnings: list[str] = []
    if calib_sources:
        warning = overlap_warning(input_dirs, [Path(p) for p in calib_sources])
        if warning:
            log.warning(warning)
            warnings.append(warning)

    degenerate = DegenerateTracker()
    final_outputs = out_dir / "outputs"
    with atomic_directory(final_outputs) as work:
        if runner is not None:
            golden = write_golden(
                runner, sha256_file(onnx_model), input_dirs, specs, work / "golden", progress
            )
            runner.close()
        assert golden is not None
        stems = golden.stems
        lo, hi = golden.lo, golden.hi
        first_feeds: dict[str, np.ndarray] = next(
            (feeds for _stem, feeds in iter_eval_feeds(input_dirs, specs)), {}
        )
        first_outs = golden.read(stems[0]) if stems else []
        # The real shapes (the model may declare dynamic output dims).
        golden_specs = golden.outputs
        resolved = [
            resolve_task(accuracy, s.name, tuple(int(d) for d in s.shape)) for s in golden_specs
        ]
        options = [r[0] for r in resolved]

        kinds = [tasks.ACCUMULATOR_KIND[str(o.task)] for o in options]
        ranges = [_value_range(options[k], lo[k], hi[k]) for k in range(len(golden_names))]
        accs = {
            name: {
                out: _OutputAccumulator(
                    ErrorAccumulator(
                        kinds[k],  # type: ignore[arg-type]
                        ranges[k][0],
                        logits=options[k].task in ("classification", "sequence"),
                    ),
                    tasks.TaskAccumulator(options[k]),
                    stems,
                    name,
                )
                for k, out in enumerate(golden_names)
            }
            for name in names
        }
        hook_accs = {name: UserMetricAccumulator(hook) for name in names} if hook else {}
        hook_extremes = {name: Extremes() for name in hook_accs}
        image_samples = _image_outputs(
            kinds, [r[0] for r in ranges], golden_specs, specs, first_feeds, first_outs, work
        )

        with contextlib.ExitStack() as stack:
            opened: dict[str, Runner] = {}
            runs: dict[str, tuple[str | None, str]] = {}  # name -> (note, backend name)
            tensor_map: dict[str, dict[str, str]] = {}
            for name, om, backend in zip(names, candidates, runners):
                candidate, out_names, files_note = _open_candidate(
                    name, om, backend, gear, golden, input_dirs, work / _safe(name), progress
                )
                opened[name] = stack.enter_context(candidate)
                mapping, note = _match_outputs(golden_names, out_names, name)
                tensor_map[name] = {
                    out: out_names[mapping[k]] for k, out in enumerate(golden_names)
                }
                notes = [n for n in (note, files_note) if n]
                runs[name] = ("; ".join(notes) or None, getattr(backend, "name", "?"))

            def on_sample(i: int, inputs: Feeds, gold: Feeds, mine: dict[str, Feeds]) -> None:
                """What needs a whole sample: degenerate data, the hook, the report's images."""
                stem = stems[i]
                degenerate.check_inputs(inputs, stem)
                for out in golden_names:
                    degenerate.check_golden(out, gold[out], stem)
                for name in names:
                    values = {
                        out: _candidate_array(mine[name][tensor_map[name][out]], gold[out], name)
                        for out in golden_names
                    }
                    if i == 0:
                        for k, sample in image_samples.items():
                            path = work / "samples" / f"{_safe(golden_names[k])}.{name}.npy"
                            np.save(path, values[golden_names[k]])
                            sample.candidates[name] = str(final_outputs / path.relative_to(work))
                    if hook_accs:
                        outcome = hook_accs[name].update(gold, values, inputs)
                        hook_extremes[name].update(outcome, stem)

            # One pass over the inputs, each candidate in-process against the recorded golden:
            # nothing outlives a sample but the accumulators.
            compare_runs(
                _golden_replay(golden),
                opened,
                (feeds for _stem, feeds in iter_eval_feeds(input_dirs, specs)),
                tensor_map=tensor_map,
                accumulator=lambda name, out: accs[name][out],
                on_sample=on_sample,
                progress=progress,
                total=len(stems),
                label="comparing outputs",
            )

    for message in degenerate.warnings(len(stems)):
        log.warning(message)
        warnings.append(message)
    flagged = degenerate.warnings(len(stems))
    if accuracy.strict and flagged:
        more = f" (+{len(flagged) - 1} more)" if len(flagged) > 1 else ""
        raise UsageError(
            flagged[0] + more,
            hint="--strict makes degenerate data an error; without it this is a warning",
        )

    results: list[CandidateResult] = []
    for name, om in zip(names, candidates):
        note, backend_name = runs[name]
        outputs = []
        for k, out_name in enumerate(golden_names):
            acc = accs[name][out_name]
            agg = acc.errors.result()
            notes = list(agg.pop("notes"))
            task_values, task_notes = tasks.split_undefined(acc.task.result())
            agg.update(task_values)
            notes += task_notes + acc.task.notes()
            if note and k == 0:
                notes.append(note)
            limits = output_thresholds.get(out_name, thresholds)
            gates = merge_gates(
                limits.gates(),
                tasks.DEFAULT_GATES[str(options[k].task)],
                accuracy.gates,
                options[k].gates,
            )
            failed = judge(
                gates,
                agg,
                acc.extremes,
                candidate=name if gear is None else f"{name} at {gear}",
                output=out_name,
                nan_reason=_nan_reason(notes),
            )
            worst, worst_at = _worst_of(acc.extremes, list(agg))
            outputs.append(
                OutputComparison(
                    output=out_name,
                    kind=kinds[k],
                    shape=[int(d) for d in golden_specs[k].shape],
                    samples=len(stems),
                    metrics=agg,
                    worst=worst,
                    worst_sample=worst_at,
                    thresholds=limits,
                    failures=[f.short() for f in failed],
                    notes=notes,
                    passed=not failed,
                    task=str(options[k].task),
                    task_source=resolved[k][1],
                    value_range=ranges[k][0] if kinds[k] == "image" else None,
                    range_source=ranges[k][1] if kinds[k] == "image" else None,
                    gates=list(gates),
                    gate_failures=failed,
                )
            )
        if hook is not None:
            hook_gates = merge_gates(
                USER_METRIC_GATES,
                accuracy.gates,
                accuracy.outputs.get(hook.name, tasks.TaskOptions()).gates,
            )
            outputs.append(
                _hook_comparison(
                    hook,
                    hook_gates,
                    hook_accs[name],
                    hook_extremes[name],
                    name if gear is None else f"{name} at {gear}",
                    stems,
                )
            )
        results.append(
            CandidateResult(
                name=name,
                model=str(om),
                backend=backend_name,
                precision=_precision_of(om),
                outputs=outputs,
                passed=all(o.passed for o in outputs),
                cosine_min=_lowest([o.metrics.get("cosine") for o in outputs]),
                gear=gear,
            )
        )
    _check_gate_metrics(accuracy, results)
    verdict, failures = verdict_text(results)
    samples = []
    for sample in image_samples.values():
        sample.golden = str(final_outputs / sample.golden)
        sample.input = str(final_outputs / sample.input) if sample.input else None
        samples.append(sample)
    return CompareResult(
        model=str(onnx_model),
        model_sha256=sha256_file(onnx_model),
        inputs=[str(p) for p in input_dirs],
        samples=len(stems),
        candidates=results,
        passed=not failures,
        verdict=verdict,
        failures=[f.text() for f in failures],
        warnings=warnings,
        thresholds=thresholds,
        output_thresholds=output_thresholds,
        image_samples=samples,
        out_dir=str(out_dir),
        gate_failures=failures,
        metric_hook=hook.spec if hook else None,
        gears=[gear] if gear is not None else [],
    )


def merge_gears(results: list[CompareResult]) -> CompareResult:
    """One comparison over every gear: a candidate row per gear, and a verdict that holds only
    if every gear passes (a recogniser that fails on wide text lines fails)."""
    first = results[0]
    candidates = [c for r in results for c in r.candidates]
    failures = [f for r in results for f in r.gate_failures]
    return CompareResult(
        model=first.model,
        model_sha256=first.model_sha256,
        inputs=[i for r in results for i in r.inputs],
        samples=sum(r.samples for r in results),
        candidates=candidates,
        passed=all(r.passed for r in results),
        verdict=verdict_line(failures),
        failures=[f.text() for f in failures],
        warnings=list(dict.fromkeys(w for r in results for w in r.warnings)),
        thresholds=first.thresholds,
        output_thresholds=first.output_thresholds,
        image_samples=[s for r in results for s in r.image_samples],
        out_dir=first.out_dir,
        gate_failures=failures,
        metric_hook=first.metric_hook,
        gears=[g for r in results for g in r.gears],
    )


def _check_gate_metrics(accuracy: AccuracyConfig, results: list[CandidateResult]) -> None:
    """A gate on a metric no output has would never fail: a typo, reported as such."""
    known = {key for c in results for o in c.outputs for key in o.metrics}
    asked = list(accuracy.gates) + [g for o in accuracy.outputs.values() for g in o.gates]
    for gate in asked:
        if gate.metric not in known:
            close = difflib.get_close_matches(gate.metric, sorted(known), n=1)
            raise UsageError(
                f"gate on unknown metric '{gate.metric}'",
                hint=(f"did you mean '{close[0]}'? " if close else "")
                + f"the metrics are: {', '.join(sorted(known))}",
            )


def _hook_comparison(
    hook: UserMetric,
    gates: tuple[Gate, ...],
    acc: UserMetricAccumulator,
    extremes: Extremes,
    candidate: str,
    stems: list[str],
) -> OutputComparison:
    """A user metric's figures as one more 'output' row group, gated like the others."""
    agg: dict[str, float | None] = dict(acc.result())
    gates = tuple(g for g in gates if g.metric in agg)
    notes = []
    nonfinite = [k for k, v in agg.items() if v is not None and not math.isfinite(v)]
    if nonfinite:
        notes.append(f"the metric returned non-finite {', '.join(nonfinite)}")
    failed = judge(
        gates, agg, extremes, candidate=candidate, output=hook.name, nan_reason="; ".join(notes)
    )
    # A user's number is a score (higher is better) unless a gate says it is a maximum.
    direction = {g.metric: g.op == ">=" for g in gates}
    worst, worst_at = _worst_of(extremes, list(agg), direction)
    return OutputComparison(
        output=hook.name,
        kind="user",
        shape=[],
        samples=len(stems),
        metrics=agg,
        worst=worst,
        worst_sample=worst_at,
        thresholds=Thresholds(),
        failures=[f.short() for f in failed],
        notes=[f"user metric {hook.spec}", *notes],
        passed=not failed,
        task="user",
        task_source=f"--metric {hook.spec}",
        gates=list(gates),
        gate_failures=failed,
    )


def _lowest(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


def _image_outputs(
    kinds: list[str],
    ranges: list[float],
    out_specs: list[TensorSpec],
    in_specs: list[TensorSpec],
    first_feeds: dict[str, np.ndarray],
    first_outs: list[np.ndarray],
    work: Path,
) -> dict[int, ImageSample]:
    """Image outputs of an image-to-image model: save the first sample's input and golden."""
    image_inputs = [
        s for s in in_specs if metrics.image_layout(tuple(int(d) for d in s.shape)) is not None
    ]
    if not image_inputs or not first_feeds or "image" not in kinds:
        return {}
    samples_dir = work / "samples"
    samples_dir.mkdir(exist_ok=True)
    in_spec = image_inputs[0]
    in_path = samples_dir / f"input.{_safe(in_spec.name)}.npy"
    np.save(in_path, first_feeds[in_spec.name])
    found: dict[int, ImageSample] = {}
    for k, (kind, spec) in enumerate(zip(kinds, out_specs)):
        if kind != "image":
            continue
        gold_path = samples_dir / f"{_safe(spec.name)}.golden.npy"
        np.save(gold_path, first_outs[k])
        found[k] = ImageSample(
            output=spec.name,
            layout=metrics.image_layout(tuple(int(d) for d in spec.shape)) or "NCHW",
            value_range=ranges[k],
            input=str(in_path.relative_to(work)),
            input_layout=metrics.image_layout(tuple(int(d) for d in in_spec.shape)),
            golden=str(gold_path.relative_to(work)),
            candidates={},
        )
    return found
