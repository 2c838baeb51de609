"""FP32 golden outputs on an evaluation set, recorded once and read by every comparison.

The golden depends only on the FP32 model and the evaluation inputs, not on the candidate, the
soc or the quantization settings, so a build records it once (its own stage, keyed by the
model's and the set's hashes) and every candidate, soc and tuning trial compares against the
files. A directory holds one ais_bench-named output file per sample and output
(`<stem>_<k>.bin`) and `golden.json`: the input and output specs as fed and produced, the sample
stems in order and each output's finite value range (the metrics' data range).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ascend_quant import aisbench_io
from ascend_quant.data.calibset import iter_eval_feeds
from ascend_quant.errors import UsageError
from ascend_quant.gears import Gears
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.runners.base import Runner
from ascend_quant.runners.ort import OrtRunner, data_rejected
from ascend_quant.tensors import TensorSpec
from ascend_quant.workspace import atomic_directory, atomic_write_json, read_json, sha256_file

FORMAT = "ascend-quant-golden/1"
MANIFEST = "golden.json"


@dataclass(frozen=True)
class GoldenSet:
    """A recorded golden: where its files are and what they hold."""

    root: Path
    model_sha256: str
    inputs: list[TensorSpec]  # static, as fed
    outputs: list[TensorSpec]  # the shapes the model really produced
    stems: list[str]  # one per inference, in input order
    lo: list[float]  # finite minimum per output (inf when none)
    hi: list[float]

    def output_path(self, stem: str, index: int) -> Path:
        return aisbench_io.output_path(self.root, stem, index)

    def read(self, stem: str) -> list[np.ndarray]:
        return [
            aisbench_io.read_output(self.output_path(stem, k), spec)
            for k, spec in enumerate(self.outputs)
        ]

    @classmethod
    def load(cls, root: Path) -> GoldenSet:
        root = Path(root)
        try:
            data = read_json(root / MANIFEST)
        except (OSError, ValueError) as exc:
            raise UsageError(f"no golden outputs at {root} ({exc})") from None
        if data.get("format") != FORMAT:
            raise UsageError(f"{root / MANIFEST} is not a {FORMAT} manifest")

        def specs(items: list[dict[str, Any]]) -> list[TensorSpec]:
            return [TensorSpec(s["name"], s["dtype"], tuple(s["shape"])) for s in items]

        return cls(
            root=root,
            model_sha256=data["model_sha256"],
            inputs=specs(data["inputs"]),
            outputs=specs(data["outputs"]),
            stems=list(data["stems"]),
            lo=[float(v) for v in data["lo"]],
            hi=[float(v) for v in data["hi"]],
        )


def _spec_json(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "dtype": spec.dtype, "shape": [int(d) for d in spec.shape]}


def write_golden(
    runner: Runner,
    model_sha256: str,
    input_dirs: Sequence[Path],
    specs: list[TensorSpec],
    root: Path,
    progress: Progress = NULL_PROGRESS,
) -> GoldenSet:
    """Run `runner` (the FP32 model) on every input into `root`.

    The directory is replaced whole on success, so a killed run never leaves a partial golden.
    """
    names = [o.name for o in runner.output_specs()]
    lo = [math.inf] * len(names)
    hi = [-math.inf] * len(names)
    stems: list[str] = []
    shapes: list[tuple[int, ...]] = []
    dtypes: list[str] = []
    with atomic_directory(Path(root)) as work:
        with progress.task("golden FP32 (ONNX Runtime)", total=None) as advance:
            for stem, feeds in iter_eval_feeds(list(input_dirs), specs):
                with data_rejected(f"evaluation sample {stem}"):
                    result = runner.infer(feeds)
                outs = [np.asarray(result[name]) for name in names]
                if not stems:
                    shapes = [tuple(int(d) for d in a.shape) for a in outs]
                    dtypes = [a.dtype.name for a in outs]
                for k, array in enumerate(outs):
                    aisbench_io.write_output(aisbench_io.output_path(work, stem, k), array)
                    finite = array[np.isfinite(array)] if array.size else array
                    if finite.size:
                        lo[k] = min(lo[k], float(finite.min()))
                        hi[k] = max(hi[k], float(finite.max()))
                stems.append(stem)
                advance(1)
        outputs = [TensorSpec(n, d, s) for n, d, s in zip(names, dtypes, shapes)]
        atomic_write_json(
            work / MANIFEST,
            {
                "format": FORMAT,
                "model_sha256": model_sha256,
                "inputs": [_spec_json(s) for s in specs],
                "outputs": [_spec_json(s) for s in outputs],
                "stems": stems,
                "lo": [v if math.isfinite(v) else str(v) for v in lo],
                "hi": [v if math.isfinite(v) else str(v) for v in hi],
            },
        )
    return GoldenSet(Path(root), model_sha256, list(specs), outputs, stems, lo, hi)


def golden_runner(model_path: Path) -> OrtRunner:
    """The FP32 ONNX model on ONNX Runtime's CPU provider (the one session factory)."""
    try:
        proto = onnx.load(str(model_path))
    except Exception as exc:
        raise UsageError(f"{model_path}: not a loadable ONNX model ({exc})") from None
    return OrtRunner(proto, name=Path(model_path).name)


