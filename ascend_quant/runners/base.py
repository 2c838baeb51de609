"""The one contract for anything that infers: FP32 golden, simulated .om, real .om on an NPU.

A `Runner` checks feeds against its input specs (so a wrong name, dtype or shape is one clear
error, not a runtime's stack trace), times each inference itself (`last_latency_ms`), and can be
re-opened exposing intermediate tensors (`with_outputs`), which is what per-layer analysis needs.
Everything that compares or benchmarks models is typed against this class, never a backend.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import TypeVar

import numpy as np

from ascend_quant.errors import UsageError
from ascend_quant.tensors import TensorSpec

Feeds = dict[str, np.ndarray]
R = TypeVar("R", bound="Runner")


class Runner(ABC):
    """An open model: `infer(feeds) -> {output name: array}`; close it (or use `with`)."""

    name: str = ""
    last_latency_ms: float = 0.0

    @abstractmethod
    def input_specs(self) -> list[TensorSpec]: ...

    @abstractmethod
    def output_specs(self) -> list[TensorSpec]: ...

    @abstractmethod
    def _run(self, feeds: Feeds) -> Feeds:
        """The runtime call itself; `infer` checks the feeds and times this."""

    def with_outputs(self, names: Sequence[str]) -> Runner:
        """A new runner over the same model that also returns the tensors `names`.

        Runtimes that cannot expose intermediate tensors raise UsageError saying so."""
        raise UsageError(
            f"{type(self).__name__} cannot expose intermediate tensors",
            hint="per-layer comparison needs a model that runs on ONNX Runtime",
        )

    def tensor_names(self) -> set[str] | None:
        """Every tensor `with_outputs` can expose; None when the runtime cannot say."""
        return None

    def close(self) -> None:  # noqa: B027 - runners without resources need nothing
        """Release the runtime's resources; the runner is unusable afterwards."""

    def infer(self, feeds: Feeds) -> Feeds:
        """Run one inference; outputs by name, in `output_specs()` order."""
        check_feeds(self.input_specs(), feeds, self.name)
        start = time.perf_counter()
        result = self._run(feeds)
        self.last_latency_ms = (time.perf_counter() - start) * 1000.0
        return result

    def __enter__(self: R) -> R:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def check_feeds(specs: Sequence[TensorSpec], feeds: Feeds, where: str = "") -> None:
    """Every input present, nothing extra, dtype and static dims as the model declares."""
    prefix = f"{where}: " if where else ""
    names = [s.name for s in specs]
    missing = [n for n in names if n not in feeds]
    extra = [n for n in feeds if n not in names]
    if missing or extra:
        raise UsageError(
            prefix
            + "; ".join(
                part
                for part in (
                    f"missing input(s) {', '.join(missing)}" if missing else "",
                    f"unknown input(s) {', '.join(extra)}" if extra else "",
                )
                if part
            ),
            hint=f"the model's inputs are: {', '.join(names)}",
        )
    for spec in specs:
        value = feeds[spec.name]
        if not isinstance(value, np.ndarray):
            raise UsageError(f"{prefix}input '{spec.name}' is not a numpy array")
        if value.dtype.name != spec.dtype and spec.dtype in np.sctypeDict:
            raise UsageError(
                f"{prefix}input '{spec.name}' is {value.dtype.name}, the model wants {spec.dtype}",
                hint=f"convert it, e.g. array.astype('{spec.dtype}')",
            )
        fixed = len(value.shape) == len(spec.shape) and all(
            not isinstance(d, int) or d < 0 or d == v for d, v in zip(spec.shape, value.shape)
        )
        if not fixed:
            raise UsageError(
                f"{prefix}input '{spec.name}' has shape {list(value.shape)}, the model wants "
                f"{list(spec.shape)}",
                hint="feed arrays of the model's input shape (str dims are dynamic)",
            )
