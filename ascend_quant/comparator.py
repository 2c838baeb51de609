"""Run a golden and candidates on the same feeds and accumulate per-tensor error: data, no verdict.

`compare_runs` streams the feeds once: per sample, every distinct runner infers once, each
compared tensor updates its accumulator, and the arrays are dropped, so memory does not grow with
the number of samples (only the accumulators stay). Intermediate tensors are compared by naming
them (`tensors`); each runner is re-opened with those outputs (`Runner.with_outputs`). A
`tensor_map` says what a golden tensor is called in a candidate (identity by default), and a
candidate may be the golden runner itself (e.g. a model that computes both the golden and a
perturbed copy of some layers): it then infers once per sample, not twice.

The accumulators are pluggable (`Accumulator`); `ErrorAccumulator` is the one built in: the
light per-layer set for `analysis/` (cosine, SQNR, relative Euclidean, max |error|, non-finite
counts, the golden range seen), or msit's metrics of a model output for `compare.py`, which keeps
thresholds, worst samples and the verdict on top (gates and verdicts stay in
compare.py/gates.py; this module only produces the numbers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ascend_quant.errors import UsageError
from ascend_quant.metrics import Stats, StatsKind, cosine_from, finalize, sample_stats, sqnr_from
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.runners.base import Feeds, Runner

__all__ = [
    "Accumulator",
    "Comparison",
    "ErrorAccumulator",
    "TensorComparison",
    "compare_runs",
    "cosine_from",
    "sqnr_from",
]


class Accumulator(Protocol):
    """Metrics over many (golden, candidate) samples of one tensor, without keeping them."""

    def update(self, golden: np.ndarray, mine: np.ndarray) -> dict[str, Any]:
        """Add one sample; return that sample's own metrics."""
        ...

    def result(self) -> dict[str, Any]:
        """Metrics over every sample seen."""
        ...


@dataclass
class ErrorAccumulator:
    """The error of one tensor over many samples, from additive statistics (`metrics.Stats`).

    `kind` says which metrics (`metrics.sample_stats`): "error", the light per-layer set of
    analysis (cosine, SQNR, relative Euclidean, max |error|, non-finite counts left out of the
    sums, the golden's range); "tensor", "image" or "classes", msit's metrics and the kind's own
    for a model output that gates judge (non-finite values kept in: NaN reads NaN). The result
    equals the metrics of all samples concatenated.
    """

    kind: StatsKind = "error"
    value_range: float | None = None  # L of PSNR/SSIM (kind "image"), fixed up front
    logits: bool = False  # rows along the last axis are class scores (KL of their softmax)
    stats: Stats = field(default_factory=Stats)

    def update(self, golden: np.ndarray, mine: np.ndarray) -> dict[str, Any]:
        if np.size(golden) != np.size(mine):
            raise UsageError(
                f"golden has {np.size(golden)} values but the candidate has {np.size(mine)}",
                hint="the tensor map pairs tensors of different shapes",
            )
        sample = sample_stats(golden, mine, self.kind, self.value_range, self.logits)
        self.stats = self.stats.merge(sample)
        return finalize(sample, self.kind, self.value_range)

    def result(self) -> dict[str, Any]:
        return finalize(self.stats, self.kind, self.value_range)


AccumulatorFactory = Callable[[str, str], Accumulator]  # (candidate, golden tensor) -> accumulator


@dataclass
class TensorComparison:
    """One golden tensor against one candidate's counterpart, over every sample."""

    candidate: str
    tensor: str  # the golden tensor's name
    candidate_tensor: str  # its name in the candidate
    accumulator: Accumulator

    def result(self) -> dict[str, Any]:
        return self.accumulator.result()


@dataclass
class Comparison:
    """What `compare_runs` measured: per candidate, per golden tensor, an accumulator."""

    samples: int
    tensors: dict[str, dict[str, TensorComparison]]  # candidate -> golden tensor -> comparison
    missing: dict[str, list[str]] = field(default_factory=dict)  # candidate -> absent tensors

    def result(self, candidate: str, tensor: str) -> dict[str, Any]:
        return self.tensors[candidate][tensor].result()


SampleHook = Callable[[int, Feeds, Feeds, dict[str, Feeds]], None]


def _mapped(tensor_map: Mapping[str, Mapping[str, str]] | None, candidate: str, tensor: str) -> str:
    if tensor_map and candidate in tensor_map:
        return tensor_map[candidate].get(tensor, tensor)
    return tensor


def compare_runs(
    golden: Runner,
    candidates: Mapping[str, Runner],
    feeds: Iterable[Feeds],
    tensor_map: Mapping[str, Mapping[str, str]] | None = None,
    tensors: Sequence[str] | None = None,
    accumulator: AccumulatorFactory | None = None,
    on_sample: SampleHook | None = None,
    progress: Progress = NULL_PROGRESS,
    total: int | None = None,
    label: str = "comparing",
) -> Comparison:
    """Compare `tensors` (default: the golden's outputs) of every candidate with the golden.

    tensor_map: candidate -> {golden tensor: its name in that candidate}. A candidate lacking a
    mapped tensor is listed in `Comparison.missing` and not compared (e.g. a layer fused away).
    on_sample(index, feeds, golden values, {candidate: values}) sees every sample's arrays
    (e.g. to keep one for a report) before they are dropped.
    The runners passed in are not closed; the ones opened here with extra outputs are.
    """
    make = accumulator or (lambda _c, _t: ErrorAccumulator())
    golden_outputs = [s.name for s in golden.output_specs()]
    wanted = list(dict.fromkeys(tensors if tensors is not None else golden_outputs))

    # What each distinct runner must output: the golden tensors, and every mapped name.
    needs: dict[int, list[str]] = {id(golden): list(wanted)}
    runners: dict[int, Runner] = {id(golden): golden}
    pairs: dict[str, list[tuple[str, str]]] = {}
    missing: dict[str, list[str]] = {}
    for name, runner in candidates.items():
        runners.setdefault(id(runner), runner)
        available = runner.tensor_names()
        pairs[name] = []
        for tensor in wanted:
            mapped = _mapped(tensor_map, name, tensor)
            if available is not None and mapped not in available:
                missing.setdefault(name, []).append(tensor)
                continue
            pairs[name].append((tensor, mapped))
            needs.setdefault(id(runner), [])
            if mapped not in needs[id(runner)]:
                needs[id(runner)].append(mapped)
    opened: dict[int, Runner] = {}
    try:
        for key, runner in runners.items():
            declared = {s.name for s in runner.output_specs()}
            extra = [n for n in needs.get(key, []) if n not in declared]
            opened[key] = runner.with_outputs(extra) if extra else runner
        table = {
            name: {t: TensorComparison(name, t, m, make(name, t)) for t, m in pairs[name]}
            for name in candidates
        }
        samples = 0
        with progress.task(label, total=total) as advance:
            for index, sample in enumerate(feeds):
                values = {key: runner.infer(sample) for key, runner in opened.items()}
                gold = values[id(golden)]
                for name, runner in candidates.items():
                    mine = values[id(runner)]
                    for tensor, mapped in pairs[name]:
                        table[name][tensor].accumulator.update(gold[tensor], mine[mapped])
                if on_sample is not None:
                    on_sample(
                        index, sample, gold, {n: values[id(r)] for n, r in candidates.items()}
                    )
                del values, gold
                samples += 1
                advance(1)
    finally:
        for key, runner in opened.items():
            if runner is not runners[key]:
                runner.close()
    if samples == 0:
        raise UsageError("no samples to compare", hint="give evaluation data with some samples")
    return Comparison(samples, table, missing)
