"""Streaming activation statistics and the activation-range algorithms computed from them.

Memory does not depend on the number of calibration samples: each tensor keeps its exact
min/max and one fixed-size histogram (counts and per-bin sums) over a range [-R, R] that is
symmetric about zero. When a new batch falls outside the range, R doubles and adjacent bin pairs
merge, which is an exact re-binning (the edges of the coarse histogram are edges of the fine
one), so streaming batch by batch gives the same histogram as one pass over all the data
whenever the final range is the same.

Keeping the per-bin sum makes the bin's representative value its mean rather than its centre,
which matters for post-ReLU tensors where most of the mass sits exactly at zero.

Range algorithms (all return `(lo, hi)` with lo <= 0 <= hi, as both Ascend and ONNX Runtime
always represent zero exactly):
- `minmax`: the exact running min/max.
- `percentile`: the min/max percentile points of the distribution.
- `ifmr` (default, AMCT FMRQuantize): percentile start points, then a search over clip ratios
  `search_range_start..search_range_end` step `search_step` minimising the quantize-dequantize
  MSE, symmetric or asymmetric.
- `hfmg` (AMCT HFMGQuantize): a `num_of_bins` histogram over [min, max] and a greedy search
  that shrinks whichever end loses less mass, while the quantization error keeps falling.
- `entropy`: TensorRT's KL-divergence threshold on |x| (2048 bins, 128 quantized levels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_BINS = 16384  # signed bins over [-R, R]; >= 4096 bins cover a one-sided distribution
QMIN, QMAX = -128, 127  # Ascend activations: int8, with an offset when asymmetric
QMAX_SYMMETRIC = 127
CHUNK = 32768  # values binned per step: the work arrays (32 bytes a value) stay in L2 cache
PERCENTILE_DEFAULT = 0.99999  # the `percentile` algorithm's point (ONNX Runtime's 99.999)
ENTROPY_BINS = 2048
ENTROPY_LEVELS = 128


class UpdateBuffers:
    """Work arrays for `TensorStats.update`, reused across batches and tensors.

    A batch is binned `chunk` values at a time through these fixed arrays, so an update allocates
    nothing the size of the tensor (no page faults, everything stays in cache), and one set
    serves every tensor of a calibration pass.
    """

    def __init__(self, chunk: int = CHUNK) -> None:
        self.chunk = max(chunk, 1)
        self.scaled64 = np.empty(self.chunk, dtype=np.float64)
        self.index = np.empty(self.chunk, dtype=np.intp)
        self.pairs = np.empty(self.chunk, dtype=np.complex128)
        self.pairs.imag = 1.0  # every value counts once
        self._totals = np.empty(0, dtype=np.complex128)

    def totals(self, size: int) -> np.ndarray:
        """A zeroed per-batch accumulator of `size` bins: (sum, count) as complex numbers."""
        if self._totals.size < size:
            self._totals = np.empty(size, dtype=np.complex128)
        totals = self._totals[:size]
        totals.fill(0.0)
        return totals


class TensorStats:
    """Running min/max and a fixed-size re-binning histogram of one tensor."""

    def __init__(self, bins: int = DEFAULT_BINS) -> None:
        if bins < 4 or bins % 2:
            raise ValueError("bins must be an even number >= 4")
        self.bins = bins
        self.count = 0
        self.min = math.inf
        self.max = -math.inf
        self.radius = 0.0  # histogram covers [-radius, radius]; 0 until non-zero data arrives
        self.counts = np.zeros(bins, dtype=np.float64)
        self.sums = np.zeros(bins, dtype=np.float64)
        self._pending_zeros = 0  # all-zero data seen before the range is known

    def update(self, data: np.ndarray, buffers: UpdateBuffers | None = None) -> None:
        """Add a batch. Exactly the arithmetic of the plain float64 version (same bins, same
        sums, bit for bit), done `CHUNK` values at a time in the reusable `buffers` (pass one
        set for all the tensors of a pass), with non-finite filtering only when needed."""
        values = np.asarray(data)
        if values.dtype not in (np.float32, np.float64):
            values = values.astype(np.float64)
        values = values.ravel()
        if values.size == 0:
            return
        lo, hi = float(values.min()), float(values.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):  # NaN or inf somewhere
            values = values[np.isfinite(values)]
            if values.size == 0:
                return
            lo, hi = float(values.min()), float(values.max())
        self.count += values.size
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        absmax = max(abs(lo), abs(hi))
        if absmax == 0.0 and self.radius == 0.0:
            self._pending_zeros += values.size
            return
        if self.radius == 0.0:
            # A power of two, so the final range depends only on the data's overall absmax:
            # streaming in any batch order gives exactly the one-shot histogram.
            self.radius = 2.0 ** math.ceil(math.log2(absmax))
            if self._pending_zeros:
                self.counts[self.bins // 2] += self._pending_zeros
                self._pending_zeros = 0
        while absmax > self.radius:
            self._double()
        if buffers is None:
            buffers = UpdateBuffers(min(values.size, CHUNK))
        # Non-negative float32 (post-ReLU, the common case) only reaches the upper half, and
        # its index is exact in float32 when the bin width is a power of two (bins is one).
        upper = values.dtype == np.float32 and lo >= 0.0 and self.bins & (self.bins - 1) == 0
        first = self.bins // 2 if upper else 0
        top = self.bins - 1 - first  # the last bin's index; only v == R computes one more
        clip = hi >= self.radius or not upper
        width = 2.0 * self.radius / self.bins
        factor = np.float32(self.bins / (2.0 * self.radius))
        # Each value is the pair (v, 1): one in-order `np.add.at` accumulates the bin sums in
        # the real part, in exactly bincount's order (from 0, element by element, one batch),
        # and the counts in the imaginary part (exact integers in float64).
        totals = buffers.totals(self.bins - first)
        for start in range(0, values.size, buffers.chunk):
            part = values[start : start + buffers.chunk]
            index = buffers.index[: part.size]
            if upper:
                # v * (1/w) in float32 is exact (w is a power of two; an underflow only happens
                # below 1, where the floor is 0 anyway), and floor(fl64(v + R) / w) ==
                # floor(v / w) + bins/2 for every v >= 0: multiples of w near R are float64
                # numbers, and v sits at least ulp32(v) or w * 2**-24 below the next one, far
                # more than float64's rounding step there (R * 2**-52). Computed in float32 and
                # truncated (== floor, v >= 0) straight into the index.
                np.multiply(part, factor, out=index, dtype=np.float32, casting="unsafe")
            else:
                # (v + R) / w in float64; v >= -R so it is >= 0 and truncation is floor.
                # (Negative v stay here: a tiny negative v rounds v + R up to R in float64.)
                scaled = np.add(
                    part, self.radius, out=buffers.scaled64[: part.size], dtype=np.float64
                )
                np.divide(scaled, width, out=index, dtype=np.float64, casting="unsafe")
            if clip:
                np.minimum(index, top, out=index)
            pairs = buffers.pairs[: part.size]
            pairs.real = part
            np.add.at(totals, index, pairs)
        self.counts[first:] += totals.imag
        self.sums[first:] += totals.real

    def _double(self) -> None:
        """Double the range: merge bin pairs into the middle half (exact, edges align)."""
        quarter = self.bins // 4
        for arr in (self.counts, self.sums):
            merged = arr.reshape(-1, 2).sum(axis=1)
            arr[:] = 0.0
            arr[quarter : quarter + merged.size] = merged
        self.radius *= 2.0

    def histogram(self) -> Histogram:
        """The non-empty histogram as representative values (bin means) and their weights."""
        if self.count == 0:
            raise ValueError("no data collected")
        width = 2.0 * self.radius / self.bins if self.radius else 0.0
        edges = -self.radius + width * np.arange(self.bins + 1)
        counts = self.counts.copy()
        sums = self.sums.copy()
        if self._pending_zeros:
            counts[self.bins // 2] += self._pending_zeros
        mask = counts > 0
        means = np.where(mask, sums / np.where(mask, counts, 1.0), 0.0)
        return Histogram(edges=edges, counts=counts, means=means, min=self.min, max=self.max)


@dataclass(frozen=True)
class Histogram:
    edges: np.ndarray  # bins + 1
    counts: np.ndarray
    means: np.ndarray  # representative value of each bin
    min: float
    max: float

    @property
    def total(self) -> float:
        return float(self.counts.sum())

    def quantile(self, q: float) -> float:
        """Value below which a fraction q of the data lies (linear within the bin)."""
        q = min(max(q, 0.0), 1.0)
        if q <= 0.0:
            return self.min
        if q >= 1.0:
            return self.max
        cdf = np.cumsum(self.counts)
        target = q * cdf[-1]
        i = int(np.searchsorted(cdf, target, side="left"))
        i = min(i, self.counts.size - 1)
        before = cdf[i - 1] if i else 0.0
        frac = (target - before) / self.counts[i] if self.counts[i] else 0.0
        value = self.edges[i] + frac * (self.edges[i + 1] - self.edges[i])
        return float(min(max(value, self.min), self.max))


# --- quantization parameters and error -------------------------------------------------------


def _with_zero(lo: float, hi: float) -> tuple[float, float]:
    return min(lo, 0.0), max(hi, 0.0)


def _widened(lo: float, hi: float, symmetric: bool) -> tuple[float, float]:
    """[lo, hi] as a quantization range: it must hold 0 (zero is exact in int8), and a symmetric
    quantizer's is [-m, m] with m the larger magnitude. One rule for every algorithm."""
    lo, hi = _with_zero(lo, hi)
    if symmetric:
        absmax = max(-lo, hi)
        return -absmax, absmax
    return lo, hi


