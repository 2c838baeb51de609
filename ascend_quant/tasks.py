"""What an output means (its task), the metrics that matter for it, and their default gates.

msit's tensor metrics say how far two tensors are apart; a deployment cares whether the boxes,
masks, classes or strings are the same. Each task adds pure per-sample metric functions here:
`task_metrics(options, golden, mine)` returns one sample's values, `TaskAccumulator` aggregates
them over samples (pooled ratios such as recall add numerators and denominators; per-sample
scores such as IoU are averaged over the samples where they are defined) and remembers each
metric's best and worst sample for per-sample gates.

Layouts (documented in docs/metrics.md):
  image          4-D NCHW/NHWC with 1 or 3 channels (PSNR/SSIM live in metrics.py)
  classification [N, C] scores
  segmentation   [N, 1, H, W] / [N, H, W] probabilities (mask = value > mask_threshold), or
                 [N, C, H, W] class scores with C >= 2 (mask = arg-max class)
  sequence       [N, T, C] (layout "NTC") or [T, N, C] ("TNC") scores per step, or [T, C]
  detection      [K, D] or [N, K, D] rows (x1, y1, x2, y2, score[, class]) with D in 5..6;
                 rows below score_threshold are padding. Other layouts: a user metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from ascend_quant.errors import UsageError
from ascend_quant.gates import Gate
from ascend_quant.metrics import Undefined, image_layout, is_class_scores

Task = Literal["generic", "image", "classification", "detection", "segmentation", "sequence"]
TaskChoice = Literal[
    "auto", "generic", "image", "classification", "detection", "segmentation", "sequence"
]
TASKS: tuple[str, ...] = get_args(Task)
SequenceLayout = Literal["NTC", "TNC"]
Decode = Literal["ctc", "steps"]

# Which comparator.ErrorAccumulator kind carries a task's built-in metrics.
ACCUMULATOR_KIND: dict[str, str] = {
    "generic": "tensor",
    "image": "image",
    "classification": "classes",
    "detection": "tensor",
    "segmentation": "tensor",
    "sequence": "tensor",
}

# Default gates per task, on top of msit's thresholds (which apply to every task).
DEFAULT_GATES: dict[str, tuple[Gate, ...]] = {
    "generic": (),
    "image": (Gate("psnr_db", ">=", 30.0, "worst"), Gate("ssim", ">=", 0.95, "worst")),
    "classification": (Gate("top1_agreement", ">=", 0.99), Gate("top5_overlap", ">=", 0.9)),
    "segmentation": (
        Gate("iou", ">=", 0.95),
        Gate("dice", ">=", 0.95),
        Gate("iou", ">=", 0.9, "worst"),
    ),
    "sequence": (Gate("step_agreement", ">=", 0.98), Gate("sequence_agreement", ">=", 0.9)),
    "detection": (
        Gate("recall", ">=", 0.95),
        Gate("precision", ">=", 0.95),
        Gate("recall", ">=", 0.8, "worst"),
    ),
}

# Display names and direction of the task metrics (merged into the tables' labels).
TASK_METRIC_LABELS = {
    "iou": "mask IoU",
    "dice": "Dice",
    "step_agreement": "per-step arg-max agreement",
    "sequence_agreement": "decoded-sequence agreement",
    "char_error_rate": "decoded edit distance / length",
    "recall": "box recall (vs FP32 boxes)",
    "precision": "box precision",
    "matched_iou": "mean IoU of matched boxes",
}
HIGHER_IS_BETTER = {
    "iou": True,
    "dice": True,
    "step_agreement": True,
    "sequence_agreement": True,
    "recall": True,
    "precision": True,
    "matched_iou": True,
    "pass_rate": True,
}


@dataclass(frozen=True)
class TaskOptions:
    """How one output is read and judged (`[accuracy.outputs.<name>]` in ascend-quant.toml).

    task "auto" takes the global --task, and when that is "auto" too, `guess_task`.
    """

    task: TaskChoice = "auto"
    output_range: tuple[float, float] | None = None  # nominal [lo, hi] of an image output
    mask_threshold: float = 0.5
    score_threshold: float = 0.3
    iou_threshold: float = 0.5
    sequence_layout: SequenceLayout = "NTC"
    decode: Decode = "ctc"
    blank: int = 0
    gates: tuple[Gate, ...] = ()  # replace the defaults on the same metric and scope

    def __post_init__(self) -> None:
        if self.output_range is not None and not self.output_range[0] < self.output_range[1]:
            raise UsageError(
                f"output_range {list(self.output_range)}: the low end must be below the high end",
                hint="e.g. --output-range 0,1 or 0,255",
            )
        for name in ("mask_threshold", "score_threshold", "iou_threshold"):
            value = getattr(self, name)
            if value != value:
                raise UsageError(f"{name} cannot be NaN")
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise UsageError(f"iou_threshold {self.iou_threshold:g} is outside [0, 1]")


@dataclass(frozen=True)
class Ratio:
    """A pooled metric: aggregated as Σnum / Σden over samples (e.g. matched / golden boxes)."""

    num: float
    den: float
    empty: str  # the reason shown when den == 0

    def value(self) -> float | Undefined:
        return self.num / self.den if self.den else Undefined(self.empty)


@dataclass(frozen=True)
class Score:
    """A per-sample score: aggregated as the mean over the samples where it is defined."""

    value: float | Undefined


SampleValue = Ratio | Score


# --- which task ----------------------------------------------------------------------------


def guess_task(shape: tuple[int, ...]) -> tuple[Task, str]:
    """(task, why) from an output's shape, only where the shape is unambiguous.

    4-D with 1 or 3 channels reads as an image and [N, C] as class scores; everything else is
    generic (a [N, 1, H, W] probability map also looks like an image: say --task segmentation).
    """
    if image_layout(shape) is not None:
        return "image", f"guessed from shape {list(shape)}"
    if is_class_scores(shape):
        return "classification", f"guessed from shape {list(shape)}"
    return "generic", f"shape {list(shape)} does not say; --task sets it"


def check_shape(options: TaskOptions, shape: tuple[int, ...], output: str) -> str | None:
    """Why `shape` cannot hold `options.task`, or None when it can."""
    task = options.task
    if task == "image" and image_layout(shape) is None:
        return f"task image needs a 4-D output with 1 or 3 channels; '{output}' is {list(shape)}"
    if task == "classification" and not is_class_scores(shape):
        return f"task classification needs [N, C] scores; '{output}' is {list(shape)}"
    if task == "segmentation" and len(shape) not in (3, 4):
        return f"task segmentation needs [N, H, W] or [N, C, H, W]; '{output}' is {list(shape)}"
    if task == "sequence" and (len(shape) not in (2, 3) or shape[-1] < 2):
        return f"task sequence needs [N, T, C] or [T, C] scores; '{output}' is {list(shape)}"
    if task == "detection" and (len(shape) not in (2, 3) or shape[-1] not in (5, 6)):
        return (
            f"task detection needs boxes [K, 6] or [N, K, 6] as (x1, y1, x2, y2, score, class); "
            f"'{output}' is {list(shape)}"
        )
    return None


# --- segmentation --------------------------------------------------------------------------


def masks(options: TaskOptions, golden: np.ndarray, mine: np.ndarray) -> tuple[Any, Any]:
    """(golden labels, candidate labels) per pixel: a boolean mask, or the arg-max class."""
    g, m = np.asarray(golden), np.asarray(mine).reshape(np.shape(golden))
    if g.ndim == 4 and g.shape[1] >= 2:
        return g.argmax(axis=1), m.argmax(axis=1)
    return g > options.mask_threshold, m > options.mask_threshold


def segmentation_metrics(
    options: TaskOptions, golden: np.ndarray, mine: np.ndarray
) -> dict[str, SampleValue]:
    """IoU and Dice of the masks (mean over classes present for class scores).

    A binary sample whose golden mask is empty has no IoU/Dice: it is counted in
    `empty_golden` and the pixels the candidate marks there in `empty_golden_pixels`.
    """
    g, m = masks(options, golden, mine)
    if g.dtype == bool:
        inter = float(np.count_nonzero(g & m))
        g_n, m_n = float(np.count_nonzero(g)), float(np.count_nonzero(m))
        if g_n == 0:
            reason = f"golden mask empty (candidate marks {int(m_n)} pixels)"
            return {
                "iou": Score(Undefined(reason)),
                "dice": Score(Undefined(reason)),
                "empty_golden": Ratio(1.0, 1.0, ""),
                "empty_golden_pixels": Score(m_n),
            }
        return {
            "iou": Score(inter / (g_n + m_n - inter)),
            "dice": Score(2.0 * inter / (g_n + m_n)),
            "empty_golden": Ratio(0.0, 1.0, ""),
        }
    ious, dices = [], []
    for cls in np.union1d(np.unique(g), np.unique(m)).tolist():
        gc, mc = g == cls, m == cls
        inter = float(np.count_nonzero(gc & mc))
        g_n, m_n = float(np.count_nonzero(gc)), float(np.count_nonzero(mc))
        ious.append(inter / (g_n + m_n - inter))
        dices.append(2.0 * inter / (g_n + m_n))
    return {"iou": Score(float(np.mean(ious))), "dice": Score(float(np.mean(dices)))}


# --- sequence ------------------------------------------------------------------------------


def _sequences(options: TaskOptions, scores: np.ndarray) -> np.ndarray:
    """[N, T] arg-max class per step."""
    s = np.asarray(scores)
    if s.ndim == 2:
        s = s[None]
    elif options.sequence_layout == "TNC":
        s = s.transpose(1, 0, 2)
    return np.asarray(s.argmax(axis=-1))


def decode(options: TaskOptions, steps: list[int]) -> list[int]:
    """CTC: merge repeats, then drop the blank class; 'steps': the arg-max classes as they are."""
    if options.decode == "steps":
        return list(steps)
    out: list[int] = []
    previous = None
    for cls in steps:
        if cls != previous and cls != options.blank:
            out.append(cls)
        previous = cls
    return out


def edit_distance(a: list[int], b: list[int]) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def sequence_metrics(
    options: TaskOptions, golden: np.ndarray, mine: np.ndarray
) -> dict[str, SampleValue]:
    """Per-step arg-max agreement, decoded-sequence agreement and edit distance per length."""
    g = _sequences(options, golden)
    m = _sequences(options, np.asarray(mine).reshape(np.shape(golden)))
    equal = same = 0
    distance = length = 0
    for gs, ms in zip(g.tolist(), m.tolist()):
        gd, md = decode(options, gs), decode(options, ms)
        equal += int(gd == md)
        distance += edit_distance(gd, md)
        length += len(gd)
    same = int(np.count_nonzero(g == m))
    return {
        "step_agreement": Ratio(same, g.size, "no steps"),
        "sequence_agreement": Ratio(equal, g.shape[0], "no sequences"),
        "char_error_rate": Ratio(distance, length, "golden sequences decode to nothing"),
    }


# --- detection -----------------------------------------------------------------------------


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of [A, 4] and [B, 4] boxes (x1, y1, x2, y2)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def match_boxes(
    golden: np.ndarray, mine: np.ndarray, iou_threshold: float
) -> list[tuple[int, int, float]]:
    """Greedy matching, candidate boxes by descending score: each takes the unmatched golden box
    of the same class with the highest IoU >= iou_threshold. Returns (golden, mine, IoU)."""
    if len(golden) == 0 or len(mine) == 0:
        return []
    ious = box_iou(mine[:, :4], golden[:, :4])
    if mine.shape[1] > 5:
        same = np.rint(mine[:, None, 5]) == np.rint(golden[None, :, 5])
        ious = np.where(same, ious, 0.0)
    taken = np.zeros(len(golden), dtype=bool)
    pairs = []
    for i in np.argsort(-mine[:, 4], kind="stable").tolist():
        row = np.where(taken, -1.0, ious[i])
        j = int(row.argmax())
        if row[j] >= iou_threshold:
            taken[j] = True
            pairs.append((j, i, float(row[j])))
    return pairs


def detection_metrics(
    options: TaskOptions, golden: np.ndarray, mine: np.ndarray
) -> dict[str, SampleValue]:
    """Recall and precision of the candidate's boxes against the golden's (score-thresholded)."""
    g = np.asarray(golden, dtype=np.float64)
    m = np.asarray(mine, dtype=np.float64).reshape(g.shape)
    if g.ndim == 2:
        g, m = g[None], m[None]
    matched = n_golden = n_mine = 0
    iou_sum = 0.0
    for gi, mi in zip(g, m):
        gb = gi[gi[:, 4] >= options.score_threshold]
        mb = mi[mi[:, 4] >= options.score_threshold]
        pairs = match_boxes(gb, mb, options.iou_threshold)
        matched += len(pairs)
        iou_sum += sum(p[2] for p in pairs)
        n_golden += len(gb)
        n_mine += len(mb)
    return {
        "recall": Ratio(matched, n_golden, "no golden boxes above the score threshold"),
        "precision": Ratio(matched, n_mine, "no candidate boxes above the score threshold"),
        "matched_iou": Ratio(iou_sum, matched, "no matched boxes"),
    }


# --- one sample, many samples --------------------------------------------------------------


def task_metrics(
    options: TaskOptions, golden: np.ndarray, mine: np.ndarray
) -> dict[str, SampleValue]:
    """The task's own metrics for one sample (image/classification metrics are in metrics.py)."""
    if options.task == "segmentation":
        return segmentation_metrics(options, golden, mine)
    if options.task == "sequence":
        return sequence_metrics(options, golden, mine)
    if options.task == "detection":
        return detection_metrics(options, golden, mine)
    return {}


