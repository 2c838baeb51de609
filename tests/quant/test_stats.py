from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import onnx
import pytest
import tiny_models

from ascend_quant.config import QuantConfig
from ascend_quant.quant.calibrate import collect
from ascend_quant.quant.qdq import quantize_model
from ascend_quant.quant.stats import (
    RangeRequest,
    TensorStats,
    UpdateBuffers,
    _quant_error,
    compute_range,
    entropy_range,
    hfmg_range,
    ifmr_range,
    minmax_range,
    percentile_range,
    quant_mse,
    quant_params,
)


def _stats(data: np.ndarray, chunks: int = 1) -> TensorStats:
    stats = TensorStats()
    for part in np.array_split(data, chunks):
        stats.update(part)
    return stats


def test_minmax_is_exact_and_includes_zero():
    data = np.array([0.5, 3.25, 1.0], dtype=np.float32)
    assert minmax_range(_stats(data)) == (0.0, 3.25)
    data = np.array([-7.5, -1.0, 2.0], dtype=np.float32)
    assert minmax_range(_stats(data)) == (-7.5, 2.0)


def test_streaming_equals_one_shot():
    rng = np.random.default_rng(0)
    # growing magnitudes force several range doublings while streaming
    data = np.concatenate([rng.normal(0, s, 5000) for s in (0.01, 0.5, 3.0, 40.0)])
    one = _stats(data)
    many = _stats(data, chunks=37)
    assert one.radius == many.radius
    np.testing.assert_array_equal(one.counts, many.counts)
    np.testing.assert_allclose(one.sums, many.sums, rtol=1e-9, atol=1e-9)
    for algo in ("minmax", "percentile", "ifmr", "hfmg", "entropy"):
        request = RangeRequest(algo, symmetric=False)
        assert compute_range(one, request) == pytest.approx(compute_range(many, request))


def test_histogram_memory_is_fixed():
    stats = TensorStats(bins=1024)
    for seed in range(20):
        stats.update(np.random.default_rng(seed).normal(size=10_000) * (seed + 1))
    assert stats.counts.shape == (1024,) and stats.count == 200_000
    assert stats.counts.sum() == 200_000


def test_percentile_clips_outliers():
    data = np.concatenate([np.linspace(-1, 1, 100_000), [50.0]])
    lo, hi = percentile_range(_stats(data), 0.9999, 0.9999)
    assert -1.01 < lo < -0.99 and 0.99 < hi < 1.01
    lo_s, hi_s = percentile_range(_stats(data), 0.9999, 0.9999, symmetric=True)
    assert lo_s == -hi_s


def test_ifmr_clips_below_max_for_heavy_tails_and_beats_minmax():
    data = np.random.default_rng(1).standard_t(2, 200_000)
    stats = _stats(data)
    lo, hi = ifmr_range(stats, symmetric=False)
    assert hi < stats.max and lo > stats.min
    hist = stats.histogram()
    assert quant_mse(hist, lo, hi, False) < quant_mse(hist, stats.min, stats.max, False)
    # the search is bounded by search_range_start: never below 0.7 x the start point
    assert hi >= 0.7 * hist.quantile(0.999999) - 1e-9


def test_ifmr_keeps_full_range_for_uniform_data():
    data = np.random.default_rng(2).uniform(-1, 1, 100_000)
    lo, hi = ifmr_range(_stats(data), symmetric=True)
    assert lo == -hi and 0.97 < hi <= 1.02


def test_ifmr_search_range_is_honoured():
    data = np.random.default_rng(3).standard_t(2, 50_000)
    stats = _stats(data)
    start = stats.histogram().quantile(0.999999)
    _, hi = ifmr_range(stats, False, 0.95, 1.0, 0.05)
    assert hi == pytest.approx(0.95 * start) or hi == pytest.approx(start)


def test_hfmg_shrinks_sparse_tail():
    data = np.concatenate([np.maximum(np.random.default_rng(4).normal(size=100_000), 0), [30]])
    lo, hi = hfmg_range(_stats(data), symmetric=False, num_of_bins=4096)
    assert lo == 0.0 and hi < 30.0
    lo_s, hi_s = hfmg_range(_stats(data), symmetric=True)
    assert lo_s == -hi_s


def test_entropy_threshold_is_symmetric_and_inside_range():
    data = np.random.default_rng(5).laplace(size=100_000)
    stats = _stats(data)
    lo, hi = entropy_range(stats)
    assert lo == -hi and 0 < hi < max(-stats.min, stats.max)


def test_quant_params_match_ascend_int8():
    scale, zero = quant_params(-1.0, 3.0, symmetric=False)
    assert scale == pytest.approx(4.0 / 255) and zero == round(-128 + 1.0 / scale)
    scale, zero = quant_params(-1.0, 3.0, symmetric=True)
    assert scale == pytest.approx(3.0 / 127) and zero == 0


def test_all_zero_tensor():
    stats = _stats(np.zeros(100))
    for algo in ("minmax", "percentile", "ifmr", "hfmg", "entropy"):
        assert compute_range(stats, RangeRequest(algo, symmetric=False)) == (0.0, 0.0)


