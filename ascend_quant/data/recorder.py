"""Capture calibration data from a running pipeline: `Recorder` and `RecordingSession`.

Diffusion and other multi-step models are calibrated on what they really see mid-run (the
Ascend Stable Diffusion recipes calibrate the UNet on latents, timesteps and text embeddings of
the middle denoising steps). Wrap the ONNX Runtime session the pipeline already uses, run the
pipeline as usual, and the chosen calls are written as one calib set per input:

    with Recorder("captured", "unet.onnx", period=50, steps=(20, 30)) as recorder:
        session = RecordingSession(ort.InferenceSession("unet.onnx"), recorder)
        run_the_pipeline(session)            # calls session.run(None, feeds) 50 times a run
    # captured/<input>/ are calib sets: `ascend-quant build unet.onnx --calib captured`

Samples stream to disk as they are recorded (memory stays flat) and the sets appear only when
the recorder closes without an error.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from ascend_quant.data.calibset import DTYPES, write_samples
from ascend_quant.errors import UsageError
from ascend_quant.tensors import TensorSpec, graph_io
from ascend_quant.workspace import safe_name


def _specs_of(model: Any) -> list[TensorSpec]:
    if isinstance(model, (str, Path)):
        import onnx  # heavy: only when a path is given

        try:
            model = onnx.load(str(model), load_external_data=False)
        except Exception as exc:
            raise UsageError(f"cannot read ONNX model {model}: {exc}") from None
    if hasattr(model, "graph"):
        return graph_io(model)[0]
    return list(model)


class Recorder:
    """Writes chosen feeds of a running model as calib sets at `out_dir/<input>/`.

    `model`: an .onnx path, a ModelProto or the input specs. Sampling: the call's step is its
    index within a run of `period` calls (or its index overall); it is kept when it lies in
    `steps` (start, stop) and is a multiple of `every` from the window's start, until `limit`
    feeds are kept. `inputs` records only those inputs (default: all).
    """

    def __init__(
        self,
        out_dir: str | Path,
        model: Any,
        *,
        every: int = 1,
        steps: tuple[int, int] | None = None,
        period: int | None = None,
        limit: int | None = None,
        inputs: Sequence[str] | None = None,
    ) -> None:
        if every < 1:
            raise UsageError(f"Recorder: every must be at least 1, got {every}")
        if period is not None and period < 1:
            raise UsageError(f"Recorder: period must be at least 1, got {period}")
        if steps is not None and not 0 <= steps[0] < steps[1]:
            raise UsageError(f"Recorder: steps {steps} is not a window (start, stop)")
        self.out_dir = Path(out_dir)
        specs = _specs_of(model)
        names = [s.name for s in specs]
        unknown = [n for n in inputs or () if n not in names]
        if unknown:
            raise UsageError(
                f"Recorder: the model has no input(s) {', '.join(unknown)}",
                hint=f"its inputs are {', '.join(names)}",
            )
        self.specs = [s for s in specs if inputs is None or s.name in inputs]
        self.every, self.steps, self.period, self.limit = every, steps, period, limit
        self.calls = 0
        self.kept = 0
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._tmp: Path | None = None
        self.sets: dict[str, Path] = {}

    # ------------------------------------------------------------------ sampling

    def wants(self, step: int) -> bool:
        """Whether a call at `step` (within its run) is recorded."""
        if self.limit is not None and self.kept >= self.limit:
            return False
        start = 0
        if self.steps is not None:
            if not self.steps[0] <= step < self.steps[1]:
                return False
            start = self.steps[0]
        return (step - start) % self.every == 0

    def record(self, feeds: Mapping[str, Any], step: int | None = None) -> bool:
        """Offer one call's feeds; returns whether they were kept. `step` overrides the count."""
        if step is None:
            step = self.calls % self.period if self.period else self.calls
        self.calls += 1
        if not self.wants(step):
            return False
        tmp = self._scratch()
        arrays = {spec.name: self._checked(spec, feeds) for spec in self.specs}
        for name, array in arrays.items():
            np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tofile(
                tmp / f"{safe_name(name)}.{self.kept:06d}.bin"
            )
        self.kept += 1
        return True

    def _checked(self, spec: TensorSpec, feeds: Mapping[str, Any]) -> np.ndarray:
        if spec.name not in feeds:
            raise UsageError(
                f"Recorder: the feeds have no input '{spec.name}' (got: {', '.join(feeds)})"
            )
        array = np.asarray(feeds[spec.name])
        if array.dtype.name != spec.dtype:
            raise UsageError(
                f"Recorder: input '{spec.name}' was fed {array.dtype.name} {list(array.shape)}, "
                f"the model input is {spec.dtype} {list(spec.shape)}"
            )
        declared = [d for d in spec.shape]
        if len(declared) != array.ndim or any(
            isinstance(d, int) and d != n for d, n in zip(declared, array.shape)
        ):
            raise UsageError(
                f"Recorder: input '{spec.name}' was fed shape {list(array.shape)}, the model "
                f"input is {declared}"
            )
        first = self._shapes.setdefault(spec.name, tuple(array.shape))
        if first != tuple(array.shape):
            raise UsageError(
                f"Recorder: input '{spec.name}' changed shape from {list(first)} to "
                f"{list(array.shape)}; a calib set holds one shape",
                hint="record one shape (e.g. one resolution) per Recorder",
            )
        return array

    def _scratch(self) -> Path:
        if self._tmp is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._tmp = Path(
                tempfile.mkdtemp(prefix=f".{self.out_dir.name}.", suffix=".rec", dir=self.out_dir)
            )
        return self._tmp

    # ------------------------------------------------------------------ writing

    def close(self) -> dict[str, Path]:
        """Write `out_dir/<input>/` calib sets from what was kept; returns {input: dir}."""
        if self._tmp is None:
            raise UsageError(
                f"Recorder: nothing was recorded in {self.calls} call(s)",
                hint="check steps/period/every: no call fell in the window",
            )
        try:
            for spec in self.specs:
                shape = self._shapes[spec.name]
                if spec.dtype not in DTYPES:
                    raise UsageError(f"Recorder: input '{spec.name}' is {spec.dtype}, unsupported")
                self.sets[spec.name] = write_samples(
                    self.out_dir / safe_name(spec.name),
                    spec.name,
                    self._read_back(spec.name, shape, spec.dtype),
                    sample_shape=shape,
                    dtype=spec.dtype,
                    batch=1,
                    batch_dim=None,
                    kind="recorded",
                    extra={
                        "recorded": {
                            "calls": self.calls,
                            "every": self.every,
                            "steps": list(self.steps) if self.steps else None,
                            "period": self.period,
                            "limit": self.limit,
                        }
                    },
                ).root
        finally:
            self.discard()
        return dict(self.sets)

    def _read_back(self, name: str, shape: tuple[int, ...], dtype: str) -> Iterator[np.ndarray]:
        assert self._tmp is not None
        little = np.dtype(dtype).newbyteorder("<")
        for k in range(self.kept):
            yield (
                np.fromfile(self._tmp / f"{safe_name(name)}.{k:06d}.bin", dtype=little)
                .reshape(shape)
                .astype(dtype)
            )

    def discard(self) -> None:
        """Drop what was recorded but not written."""
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.discard()


class RecordingSession:
    """An ONNX Runtime session that offers every `run` call's feeds to a `Recorder` first."""

    def __init__(self, session: Any, recorder: Recorder) -> None:
        self._session = session
        self.recorder = recorder

    def run(
        self, output_names: Any, input_feed: Mapping[str, Any], *args: Any, **kwargs: Any
    ) -> Any:
        self.recorder.record(input_feed)
        return self._session.run(output_names, input_feed, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # get_inputs(), get_outputs(), ... as the session
        return getattr(self._session, name)