def resolve_inputs(
    specs: list[TensorSpec],
    input_dirs: list[Path],
    input_shapes: dict[str, tuple[int, ...]] | None,
    candidates: list[Path],
) -> list[TensorSpec]:
    """Static input specs for the golden: given shapes, else the candidates' manifests, else a
    single dynamic dim solved from the first input file's size (one sample per file)."""
    shapes = dict(input_shapes or {})
    if not shapes:
        for om in candidates:
            manifest_path = om.with_suffix(".json")
            if manifest_path.is_file():
                try:
                    manifest = read_json(manifest_path)
                    found = manifest.get("input_shapes")
                    gears = Gears.from_record(manifest.get("gears"))
                except (ValueError, AttributeError, OSError):
                    found, gears = None, None
                if gears is not None:  # a gear model: the gear the input files are shaped for
                    dtypes = {s.name: s.dtype for s in specs}
                    shapes = gears.shapes(aisbench_io.gear_of_files(gears, dtypes, input_dirs))
                    break
                if isinstance(found, dict):
                    shapes = {k: tuple(int(d) for d in v) for k, v in found.items()}
                    break
    resolved = []
    for spec, path in zip(specs, input_dirs):
        if spec.name in shapes:
            resolved.append(TensorSpec(spec.name, spec.dtype, tuple(shapes[spec.name])))
            continue
        dynamic = [i for i, d in enumerate(spec.shape) if not isinstance(d, int)]
        if not dynamic:
            resolved.append(spec)
            continue
        if len(dynamic) > 1:
            raise UsageError(
                f"input '{spec.name}' has several dynamic dims {spec.shape}",
                hint='give the shape, e.g. --input-shape "input:1,3,224,224"',
            )
        first = aisbench_io.list_input_files(path)[0]
        itemsize = np.dtype(spec.dtype).itemsize
        count = (
            math.prod(aisbench_io.npy_header(first)[0])
            if first.suffix.lower() == ".npy"
            else first.stat().st_size // itemsize
        )
        static = math.prod(int(d) for d in spec.shape if isinstance(d, int))
        if static == 0 or count % static:
            raise UsageError(
                f"input '{spec.name}' {spec.shape}: {first.name} does not fit the static dims",
                hint='give the shape, e.g. --input-shape "input:1,3,224,224"',
            )
        shape = list(spec.shape)
        shape[dynamic[0]] = count // static
        resolved.append(TensorSpec(spec.name, spec.dtype, tuple(shape)))
    return resolved


def record_golden(
    onnx_model: Path,
    input_dirs: Sequence[Path],
    root: Path,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    progress: Progress = NULL_PROGRESS,
) -> GoldenSet:
    """The FP32 ONNX model's outputs on `input_dirs` (one dir per model input) into `root`."""
    runner = golden_runner(Path(onnx_model))
    specs = resolve_inputs(runner.input_specs(), [Path(p) for p in input_dirs], input_shapes, [])
    try:
        sha = sha256_file(Path(onnx_model))
        return write_golden(runner, sha, input_dirs, specs, root, progress)
    finally:
        runner.close()