def test_unknown_algorithm():
    with pytest.raises(ValueError):
        compute_range(_stats(np.ones(4)), RangeRequest("bogus", symmetric=True))


def _reference_update(stats: TensorStats, data: np.ndarray) -> None:
    """The plain float64 streaming update the fast one must match bit for bit."""
    values = np.asarray(data, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    stats.count += values.size
    lo, hi = float(values.min()), float(values.max())
    stats.min, stats.max = min(stats.min, lo), max(stats.max, hi)
    absmax = max(abs(lo), abs(hi))
    if stats.radius == 0.0:
        stats.radius = 2.0 ** np.ceil(np.log2(absmax))
    while absmax > stats.radius:
        stats._double()
    width = 2.0 * stats.radius / stats.bins
    index = np.floor((values + stats.radius) / width).astype(np.int64)
    np.clip(index, 0, stats.bins - 1, out=index)
    stats.counts += np.bincount(index, minlength=stats.bins)
    stats.sums += np.bincount(index, weights=values, minlength=stats.bins)


def test_fast_update_is_bit_identical_to_the_float64_reference() -> None:
    rng = np.random.default_rng(3)
    batches = [
        np.maximum(rng.standard_normal((2, 8, 16, 16)).astype(np.float32) * scale, 0)  # ReLU
        for scale in (1.0, 0.5, 3.0)
    ]
    batches.append(rng.standard_normal((2, 8, 16, 16)).astype(np.float32))  # few zeros
    batches[1][0, 0, 0, :3] = [np.nan, np.inf, -0.0]
    fast, reference = TensorStats(), TensorStats()
    for batch in batches:
        fast.update(batch)
        _reference_update(reference, batch)
    assert fast.count == reference.count and fast.radius == reference.radius
    assert np.array_equal(fast.counts, reference.counts)
    assert np.array_equal(fast.sums, reference.sums)


@pytest.mark.parametrize("radius_exp", [-20, 0, 3, 20])
def test_float32_index_route_matches_the_reference_at_bin_edges(radius_exp: int) -> None:
    """Non-negative float32 data takes the float32 index route: check it where rounding bites
    (just below every bin edge, subnormals, exactly R, radii far from 1)."""
    radius = 2.0**radius_exp
    width = 2.0 * radius / 16384
    edges = width * np.arange(1, 8193)
    below = np.nextafter(edges.astype(np.float32), np.float32(0))  # just under each edge
    tiny = np.array([1e-45, 1e-38, 1e-30, width * 1e-9], dtype=np.float32)
    rng = np.random.default_rng(radius_exp + 100)
    batch = np.concatenate(
        [below, edges.astype(np.float32), tiny, rng.random(5000, dtype=np.float32) * radius]
    ).astype(np.float32)
    batch = np.append(batch, np.float32(radius))
    fast, reference = TensorStats(), TensorStats()
    fast.update(batch)
    _reference_update(reference, batch)
    assert fast.radius == reference.radius
    assert np.array_equal(fast.counts, reference.counts)
    assert np.array_equal(fast.sums, reference.sums)


def _assert_same_histogram(fast: TensorStats, reference: TensorStats) -> None:
    assert fast.count == reference.count and fast.radius == reference.radius
    assert (fast.min, fast.max) == (reference.min, reference.max)
    assert np.array_equal(fast.counts, reference.counts)
    assert np.array_equal(fast.sums, reference.sums)
    # Equal also as bytes: no -0.0 where the reference has 0.0.
    assert fast.sums.tobytes() == reference.sums.tobytes()


@pytest.mark.parametrize("chunk", [1, 7, 64, 4096])
def test_chunked_update_with_shared_buffers_is_bit_identical(chunk: int) -> None:
    """The update bins through small reusable buffers, one set shared by several tensors: the
    sums must still be accumulated in bincount's order (chunk boundaries must not show), and
    one tensor's leftovers must not leak into another's bins."""
    rng = np.random.default_rng(11)
    relu = [
        np.maximum(rng.standard_normal((1, 4, 9, 13)), 0).astype(np.float32) * s
        for s in (1.0, 0.25, 6.0)
    ]
    # tiny values next to large ones: float64 sums of the bin at zero are order-sensitive
    relu[0].flat[::5] = np.float32(1e-30)
    relu[1].flat[:4] = [0.0, -0.0, np.float32(1e-45), np.float32(4.0)]  # -0.0 counts as >= 0
    # many values of mixed magnitudes inside the bins next to zero (width 2R/bins)
    near_zero = rng.random(3000) * 10.0 ** rng.uniform(-9, 0, 3000) * (2 * 8.0 / 16384)
    relu.append(np.append(near_zero, 8.0).astype(np.float32))
    signed = [rng.standard_normal(300).astype(np.float32) * s for s in (0.5, 3.0)]
    signed[0][:3] = [-1e-30, 1e-30, -0.0]
    signed.append(np.append(near_zero * rng.choice([-1.0, 1.0], near_zero.size), 8.0))
    signed[-1] = signed[-1].astype(np.float32)
    doubles = [rng.standard_normal(257) * 1e3, rng.standard_normal(50), signed[-1] * 1e3]
    buffers = UpdateBuffers(chunk)
    tensors = {"relu": relu, "signed": signed, "doubles": doubles}
    fast = {name: TensorStats() for name in tensors}
    reference = {name: TensorStats() for name in tensors}
    for step in range(4):  # interleave the tensors the way a calibration pass does
        for name, batches in tensors.items():
            if step < len(batches):
                fast[name].update(batches[step], buffers)
                _reference_update(reference[name], batches[step])
    for name in tensors:
        _assert_same_histogram(fast[name], reference[name])


@pytest.mark.parametrize("bins", [12, 1000, 16380])
def test_bin_counts_that_are_not_powers_of_two_match_the_reference(bins: int) -> None:
    """The float32 index route is exact only for a power-of-two bin width; other counts take
    the float64 route (this failed for most such counts before)."""
    rng = np.random.default_rng(bins)
    fast, reference = TensorStats(bins), TensorStats(bins)
    for scale in (0.3, 7.0, 90.0):
        batch = (rng.random(20000) * scale).astype(np.float32)
        fast.update(batch)
        _reference_update(reference, batch)
    _assert_same_histogram(fast, reference)


def test_update_without_buffers_and_integer_data_match_the_reference() -> None:
    data = np.arange(-50, 200, dtype=np.int32).reshape(5, 50)
    fast, reference = TensorStats(), TensorStats()
    fast.update(data)
    _reference_update(reference, data)
    _assert_same_histogram(fast, reference)


def _plain_quant_error(
    values: np.ndarray,
    weights: np.ndarray,
    scales: np.ndarray,
    zps: np.ndarray,
    qmin: int,
    qmax: int,
) -> np.ndarray:
    """The textbook expression the in-place `_quant_error` must reproduce bit for bit."""
    s, z = scales[:, None], zps[:, None]
    q = np.clip(np.round(values[None, :] / s) + z, qmin, qmax)
    err = ((q - z) * s - values[None, :]) ** 2
    return np.asarray((err * weights[None, :]).sum(axis=1) / max(weights.sum(), 1.0))


@pytest.mark.parametrize("symmetric", [True, False])
def test_in_place_quant_error_is_bit_identical(symmetric: bool) -> None:
    rng = np.random.default_rng(5)
    values = np.sort(rng.standard_normal(3001) * 7.0)
    weights = rng.integers(1, 500, values.size).astype(np.float64)
    ratios = 0.7 + 0.01 * np.arange(61)
    if symmetric:
        scales = ratios * np.abs(values).max() / 127
        zps, qmin = np.zeros_like(scales), -127
    else:
        scales = ratios * (values.max() - values.min()) / 255
        zps, qmin = np.clip(np.round(-128 - ratios * values.min() / scales), -128, 127), -128
    fast = _quant_error(values, weights, scales, zps, qmin, 127)
    assert fast.tobytes() == _plain_quant_error(values, weights, scales, zps, qmin, 127).tobytes()


@pytest.mark.parametrize("algorithm", ["ifmr", "hfmg"])
@pytest.mark.parametrize("builder", [tiny_models.conv_net, tiny_models.classifier])
def test_int8_model_bytes_equal_those_from_the_reference_update(
    monkeypatch: pytest.MonkeyPatch,
    algorithm: Literal["ifmr", "hfmg"],
    builder: Callable[[], onnx.ModelProto],
) -> None:
    """The fast histogram update changes no byte of the calibrated INT8 model: the same model
    from the plain float64 reference update (signed inputs, post-ReLU tensors, several batches)."""
    model = builder()
    rng = np.random.default_rng(2)
    feeds = [
        {"input": (rng.standard_normal((1, 3, 16, 16)) * scale).astype(np.float32)}
        for scale in (1.0, 0.3, 2.5, 1.7)
    ]
    config = QuantConfig(algorithm=algorithm)
    fast, fast_ranges = quantize_model(model, config, iter(feeds))
    monkeypatch.setattr(
        TensorStats, "update", lambda self, data, buffers=None: _reference_update(self, data)
    )
    reference, reference_ranges = quantize_model(model, config, iter(feeds))
    assert fast_ranges == reference_ranges
    assert fast.model.SerializeToString() == reference.model.SerializeToString()


def test_a_failing_histogram_update_on_the_worker_thread_is_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Outputs are binned on a worker thread: its error reaches the caller, nothing hangs."""
    real_update = TensorStats.update

    def failing(self: TensorStats, data: np.ndarray, buffers: UpdateBuffers | None = None) -> None:
        if np.asarray(data).shape[1] == 8:  # r1, the hidden ReLU output
            raise RuntimeError("binning failed")
        real_update(self, data, buffers)

    monkeypatch.setattr(TensorStats, "update", failing)
    rng = np.random.default_rng(0)
    feeds = ({"input": rng.random((1, 3, 16, 16), dtype=np.float32)} for _ in range(5))
    with pytest.raises(RuntimeError, match="binning failed"):
        collect(tiny_models.conv_net(), ["input", "r1"], feeds)
