"""Streams of model feeds: the `FeedSource` protocol and seeded random data.

A feed is one inference's inputs, `{input name: array}`. Anything that can be iterated for
feeds and knows its length and input specs is a `FeedSource` (calib sets, random data, recorded
data), so calibration and comparison never care where the data came from.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ascend_quant.errors import UsageError
from ascend_quant.tensors import TensorSpec

Feeds = dict[str, np.ndarray]

RANDOM_WARNING = (
    "calibrating on RANDOM data (--calib random): the INT8 model runs, but its accuracy figures "
    "say nothing about real inputs; calibrate on real data before trusting them"
)


@runtime_checkable
class FeedSource(Protocol):
    """A finite, re-iterable stream of feeds for a model with inputs `specs`."""

    specs: list[TensorSpec]

    def __iter__(self) -> Iterator[Feeds]: ...

    def __len__(self) -> int: ...


def random_samples(
    name: str,
    shape: tuple[int, ...],
    dtype: str,
    count: int,
    seed: int = 0,
    value_range: tuple[float, float] | None = None,
) -> Iterator[np.ndarray]:
    """`count` seeded arrays for one input: floats standard normal (or uniform in `value_range`),
    integers uniform in [lo, hi) of `value_range` (required: an index or timestep has a domain
    the graph does not state), bools fair coins."""
    kind = np.dtype(dtype).kind
    if kind in "iu" and value_range is None:
        raise UsageError(
            f"input '{name}' is {dtype}: random data for integer inputs needs a range",
            hint=f"set it in ascend-quant.toml: [inputs.{name}] range = [0, 1000]",
        )
    if value_range is not None and not value_range[0] < value_range[1]:
        raise UsageError(
            f"input '{name}': range {list(value_range)} is empty", hint="write range = [lo, hi]"
        )
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    for _ in range(count):
        if kind == "b":
            yield rng.integers(0, 2, shape).astype(bool)
        elif kind in "iu":
            assert value_range is not None
            lo, hi = int(value_range[0]), int(value_range[1])
            yield rng.integers(lo, hi, shape).astype(dtype)
        elif value_range is not None:
            yield rng.uniform(value_range[0], value_range[1], shape).astype(dtype)
        else:
            yield rng.standard_normal(shape).astype(dtype)


class RandomFeeds:
    """`count` seeded random feeds for static `specs` (see `random_samples` for the values)."""

    def __init__(
        self,
        specs: Sequence[TensorSpec],
        count: int,
        seed: int = 0,
        ranges: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        for spec in specs:
            if not spec.is_static:
                raise UsageError(
                    f"input '{spec.name}' has dynamic dims {list(spec.shape)}",
                    hint='give it a shape, e.g. --input-shape "name:1,3,224,224"',
                )
        self.specs = list(specs)
        self.count = count
        self.seed = seed
        self.ranges = dict(ranges or {})
        for spec in self.specs:  # fail now, not half-way through a calibration run
            next(iter(self._samples(spec, 0)), None)

    def _samples(self, spec: TensorSpec, count: int) -> Iterator[np.ndarray]:
        shape = tuple(int(d) for d in spec.shape)
        return random_samples(
            spec.name, shape, spec.dtype, count, self.seed, self.ranges.get(spec.name)
        )

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Feeds]:
        streams = {spec.name: self._samples(spec, self.count) for spec in self.specs}
        for _ in range(self.count):
            yield {name: next(it) for name, it in streams.items()}


def check_feeds(
    specs: Sequence[TensorSpec], shapes: Mapping[str, tuple[int, ...]] | None = None, seed: int = 0
) -> Feeds:
    """One seeded feed to check a model runs (preflight, benchmarks): `random_samples` with range
    [0, 1), so floats are image-like, integers zero (safe as indices) and bools fair coins.
    Shapes come from `shapes`, else from the spec with dynamic dims set to 1."""
    feeds: Feeds = {}
    for spec in specs:
        shape = (shapes or {}).get(spec.name) or tuple(
            d if isinstance(d, int) and d > 0 else 1 for d in spec.shape
        )
        dtype = spec.dtype if spec.dtype in np.sctypeDict else "float32"
        feeds[spec.name] = next(random_samples(spec.name, tuple(shape), dtype, 1, seed, (0, 1)))
    return feeds


def random_feeds(
    specs: Sequence[TensorSpec],
    count: int = 1,
    seed: int = 0,
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> RandomFeeds:
    """A `FeedSource` of `count` seeded random feeds."""
    return RandomFeeds(specs, count, seed, ranges)