def quant_params(lo: float, hi: float, symmetric: bool) -> tuple[float, int]:
    """Ascend/ONNX Runtime int8 (scale, zero_point) for range [lo, hi]."""
    lo, hi = _with_zero(lo, hi)
    if symmetric:
        absmax = max(-lo, hi)
        scale = absmax / QMAX_SYMMETRIC
        return (scale if scale > 0 else 1.0), 0
    scale = (hi - lo) / (QMAX - QMIN)
    if scale <= 0:
        return 1.0, 0
    zero_point = round(QMIN - lo / scale)
    return scale, int(min(max(zero_point, QMIN), QMAX))


def _quant_error(
    values: np.ndarray,
    weights: np.ndarray,
    scales: np.ndarray,
    zps: np.ndarray,
    qmin: int,
    qmax: int,
) -> np.ndarray:
    """Weighted MSE of quantize-dequantize for each candidate (scale, zp) (vectorised, in one
    candidates x values work array: the same operations in the same order, no temporaries)."""
    s = scales[:, None]
    z = zps[:, None]
    err = np.divide(values[None, :], s)
    np.round(err, out=err)
    err += z
    np.clip(err, qmin, qmax, out=err)
    err -= z
    err *= s
    err -= values[None, :]
    np.square(err, out=err)
    err *= weights[None, :]
    return np.asarray(err.sum(axis=1) / max(weights.sum(), 1.0))


