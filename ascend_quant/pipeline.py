"""`build`: every stage from ONNX model to report, for one or more socs, cached by content hash.

Workspace layout (default `build/<model-stem>/`):

    .lock                      held for the whole build; a second build gets a clear error
    .state/<stage>.json        what each soc-independent stage ran on (its key) and produced
    model/                     preflight: <stem>.sim.onnx, <stem>.json
    calib/<input>/             calibration set (samples/, batches_bs<N>/, manifest.json)
    eval/<input>/              evaluation set from held-apart images, same preprocessing
    <soc>/.state/<stage>.json  the same records for the per-soc stages
    <soc>/configs/             quant_config.json, *.cfg, atc_fp16.sh, atc_int8.sh, amct_int8.sh
    <soc>/om/                  <stem>_fp16.om, <stem>_int8.om, each + .json manifest
    <soc>/reports/             bench.json, compare.json, report.json, report.html

A stage is reused when its key (a hash of its inputs' hashes, its settings, the templates' bytes
and the tool's code) matches the record and its outputs still exist with the recorded sizes. A
record is deleted before its stage runs and written after it finished, so a build killed at any
moment leaves a workspace that the next run completes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ascend_quant.config import BuildConfig, CalibConfig, PreprocessConfig, to_mapping
from ascend_quant.errors import UsageError
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.resources import templates_dir
from ascend_quant.workspace import (
    atomic_write_json,
    exclusive_lock,
    read_json,
    sha256_file,
    sha256_json,
    tool_fingerprint,
    tree_sha256,
)

log = logging.getLogger("ascend_quant")

STAGES = ("preflight", "calib", "config", "convert", "bench", "compare", "report")
PRECISIONS = ("fp16", "int8")


@dataclass(frozen=True)
class StageRun:
    stage: str
    soc: str | None
    reused: bool
    seconds: float


@dataclass(frozen=True)
class SocResult:
    soc: str
    directory: Path
    artifacts: dict[str, str]  # precision -> .om path
    bench: dict[str, Any]  # bench.json
    compare: dict[str, Any]  # compare.json
    reports: dict[str, str]  # name -> path
    passed: bool


@dataclass(frozen=True)
class BuildResult:
    model: Path
    workspace: Path
    backend: str
    simulated: bool
    socs: list[SocResult]
    stages: list[StageRun]
    passed: bool
    warnings: list[str] = field(default_factory=list)


class _Stages:
    """Runs stages with content-hash reuse and records what happened, for the summary."""

    def __init__(self, force_from: int | None, progress: Progress) -> None:
        self.force_from = force_from
        self.progress = progress
        self.runs: list[StageRun] = []

    def run(
        self,
        stage: str,
        state_dir: Path,
        key_data: dict[str, Any],
        work: Callable[[], tuple[dict[str, Any], list[Path]]],
        soc: str | None = None,
        label: str | None = None,
    ) -> dict[str, Any]:
        """Reuse the recorded result of `stage` when its key matches, else run `work`.

        `work` returns (a JSON-able result, the files it produced).
        """
        record_path = state_dir / f"{label or stage}.json"
        key = sha256_json({"stage": stage, "tool": tool_fingerprint(), **key_data})
        forced = self.force_from is not None and STAGES.index(stage) >= self.force_from
        description = f"{label or stage}" + (f" [{soc}]" if soc else "")
        start = time.perf_counter()
        if not forced:
            record = _read_record(record_path)
            if record is not None and record["key"] == key and _outputs_intact(record):
                self.runs.append(StageRun(label or stage, soc, True, time.perf_counter() - start))
                with self.progress.task(f"{description} (reused)", total=1) as advance:
                    advance(1)
                return dict(record["result"])
        record_path.unlink(missing_ok=True)
        with self.progress.task(description, total=None):
            result, outputs = work()
        atomic_write_json(
            record_path,
            {
                "key": key,
                "result": result,
                "outputs": {str(p): p.stat().st_size for p in outputs},
            },
        )
        self.runs.append(StageRun(label or stage, soc, False, time.perf_counter() - start))
        return result


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "key" in record else None


def _outputs_intact(record: dict[str, Any]) -> bool:
    for name, size in record.get("outputs", {}).items():
        path = Path(name)
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True


def image_preprocess(
    name: str, shape: tuple[int, ...], dtype: str, base: PreprocessConfig
) -> PreprocessConfig:
    """Fit the user's preprocessing to one model input: size, layout, channels and dtype."""
    if len(shape) != 4:
        raise UsageError(
            f"input '{name}' has shape {list(shape)}, not an image (4-D)",
            hint="build feeds images to every input; for other inputs run `ascend-quant calib` "
            "and `ascend-quant convert --calib` per input",
        )
    if base.layout == "NCHW":
        channels, height, width = shape[1], shape[2], shape[3]
    else:
        height, width, channels = shape[1], shape[2], shape[3]
    if channels not in (1, 3):
        raise UsageError(
            f"input '{name}' has {channels} channels in {base.layout} layout; images give 1 or 3",
            hint="set --layout NHWC if the model takes channels last",
        )
    if base.size is not None and base.size != (height, width):
        raise UsageError(
            f"--size {base.size[0]}x{base.size[1]} does not match input '{name}' "
            f"({height}x{width})",
            hint="drop --size, or resolve the input with --input-shape",
        )
    color = "gray" if channels == 1 else ("rgb" if base.color == "gray" else base.color)
    sample_dtype = dtype if dtype in ("float32", "float16", "uint8", "int8") else "float32"
    return replace(base, size=(height, width), color=color, dtype=sample_dtype)  # type: ignore[arg-type]


