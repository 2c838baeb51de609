"""Accuracy metrics with msit's exact definitions, plus image and classification metrics.

Notation: g is the golden (FP32) output, m is mine (the candidate), both flattened and taken in
float64; eps is float32 machine epsilon. The msit definitions come from
`msit/components/utils/cmp_algorithm.py` (see docs/metrics.md for every formula).

Each metric is a small pure function. `compare_arrays` computes every metric that applies to a
pair of arrays. Over many samples, the same metrics come from additive statistics (`Stats`, one
sample's from `sample_stats`, `finalize` turns them into values), so the aggregate over a whole
evaluation set never needs all outputs in memory and equals the metric of the concatenated
outputs; `comparator.ErrorAccumulator` is the one accumulator built on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

EPS = float(np.finfo(np.float32).eps)

Kind = Literal["auto", "image", "classes", "tensor"]

GOLDEN_ZERO_COSINE = "cosine undefined: golden output is all zero"

# Gaussian window of the reference SSIM (Wang et al. 2004).
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
TOP_K = 5
# A golden row whose best two classes are within one FP16 step (2^-10 relative) of its largest
# |score| is a tie: rounding the output to FP16 alone can reorder them, so no FP16 or INT8 build
# can be held to the FP32 order (a transformer's FP16 build failed top-1 on one such row, its
# top-2 logits 0.0018 apart at 2.25).
TIE_STEP = 2.0**-10

# Display names, in display order.
METRIC_LABELS = {
    "cosine": "cosine similarity",
    "rel_euclidean": "relative Euclidean distance",
    "kl": "KL divergence",
    "rmse": "RMSE",
    "mean_rel_error": "mean relative error (msit)",
    "max_rel_error": "max relative error (msit)",
    "mae": "MAE (all elements)",
    "max_abs_error": "max abs error (all elements)",
    "msit_mean_abs_error": "mean abs error (msit, |g| > eps)",
    "msit_max_abs_error": "max abs error (msit, |g| > eps)",
    "psnr_db": "PSNR (dB)",
    "ssim": "SSIM",
    "top1_agreement": "top-1 agreement",
    "top5_overlap": "top-5 overlap",
}

# Direction of each metric: True when larger is better (used for "worst sample" and verdicts).
HIGHER_IS_BETTER = {
    "cosine": True,
    "psnr_db": True,
    "ssim": True,
    "top1_agreement": True,
    "top5_overlap": True,
}


def format_value(key: str, value: float | str | None) -> str:
    """A metric for people: similarities near 1 keep enough digits to tell 0.99999 from 1."""
    if value is None:
        return "n/a"
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    return f"{number:.10g}" if key in ("cosine", "ssim") else f"{number:.6g}"


@dataclass(frozen=True)
class Undefined:
    """A metric that has no value for these inputs, with the reason to show instead of a number."""

    reason: str


def _flat(a: np.ndarray) -> np.ndarray:
    return np.asarray(a).astype(np.float64, copy=False).reshape(-1)


def _pair(golden: np.ndarray, mine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g, m = _flat(golden), _flat(mine)
    if g.size != m.size:
        raise ValueError(f"golden has {g.size} values but mine has {m.size}")
    return g, m


# --- msit metrics ----------------------------------------------------------------------------


def cosine(golden: np.ndarray, mine: np.ndarray) -> float | Undefined:
    """g·m / (‖g‖‖m‖), rounded to 10 decimals as msit does.

    Both all zero: 1.0 (msit). Golden all zero but mine not: Undefined (msit/torch would print 0,
    which reads as "completely wrong" for sparse maps that are legitimately empty). Mine all zero
    but golden not: 0.0 (torch's eps-clamped division, as msit).
    """
    g, m = _pair(golden, mine)
    g_zero, m_zero = not np.any(g), not np.any(m)
    if g_zero and m_zero:
        return 1.0
    if g_zero:
        return Undefined(GOLDEN_ZERO_COSINE)
    if m_zero:
        return 0.0
    return _cosine_from(float(g @ m), float(g @ g), float(m @ m))


def _cosine_from(gm: float, gg: float, mm: float) -> float:
    with np.errstate(invalid="ignore", over="ignore"):
        return round(gm / (math.sqrt(gg) * math.sqrt(mm)), 10)


def _rel_error(g: np.ndarray, m: np.ndarray) -> np.ndarray:
    """|m/g − 1| where |g| > eps, 0 elsewhere (the masked elements still count toward means)."""
    mask = np.abs(g) > EPS
    out = np.zeros_like(g)
    with np.errstate(invalid="ignore", over="ignore"):
        np.divide(m, g, out=out, where=mask)
    np.subtract(out, 1.0, out=out, where=mask)
    return np.abs(out)


def _masked_abs_error(g: np.ndarray, m: np.ndarray) -> np.ndarray:
    """|m − g| where |g| > eps, 0 elsewhere: msit applies the relative-error mask here too."""
    return np.where(np.abs(g) > EPS, np.abs(m - g), 0.0)


def max_relative_error(golden: np.ndarray, mine: np.ndarray) -> float:
    g, m = _pair(golden, mine)
    return float(_rel_error(g, m).max()) if g.size else 0.0


def mean_relative_error(golden: np.ndarray, mine: np.ndarray) -> float:
    g, m = _pair(golden, mine)
    return float(_rel_error(g, m).mean()) if g.size else 0.0


def msit_max_abs_error(golden: np.ndarray, mine: np.ndarray) -> float:
    """msit's MaxAbsoluteError: max |m − g| over elements with |g| > eps (0 elsewhere)."""
    g, m = _pair(golden, mine)
    return float(_masked_abs_error(g, m).max()) if g.size else 0.0


def msit_mean_abs_error(golden: np.ndarray, mine: np.ndarray) -> float:
    """msit's MeanAbsoluteError: mean of |m − g| masked as above, zeros counted."""
    g, m = _pair(golden, mine)
    return float(_masked_abs_error(g, m).mean()) if g.size else 0.0


def mae(golden: np.ndarray, mine: np.ndarray) -> float:
    """Plain mean absolute error over every element (no mask): what most users expect."""
    g, m = _pair(golden, mine)
    return float(np.abs(m - g).mean()) if g.size else 0.0


def max_abs_error(golden: np.ndarray, mine: np.ndarray) -> float:
    """Plain max |m − g| over every element (no mask)."""
    g, m = _pair(golden, mine)
    return float(np.abs(m - g).max()) if g.size else 0.0


def rmse(golden: np.ndarray, mine: np.ndarray) -> float:
    g, m = _pair(golden, mine)
    return float(np.sqrt(np.mean((m - g) ** 2))) if g.size else 0.0


def relative_euclidean(golden: np.ndarray, mine: np.ndarray) -> float:
    """sqrt(Σ(m−g)² / Σg²); 0 when ‖g‖ <= eps (msit)."""
    g, m = _pair(golden, mine)
    return _rel_euclidean_from(float(((m - g) ** 2).sum()), float((g**2).sum()))


def _rel_euclidean_from(sse: float, gg: float) -> float:
    if math.sqrt(gg) <= EPS:
        return 0.0
    return math.sqrt(sse / gg)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max()
    return shifted - math.log(np.exp(shifted).sum())


def kl_divergence(golden: np.ndarray, mine: np.ndarray) -> float:
    """Σ softmax(g)·(log softmax(g) − log softmax(m)) over the flattened tensor, clipped at >= 0.

    This is msit's torch definition (a true KL); msit's NumPy variant is not a KL and is not used.
    Computed with log-sum-exp so large logits neither overflow nor underflow.
    """
    g, m = _pair(golden, mine)
    if g.size == 0:
        return 0.0
    log_p, log_q = _log_softmax(g), _log_softmax(m)
    return max(float(np.sum(np.exp(log_p) * (log_p - log_q))), 0.0)


KL_NOT_A_DISTRIBUTION = "KL not applicable: the output is not a distribution over its last axis"
ROW_SUM_TOLERANCE = 1e-3


def row_distribution(golden: np.ndarray, logits: bool = False) -> str | None:
    """How the rows along the last axis form distributions: 'probabilities' (>= 0, sum 1),
    'log-probabilities' (exp sums to 1), 'logits' (when the task says the rows are class
    scores), or None: KL is not applicable."""
    g = np.asarray(golden, dtype=np.float64)
    if g.ndim == 0 or g.shape[-1] < 2 or g.size == 0 or not np.all(np.isfinite(g)):
        return "logits" if logits and g.ndim and g.shape[-1] >= 2 else None
    rows = g.reshape(-1, g.shape[-1])
    if rows.min() >= 0 and np.all(np.abs(rows.sum(axis=1) - 1.0) <= ROW_SUM_TOLERANCE):
        return "probabilities"
    if rows.max() <= 0 and np.all(np.abs(np.exp(rows).sum(axis=1) - 1.0) <= ROW_SUM_TOLERANCE):
        return "log-probabilities"
    return "logits" if logits else None


def _row_log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def row_kl(golden: np.ndarray, mine: np.ndarray, form: str) -> np.ndarray:
    """KL(golden row || candidate row) for every row along the last axis, shape [rows].

    Probabilities: the candidate row is clipped at eps and renormalised (quantisation noise can
    make it slightly negative or not sum to 1). Log-probabilities and logits: log-softmax of both
    rows. Zero-probability golden entries contribute 0.
    """
    g = np.asarray(golden, dtype=np.float64).reshape(-1, np.shape(golden)[-1])
    m = np.asarray(mine, dtype=np.float64).reshape(g.shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if form == "probabilities":
            q = np.clip(m, EPS, None)
            log_q = np.log(q / q.sum(axis=1, keepdims=True))
            log_p = np.log(np.where(g > 0, g, 1.0))
            terms = np.where(g > 0, g * (log_p - log_q), 0.0)
        else:
            log_p, log_q = _row_log_softmax(g), _row_log_softmax(m)
            terms = np.exp(log_p) * (log_p - log_q)
    return np.asarray(np.clip(terms.sum(axis=1), 0.0, None))


# --- image metrics ---------------------------------------------------------------------------


def image_layout(shape: tuple[int, ...]) -> str | None:
    """'NCHW' or 'NHWC' for 4-D outputs with 1 or 3 channels, else None (NCHW wins ties)."""
    if len(shape) != 4:
        return None
    if shape[1] in (1, 3) and min(shape[2], shape[3]) > 1:
        return "NCHW"
    if shape[3] in (1, 3) and min(shape[1], shape[2]) > 1:
        return "NHWC"
    return None


def to_nchw(array: np.ndarray, layout: str) -> np.ndarray:
    return np.transpose(array, (0, 3, 1, 2)) if layout == "NHWC" else array


def data_range(golden_min: float, golden_max: float) -> float:
    """The PSNR/SSIM data range L: 1.0 when the golden lies in [0, 1], else max(g) − min(g)."""
    if golden_min >= 0.0 and golden_max <= 1.0:
        return 1.0
    return float(golden_max - golden_min)


def psnr(
    golden: np.ndarray, mine: np.ndarray, value_range: float | None = None
) -> float | Undefined:
    """10·log10(L² / mean((m−g)²)) in dB; +inf for identical outputs."""
    g, m = _pair(golden, mine)
    if value_range is None:
        value_range = data_range(float(g.min()), float(g.max()))
    return _psnr_from(float(((m - g) ** 2).sum()), g.size, value_range)


def _psnr_from(sse: float, count: int, value_range: float) -> float | Undefined:
    if value_range <= 0:
        return Undefined("PSNR undefined: golden output is constant (data range 0)")
    if count == 0:
        return Undefined("PSNR undefined: empty output")
    mse = sse / count
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(value_range**2 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    w = np.exp(-(x**2) / (2.0 * sigma**2))
    return w / w.sum()


def _filter_valid(img: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable 'valid' Gaussian filtering over the last two axes (as Wang's filter2 'valid')."""
    k = w.size
    h_out = img.shape[-2] - k + 1
    w_out = img.shape[-1] - k + 1
    rows = sum(w[i] * img[..., i : i + h_out, :] for i in range(k))
    return sum(w[i] * rows[..., :, i : i + w_out] for i in range(k))


def ssim_per_image(golden: np.ndarray, mine: np.ndarray, value_range: float) -> np.ndarray:
    """Mean SSIM of each image of two [N, C, H, W] arrays (channels averaged), shape [N].

    Gaussian window 11x11, sigma 1.5, K1 = 0.01, K2 = 0.03, population (co)variances, and only
    windows that fit inside the image ('valid'), as in the reference implementation.
    """
    g = np.asarray(golden, dtype=np.float64)
    m = np.asarray(mine, dtype=np.float64)
    w = gaussian_window()
    c1 = (SSIM_K1 * value_range) ** 2
    c2 = (SSIM_K2 * value_range) ** 2
    mu_g, mu_m = _filter_valid(g, w), _filter_valid(m, w)
    gg = _filter_valid(g * g, w) - mu_g**2
    mm = _filter_valid(m * m, w) - mu_m**2
    gm = _filter_valid(g * m, w) - mu_g * mu_m
    num = (2 * mu_g * mu_m + c1) * (2 * gm + c2)
    den = (mu_g**2 + mu_m**2 + c1) * (gg + mm + c2)
    return np.asarray((num / den).mean(axis=(1, 2, 3)))


def ssim(
    golden: np.ndarray, mine: np.ndarray, value_range: float | None = None
) -> float | Undefined:
    """Mean SSIM over the images of a 4-D NCHW/NHWC output with 1 or 3 channels."""
    g, m = np.asarray(golden), np.asarray(mine)
    layout = image_layout(g.shape)
    if layout is None:
        return Undefined(f"SSIM needs a 4-D image output with 1 or 3 channels, got {g.shape}")
    if value_range is None:
        value_range = data_range(float(g.min()), float(g.max()))
    g, m = to_nchw(g, layout), to_nchw(m.reshape(golden.shape), layout)
    if min(g.shape[2:]) < SSIM_WINDOW:
        return Undefined(
            f"SSIM undefined: image smaller than the {SSIM_WINDOW}x{SSIM_WINDOW} window"
        )
    if value_range <= 0:
        return Undefined("SSIM undefined: golden output is constant (data range 0)")
    return float(ssim_per_image(g, m, value_range).mean())


# --- classification metrics ------------------------------------------------------------------


def is_class_scores(shape: tuple[int, ...]) -> bool:
    return len(shape) == 2 and shape[1] >= 2


def top1_rows(golden: np.ndarray, mine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of [N, C] scores: the arg-max classes are the same; or they differ but the golden
    scores them within one FP16 step of each other (`TIE_STEP`), a tie that counts as agreeing."""
    g = np.asarray(golden, dtype=np.float64)
    m = np.asarray(mine, dtype=np.float64).reshape(g.shape)
    rows = np.arange(g.shape[0])
    g_top, m_top = g.argmax(axis=1), m.argmax(axis=1)
    same = g_top == m_top
    with np.errstate(invalid="ignore"):
        margin = g[rows, g_top] - g[rows, m_top]
        tie = ~same & (margin <= TIE_STEP * np.abs(g).max(axis=1))
    return same, tie


def top1_agreement(golden: np.ndarray, mine: np.ndarray) -> float:
    """Fraction of rows of [N, C] scores whose arg-max class is the same (golden ties agree)."""
    same, tie = top1_rows(golden, mine)
    return float(np.mean(same | tie))


def _top_k_hits(g: np.ndarray, m: np.ndarray, k: int) -> np.ndarray:
    k = min(k, g.shape[1])
    top_g = np.argsort(-g, axis=1, kind="stable")[:, :k]
    top_m = np.argsort(-m, axis=1, kind="stable")[:, :k]
    return np.array([len(set(a) & set(b)) / k for a, b in zip(top_g.tolist(), top_m.tolist())])


def top5_overlap(golden: np.ndarray, mine: np.ndarray) -> float:
    """Mean over rows of |top5(g) ∩ top5(m)| / 5 (k = C when there are fewer than 5 classes)."""
    g, m = np.asarray(golden), np.asarray(mine).reshape(np.shape(golden))
    return float(_top_k_hits(g, m, TOP_K).mean())


# --- every metric at once, over one or many samples -----------------------------------------


def detect_kind(shape: tuple[int, ...]) -> str:
    if image_layout(shape) is not None:
        return "image"
    if is_class_scores(shape):
        return "classes"
    return "tensor"


FP16_MAX = 65504.0

# What `sample_stats` measures: "error" is the light per-layer set (cosine, SQNR, relative
# Euclidean, max |error|, non-finite counts, the golden's range); the others are msit's metrics
# plus an output kind's own (image: PSNR/SSIM; classes: top-1/top-5).
StatsKind = Literal["error", "image", "classes", "tensor"]


@dataclass
class Stats:
    """Additive statistics of (golden, mine) pairs of one tensor, from which metrics are finalized
    (`finalize`): merged over samples, they give the metric of all samples concatenated."""

    count: int = 0
    gm: float = 0.0
    gg: float = 0.0
    mm: float = 0.0
    sse: float = 0.0
    max_abs: float = 0.0
    g_any: bool = False
    m_any: bool = False
    nonfinite_golden: int = 0
    nonfinite_mine: int = 0
    golden_over_fp16: int = 0  # finite golden values beyond +-65504 (overflow in FP16)
    golden_min: float = math.inf  # over finite golden values
    golden_max: float = -math.inf
    # msit's (every kind but "error")
    abs_sum: float = 0.0
    msit_abs_sum: float = 0.0
    msit_abs_max: float = 0.0
    rel_sum: float = 0.0
    rel_max: float = 0.0
    # KL per row of a distribution output: the sum over rows, the rows, and why not (if not).
    kl_sum: float = 0.0
    kl_rows: int = 0
    kl_na: str | None = None
    ssim_sum: float = 0.0
    ssim_images: int = 0
    top1_hits: float = 0.0
    top1_ties: int = 0  # rows counted in top1_hits as golden ties
    top5_hits: float = 0.0
    rows: int = 0

    def merge(self, o: Stats) -> Stats:
        return Stats(
            count=self.count + o.count,
            gm=self.gm + o.gm,
            gg=self.gg + o.gg,
            mm=self.mm + o.mm,
            sse=self.sse + o.sse,
            max_abs=_nanmax(self.max_abs, o.max_abs),
            g_any=self.g_any or o.g_any,
            m_any=self.m_any or o.m_any,
            nonfinite_golden=self.nonfinite_golden + o.nonfinite_golden,
            nonfinite_mine=self.nonfinite_mine + o.nonfinite_mine,
            golden_over_fp16=self.golden_over_fp16 + o.golden_over_fp16,
            golden_min=min(self.golden_min, o.golden_min),
            golden_max=max(self.golden_max, o.golden_max),
            abs_sum=self.abs_sum + o.abs_sum,
            msit_abs_sum=self.msit_abs_sum + o.msit_abs_sum,
            msit_abs_max=_nanmax(self.msit_abs_max, o.msit_abs_max),
            rel_sum=self.rel_sum + o.rel_sum,
            rel_max=_nanmax(self.rel_max, o.rel_max),
            kl_sum=self.kl_sum + o.kl_sum,
            kl_rows=self.kl_rows + o.kl_rows,
            kl_na=self.kl_na or o.kl_na,
            ssim_sum=self.ssim_sum + o.ssim_sum,
            ssim_images=self.ssim_images + o.ssim_images,
            top1_hits=self.top1_hits + o.top1_hits,
            top1_ties=self.top1_ties + o.top1_ties,
            top5_hits=self.top5_hits + o.top5_hits,
            rows=self.rows + o.rows,
        )


def _nanmax(a: float, b: float) -> float:
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)


_CHUNK = 4096


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Σ a·b accumulated in float64: float32 data is summed in float32 within 4096-value chunks
    (relative error ~1e-8) and the chunk sums in float64, ~10x faster than widening it all."""
    if a.dtype != np.float32:
        return float(np.dot(a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)))
    n = a.size // _CHUNK * _CHUNK
    head = np.einsum("ij,ij->i", a[:n].reshape(-1, _CHUNK), b[:n].reshape(-1, _CHUNK))
    tail = np.dot(a[n:].astype(np.float64), b[n:].astype(np.float64))
    return float(head.sum(dtype=np.float64)) + float(tail)


def sample_stats(
    golden: np.ndarray,
    mine: np.ndarray,
    kind: StatsKind = "error",
    value_range: float | None = None,
    logits: bool = False,
) -> Stats:
    """One sample's statistics.

    "error" (per-layer analysis, many tensors): float32 data stays float32 (`_dot`), and
    non-finite candidate values are counted and left out of the sums, so one FP16 overflow does
    not hide where error starts. msit's kinds (a model's outputs, judged by gates): float64, and
    non-finite values stay in, so a NaN output reads NaN and fails. `value_range`: L of SSIM;
    `logits`: rows along the last axis are class scores (KL of their softmax).
    """
    full = kind != "error"
    g0, m0 = np.asarray(golden), np.asarray(mine)
    wide = full or np.float64 in (g0.dtype, m0.dtype)
    g = g0.astype(np.float64 if wide else np.float32, copy=False).reshape(-1)
    m = m0.astype(np.float64 if wide else np.float32, copy=False).reshape(-1)
    if g.size != m.size:
        raise ValueError(f"golden has {g.size} values but mine has {m.size}")
    s = Stats(count=int(g.size))
    if g.size == 0:
        return s
    with np.errstate(invalid="ignore", over="ignore"):
        # One sum per array tells whether anything is inf/NaN; masks only then (rare).
        gvals = g
        if not (math.isfinite(float(g.sum())) and math.isfinite(float(m.sum()))):
            finite_g, finite_m = np.isfinite(g), np.isfinite(m)
            s.nonfinite_golden = int(g.size - np.count_nonzero(finite_g))
            s.nonfinite_mine = int(m.size - np.count_nonzero(finite_m))
            gvals = g[finite_g]
            if not full:
                # Per layer, only the candidate's own inf/NaN: a value the golden holds too (an
                # attention mask's -inf) is the model's, not an FP16 overflow.
                shared = (m == g) | (np.isnan(m) & np.isnan(g))
                s.nonfinite_mine = int(np.count_nonzero(~finite_m & ~shared))
                ok = finite_g & finite_m
                g, m = g[ok], m[ok]
        diff = m - g
        s.gm, s.gg, s.mm, s.sse = _dot(g, m), _dot(g, g), _dot(m, m), _dot(diff, diff)
        if gvals.size:
            s.golden_min, s.golden_max = float(gvals.min()), float(gvals.max())
            if max(-s.golden_min, s.golden_max) > FP16_MAX:
                s.golden_over_fp16 = int(np.count_nonzero(np.abs(gvals) > FP16_MAX))
        if not full:
            s.max_abs = max(float(diff.max()), -float(diff.min())) if diff.size else 0.0
            return s
        absd = np.abs(diff)
        masked = np.where(np.abs(g) > EPS, absd, 0.0)
        rel = _rel_error(g, m)
        s.g_any, s.m_any = bool(np.any(g)), bool(np.any(m))
        s.abs_sum, s.max_abs = float(absd.sum()), float(absd.max())
        s.msit_abs_sum, s.msit_abs_max = float(masked.sum()), float(masked.max())
        s.rel_sum, s.rel_max = float(rel.sum()), float(rel.max())
    form = row_distribution(golden, logits or kind == "classes")
    if form is None:
        s.kl_na = KL_NOT_A_DISTRIBUTION
    else:
        kl = row_kl(golden, mine, form)
        s.kl_sum, s.kl_rows = float(kl.sum()), int(kl.size)
    shape = np.shape(golden)
    if kind == "image":
        layout = image_layout(shape)
        if (
            layout is not None
            and value_range is not None
            and value_range > 0
            and min(to_nchw(np.empty(shape, dtype=np.uint8), layout).shape[2:]) >= SSIM_WINDOW
        ):
            g4 = to_nchw(np.asarray(golden, dtype=np.float64), layout)
            m4 = to_nchw(np.asarray(mine, dtype=np.float64).reshape(shape), layout)
            with np.errstate(invalid="ignore", over="ignore"):
                per_image = ssim_per_image(g4, m4, value_range)
            s.ssim_sum, s.ssim_images = float(per_image.sum()), int(per_image.size)
    elif kind == "classes":
        g2 = np.asarray(golden, dtype=np.float64)
        m2 = np.asarray(mine, dtype=np.float64).reshape(shape)
        s.rows = int(shape[0])
        same, tie = top1_rows(g2, m2)
        s.top1_hits, s.top1_ties = float(np.sum(same | tie)), int(np.sum(tie))
        s.top5_hits = float(_top_k_hits(g2, m2, TOP_K).sum())
    return s


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


def finalize(s: Stats, kind: StatsKind, value_range: float | None = None) -> dict[str, Any]:
    """Metric values from statistics: the per-layer set for "error", else msit's (float, or
    None with its reason in `notes`)."""
    if kind == "error":
        return {
            "cosine": cosine_from(s.gm, s.gg, s.mm),
            "sqnr_db": sqnr_from(s.gg, s.sse),
            "rel_euclidean": math.sqrt(s.sse / s.gg) if s.gg > 0 else None,
            "max_abs_error": s.max_abs,
            "nonfinite": s.nonfinite_mine,
            "golden_nonfinite": s.nonfinite_golden,
            "golden_over_fp16": s.golden_over_fp16,
            "golden_min": s.golden_min if s.count else None,
            "golden_max": s.golden_max if s.count else None,
            "values": s.count,
        }
    values: dict[str, float | None] = {}
    notes: dict[str, str] = {}

    def put(name: str, value: float | Undefined) -> None:
        if isinstance(value, Undefined):
            values[name] = None
            notes[name] = value.reason
        else:
            values[name] = float(value)

    n = max(s.count, 1)
    if not s.g_any and not s.m_any:
        put("cosine", 1.0)
    elif not s.g_any:
        put("cosine", Undefined(GOLDEN_ZERO_COSINE))
    elif not s.m_any:
        put("cosine", 0.0)
    else:
        put("cosine", _cosine_from(s.gm, s.gg, s.mm))
    put("max_abs_error", s.max_abs)
    put("mae", s.abs_sum / n)
    put("msit_max_abs_error", s.msit_abs_max)
    put("msit_mean_abs_error", s.msit_abs_sum / n)
    put("rmse", math.sqrt(s.sse / n) if s.count else 0.0)
    put("rel_euclidean", _rel_euclidean_from(s.sse, s.gg))
    put("max_rel_error", s.rel_max)
    put("mean_rel_error", s.rel_sum / n)
    if s.kl_na is not None:
        put("kl", Undefined(s.kl_na))
    elif s.nonfinite_golden or s.nonfinite_mine:
        put("kl", math.nan)
    elif s.kl_rows:
        put("kl", s.kl_sum / s.kl_rows)
    else:
        put("kl", 0.0 if s.count else math.nan)
    if kind == "image":
        put("psnr_db", _psnr_from(s.sse, s.count, value_range if value_range is not None else 0))
        if s.ssim_images:
            put("ssim", s.ssim_sum / s.ssim_images)
        elif value_range is not None and value_range <= 0:
            put("ssim", Undefined("SSIM undefined: golden output is constant (data range 0)"))
        else:
            put(
                "ssim", Undefined(f"SSIM undefined: image smaller than {SSIM_WINDOW}x{SSIM_WINDOW}")
            )
    elif kind == "classes":
        put("top1_agreement", s.top1_hits / max(s.rows, 1))
        put("top5_overlap", s.top5_hits / max(s.rows, 1))
    note_list = [notes[k] for k in values if k in notes]
    if s.top1_ties:
        note_list.append(
            f"top-1: {s.top1_ties} row(s) count as agreeing although the arg-max differs: the "
            "golden scores both classes within one FP16 step (a tie)"
        )
    if s.nonfinite_golden:
        note_list.append(f"golden output has {s.nonfinite_golden} NaN/Inf values")
    if s.nonfinite_mine:
        note_list.append(f"candidate output has {s.nonfinite_mine} NaN/Inf values (FP16 overflow?)")
    return {**values, "notes": note_list}


def _resolve_kind(kind: str, shape: tuple[int, ...]) -> str:
    if kind == "auto":
        return detect_kind(shape)
    if kind == "image" and image_layout(shape) is None:
        raise ValueError(f"kind 'image' needs a 4-D output with 1 or 3 channels, got {shape}")
    if kind == "classes" and not is_class_scores(shape):
        raise ValueError(f"kind 'classes' needs a 2-D [N, C] output with C >= 2, got {shape}")
    if kind not in ("image", "classes", "tensor"):
        raise ValueError(f"unknown kind '{kind}'")
    return kind


def compare_arrays(
    golden: np.ndarray, mine: np.ndarray, kind: Kind = "auto", value_range: float | None = None
) -> dict[str, Any]:
    """Every metric that applies to this pair, plus `notes` (a list of strings).

    kind: "image" adds psnr_db and ssim, "classes" adds top1_agreement and top5_overlap,
    "tensor" only the generic metrics; "auto" decides from the golden's shape. A metric with no
    value (e.g. cosine for an all-zero golden) is None and its reason is in `notes`.
    """
    shape = tuple(np.shape(golden))
    if np.size(golden) != np.size(mine):
        raise ValueError(f"golden has {np.size(golden)} values but mine has {np.size(mine)}")
    resolved = _resolve_kind(kind, shape)
    if resolved == "image" and value_range is None:
        g = np.asarray(golden)
        value_range = data_range(float(g.min()), float(g.max())) if g.size else 0.0
    stats = sample_stats(golden, mine, resolved, value_range)  # type: ignore[arg-type]
    return finalize(stats, resolved, value_range)  # type: ignore[arg-type]
