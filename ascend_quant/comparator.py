"""Run a golden and candidates on the same feeds and accumulate per-tensor error: data, no verdict.

`compare_runs` streams the feeds once: per sample, every distinct runner infers once, each
compared tensor updates its accumulator, and the arrays are dropped, so memory does not grow with
the number of samples (only the accumulators stay). Intermediate tensors are compared by naming
them (`tensors`); each runner is re-opened with those outputs (`Runner.with_outputs`). A
`tensor_map` says what a golden tensor is called in a candidate (identity by default), and a
candidate may be the golden runner itself (e.g. a model that computes both the golden and a
perturbed copy of some layers): it then infers once per sample, not twice.

The accumulators are pluggable (`Accumulator`): `ErrorAccumulator` here is the light per-layer
one (cosine, SQNR, relative Euclidean, max |error|, non-finite counts, the golden range seen);
`compare.py` plugs in `metrics.MetricAccumulator` (task metrics) and keeps thresholds and the
verdict on top (note for issue 13: gates and verdicts stay in compare.py/gates.py; this module
only produces the numbers).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ascend_quant.errors import UsageError
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.runners.base import Feeds, Runner

FP16_MAX = 65504.0


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
    """Cosine, SQNR, relative Euclidean, max |error| and non-finite counts of one tensor.

    Additive (sums of products accumulated in float64, see `_dot`), so the result equals the
    metric of all samples concatenated. Non-finite candidate values are counted (FP16
    overflow) and left out of the sums, so one inf does not turn every figure into NaN; the
    count says they were there.
    """

    count: int = 0
    gm: float = 0.0
    gg: float = 0.0
    mm: float = 0.0
    sse: float = 0.0
    max_abs: float = 0.0
    nonfinite: int = 0  # candidate values that are inf/NaN
    golden_nonfinite: int = 0
    golden_over_fp16: int = 0  # finite golden values beyond +-65504 (overflow in FP16)
    golden_min: float = math.inf
    golden_max: float = -math.inf

    def update(self, golden: np.ndarray, mine: np.ndarray) -> dict[str, Any]:
        wide = (
            np.float64 if np.float64 in (np.asarray(golden).dtype, np.asarray(mine).dtype) else None
        )
        g = np.asarray(golden, dtype=wide or np.float32).reshape(-1)
        m = np.asarray(mine, dtype=wide or np.float32).reshape(-1)
        if g.size != m.size:
            raise UsageError(
                f"golden has {g.size} values but the candidate has {m.size}",
                hint="the tensor map pairs tensors of different shapes",
            )
        sample = ErrorAccumulator(count=int(g.size))
        if not g.size:
            self._merge(sample)
            return sample.result()
        # One sum per array tells whether anything is inf/NaN; masks only then (rare).
        if not (math.isfinite(float(g.sum())) and math.isfinite(float(m.sum()))):
            finite_g, finite_m = np.isfinite(g), np.isfinite(m)
            sample.nonfinite = int(m.size - np.count_nonzero(finite_m))
            sample.golden_nonfinite = int(g.size - np.count_nonzero(finite_g))
            ok = finite_g & finite_m
            gvals = g[finite_g]
            g, m = g[ok], m[ok]
        else:
            gvals = g
        diff = m - g
        sample.gm, sample.gg, sample.mm = _dot(g, m), _dot(g, g), _dot(m, m)
        sample.sse = _dot(diff, diff)
        sample.max_abs = max(float(diff.max()), -float(diff.min())) if diff.size else 0.0
        if gvals.size:
            sample.golden_min, sample.golden_max = float(gvals.min()), float(gvals.max())
            if max(-sample.golden_min, sample.golden_max) > FP16_MAX:
                sample.golden_over_fp16 = int(np.count_nonzero(np.abs(gvals) > FP16_MAX))
        self._merge(sample)
        return sample.result()

    def _merge(self, o: ErrorAccumulator) -> None:
        self.count += o.count
        self.gm += o.gm
        self.gg += o.gg
        self.mm += o.mm
        self.sse += o.sse
        self.max_abs = max(self.max_abs, o.max_abs)
        self.nonfinite += o.nonfinite
        self.golden_nonfinite += o.golden_nonfinite
        self.golden_over_fp16 += o.golden_over_fp16
        self.golden_min = min(self.golden_min, o.golden_min)
        self.golden_max = max(self.golden_max, o.golden_max)

    def result(self) -> dict[str, Any]:
        return {
            "cosine": cosine_from(self.gm, self.gg, self.mm),
            "sqnr_db": sqnr_from(self.gg, self.sse),
            "rel_euclidean": math.sqrt(self.sse / self.gg) if self.gg > 0 else None,
            "max_abs_error": self.max_abs,
            "nonfinite": self.nonfinite,
            "golden_nonfinite": self.golden_nonfinite,
            "golden_over_fp16": self.golden_over_fp16,
            "golden_min": self.golden_min if self.count else None,
            "golden_max": self.golden_max if self.count else None,
            "values": self.count,
        }


_CHUNK = 4096


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Σ a·b accumulated in float64: float32 data is summed in float32 within 4096-value chunks
    (relative error ~1e-8) and the chunk sums in float64, ~10x faster than widening it all."""
    if a.dtype != np.float32:
        return float(np.dot(a.astype(np.float64), b.astype(np.float64)))
    n = a.size // _CHUNK * _CHUNK
    head = np.einsum("ij,ij->i", a[:n].reshape(-1, _CHUNK), b[:n].reshape(-1, _CHUNK))
    tail = np.dot(a[n:].astype(np.float64), b[n:].astype(np.float64))
    return float(head.sum(dtype=np.float64)) + float(tail)


def cosine_from(gm: float, gg: float, mm: float) -> float | None:
    """Cosine from sums; 1.0 when both are all zero, None when only the golden is."""
    if gg == 0 and mm == 0:
        return 1.0
    if gg == 0:
        return None
    if mm == 0:
        return 0.0
    return max(-1.0, min(1.0, gm / math.sqrt(gg * mm)))


def sqnr_from(gg: float, sse: float) -> float | None:
    """Signal-to-quantization-noise ratio in dB, 10·log10(Σg² / Σ(m−g)²) (ORT's qdq_loss_debug).

    inf when the candidate is exact; None when the golden is all zero (no signal to compare)."""
    if gg == 0:
        return None
    if sse == 0:
        return math.inf
    return 10.0 * math.log10(gg / sse)


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