def quant_mse(hist: Histogram, lo: float, hi: float, symmetric: bool) -> float:
    """Quantize-dequantize MSE of the histogrammed data with range [lo, hi]."""
    scale, zp = quant_params(lo, hi, symmetric)
    qmin = -QMAX_SYMMETRIC if symmetric else QMIN
    mask = hist.counts > 0
    err = _quant_error(
        hist.means[mask], hist.counts[mask], np.array([scale]), np.array([zp]), qmin, QMAX
    )
    return float(err[0])


# --- algorithms --------------------------------------------------------------------------------


def minmax_range(stats: TensorStats) -> tuple[float, float]:
    return _with_zero(stats.min, stats.max)


def percentile_range(
    stats: TensorStats,
    max_percentile: float = PERCENTILE_DEFAULT,
    min_percentile: float = PERCENTILE_DEFAULT,
    symmetric: bool = False,
) -> tuple[float, float]:
    """The max_percentile point from the top and the min_percentile point from the bottom."""
    hist = stats.histogram()
    hi = hist.quantile(max_percentile)
    lo = hist.quantile(1.0 - min_percentile)
    return _widened(lo, hi, symmetric)


def ifmr_range(
    stats: TensorStats,
    symmetric: bool,
    search_range_start: float = 0.7,
    search_range_end: float = 1.3,
    search_step: float = 0.01,
    max_percentile: float = 0.999999,
    min_percentile: float = 0.999999,
) -> tuple[float, float]:
    """AMCT IFMR: percentile start point, then the clip ratio with the least quantization MSE."""
    if search_step <= 0 or search_range_end < search_range_start:
        raise ValueError("IFMR search range must satisfy start <= end and step > 0")
    hist = stats.histogram()
    hi0 = max(hist.quantile(max_percentile), 0.0)
    lo0 = min(hist.quantile(1.0 - min_percentile), 0.0)
    if hi0 == lo0 == 0.0:
        return 0.0, 0.0
    count = math.floor((search_range_end - search_range_start) / search_step + 1e-9) + 1
    ratios = search_range_start + search_step * np.arange(count)
    mask = hist.counts > 0
    values, weights = hist.means[mask], hist.counts[mask]
    if symmetric:
        absmax = max(-lo0, hi0)
        scales = ratios * absmax / QMAX_SYMMETRIC
        zps = np.zeros_like(scales)
        errors = _quant_error(values, weights, scales, zps, -QMAX_SYMMETRIC, QMAX)
        best = float(ratios[int(np.argmin(errors))])
        return -best * absmax, best * absmax
    scales = ratios * (hi0 - lo0) / (QMAX - QMIN)
    zps = np.clip(np.round(QMIN - ratios * lo0 / scales), QMIN, QMAX)
    errors = _quant_error(values, weights, scales, zps, QMIN, QMAX)
    best = float(ratios[int(np.argmin(errors))])
    return best * lo0, best * hi0


