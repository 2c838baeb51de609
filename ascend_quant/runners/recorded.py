"""Outputs recorded earlier, replayed as a runner: one recorded inference per `infer`, in order.

What exists only as files (the golden set every soc shares, or the ais_bench files a backend's
`run` wrote where the model cannot be opened in-process) then streams through
`comparator.compare_runs` like any other runner, one sample read at a time. It checks the feeds
like every runner but cannot tell which sample they are: feed it the inputs it was recorded on,
in the order they were recorded.
"""

from __future__ import annotations

from collections.abc import Callable

from ascend_quant.errors import UsageError
from ascend_quant.runners.base import Feeds, Runner
from ascend_quant.tensors import TensorSpec


class RecordedRunner(Runner):
    """`read(i)` gives the outputs of the i-th recorded inference (of `count`)."""

    def __init__(
        self,
        name: str,
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
        count: int,
        read: Callable[[int], Feeds],
    ) -> None:
        self.name = name
        self._inputs = list(inputs)
        self._outputs = list(outputs)
        self.count = count
        self._read = read
        self.index = 0

    def input_specs(self) -> list[TensorSpec]:
        return list(self._inputs)

    def output_specs(self) -> list[TensorSpec]:
        return list(self._outputs)

    def _run(self, feeds: Feeds) -> Feeds:
        if self.index >= self.count:
            raise UsageError(
                f"{self.name}: these inputs make more inferences than the {self.count} recorded",
                hint="record the outputs again on these inputs",
            )
        result = self._read(self.index)
        self.index += 1
        return result