def build(
    model: str | Path,
    config: BuildConfig | None = None,
    *,
    force: bool = False,
    from_stage: str | None = None,
    progress: Progress = NULL_PROGRESS,
) -> BuildResult:
    """Build FP16 and INT8 .om models for every soc in `config.socs` and measure them.

    Returns the result; accuracy verdicts are in `result.passed` (the CLI maps False to exit 1).
    """
    from ascend_quant import soc as soc_registry
    from ascend_quant.backends import auto_backend_name, get_backend

    config = replace(config or BuildConfig(), model=Path(model))
    model_path = Path(model)
    if not model_path.is_file():
        raise UsageError(f"model not found: {model_path}", hint="pass the path of an .onnx file")
    if not config.socs:
        raise UsageError("no soc given", hint="pass --soc, e.g. --soc Ascend310P3")
    for soc in config.socs:
        soc_registry.get_soc(soc)
    if from_stage is not None and from_stage not in STAGES:
        raise UsageError(f"unknown stage '{from_stage}'", hint=f"use one of: {', '.join(STAGES)}")
    force_from = 0 if force else (STAGES.index(from_stage) if from_stage else None)

    workspace = Path(config.out or Path("build") / model_path.stem)
    stages = _Stages(force_from, progress)
    with exclusive_lock(workspace / ".lock", f"workspace {workspace}"):
        shared = _shared_stages(model_path, config, workspace, stages, progress)
        backend_name = auto_backend_name() if config.backend == "auto" else config.backend
        backend = get_backend(backend_name)
        if backend_name == "sim":
            log.warning("figures are simulated on the CPU with ONNX Runtime (no CANN toolkit used)")
        soc_results = [
            _soc_stages(soc, config, workspace, shared, backend, backend_name, stages, progress)
            for soc in config.socs
        ]
    return BuildResult(
        model=model_path,
        workspace=workspace,
        backend=backend_name,
        simulated=backend_name == "sim",
        socs=soc_results,
        stages=stages.runs,
        passed=all(r.passed for r in soc_results),
        warnings=list(shared["warnings"]),
    )


