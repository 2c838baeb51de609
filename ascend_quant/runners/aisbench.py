"""A real .om on an Ascend NPU, behind the same `infer()` as every other runner.

Uses ais_bench's Python API (`ais_bench.infer.interface.InferSession`, from the aclruntime and
ais_bench wheels), imported when a runner is opened: it exists only on NPU hosts. Intermediate
tensors of a compiled .om cannot be exposed this way (that needs a dump), so `with_outputs`
says so instead of silently returning the final outputs only.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ascend_quant.errors import InProcessUnavailable, ToolchainError, UsageError, not_a_model_file
from ascend_quant.runners.base import Feeds, Runner
from ascend_quant.tensors import TensorSpec

AISBENCH_HINT = (
    "pip install the aclruntime and ais_bench wheels into this Python "
    "(`python -c 'import ais_bench.infer.interface'` must work) and source the toolkit's set_env.sh"
)
# aclruntime's dtype enum prints as e.g. "dtype.float16"; its names are numpy's.
_DTYPES = {"float": "float32", "double": "float64", "half": "float16"}


def _dtype(value: Any) -> str:
    text = str(value).rsplit(".", 1)[-1].lower()
    return _DTYPES.get(text, text)


def _specs(descs: Sequence[Any]) -> list[TensorSpec]:
    return [
        TensorSpec(
            str(d.name),
            _dtype(d.datatype),
            tuple(int(x) if int(x) >= 0 else "?" for x in d.shape),
        )
        for d in descs
    ]


class AisBenchRunner(Runner):
    """An .om loaded on NPU `device` through ais_bench's `InferSession`."""

    def __init__(self, om: Path, device: int = 0, name: str = "", mode: str = "static") -> None:
        """`mode`: InferSession's inference mode, "static", or for a gear model "dymbatch",
        "dymhw" or "dymdims" (the gear is then taken from the feeds' shapes)."""
        om = Path(om)
        if not om.is_file():
            raise not_a_model_file(om)
        try:
            interface = importlib.import_module("ais_bench.infer.interface")
        except ImportError:
            raise InProcessUnavailable(
                "ais_bench's Python API is not importable here", hint=AISBENCH_HINT
            ) from None
        try:
            self._session: Any = interface.InferSession(int(device), str(om))
        except Exception as exc:  # aclruntime raises RuntimeError with ACL codes
            raise ToolchainError(
                f"ais_bench cannot load {om.name} on NPU {device}: {str(exc).splitlines()[0]}",
                hint="check `npu-smi info` and that the .om was built for this soc",
            ) from None
        self.name = name or om.name
        self.mode = mode
        self._inputs = _specs(self._session.get_inputs())
        self._outputs = _specs(self._session.get_outputs())
        self.last_latency_ms = 0.0

    def input_specs(self) -> list[TensorSpec]:
        return list(self._inputs)

    def output_specs(self) -> list[TensorSpec]:
        return list(self._outputs)

    def with_outputs(self, names: Sequence[str]) -> Runner:
        raise UsageError(
            f"{self.name}: a compiled .om cannot expose intermediate tensors in-process",
            hint="per-layer analysis on the atc backend uses the AMCT fake-quant ONNX model "
            "(amct_onnx) on the CPU; the .om itself is compared on its outputs only",
        )

    def _run(self, feeds: Feeds) -> Feeds:
        if self._session is None:
            raise UsageError(f"{self.name} is closed")
        ordered = [np.ascontiguousarray(feeds[s.name]) for s in self._inputs]
        values = self._session.infer(ordered, mode=self.mode)
        return {s.name: np.asarray(v) for s, v in zip(self._outputs, values)}

    def close(self) -> None:
        if self._session is not None:
            free = getattr(self._session, "free_resource", None)
            if free is not None:
                free()
            self._session = None
