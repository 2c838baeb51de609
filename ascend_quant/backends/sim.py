"""The simulated backend: FP16 and INT8 "conversion" and execution on the CPU with ONNX Runtime.

`convert` writes the simulator's own .om container (simfile.py) holding the ONNX model that
reproduces what the NPU computes: FP16 rounding of every weight and activation for `fp16`; for
`int8`, a QDQ fake-quant model calibrated on the calib set with the Ascend quant settings, whose
non-quantized parts are FP16-rounded as well (they run in FP16 on the NPU). `run` and `bench`
execute such containers with ais_bench's file conventions and timing schema.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ascend_quant.__about__ import __version__
from ascend_quant.aisbench_io import gear_of_files
from ascend_quant.backends.base import (
    Artifact,
    BenchResult,
    ConvertRequest,
    RunResult,
    run_to_files,
)
from ascend_quant.backends.simfile import (
    is_sim_om,
    payload_size,
    read_sim_metadata,
    read_sim_om,
    write_sim_om,
)
from ascend_quant.backends.simmem import ChildProbe
from ascend_quant.config import BenchConfig, QuantConfig, to_mapping
from ascend_quant.data.calibset import CalibFeeds, CalibSet
from ascend_quant.data.feeds import check_feeds
from ascend_quant.errors import UsageError, not_a_model_file
from ascend_quant.gears import Gears
from ascend_quant.model import gear_dims_symbolic
from ascend_quant.onnx_io import to_ort_bytes
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.quant.layers import tensor_map
from ascend_quant.quant.weightonly import compress_weights
from ascend_quant.runners.geared import GearedRunner
from ascend_quant.runners.ort import OrtRunner
from ascend_quant.runners.timing import (
    interleaved_loop,
    latency_stats,
    relative_spread,
    round_medians,
)
from ascend_quant.tensors import TensorSpec, graph_io
from ascend_quant.workspace import (
    atomic_write_json,
    read_json,
    sha256_bytes,
    sha256_file,
    sha256_json,
    tool_fingerprint,
)

log = logging.getLogger("ascend_quant")

Feeds = dict[str, np.ndarray]
PRECISION_HINT = "use fp16, int8 or w8"
SIM_MEMORY_SOURCE = "simulated: peak RSS the ONNX Runtime CPU session adds (not NPU memory)"


def open_runner(om_path: Path, spin: bool = False) -> OrtRunner | GearedRunner:
    """A simulated .om as a runner over its ONNX payload (its header is `.metadata`); a gear
    model's runner accepts only its gears' shapes. `spin` only for latency timing (`bench`)."""
    om_path = Path(om_path)
    if not om_path.is_file():
        raise not_a_model_file(om_path)
    metadata, onnx_bytes = read_sim_om(om_path)
    runner = OrtRunner(onnx_bytes, name=om_path.name, metadata=metadata, spin=spin)
    gears = Gears.from_record(metadata.get("gears"))
    return runner if gears is None else GearedRunner(runner, gears)


# --------------------------------------------------------------------------- model preparation


def _fix_input_shapes(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> None:
    """Make the inputs static as atc's --input_shape does (shape inference is re-run later)."""
    inits = {i.name for i in model.graph.initializer}
    for graph_input in model.graph.input:
        if graph_input.name in inits or graph_input.name not in shapes:
            continue
        dims = graph_input.type.tensor_type.shape.dim
        wanted = shapes[graph_input.name]
        if len(dims) != len(wanted):
            raise UsageError(
                f"input '{graph_input.name}' has rank {len(dims)} but the input shape "
                f"{list(wanted)} has rank {len(wanted)}"
            )
        for dim, value in zip(dims, wanted):
            dim.ClearField("dim_param")
            dim.dim_value = int(value)
    del model.graph.value_info[:]


def calibration_feeds(
    model: onnx.ModelProto,
    calib_dirs: dict[str, Path],
    batch_num: int | None = None,
    shapes: dict[str, tuple[int, ...]] | None = None,
) -> tuple[Iterator[Feeds], int, dict[str, str]]:
    """Feeds at the model's batch size from one calib set per input; (iterator, count, shas).

    `shapes` overrides the declared input shapes (a gear model calibrates at one gear)."""
    specs = [
        spec.with_shape(shapes[spec.name]) if shapes and spec.name in shapes else spec
        for spec in graph_io(model)[0]
    ]
    source = CalibFeeds(
        specs,
        {name: CalibSet.load(Path(d)) for name, d in calib_dirs.items()},
        batch_num,
    )
    return iter(source), len(source), source.manifest_sha256


