"""Accuracy gates and the one verdict line every command ends with.

A gate is `metric op threshold` applied either to the aggregate over all samples or to every
sample (`worst`: the worst sample must pass, and the verdict names it). Gates are data; judging
is a pure function of measured values, so `compare`, `build`, the report and accuracy-driven
tuning all reach the same verdict from the same numbers. Thresholds are range-checked when they
are read (a cosine of 1.5 or a NaN limit is a usage error, not a gate that silently never fails).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ascend_quant.errors import UsageError

Op = Literal[">=", "<="]
Scope = Literal["aggregate", "worst"]
SCOPES: tuple[Scope, ...] = ("aggregate", "worst")

# Metrics whose values live in a closed interval; everything else named here is >= 0.
BOUNDED: dict[str, tuple[float, float]] = {
    "cosine": (-1.0, 1.0),
    "ssim": (-1.0, 1.0),
    "top1_agreement": (0.0, 1.0),
    "top5_overlap": (0.0, 1.0),
    "iou": (0.0, 1.0),
    "dice": (0.0, 1.0),
    "step_agreement": (0.0, 1.0),
    "sequence_agreement": (0.0, 1.0),
    "recall": (0.0, 1.0),
    "precision": (0.0, 1.0),
    "matched_iou": (0.0, 1.0),
    "pass_rate": (0.0, 1.0),
}
NON_NEGATIVE = {
    "rel_euclidean",
    "kl",
    "rmse",
    "mean_rel_error",
    "max_rel_error",
    "mae",
    "max_abs_error",
    "msit_mean_abs_error",
    "msit_max_abs_error",
    "char_error_rate",
}

_GATE_TEXT = re.compile(
    r"^\s*(?:(?P<scope>aggregate|worst)\s*:\s*)?(?P<metric>[A-Za-z_][\w.\-]*)\s*"
    r"(?P<op>>=|<=)\s*(?P<value>\S+)\s*$"
)


def check_threshold(metric: str, value: float, where: str) -> float:
    """`value` as a float if it is a possible limit for `metric`, else a UsageError."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: '{value}' is not a number") from None
    if not math.isfinite(number):
        raise UsageError(f"{where}: a threshold must be a finite number", hint="give a number")
    bounds = BOUNDED.get(metric)
    if bounds is not None and not bounds[0] <= number <= bounds[1]:
        raise UsageError(
            f"{where}: {metric} threshold {number:g} is outside [{bounds[0]:g}, {bounds[1]:g}]",
            hint=f"{metric} lies between {bounds[0]:g} and {bounds[1]:g}",
        )
    if metric in NON_NEGATIVE and number < 0:
        raise UsageError(
            f"{where}: {metric} threshold {number:g} is negative",
            hint=f"{metric} is a distance or error, never below 0",
        )
    return number


@dataclass(frozen=True)
class Gate:
    """`metric op threshold` over the aggregate, or over every sample (`worst`)."""

    metric: str
    op: Op
    threshold: float
    scope: Scope = "aggregate"

    def __post_init__(self) -> None:
        if self.op not in (">=", "<="):
            raise UsageError(f"gate {self.metric}: operator '{self.op}' is not >= or <=")
        if self.scope not in SCOPES:
            raise UsageError(f"gate {self.metric}: scope '{self.scope}' is not aggregate or worst")
        check_threshold(self.metric, self.threshold, f"gate {self.metric}")

    def holds(self, value: float) -> bool:
        """False for NaN (and for ±inf on the wrong side), so a broken output never passes."""
        return value >= self.threshold if self.op == ">=" else value <= self.threshold

    def text(self) -> str:
        prefix = "worst:" if self.scope == "worst" else ""
        return f"{prefix}{self.metric}{self.op}{self.threshold:.10g}"


def parse_gate(text: str) -> tuple[str | None, Gate]:
    """'[OUTPUT:][worst:]metric>=value' -> (output or None, Gate); the output may contain ':'."""
    body = text
    output: str | None = None
    match = _GATE_TEXT.match(body)
    while match is None and ":" in body:
        head, _, body = body.partition(":")
        output = head if output is None else f"{output}:{head}"
        match = _GATE_TEXT.match(body)
    if match is None:
        raise UsageError(
            f"--gate '{text}' is not [OUTPUT:][worst:]metric>=value or metric<=value",
            hint="e.g. --gate 'psnr_db>=35' or --gate 'boxes:worst:recall>=0.9'",
        )
    metric = match["metric"]
    value = check_threshold(metric, match["value"], f"--gate '{text}'")  # type: ignore[arg-type]
    scope: Scope = "worst" if match["scope"] == "worst" else "aggregate"
    return output, Gate(metric, match["op"], value, scope)  # type: ignore[arg-type]


def limits_by_metric(gates: Iterable[Gate | Mapping[str, Any]]) -> dict[str, str]:
    """'≥ 0.99', 'worst ≥ 30' ... per metric, for the threshold column of tables."""
    shown: dict[str, list[str]] = {}
    for gate in gates:
        g = gate if isinstance(gate, Gate) else Gate(**dict(gate))
        text = f"{'≥' if g.op == '>=' else '≤'} {g.threshold:.10g}"
        shown.setdefault(g.metric, []).append(f"worst {text}" if g.scope == "worst" else text)
    return {metric: ", ".join(items) for metric, items in shown.items()}