def hfmg_range(stats: TensorStats, symmetric: bool, num_of_bins: int = 4096) -> tuple[float, float]:
    """AMCT HFMG: a `num_of_bins` histogram over [min, max] and a greedy range search.

    The search is the one HFMG describes and PyTorch's HistogramObserver implements: step the
    lower or upper cumulative-mass bound by 1e-5, moving whichever end travels further (the
    sparser tail), and stop as soon as the expected L2 error of mapping the histogram onto
    2^8 uniform levels over [start, end] (uniform density within each bin) rises.
    """
    lo0, hi0 = minmax_range(stats)
    if hi0 == lo0:
        return lo0, hi0
    fine = stats.histogram()
    mask = fine.counts > 0
    width = (hi0 - lo0) / num_of_bins
    index = np.clip(((fine.means[mask] - lo0) / width).astype(np.int64), 0, num_of_bins - 1)
    hist = np.bincount(index, weights=fine.counts[mask], minlength=num_of_bins)
    cdf = np.cumsum(hist)
    total = cdf[-1]
    density = hist / width
    src_begin0 = np.arange(num_of_bins) * width
    levels = QMAX - QMIN + 1

    def error(start: int, end: int) -> float:
        dst = width * (end - start + 1) / levels
        begin = src_begin0 - start * width
        stop = begin + width
        dst_begin = np.clip(np.floor(begin / dst), 0, levels - 1)
        dst_end = np.clip(np.floor(stop / dst), 0, levels - 1)
        half = dst / 2

        def norm(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
            return np.asarray(density * (np.power(b, 3) - np.power(a, 3)) / 3.0)

        total_norm = norm(begin - (dst_begin + 0.5) * dst, half)
        total_norm = total_norm + (dst_end - dst_begin - 1) * norm(-half, half)
        total_norm = total_norm + norm(-half, stop - (dst_end * dst + half))
        return float(total_norm.sum())

    start, end = 0, num_of_bins - 1
    best = math.inf
    alpha, beta = 0.0, 1.0
    step = 1e-5
    while alpha < beta:
        next_alpha, next_beta = alpha + step, beta - step
        left = start
        while left < end and cdf[left] < next_alpha * total:
            left += 1
        right = end
        while right > start and cdf[right] > next_beta * total:
            right -= 1
        if left - start > end - right:
            candidate, alpha = (left, end), next_alpha
        else:
            candidate, beta = (start, right), next_beta
        if candidate == (start, end):
            continue
        err = error(*candidate)
        if err > best:
            break
        best = err
        start, end = candidate
    return _widened(lo0 + start * width, lo0 + (end + 1) * width, symmetric)


def entropy_range(
    stats: TensorStats,
    bins: int = ENTROPY_BINS,
    levels: int = ENTROPY_LEVELS,
    symmetric: bool = True,
) -> tuple[float, float]:
    """TensorRT's KL threshold T on |x|: [-T, T], trimmed to the data when asymmetric."""
    fine = stats.histogram()
    absmax = max(-fine.min, fine.max)
    if absmax == 0.0:
        return 0.0, 0.0
    mask = fine.counts > 0
    width = absmax / bins
    index = np.clip((np.abs(fine.means[mask]) / width).astype(np.int64), 0, bins - 1)
    hist = np.bincount(index, weights=fine.counts[mask], minlength=bins)
    # Flatten the spike of exact zeros (ReLU outputs) as NVIDIA's pytorch-quantization does,
    # otherwise it dominates the divergence and the threshold clips far too much.
    hist[0] = hist[1]
    best_kl, best_i = math.inf, bins
    for i in range(levels, bins + 1):
        reference = hist[:i].copy()
        reference[i - 1] += hist[i:].sum()
        kl = _kl_after_quantizing(reference, hist[:i], levels)
        if kl < best_kl:
            best_kl, best_i = kl, i
    threshold = best_i * width
    if symmetric:
        return -threshold, threshold
    lo, hi = _with_zero(fine.min, fine.max)
    return max(lo, -threshold), min(hi, threshold)


def _kl_after_quantizing(reference: np.ndarray, sliced: np.ndarray, levels: int) -> float:
    """KL(P || Q) with Q the `levels`-level quantization of the sliced histogram, expanded back."""
    n = sliced.size
    nonzero = sliced != 0
    # Split n bins into `levels` groups (as TensorRT: equal-size merges, remainder to the last).
    per = n // levels
    group = np.minimum(np.arange(n) // per, levels - 1)
    sums = np.bincount(group, weights=sliced, minlength=levels)
    nz = np.bincount(group, weights=nonzero.astype(np.float64), minlength=levels)
    expanded = np.where(nonzero, sums[group] / np.maximum(nz[group], 1.0), 0.0)
    p = reference / reference.sum()
    q_sum = expanded.sum()
    if q_sum == 0:
        return math.inf
    q = expanded / q_sum
    valid = p > 0
    if np.any(q[valid] == 0):
        # Smooth as ORT does: tiny mass where Q is empty but P is not.
        eps = 1e-4
        q = np.where(q == 0, eps, q)
        q = q / q.sum()
    return float(np.sum(p[valid] * np.log(p[valid] / q[valid])))


@dataclass(frozen=True)
class RangeRequest:
    """Which algorithm and parameters to apply to one tensor's statistics."""

    algorithm: str  # ifmr | hfmg | minmax | percentile | entropy
    symmetric: bool
    search_range_start: float = 0.7
    search_range_end: float = 1.3
    search_step: float = 0.01
    max_percentile: float = 0.999999
    min_percentile: float = 0.999999
    num_of_bins: int = 4096


def compute_range(stats: TensorStats, request: RangeRequest) -> tuple[float, float]:
    """Apply the requested algorithm; always returns lo <= 0 <= hi."""
    algo = request.algorithm
    if algo == "minmax":
        lo, hi = _widened(*minmax_range(stats), request.symmetric)
    elif algo == "percentile":
        lo, hi = percentile_range(stats, PERCENTILE_DEFAULT, PERCENTILE_DEFAULT, request.symmetric)
    elif algo == "ifmr":
        lo, hi = ifmr_range(
            stats,
            request.symmetric,
            request.search_range_start,
            request.search_range_end,
            request.search_step,
            request.max_percentile,
            request.min_percentile,
        )
    elif algo == "hfmg":
        lo, hi = hfmg_range(stats, request.symmetric, request.num_of_bins)
    elif algo == "entropy":
        lo, hi = entropy_range(stats, symmetric=request.symmetric)
    else:
        raise ValueError(f"unknown calibration algorithm {algo!r}")
    return _with_zero(float(lo), float(hi))