def _shared_stages(
    model_path: Path, config: BuildConfig, workspace: Path, stages: _Stages, progress: Progress
) -> dict[str, Any]:
    """preflight, calib and eval: the stages every soc shares."""
    from ascend_quant import calib, model
    from ascend_quant.resources import holdout_images_dir

    state = workspace / ".state"
    source_sha = sha256_file(model_path)

    def do_preflight() -> tuple[dict[str, Any], list[Path]]:
        result = model.preflight(
            model_path, workspace / "model", input_shape=config.input_shape, progress=progress
        )
        return (
            {
                "model_path": str(result.model_path),
                "model_sha256": sha256_file(result.model_path),
                "source_sha256": result.source_sha256,
                "input_shapes": {k: list(v) for k, v in result.input_shapes.items()},
                "output_shapes": {k: list(v) for k, v in result.output_shapes.items()},
                "input_dtypes": {t.name: t.dtype for t in result.summary.inputs},
                "int8_refused": model.refuse_int8_reason(result.summary),
                "warnings": list(result.warnings),
                "repairs": list(result.repairs),
                "simplified": result.simplified,
            },
            [result.model_path],
        )

    pre = stages.run(
        "preflight",
        state,
        {"source": source_sha, "input_shape": config.input_shape},
        do_preflight,
    )
    for message in pre["warnings"]:
        log.warning(message)

    calib_dirs: dict[str, str] = {}
    eval_dirs: dict[str, str] = {}
    preprocess_by_input: dict[str, PreprocessConfig] = {}
    for name, shape in pre["input_shapes"].items():
        preprocess = image_preprocess(
            name, tuple(shape), pre["input_dtypes"].get(name, "float32"), config.preprocess
        )
        preprocess_by_input[name] = preprocess
        sets = {
            "calib": config.calib,
            "eval": CalibConfig(
                sources=config.eval_sources or (str(holdout_images_dir()),),
                batch=1,
                skip_bad=config.calib.skip_bad,
                jobs=config.calib.jobs,
            ),
        }
        for label, calib_config in sets.items():
            started = time.perf_counter()
            calib_set, reused = calib.make_calib_set(
                workspace / label / name,
                preprocess,
                calib_config,
                input_name=name,
                progress=progress,
            )
            stages.runs.append(StageRun(label, None, reused, time.perf_counter() - started))
            (calib_dirs if label == "calib" else eval_dirs)[name] = str(calib_set.root)

    return {
        **pre,
        "calib_dirs": calib_dirs,
        "eval_dirs": eval_dirs,
        "preprocess": preprocess_by_input,
        "calib_sha": sha256_json(
            {n: sha256_file(Path(d) / "manifest.json") for n, d in calib_dirs.items()}
        ),
        "eval_sha": sha256_json(
            {n: sha256_file(Path(d) / "manifest.json") for n, d in eval_dirs.items()}
        ),
    }