def merge_gates(*layers: Iterable[Gate]) -> tuple[Gate, ...]:
    """Later layers replace earlier gates on the same (metric, scope); order is kept."""
    merged: dict[tuple[str, str], Gate] = {}
    for layer in layers:
        for gate in layer:
            merged.pop((gate.metric, gate.scope), None)
            merged[(gate.metric, gate.scope)] = gate
    return tuple(merged.values())


@dataclass
class Extremes:
    """Per-sample minimum and maximum of every metric, with the sample that produced each.

    A NaN sample is remembered separately: it fails every worst-sample gate on its metric.
    """

    low: dict[str, float] = field(default_factory=dict)
    low_at: dict[str, str] = field(default_factory=dict)
    high: dict[str, float] = field(default_factory=dict)
    high_at: dict[str, str] = field(default_factory=dict)
    nan_at: dict[str, str] = field(default_factory=dict)

    def update(self, values: Mapping[str, float | None], sample: str) -> None:
        for key, value in values.items():
            if value is None or isinstance(value, (str, list, dict)):
                continue
            number = float(value)
            if math.isnan(number):
                self.nan_at.setdefault(key, sample)
                continue
            if key not in self.low or number < self.low[key]:
                self.low[key], self.low_at[key] = number, sample
            if key not in self.high or number > self.high[key]:
                self.high[key], self.high_at[key] = number, sample

    def worst(self, gate: Gate) -> tuple[float | None, str | None]:
        """The value a worst-sample gate judges, and its sample (NaN first)."""
        if gate.metric in self.nan_at:
            return math.nan, self.nan_at[gate.metric]
        if gate.op == ">=":
            return self.low.get(gate.metric), self.low_at.get(gate.metric)
        return self.high.get(gate.metric), self.high_at.get(gate.metric)


@dataclass(frozen=True)
class GateFailure:
    """One failed gate, everything the verdict line needs."""

    candidate: str
    output: str
    metric: str
    value: float
    op: Op
    threshold: float
    scope: Scope = "aggregate"
    sample: str | None = None
    reason: str | None = None  # why a value is NaN/inf (e.g. "candidate output has NaN/Inf")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> GateFailure:
        """Back from compare.json (non-finite values are the strings 'nan', 'inf', '-inf')."""
        return cls(
            candidate=str(data["candidate"]),
            output=str(data["output"]),
            metric=str(data["metric"]),
            value=float(data["value"]),
            op=data["op"],
            threshold=float(data["threshold"]),
            scope=data.get("scope", "aggregate"),
            sample=data.get("sample"),
            reason=data.get("reason"),
        )

    def text(self) -> str:
        """'<candidate> <output> <metric> <value> <op> <threshold> [sample <name>] [(reason)]'.

        `op` is the relation that holds, i.e. the broken side of the gate: `<` for a minimum.
        """
        return f"{self.candidate} {self.output} {self.short()}"

    def short(self) -> str:
        """The failure without candidate and output: 'psnr_db 28.1 < 30 sample img_3'."""
        broken = "<" if self.op == ">=" else ">"
        shown = _number(self.value)
        if math.isnan(self.value):
            line = f"{self.metric} {shown} (needs {self.op} {self.threshold:.10g})"
        else:
            line = f"{self.metric} {shown} {broken} {self.threshold:.10g}"
        if self.sample is not None:
            line += f" sample {self.sample}"
        if self.reason:
            line += f" ({self.reason})"
        return line


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.6g}"


def judge(
    gates: Iterable[Gate],
    aggregate: Mapping[str, float | None],
    extremes: Extremes | None,
    *,
    candidate: str,
    output: str,
    nan_reason: str | None = None,
) -> list[GateFailure]:
    """Every failed gate. An undefined metric (None: its note says why) is not judged; a NaN or
    a missing worst-sample value on a NaN sample always fails, with `nan_reason` attached."""
    failures = []
    for gate in gates:
        sample: str | None = None
        if gate.scope == "worst":
            if extremes is None:
                continue
            value, sample = extremes.worst(gate)
        else:
            value = aggregate.get(gate.metric)
        if value is None or isinstance(value, str):
            continue
        number = float(value)
        if gate.holds(number):
            continue
        failures.append(
            GateFailure(
                candidate=candidate,
                output=output,
                metric=gate.metric,
                value=number,
                op=gate.op,
                threshold=gate.threshold,
                scope=gate.scope,
                sample=sample,
                reason=nan_reason if not math.isfinite(number) else None,
            )
        )
    return failures


def verdict_line(failures: list[GateFailure]) -> str:
    """'PASSED', or 'FAILED: ' + the first failure (+ how many others failed)."""
    if not failures:
        return "PASSED"
    line = "FAILED: " + failures[0].text()
    others = len(failures) - 1
    if others:
        line += f" (+{others} other failed gate{'s' if others > 1 else ''})"
    return line