def sample_values(values: Mapping[str, SampleValue]) -> dict[str, float | Undefined]:
    """One sample's metric values (a Ratio with den 0 or an undefined score: Undefined)."""
    return {k: v.value() if isinstance(v, Ratio) else v.value for k, v in values.items()}


@dataclass
class TaskAccumulator:
    """Task metrics over samples: pooled ratios, means of scores, each metric's extremes."""

    options: TaskOptions = field(default_factory=TaskOptions)
    _num: dict[str, float] = field(default_factory=dict)
    _den: dict[str, float] = field(default_factory=dict)
    _empty: dict[str, str] = field(default_factory=dict)
    _score_sum: dict[str, float] = field(default_factory=dict)
    _score_n: dict[str, int] = field(default_factory=dict)
    _undefined: dict[str, str] = field(default_factory=dict)
    _undefined_n: dict[str, int] = field(default_factory=dict)
    samples: int = 0

    def update(self, golden: np.ndarray, mine: np.ndarray) -> dict[str, float | Undefined]:
        """Add one sample; returns that sample's own values."""
        values = task_metrics(self.options, golden, mine)
        self.add(values)
        return sample_values(values)

    def add(self, values: Mapping[str, SampleValue]) -> None:
        self.samples += 1
        for key, v in values.items():
            if isinstance(v, Ratio):
                self._num[key] = self._num.get(key, 0.0) + v.num
                self._den[key] = self._den.get(key, 0.0) + v.den
                self._empty.setdefault(key, v.empty)
            elif isinstance(v.value, Undefined):
                self._score_n.setdefault(key, 0)
                self._undefined.setdefault(key, v.value.reason)
                self._undefined_n[key] = self._undefined_n.get(key, 0) + 1
            else:
                self._score_sum[key] = self._score_sum.get(key, 0.0) + float(v.value)
                self._score_n[key] = self._score_n.get(key, 0) + 1

    def notes(self) -> list[str]:
        """Scores left undefined on some samples (e.g. IoU where the golden mask is empty)."""
        return [
            f"{key} not defined on {n} of {self.samples} samples, left out of the mean "
            f"(first: {self._undefined[key]})"
            for key, n in self._undefined_n.items()
            if self._score_n.get(key)
        ]

    def result(self) -> dict[str, float | Undefined]:
        out: dict[str, float | Undefined] = {}
        for key, num in self._num.items():
            den = self._den[key]
            out[key] = num / den if den else Undefined(self._empty[key])
        for key, n in self._score_n.items():
            out[key] = (
                self._score_sum[key] / n
                if n
                else Undefined(self._undefined.get(key, "no sample defines it"))
            )
        return out


def split_undefined(
    values: Mapping[str, float | Undefined],
) -> tuple[dict[str, float | None], list[str]]:
    """(values with Undefined as None, the reasons) for tables and JSON."""
    plain: dict[str, float | None] = {}
    notes: list[str] = []
    for key, value in values.items():
        if isinstance(value, Undefined):
            plain[key] = None
            notes.append(f"{key}: {value.reason}")
        else:
            plain[key] = float(value)
    return plain, notes
