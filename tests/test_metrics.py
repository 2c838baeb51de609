from __future__ import annotations

import math

import numpy as np
import pytest

from ascend_quant import metrics as M
from ascend_quant.comparator import ErrorAccumulator

EPS = float(np.finfo(np.float32).eps)


def test_cosine_hand_computed() -> None:
    g = np.array([1.0, 2.0, 2.0])
    m = np.array([2.0, 0.0, 1.0])
    # g·m = 4, |g| = 3, |m| = sqrt(5)
    assert M.cosine(g, m) == pytest.approx(round(4 / (3 * math.sqrt(5)), 10), abs=1e-12)
    assert M.cosine(g, -g) == -1.0


def test_cosine_zero_cases() -> None:
    zeros = np.zeros(4)
    assert M.cosine(zeros, zeros) == 1.0
    undefined = M.cosine(zeros, np.array([0.0, 1.0, 0.0, 0.0]))
    assert isinstance(undefined, M.Undefined)
    assert undefined.reason == "cosine undefined: golden output is all zero"
    assert M.cosine(np.ones(4), zeros) == 0.0


def test_compare_arrays_all_zero_golden_reports_none_with_reason() -> None:
    result = M.compare_arrays(np.zeros((1, 8)), np.full((1, 8), 0.5), kind="tensor")
    assert result["cosine"] is None
    assert "cosine undefined: golden output is all zero" in result["notes"]
    # msit: relative Euclidean distance is 0 when ||g|| <= eps; RMSE still sees the error
    assert result["rel_euclidean"] == 0.0
    assert result["rmse"] == pytest.approx(0.5)


def test_relative_error_mask_and_mean_counts_zeros() -> None:
    g = np.array([2.0, 0.0, -4.0, 1e-9])
    m = np.array([3.0, 5.0, -2.0, 7.0])
    # |m/g-1|: 0.5, masked, 0.5, masked -> max 0.5, mean (0.5+0+0.5+0)/4
    assert M.max_relative_error(g, m) == pytest.approx(0.5)
    assert M.mean_relative_error(g, m) == pytest.approx(0.25)


def test_abs_errors_msit_masked_and_unmasked() -> None:
    g = np.array([1.0, 0.0, 3.0, 0.0])
    m = np.array([1.5, 9.0, 2.0, 0.0])
    assert M.msit_max_abs_error(g, m) == pytest.approx(1.0)  # the 9 sits where g == 0
    assert M.msit_mean_abs_error(g, m) == pytest.approx((0.5 + 0 + 1.0 + 0) / 4)
    assert M.max_abs_error(g, m) == pytest.approx(9.0)
    assert M.mae(g, m) == pytest.approx((0.5 + 9.0 + 1.0 + 0.0) / 4)


def test_rmse_and_relative_euclidean() -> None:
    g = np.array([3.0, 4.0])
    m = np.array([3.0, 5.0])
    assert M.rmse(g, m) == pytest.approx(math.sqrt(0.5))
    assert M.relative_euclidean(g, m) == pytest.approx(1 / 5)
    assert M.relative_euclidean(np.array([EPS / 10, 0.0]), m) == 0.0


def test_kl_hand_computed_and_properties() -> None:
    g = np.array([0.0, math.log(3.0)])  # softmax -> [0.25, 0.75]
    m = np.zeros(2)  # softmax -> [0.5, 0.5]
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert M.kl_divergence(g, m) == pytest.approx(expected)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert M.kl_divergence(a, a) == pytest.approx(0.0, abs=1e-15)
    assert M.kl_divergence(a, b) > 0
    assert M.kl_divergence(a, b) != pytest.approx(M.kl_divergence(b, a))  # not symmetric
    assert M.kl_divergence(a, a + 100.0) == pytest.approx(0.0, abs=1e-12)  # shift-invariant
    # large logits neither overflow nor underflow
    assert math.isfinite(M.kl_divergence(a * 1000, b * 1000))


def test_psnr_known_cases() -> None:
    g = np.random.default_rng(1).random((1, 3, 16, 16))
    assert M.psnr(g, g) == math.inf
    shifted = g + 0.1  # golden in [0, 1] -> L = 1, MSE = 0.01 -> 20 dB
    assert M.psnr(g, shifted) == pytest.approx(20.0)
    g255 = g * 200 + 10  # L = max - min of the golden
    value_range = float(g255.max() - g255.min())
    assert M.psnr(g255, g255 + 2.0) == pytest.approx(10 * math.log10(value_range**2 / 4.0))