def _soc_stages(
    soc: str,
    config: BuildConfig,
    workspace: Path,
    shared: dict[str, Any],
    backend: Any,
    backend_name: str,
    stages: _Stages,
    progress: Progress,
) -> SocResult:
    """config, convert (fp16, int8), bench, compare and report for one soc."""
    from ascend_quant.backends.base import ConvertRequest
    from ascend_quant.bench import bench_models
    from ascend_quant.compare import compare_models
    from ascend_quant.jobs import make_request, render_job
    from ascend_quant.report import environment_info, json_safe, save_json, write_report

    soc_dir = workspace / soc
    state = soc_dir / ".state"
    stem = Path(config.model or "model").stem
    input_shapes = {k: tuple(v) for k, v in shared["input_shapes"].items()}
    calib_dirs = {k: Path(v) for k, v in shared["calib_dirs"].items()}
    first_input = next(iter(shared["preprocess"]))
    preprocess = shared["preprocess"][first_input]
    model_path = Path(shared["model_path"])

    def request(precision: str) -> ConvertRequest:
        return make_request(
            config,
            model=model_path,
            source_sha256=shared["source_sha256"],
            input_shapes=input_shapes,
            soc=soc,
            precision=precision,  # type: ignore[arg-type]
            out_dir=soc_dir / "om",
            name=stem,
            calib_dirs=calib_dirs,
            config_dir=soc_dir / "configs",
        )

    templates = [templates_dir(), *([config.templates] if config.templates else [])]
    settings = {
        "templates": tree_sha256(templates),
        "quant": to_mapping(config.quant),
        "atc": to_mapping(config.atc),
        "aipp": to_mapping(config.aipp),
        "preprocess": to_mapping(preprocess),
    }

    def do_config() -> tuple[dict[str, Any], list[Path]]:
        files = render_job(
            config,
            soc,
            model=model_path,
            source_sha256=shared["source_sha256"],
            input_shapes=input_shapes,
            calib_dirs=calib_dirs,
            config_dir=soc_dir / "configs",
            om_dir=soc_dir / "om",
            name=stem,
            int8_refused=shared["int8_refused"],
        )
        return {k: str(v) for k, v in files.items()}, list(files.values())

    stages.run(
        "config",
        state,
        {"model": shared["model_sha256"], "soc": soc, "calib": shared["calib_sha"], **settings},
        do_config,
        soc=soc,
    )

    precisions = [p for p in PRECISIONS if p == "fp16" or not shared["int8_refused"]]
    if shared["int8_refused"]:
        log.warning(f"INT8 skipped: {shared['int8_refused']}")
    artifacts: dict[str, str] = {}
    om_shas: dict[str, str] = {}
    for precision in precisions:

        def do_convert(precision: str = precision) -> tuple[dict[str, Any], list[Path]]:
            artifact = backend.convert(request(precision), progress)
            return (
                {"path": str(artifact.path), "sha256": sha256_file(artifact.path)},
                [artifact.path, artifact.manifest_path],
            )

        key = {"model": shared["model_sha256"], "soc": soc, "backend": backend_name, **settings}
        if precision == "int8":
            key["calib"] = shared["calib_sha"]
        converted = stages.run(
            "convert", state, key, do_convert, soc=soc, label=f"convert-{precision}"
        )
        artifacts[precision] = converted["path"]
        om_shas[precision] = converted["sha256"]

    reports = soc_dir / "reports"
    oms = [Path(artifacts[p]) for p in precisions]

    def do_bench() -> tuple[dict[str, Any], list[Path]]:
        table = json_safe(bench_models(oms, config.bench, progress))
        return table, [save_json(reports / "bench.json", table)]

    bench = stages.run(
        "bench", state, {"oms": om_shas, "bench": to_mapping(config.bench)}, do_bench, soc=soc
    )

    def do_compare() -> tuple[dict[str, Any], list[Path]]:
        result = compare_models(
            Path(config.model or ""),
            oms,
            [Path(d) / "samples" for d in shared["eval_dirs"].values()],
            reports / "compare",
            thresholds=config.thresholds,
            output_thresholds=config.output_thresholds,
            calib_sources=[Path(d) / "samples" for d in shared["calib_dirs"].values()],
            progress=progress,
        )
        data = json_safe(result)
        return data, [save_json(reports / "compare.json", data)]

    compare = stages.run(
        "compare",
        state,
        {
            "source": shared["source_sha256"],
            "oms": om_shas,
            "eval": shared["eval_sha"],
            "thresholds": to_mapping(config.thresholds),
            "output_thresholds": to_mapping(config.output_thresholds),
        },
        do_compare,
        soc=soc,
    )

    def do_report() -> tuple[dict[str, Any], list[Path]]:
        from ascend_quant.backends.toolkit import discover

        paths = write_report(
            reports,
            environment={
                **environment_info(),
                "backend": backend_name,
                "simulated": backend_name == "sim",
                "cann_version": discover().version,
                "soc": soc,
            },
            config=to_mapping(config),
            bench=bench,
            compare=compare,
            title=f"{stem} on {soc}",
        )
        return {k: str(v) for k, v in paths.items()}, list(paths.values())

    report_paths = stages.run(
        "report",
        state,
        {
            "bench": sha256_json(bench),
            "compare": sha256_json(compare),
            "config": to_mapping(config),
        },
        do_report,
        soc=soc,
    )
    return SocResult(
        soc=soc,
        directory=soc_dir,
        artifacts=artifacts,
        bench=bench,
        compare=compare,
        reports=report_paths,
        passed=bool(compare.get("passed", False)),
    )
