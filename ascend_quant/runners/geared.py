"""A model converted with atc gears runs only at those gears: `GearedRunner` refuses any other
input shape before the runtime sees it, on the simulator exactly as on the NPU (where a shape
outside the gears fails inside ACL with an opaque "invalid parameter")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ascend_quant.errors import UsageError
from ascend_quant.gears import Gears
from ascend_quant.runners.base import Feeds, Runner
from ascend_quant.tensors import TensorSpec


class GearedRunner(Runner):
    """`inner` restricted to the concrete shapes of `gears`; everything else is delegated."""

    def __init__(self, inner: Runner, gears: Gears, gear: int | None = None) -> None:
        self.inner = inner
        self.gears = gears
        self.gear = gear  # set: input_specs() are that gear's concrete shapes
        self.name = inner.name
        self.metadata: dict[str, Any] = dict(getattr(inner, "metadata", {}) or {})
        self.last_latency_ms = 0.0

    def at_gear(self, gear: str | int) -> GearedRunner:
        """The same model with `gear`'s concrete input specs (for readers of fixed-size files)."""
        index = gear if isinstance(gear, int) else self.gears.index(gear)
        return GearedRunner(self.inner, self.gears, index)

    def input_specs(self) -> list[TensorSpec]:
        specs = self.inner.input_specs()
        if self.gear is None:
            return specs
        shapes = self.gears.shapes(self.gear)
        return [s.with_shape(shapes[s.name]) if s.name in shapes else s for s in specs]

    def output_specs(self) -> list[TensorSpec]:
        return self.inner.output_specs()

    def gear_of(self, feeds: Feeds) -> int:
        """The index of the gear `feeds` are shaped for, else UsageError naming the gears."""
        shapes = {k: tuple(int(d) for d in np.shape(v)) for k, v in feeds.items()}
        index = self.gears.index_of(shapes)
        if index is None:
            raise UsageError(
                f"{self.name}: input shapes "
                + "; ".join(f"{k}:{list(v)}" for k, v in shapes.items())
                + f" are not one of its {self.gears.kind} gears ({', '.join(self.gears.labels)})",
                hint="feed data at a gear the model was converted with, or re-convert with "
                "that gear added",
            )
        return index

    def infer(self, feeds: Feeds) -> Feeds:
        self.gear_of(feeds)
        result = self.inner.infer(feeds)
        self.last_latency_ms = self.inner.last_latency_ms
        return result

    def _run(self, feeds: Feeds) -> Feeds:
        return self.inner.infer(feeds)

    def with_outputs(self, names: Sequence[str]) -> Runner:
        return GearedRunner(self.inner.with_outputs(names), self.gears, self.gear)

    def close(self) -> None:
        self.inner.close()