def test_data_range_rule() -> None:
    assert M.data_range(0.0, 1.0) == 1.0
    assert M.data_range(0.2, 0.7) == 1.0
    assert M.data_range(-1.0, 1.0) == 2.0
    assert M.data_range(0.0, 255.0) == 255.0


def test_ssim_known_cases() -> None:
    rng = np.random.default_rng(2)
    g = rng.random((2, 3, 20, 20))
    assert M.ssim(g, g) == pytest.approx(1.0)
    # constant images: only the luminance term remains
    c, d = 0.4, 0.1
    flat = np.full((1, 1, 16, 16), c)
    c1 = (0.01 * 1.0) ** 2
    expected = (2 * c * (c + d) + c1) / (c**2 + (c + d) ** 2 + c1)
    assert M.ssim(flat, flat + d, value_range=1.0) == pytest.approx(expected)
    noisy = g + rng.normal(0, 0.2, g.shape)
    assert 0 < M.ssim(g, noisy) < 0.9  # type: ignore[operator]
    # NHWC gives the same as NCHW
    assert M.ssim(g.transpose(0, 2, 3, 1), noisy.transpose(0, 2, 3, 1)) == pytest.approx(
        M.ssim(g, noisy)
    )
    assert isinstance(M.ssim(np.zeros((1, 3, 8, 8)), np.zeros((1, 3, 8, 8))), M.Undefined)


def test_gaussian_window() -> None:
    w = M.gaussian_window()
    assert w.shape == (11,) and w.sum() == pytest.approx(1.0)
    assert w[5] / w[4] == pytest.approx(math.exp(1 / (2 * 1.5**2)))