def _absmax_cache(request: ConvertRequest, shas: dict[str, str]) -> Path:
    """Where the FP32 max |x| per tensor of this model on this calibration data is kept.

    INT8 calibration records it in its one pass; the FP16 conversion of the same model and data
    then reads it instead of running the model again.
    """
    key = sha256_json(
        {
            "model": sha256_file(Path(request.model)),
            "input_shapes": {k: list(v) for k, v in request.input_shapes.items()},
            "calib": shas,
            "batch_num": request.quant.batch_num,
            "tool": tool_fingerprint(),
        }
    )
    return Path(request.out_dir) / ".fp32_stats" / f"{key[:32]}.json"


def _read_absmax(path: Path) -> dict[str, float] | None:
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else None


def build_sim_model(
    request: ConvertRequest, progress: Progress = NULL_PROGRESS
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The ONNX model the container runs and the metadata describing how it was made.

    The FP16 overflow check needs no extra pass over the FP32 model: the FP32 max |x| of every
    tensor comes from the INT8 calibration pass (or, for FP16 alone, one FP32 pass whose
    reductions run inside the graph), is cached for the other precision, and only tensors
    within a factor `OVERFLOW_MARGIN` of the FP16 range are checked in one FP16 pass.
    """
    from ascend_quant.quant.calibrate import collect_pass
    from ascend_quant.quant.fp16 import (
        activation_tensors,
        find_overflow,
        overflow_candidates,
        overflowing_weights,
        report_overflow,
        simulate_fp16,
    )

    try:
        model = onnx.load(str(request.model))
    except Exception as exc:
        raise UsageError(f"cannot load ONNX model {request.model}: {exc}") from None
    calib_shapes: dict[str, tuple[int, ...]] | None = None
    if request.gears is not None:
        # gear dims stay symbolic (atc's -1): one graph runs every gear; calibration and the
        # FP16 overflow check run at the calibration gear (request.input_shapes)
        model = gear_dims_symbolic(model, request.gears)
        calib_shapes = dict(request.input_shapes)
    else:
        _fix_input_shapes(model, request.input_shapes)
    original = fp32_model = model
    info: dict[str, Any] = {"timings": {}}
    quant = request.quant
    absmax: dict[str, float] | None = None
    cache: Path | None = None
    if request.calib_dirs:
        _feeds, _total, shas = calibration_feeds(
            model, request.calib_dirs, quant.batch_num, calib_shapes
        )
        cache = _absmax_cache(request, shas)
    if request.precision == "int8":
        from ascend_quant.quant.qdq import quantize_model

        ignored = not_simulated(quant)
        if ignored:
            log.warning(
                "the simulator does not model %s: the real toolkit honours it, so its INT8 "
                "figures may differ from these",
                ", ".join(ignored),
            )
        feeds, total, shas = calibration_feeds(
            model, request.calib_dirs, quant.batch_num, calib_shapes
        )
        started = time.perf_counter()
        result, ranges = quantize_model(
            model, quant, feeds, progress, total, absmax_of=activation_tensors(model)
        )
        info["timings"]["calibrate_s"] = round(time.perf_counter() - started, 3)
        absmax = result.absmax
        if cache is not None:
            atomic_write_json(cache, absmax)
        model = result.model
        info.update(
            calib_manifest_sha256=shas,
            # "image" | "array" | "recorded" | "random": random data makes the figures meaningless
            calib_kinds={n: CalibSet.load(Path(d)).kind for n, d in request.calib_dirs.items()},
            calibration_batches=total,
            algorithm=quant.algorithm,
            algorithm_params=_algorithm_params(quant),
            quant_config=to_mapping(quant),
            quantized_layers=result.quantized_layers,
            layers=result.layers,
            qdq_counts=result.op_counts,
            tensors=result.tensors,
            ranges={k: [lo, hi] for k, (lo, hi) in ranges.items()},
            not_simulated=ignored,
        )
    elif request.precision == "w8":
        compressed = compress_weights(model, quant)
        model = compressed.model
        info.update(
            weight_compress_only=True,
            quant_config=to_mapping(quant),
            algorithm_params={"channel_wise": quant.channel_wise, "asymmetric": False},
            quantized_layers=compressed.quantized_layers,
            layers=compressed.layers,
        )
    elif request.precision != "fp16":
        raise UsageError(f"unknown precision '{request.precision}'", hint=PRECISION_HINT)
    weights_over = overflowing_weights(model)
    sim = simulate_fp16(model, keep_dtype=request.atc.keep_dtype)
    overflow: list[str] | None = None
    if request.calib_dirs and cache is not None:
        started = time.perf_counter()
        if absmax is None:
            absmax = _read_absmax(cache)
        if absmax is None:
            feeds, total, _shas = calibration_feeds(
                fp32_model, request.calib_dirs, quant.batch_num, calib_shapes
            )
            absmax = collect_pass(
                fp32_model,
                [],
                feeds,
                progress=progress,
                total=total,
                absmax_of=activation_tensors(fp32_model),
                label="FP32 statistics",
            ).absmax
            atomic_write_json(cache, absmax)
        candidates = overflow_candidates(sim, absmax)
        found: list[str] = []
        if candidates:
            feeds, total, _shas = calibration_feeds(
                model, request.calib_dirs, quant.batch_num, calib_shapes
            )
            with progress.task(f"checking FP16 overflow ({len(candidates)} tensors)", total=total):
                found = find_overflow(sim, feeds, names=candidates, reference=fp32_model)
        overflow = weights_over + found
        info.setdefault("calib_manifest_sha256", shas)
        info["fp16_overflow_checked"] = len(candidates)
        info["timings"]["fp16_overflow_check_s"] = round(time.perf_counter() - started, 3)
        report_overflow(overflow)
    if overflow is None and weights_over:
        overflow = weights_over
        report_overflow(overflow)
    info["fp16_overflow"] = overflow  # None: not checked (no calibration data given)
    # original tensor -> its name in the simulated model, for per-layer comparison
    info["tensor_map"] = tensor_map(original, sim)
    return sim, info


def not_simulated(quant: QuantConfig) -> list[str]:
    """The INT8 settings that change what the toolkit builds but not what the simulator builds."""
    ignored = []
    if quant.joint_quant:
        ignored.append("joint_quant")
    if not quant.do_fusion:
        ignored.append("do_fusion = false")
    if quant.skip_fusion_layers:
        ignored.append("skip_fusion_layers")
    return ignored


def _algorithm_params(quant: Any) -> dict[str, Any]:
    from ascend_quant.quant.stats import PERCENTILE_DEFAULT

    params: dict[str, Any] = {
        "activation_offset": quant.activation_offset,
        "channel_wise": quant.channel_wise,
        "quant_bits": quant.quant_bits,
    }
    if quant.algorithm == "ifmr":
        params["ifmr"] = to_mapping(quant.ifmr)
    elif quant.algorithm == "hfmg":
        params["hfmg"] = to_mapping(quant.hfmg)
    elif quant.algorithm == "percentile":
        params["percentile"] = PERCENTILE_DEFAULT
    return params


# --------------------------------------------------------------------------- the backend


def _spec_dicts(specs: list[TensorSpec]) -> list[dict[str, Any]]:
    return [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in specs]


class SimBackend:
    """ONNX Runtime on the CPU, with the NPU's FP16 rounding and INT8 quantization simulated."""

    name = "sim"

    def convert(self, request: ConvertRequest, progress: Progress = NULL_PROGRESS) -> Artifact:
        started = time.perf_counter()
        if request.precision not in ("fp16", "int8", "w8"):
            raise UsageError(f"unknown precision '{request.precision}'", hint=PRECISION_HINT)
        sim, info = build_sim_model(request, progress)
        onnx_bytes = to_ort_bytes(sim)
        with OrtRunner(onnx_bytes) as runner:  # proves ORT loads it before anything is written
            inputs = _spec_dicts(runner.input_specs())
            outputs = _spec_dicts(runner.output_specs())
        metadata: dict[str, Any] = {
            "format": "ascend-quant-sim-om",
            "tool": "ascend-quant",
            "tool_version": __version__,
            "soc": request.soc,
            "precision": request.precision,
            "source_sha256": request.source_sha256,
            "model_sha256": sha256_file(Path(request.model)),
            "onnx_sha256": sha256_bytes(onnx_bytes),
            "inputs": inputs,
            "outputs": outputs,
            "gears": request.gears.record() if request.gears is not None else None,
            **{k: v for k, v in info.items() if k != "timings"},
        }
        om = Path(request.out_dir) / f"{request.name}_{request.precision}.om"
        write_sim_om(om, metadata, onnx_bytes)
        timings = dict(info["timings"], convert_s=round(time.perf_counter() - started, 3))
        manifest: dict[str, Any] = {
            "tool": "ascend-quant",
            "tool_version": __version__,
            "backend": "sim",
            "simulated": True,
            "soc": request.soc,
            "precision": request.precision,
            "route": "sim",
            "om": om.name,
            "om_sha256": sha256_file(om),
            "om_size_bytes": om.stat().st_size,
            "source_sha256": request.source_sha256,
            "model_sha256": metadata["model_sha256"],
            "input_shapes": {k: list(v) for k, v in request.input_shapes.items()},
            "inputs": inputs,
            "outputs": outputs,
            "gears": request.gears.record() if request.gears is not None else None,
            "fp16_overflow": info["fp16_overflow"],
            "onnxruntime": _ort_version(),
            "timings": timings,
        }
        if request.precision == "int8":
            manifest.update(
                calib_manifest_sha256=info["calib_manifest_sha256"],
                calibration_batches=info["calibration_batches"],
                calib_kinds=info["calib_kinds"],
                algorithm=info["algorithm"],
                algorithm_params=info["algorithm_params"],
                quantized_layers=info["quantized_layers"],
                layers=info["layers"],
                qdq_counts=info["qdq_counts"],
                not_simulated=info["not_simulated"],
            )
        elif request.precision == "w8":
            manifest.update(
                weight_compress_only=True,
                algorithm_params=info["algorithm_params"],
                quantized_layers=info["quantized_layers"],
                layers=info["layers"],
            )
        if request.precision != "int8" and "calib_manifest_sha256" in info:
            manifest["calib_manifest_sha256"] = info["calib_manifest_sha256"]
        artifact = Artifact(om, "sim", request.precision, request.soc, manifest)
        atomic_write_json(artifact.manifest_path, manifest)
        return artifact

    def open(self, om: Path) -> OrtRunner | GearedRunner:
        return open_runner(Path(om))  # read_sim_om says what a non-simulated file is

    @staticmethod
    def can_open(om: Path) -> bool:
        return Path(om).is_file() and is_sim_om(Path(om))

    def run(
        self,
        om: Path,
        input_dirs: list[Path],
        output_dir: Path,
        outfmt: str = "BIN",
        progress: Progress = NULL_PROGRESS,
        gear: str | None = None,
    ) -> RunResult:
        """Like ais_bench; a gear model runs at `gear`, or at the gear its input files fit."""
        runner: OrtRunner | GearedRunner = self.open(om)
        if isinstance(runner, GearedRunner):
            dtypes = {s.name: s.dtype for s in runner.input_specs()}
            runner = runner.at_gear(
                gear if gear is not None else gear_of_files(runner.gears, dtypes, input_dirs)
            )
        elif gear is not None:
            runner.close()
            _gear_shapes(Path(om), runner, gear)  # raises: a static model has no gears
        return run_to_files(runner, input_dirs, output_dir, outfmt, progress)

    def bench(
        self,
        om: Path,
        config: BenchConfig,
        progress: Progress = NULL_PROGRESS,
        gear: str | None = None,
    ) -> BenchResult:
        return self.bench_many([om], config, progress, gear)[0]

    def bench_many(
        self,
        oms: list[Path],
        config: BenchConfig,
        progress: Progress = NULL_PROGRESS,
        gear: str | None = None,
    ) -> list[BenchResult]:
        """Every model in alternating rounds (`interleaved_loop`), each on its own random input;
        gear models at `gear` (required for them, refused for static models)."""
        paths = [Path(om) for om in oms]
        probes = [ChildProbe(om) for om in paths]  # all at once, while the sessions open
        with contextlib.ExitStack() as stack:
            for probe in probes:
                stack.callback(probe.result)  # on an error too: no child left behind
            runners: list[OrtRunner | GearedRunner] = []
            for om in paths:
                runners.append(open_runner(om, spin=True))  # ORT's default: what latency is
                stack.callback(runners[-1].close)
            feeds = [
                check_feeds(r.input_specs(), _gear_shapes(om, r, gear))
                for om, r in zip(paths, runners)
            ]
            peaks = [p.result() for p in probes]  # before timing: they compete for the CPU
            steps = [functools.partial(r.infer, f) for r, f in zip(runners, feeds)]
            names = ", ".join(p.name for p in paths)
            with progress.task(f"benchmarking {names}", total=None) as advance:
                samples = interleaved_loop(
                    steps, config.warmup, config.loop, config.duration_s, config.min_loop,
                    advance=advance,
                )  # fmt: skip
        results = []
        for om, runner, feed, rounds, peak in zip(paths, runners, feeds, samples, peaks):
            first = next(iter(feed.values()), None)
            batch = config.batch_size or (
                int(first.shape[0]) if first is not None and first.ndim else 1
            )
            stats = latency_stats([v for r in rounds for v in r])
            medians = round_medians(rounds)
            results.append(
                BenchResult(
                    model=str(om),
                    backend="sim",
                    device="cpu (simulated)",
                    simulated=True,
                    precision=runner.metadata.get("precision"),
                    soc=runner.metadata.get("soc"),
                    batch_size=batch,
                    latency_ms=stats,
                    throughput=1000.0 * batch / stats.mean if stats.mean > 0 else 0.0,
                    # The model payload only: the container's metadata (scales, specs, hashes)
                    # has no counterpart in a real .om and would make INT8 read bigger.
                    file_size_bytes=payload_size(om),
                    gear=gear,
                    peak_memory_bytes=peak,
                    memory_source=SIM_MEMORY_SOURCE if peak is not None else "unknown",
                    extra={
                        "container_bytes": om.stat().st_size,
                        "onnxruntime": _ort_version(),
                        "cpu": platform.processor() or platform.machine(),
                        "cpu_count": os.cpu_count(),
                        "warmup": config.warmup,
                        "loop": config.loop,
                        "duration_s": config.duration_s,
                        "min_loop": config.min_loop,
                        "round_medians_ms": medians,
                        "round_spread": relative_spread(medians),
                        "input": "random",
                    },
                )
            )
        return results


def _gear_shapes(
    om: Path, runner: OrtRunner | GearedRunner, gear: str | None
) -> dict[str, tuple[int, ...]] | None:
    """The input shapes of `gear` for a gear model; None (declared shapes) for a static one."""
    if not isinstance(runner, GearedRunner):
        if gear is not None:
            raise UsageError(
                f"{om.name} has no gears (converted with static shapes); gear {gear} does not "
                "apply",
                hint="drop --gear, or re-convert with --dynamic-batch/--dynamic-image-size/"
                "--dynamic-dims",
            )
        return None
    if gear is None:
        raise UsageError(
            f"{om.name} has {runner.gears.kind} gears ({', '.join(runner.gears.labels)}); say "
            "which to run",
            hint=f"pass --gear, e.g. --gear {runner.gears.label(runner.gears.calib_index)}",
        )
    return runner.gears.shapes(runner.gears.index(gear))


def copy_for_soc(om: Path, out_dir: Path, soc: str) -> Artifact:
    """The same simulated model, labelled for another soc (what runs is byte-identical).

    The simulator computes the same thing for every soc, so a build for several socs converts
    once and gives each soc its own container and manifest naming it.
    """
    om = Path(om)
    metadata, onnx_bytes = read_sim_om(om)
    target = Path(out_dir) / om.name
    write_sim_om(target, {**metadata, "soc": soc}, onnx_bytes)
    manifest = read_json(om.with_suffix(".json"))
    manifest.update(soc=soc, om_sha256=sha256_file(target), om_size_bytes=target.stat().st_size)
    artifact = Artifact(target, "sim", metadata["precision"], soc, manifest)
    atomic_write_json(artifact.manifest_path, manifest)
    return artifact


def payload_sha256(om: Path) -> str:
    """The hash of the ONNX model a simulated .om runs (equal across socs)."""
    return str(read_sim_metadata(Path(om))["onnx_sha256"])


def _ort_version() -> str:
    import onnxruntime as ort

    return str(ort.__version__)
