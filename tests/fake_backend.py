"""A fake backend for compare/bench tests: runs the FP32 ONNX model and perturbs its outputs.

`open` gives a runner that perturbs each inference; `run` writes ais_bench-named output files
(through the same aisbench_io conventions as the real backends). Both draw the same noise in the
same order, so either way thresholds pass or fail deterministically with the perturbation.
`FilesOnlyBackend` cannot `open` (as an NPU host without ais_bench's Python API).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ascend_quant import aisbench_io
from ascend_quant.backends.base import BenchResult, RunResult
from ascend_quant.bench import latency_stats
from ascend_quant.config import BenchConfig
from ascend_quant.errors import InProcessUnavailable
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.runners.base import Feeds, Runner
from ascend_quant.runners.ort import OrtRunner
from ascend_quant.tensors import TensorSpec

# Which sample a feed is, by its bytes: `write_inputs` records it, so a runner (which sees only
# arrays) perturbs the same samples as `run` (which sees file stems); see `remember`.
_STEMS: dict[bytes, str] = {}


@dataclass
class Perturb:
    noise: float = 0.0  # std of Gaussian noise relative to the output's std
    bias: float = 0.0
    dtype: str = "float32"  # written dtype (float16 exercises the size-based dtype detection)
    latency_ms: float = 1.0
    bad_sample: str | None = None  # this sample (file stem) gets `bad_noise` instead of `noise`
    bad_noise: float = 0.0
    nan_sample: str | None = None  # this sample's outputs get a NaN (an FP16 overflow)


def _perturbed(perturb: Perturb, rng: np.random.Generator, stem: str, g: np.ndarray) -> np.ndarray:
    noise = perturb.bad_noise if stem == perturb.bad_sample else None
    noise = perturb.noise if noise is None else noise
    m = g + perturb.bias + rng.normal(0, noise * g.std(), g.shape)
    if stem == perturb.nan_sample:
        m.reshape(-1)[0] = np.nan
    return m.astype(perturb.dtype)


class FakeRunner(Runner):
    """The FP32 model with its outputs perturbed, in-process."""

    def __init__(self, model: Path, perturb: Perturb) -> None:
        self.inner = OrtRunner(onnx.load(str(model)))
        self.name = "fake"
        self.perturb = perturb
        self.rng = np.random.default_rng(7)

    def input_specs(self) -> list[TensorSpec]:
        return self.inner.input_specs()

    def output_specs(self) -> list[TensorSpec]:
        return self.inner.output_specs()

    def _run(self, feeds: Feeds) -> Feeds:
        result = self.inner.infer(feeds)
        first = np.ascontiguousarray(next(iter(feeds.values())))
        stem = _STEMS.get(first.tobytes(), "")
        return {
            s.name: _perturbed(self.perturb, self.rng, stem, result[s.name])
            for s in self.output_specs()
        }

    def close(self) -> None:
        self.inner.close()


class FakeBackend:
    name = "fake"

    def __init__(self, model: Path, perturb: Perturb) -> None:
        self.model = model
        self.perturb = perturb

    def open(self, om: Path) -> Runner:
        return FakeRunner(self.model, self.perturb)

    def run(
        self,
        om: Path,
        input_dirs: list[Path],
        output_dir: Path,
        outfmt: str = "BIN",
        progress: Progress = NULL_PROGRESS,
    ) -> RunResult:
        runner = OrtRunner(onnx.load(str(self.model)))
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(7)
        outputs = []
        for stem, feeds in aisbench_io.iter_feeds(input_dirs, runner.input_specs()):
            result = runner.infer(feeds)
            paths = []
            for k, spec in enumerate(runner.output_specs()):
                m = _perturbed(self.perturb, rng, stem, result[spec.name])
                path = aisbench_io.output_path(output_dir, stem, k, outfmt)
                aisbench_io.write_output(path, m)
                paths.append(path)
            outputs.append(paths)
        return RunResult(output_dir, outputs, [s.name for s in runner.output_specs()], [])

    def bench(
        self, om: Path, config: BenchConfig, progress: Progress = NULL_PROGRESS
    ) -> BenchResult:
        lat = self.perturb.latency_ms
        stats = latency_stats([lat * (1 + 0.01 * i) for i in range(config.loop)])
        return BenchResult(
            model=str(om),
            backend="fake",
            device="cpu (simulated)",
            simulated=True,
            precision="int8" if "int8" in Path(om).name else "fp16",
            soc="Ascend310P3",
            batch_size=config.batch_size or 1,
            latency_ms=stats,
            throughput=1000.0 * (config.batch_size or 1) / stats.mean,
            file_size_bytes=Path(om).stat().st_size,
        )


class FilesOnlyBackend(FakeBackend):
    """Runs only through files, as the atc backend where ais_bench's Python API is missing."""

    def open(self, om: Path) -> Runner:
        raise InProcessUnavailable("ais_bench's Python API is not importable here")


def install(
    monkeypatch, model: Path, perturbs: dict[str, Perturb], files_only: bool = False
) -> None:  # type: ignore[no-untyped-def]
    """Make `backend_for_om` return a FakeBackend chosen by the .om's file name."""
    from ascend_quant import backends

    kind = FilesOnlyBackend if files_only else FakeBackend

    def backend_for_om(path: Path) -> FakeBackend:
        return kind(model, perturbs[Path(path).name])

    monkeypatch.setattr(backends, "backend_for_om", backend_for_om)


def write_inputs(directory: Path, shape: tuple[int, ...], count: int, seed: int = 0) -> Path:
    """`count` float32 .bin samples of `shape`."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        rng.random(shape, dtype=np.float32).tofile(directory / f"sample_{i}.bin")
    return remember(directory)


def remember(directory: Path) -> Path:
    """Note which sample each .bin file in `directory` is, so a FakeRunner can name it."""
    for path in sorted(Path(directory).glob("*.bin")):
        _STEMS[path.read_bytes()] = path.stem
    return directory


def make_om(path: Path, size: int = 1000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    return path


def sample_results(tmp_path: Path, monkeypatch):  # type: ignore[no-untyped-def]
    """A BenchTable and a CompareResult for sr_net (one FP16 pass, one INT8 fail) via fakes."""
    import tiny_models

    from ascend_quant.bench import bench_models
    from ascend_quant.compare import compare_models
    from ascend_quant.config import Thresholds

    model = tiny_models.save(tiny_models.sr_net(), tmp_path / "sr.onnx")
    inputs = write_inputs(tmp_path / "eval", (1, 3, 16, 16), 2)
    fp16 = make_om(tmp_path / "sr_fp16.om", 3000)
    int8 = make_om(tmp_path / "sr_int8.om", 1500)
    install(
        monkeypatch,
        model,
        {
            "sr_fp16.om": Perturb(noise=0.002, latency_ms=2.0),
            "sr_int8.om": Perturb(noise=0.3, latency_ms=1.2),
        },
    )
    bench = bench_models([fp16, int8], BenchConfig(warmup=0, loop=20))
    compare = compare_models(model, [fp16, int8], [inputs], tmp_path / "cmp", Thresholds())
    return bench, compare
