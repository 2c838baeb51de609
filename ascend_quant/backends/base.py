"""The contract every backend meets: convert an ONNX model to an .om, open it, benchmark it.

Two backends implement it: `atc` (the real CANN toolkit driven as subprocesses) and `sim`
(ONNX Runtime on the CPU with FP16 rounding and INT8 fake-quantization). `open(om)` returns a
`runners.Runner`, so comparing models needs no files; `run` (ais_bench-named output files) is
built on it through `run_to_files` where the backend infers in-process.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ascend_quant import aisbench_io
from ascend_quant.config import (
    AippConfig,
    AtcConfig,
    BenchConfig,
    Precision,
    PreprocessConfig,
    QuantConfig,
)
from ascend_quant.data.calibset import iter_eval_feeds
from ascend_quant.gears import Gears
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.runners.base import Runner
from ascend_quant.runners.timing import LatencyStats
from ascend_quant.tensors import TensorSpec

__all__ = [
    "Artifact",
    "Backend",
    "BenchResult",
    "ConvertRequest",
    "LatencyStats",
    "RunResult",
    "Runner",
    "TensorSpec",
    "manifest_gears",
    "run_to_files",
]


@dataclass(frozen=True)
class ConvertRequest:
    """One conversion: one model, one soc, one precision."""

    model: Path  # the preflighted (simplified, repaired) ONNX model
    source_sha256: str  # sha256 of the user's original .onnx, recorded in the manifest
    input_shapes: dict[str, tuple[int, ...]]  # static shapes (with gears: the calibration gear)
    soc: str
    precision: Precision
    out_dir: Path  # .om and its manifest go here
    name: str  # base name: <out_dir>/<name>_<precision>.om
    quant: QuantConfig = field(default_factory=QuantConfig)
    atc: AtcConfig = field(default_factory=AtcConfig)
    aipp: AippConfig = field(default_factory=AippConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    calib_dirs: dict[str, Path] = field(default_factory=dict)  # input name -> calib set dir
    config_dir: Path | None = None  # rendered simple_config.cfg etc. (atc backend)
    gears: Gears | None = None  # dynamic gears; atc --input_shape is gears.template then

    def __post_init__(self) -> None:
        """Every path absolute: atc runs in a directory of its own, and the rendered scripts
        that repeat its argv must run from anywhere."""
        set_ = object.__setattr__  # frozen dataclass
        set_(self, "model", Path(self.model).absolute())
        set_(self, "out_dir", Path(self.out_dir).absolute())
        set_(self, "calib_dirs", {k: Path(v).absolute() for k, v in self.calib_dirs.items()})
        if self.config_dir is not None:
            set_(self, "config_dir", Path(self.config_dir).absolute())


@dataclass(frozen=True)
class Artifact:
    """A converted model on disk plus its manifest (written beside it as <om>.json)."""

    path: Path
    backend: str  # "atc" | "sim"
    precision: Precision
    soc: str
    manifest: dict[str, Any]

    @property
    def manifest_path(self) -> Path:
        return self.path.with_suffix(".json")


@dataclass(frozen=True)
class BenchResult:
    """One model's benchmark, in one schema for both backends."""

    model: str
    backend: str
    device: str  # e.g. "npu:0" or "cpu (simulated)"
    simulated: bool
    precision: str | None
    soc: str | None
    batch_size: int
    latency_ms: LatencyStats
    throughput: float  # samples per second = 1000 * batch_size / mean latency
    file_size_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)
    gear: str | None = None  # the gear benchmarked (a gear model), e.g. "32x256"
    # Peak runtime memory of the model; None = unknown. `memory_source` says what was measured.
    peak_memory_bytes: int | None = None
    memory_source: str = "unknown"


@dataclass(frozen=True)
class RunResult:
    """What `run` produced: output files per inference, in input order, and timings."""

    output_dir: Path
    outputs: list[list[Path]]  # outputs[i][k]: inference i, model output k
    output_names: list[str]
    latencies_ms: list[float]


class Backend(Protocol):
    name: str

    def convert(self, request: ConvertRequest, progress: Progress = NULL_PROGRESS) -> Artifact: ...

    def open(self, om: Path) -> Runner:
        """The .om ready to infer in-process (raises UsageError/ToolchainError when it cannot)."""
        ...

    def can_open(self, om: Path) -> bool:
        """Whether `om` is this backend's kind of model (by its header, not by its name)."""
        ...

    def run(
        self,
        om: Path,
        input_dirs: list[Path],
        output_dir: Path,
        outfmt: str = "BIN",
        progress: Progress = NULL_PROGRESS,
        gear: str | None = None,
    ) -> RunResult: ...

    def bench(
        self,
        om: Path,
        config: BenchConfig,
        progress: Progress = NULL_PROGRESS,
        gear: str | None = None,
    ) -> BenchResult: ...


def manifest_gears(om: Path) -> Gears | None:
    """The gears `om` was converted with, from its manifest (`<stem>.json` beside it): the one
    record every run and benchmark derives its gear from, so they cannot disagree with atc."""
    from ascend_quant.workspace import read_json

    path = Path(om).with_suffix(".json")
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return Gears.from_record(data.get("gears")) if isinstance(data, dict) else None


def run_to_files(
    runner: Runner,
    input_dirs: list[Path],
    output_dir: Path,
    outfmt: str = "BIN",
    progress: Progress = NULL_PROGRESS,
) -> RunResult:
    """Infer every ais_bench-style input sample and write `<stem>_<k>.<fmt>` files, as ais_bench.

    The runner is closed afterwards. Each file is written atomically.
    """
    outfmt = outfmt.upper()
    aisbench_io.output_path(Path(output_dir), "x", 0, outfmt)  # validates outfmt before any work
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    outputs: list[list[Path]] = []
    latencies: list[float] = []
    specs = runner.output_specs()
    with runner, progress.task(f"running {runner.name}") as advance:
        for stem, feeds in iter_eval_feeds(input_dirs, runner.input_specs()):
            result = runner.infer(feeds)
            latencies.append(runner.last_latency_ms)
            paths = []
            for index, spec in enumerate(specs):
                path = aisbench_io.output_path(output_dir, stem, index, outfmt)
                _write_atomically(path, result[spec.name])
                paths.append(path)
            outputs.append(paths)
            advance(1)
    return RunResult(output_dir, outputs, [s.name for s in specs], latencies)


def _write_atomically(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")  # keeps the suffix np.save looks at
    try:
        aisbench_io.write_output(tmp, array)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