def test_top_k() -> None:
    g = np.array([[0.1, 0.9, 0.0, 0.3, 0.2, 0.5, 0.4], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    m = np.array([[0.1, 0.2, 0.0, 0.3, 0.9, 0.5, 0.4], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    assert M.top1_agreement(g, m) == 0.5
    # row 0: top5 g = {1,5,6,3,4}, m = {4,5,6,3,1} -> 5/5; row 1 identical -> 5/5
    assert M.top5_overlap(g, m) == 1.0
    m2 = g.copy()
    m2[0] = [5, 0, 4, 0, 0, 0, 0]  # top5 = {0,2,1,3,4} vs {1,5,6,3,4}: {1,3,4} -> 3/5
    assert M.top5_overlap(g, m2) == pytest.approx((3 / 5 + 1) / 2)
    two = np.array([[0.2, 0.8]])
    assert M.top5_overlap(two, np.array([[0.9, 0.1]])) == 1.0  # k = C = 2


def test_compare_arrays_kinds() -> None:
    rng = np.random.default_rng(3)
    image = rng.random((1, 3, 16, 16))
    result = M.compare_arrays(image, image + 0.01)
    assert {"psnr_db", "ssim"} <= result.keys() and "top1_agreement" not in result
    scores = rng.normal(size=(4, 10))
    result = M.compare_arrays(scores, scores)
    assert result["top1_agreement"] == 1.0 and result["top5_overlap"] == 1.0
    assert result["cosine"] == 1.0 and result["kl"] == pytest.approx(0.0, abs=1e-12)
    plain = M.compare_arrays(rng.normal(size=(2, 5, 7)), rng.normal(size=(2, 5, 7)))
    assert "psnr_db" not in plain and "top1_agreement" not in plain
    with pytest.raises(ValueError):
        M.compare_arrays(scores, scores, kind="image")
    with pytest.raises(ValueError):
        M.compare_arrays(scores, scores[:2])


def test_compare_arrays_matches_individual_functions() -> None:
    rng = np.random.default_rng(4)
    g = rng.normal(size=(1, 3, 24, 24))
    m = g + rng.normal(0, 0.05, g.shape)
    r = M.compare_arrays(g, m)
    assert r["cosine"] == M.cosine(g, m)
    assert r["max_rel_error"] == pytest.approx(M.max_relative_error(g, m))
    assert r["mean_rel_error"] == pytest.approx(M.mean_relative_error(g, m))
    assert r["msit_mean_abs_error"] == pytest.approx(M.msit_mean_abs_error(g, m))
    assert r["mae"] == pytest.approx(M.mae(g, m))
    assert r["rmse"] == pytest.approx(M.rmse(g, m))
    assert r["rel_euclidean"] == pytest.approx(M.relative_euclidean(g, m))
    assert r["kl"] is None  # an image is not a distribution over its last axis
    assert any(n.startswith("KL not applicable") for n in r["notes"])
    assert r["psnr_db"] == pytest.approx(M.psnr(g, m))
    assert r["ssim"] == pytest.approx(M.ssim(g, m))


def test_accumulator_equals_concatenation() -> None:
    rng = np.random.default_rng(5)
    g = rng.normal(size=(6, 3, 16, 16)) * 3
    m = g + rng.normal(0, 0.1, g.shape)
    value_range = M.data_range(float(g.min()), float(g.max()))
    acc = ErrorAccumulator("image", value_range)
    per_sample = [acc.update(g[i : i + 1], m[i : i + 1]) for i in range(6)]
    total = acc.result()
    whole = M.compare_arrays(g, m, kind="image", value_range=value_range)
    for key in ("cosine", "mae", "rmse", "rel_euclidean", "max_rel_error", "psnr_db", "ssim"):
        assert total[key] == pytest.approx(whole[key], rel=1e-9), key
    assert total["kl"] is None and whole["kl"] is None
    # class scores: KL per row of their softmax, the mean over rows equals the concatenation's
    scores = rng.normal(size=(6, 10))
    noisy = scores + rng.normal(0, 0.2, scores.shape)
    acc = ErrorAccumulator("classes")
    for i in range(6):
        acc.update(scores[i : i + 1], noisy[i : i + 1])
    expected = np.mean([M.kl_divergence(scores[i], noisy[i]) for i in range(6)])
    assert acc.result()["kl"] == pytest.approx(expected, rel=1e-9)
    assert total["max_abs_error"] == max(s["max_abs_error"] for s in per_sample)


def test_nonfinite_candidate_is_noted_and_nan() -> None:
    g = np.full((1, 4), 0.25)  # one probability row: KL applies, and is NaN
    m = np.array([[1.0, np.inf, 1.0, np.nan]])
    r = M.compare_arrays(g, m, kind="tensor")
    assert math.isnan(r["kl"])
    assert any("NaN/Inf" in n for n in r["notes"])


def test_format_value() -> None:
    assert M.format_value("cosine", 0.9999999562) == "0.9999999562"
    assert M.format_value("rmse", 0.000326879) == "0.000326879"
    assert M.format_value("psnr_db", math.inf) == "inf"
    assert M.format_value("cosine", None) == "n/a"


def test_kl_only_where_the_output_is_a_distribution() -> None:
    """Hand-computed: KL([0.5, 0.5] || [0.25, 0.75]) = 0.5·ln 2 + 0.5·ln(2/3)."""
    p = np.array([[0.5, 0.5], [1.0, 0.0]])
    q = np.array([[0.25, 0.75], [1.0, 0.0]])
    expected = (0.5 * math.log(2) + 0.5 * math.log(2 / 3) + 0.0) / 2
    assert M.row_distribution(p) == "probabilities"
    r = M.compare_arrays(p, q, kind="tensor")
    assert r["kl"] == pytest.approx(expected, rel=1e-5)  # q = 0 is clipped at float32 eps
    # the same rows as log-probabilities
    assert M.row_distribution(np.log(np.array([[0.5, 0.5]]))) == "log-probabilities"
    # a feature map / image is not a distribution: not applicable, with the reason
    feature = np.random.default_rng(0).normal(size=(1, 4, 8, 8))
    r = M.compare_arrays(feature, feature * 1.1, kind="tensor")
    assert r["kl"] is None and any("KL not applicable" in n for n in r["notes"])
    # a CTC-like [T, N, C] probability output: per-step KL, not one KL over the whole tensor
    steps = np.random.default_rng(1).random((20, 1, 6))
    steps /= steps.sum(axis=-1, keepdims=True)
    per_row = M.row_kl(steps, steps[::-1], "probabilities")
    assert per_row.shape == (20,)
    assert M.compare_arrays(steps, steps[::-1])["kl"] == pytest.approx(per_row.mean())
