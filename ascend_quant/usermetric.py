"""A user's own accuracy metric, judged like the built-in ones (and the evaluator tuning calls).

`--metric module:function` or `--metric path/to/file.py[:function]` (default function name
`metric`) names a function that receives one sample:

    def metric(golden: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
               inputs: dict[str, np.ndarray]) -> dict[str, float] | MetricOutcome

golden and candidate map every model output name to its array, inputs every model input name.
It returns named numbers, optionally with `"passed": bool` (or a `MetricOutcome`). Numbers are
averaged over samples and gated like built-in metrics; `passed` becomes `pass_rate`, gated by
default so that every sample must pass (the verdict names the first sample that did not).
Anything the function raises, or returns that is not of this form, is a usage error naming the
hook: the metric is the user's code, so its failure is not an internal error of this tool.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ascend_quant.errors import UsageError
from ascend_quant.gates import Gate
from ascend_quant.tasks import Score, TaskAccumulator

DEFAULT_FUNCTION = "metric"
PASS_RATE = "pass_rate"
DEFAULT_GATES: tuple[Gate, ...] = (Gate(PASS_RATE, ">=", 1.0, "worst"),)

MetricFunction = Callable[
    [Mapping[str, np.ndarray], Mapping[str, np.ndarray], Mapping[str, np.ndarray]], Any
]


@dataclass(frozen=True)
class MetricOutcome:
    """One sample's result: named numbers and, optionally, the user's own pass/fail."""

    values: dict[str, float]
    passed: bool | None = None


@dataclass(frozen=True)
class UserMetric:
    """A loaded metric hook; `evaluate` checks and normalises what the function returns."""

    spec: str  # as the user wrote it
    name: str  # the function's name, shown where an output name would be
    function: MetricFunction

    def evaluate(
        self,
        golden: Mapping[str, np.ndarray],
        candidate: Mapping[str, np.ndarray],
        inputs: Mapping[str, np.ndarray],
    ) -> MetricOutcome:
        try:
            result = self.function(golden, candidate, inputs)
        except Exception as exc:
            raise UsageError(
                f"metric hook {self.spec} raised {type(exc).__name__}: {exc}",
                hint="fix the metric function; it receives (golden, candidate, inputs) dicts "
                "of arrays keyed by tensor name",
            ) from None
        return self._normalise(result)

    def _normalise(self, result: Any) -> MetricOutcome:
        if isinstance(result, MetricOutcome):
            values, passed = dict(result.values), result.passed
        elif isinstance(result, Mapping):
            values = {k: v for k, v in result.items() if k != "passed"}
            passed = result.get("passed")
        else:
            raise UsageError(
                f"metric hook {self.spec} returned {type(result).__name__}, not a dict of "
                "named numbers",
                hint='return e.g. {"accuracy": 0.97} or {"accuracy": 0.97, "passed": True}',
            )
        if passed is not None and not isinstance(passed, (bool, np.bool_)):
            raise UsageError(
                f"metric hook {self.spec}: 'passed' is {passed!r}, not True or False",
            )
        numbers: dict[str, float] = {}
        for key, value in values.items():
            if isinstance(value, (bool, np.bool_)) or not isinstance(
                value, (int, float, np.integer, np.floating)
            ):
                raise UsageError(
                    f"metric hook {self.spec}: value '{key}' is {value!r}, not a number",
                    hint="return plain numbers; NaN is allowed and fails its gates",
                )
            numbers[str(key)] = float(value)
        if not numbers and passed is None:
            raise UsageError(f"metric hook {self.spec} returned no values")
        return MetricOutcome(numbers, None if passed is None else bool(passed))


def _load_file(path: Path, spec: str) -> Any:
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    module_spec = importlib.util.spec_from_file_location(f"ascend_quant_user_metric_{digest}", path)
    if module_spec is None or module_spec.loader is None:
        raise UsageError(f"metric hook {spec}: cannot load {path} as Python")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise UsageError(
            f"metric hook {spec}: importing {path} raised {type(exc).__name__}: {exc}"
        ) from None
    return module


def load_metric(spec: str) -> UserMetric:
    """`module:function`, `file.py:function` or `file.py` (function `metric`) -> UserMetric."""
    text = spec.strip()
    target, sep, function_name = text.rpartition(":")
    if not sep or (not target.endswith(".py") and "/" in function_name):
        target, function_name = text, ""
    function_name = function_name or DEFAULT_FUNCTION
    if target.endswith(".py") or Path(target).is_file():
        path = Path(target)
        if not path.is_file():
            raise UsageError(f"metric hook {spec}: file {path} not found")
        module = _load_file(path, spec)
    else:
        try:
            module = importlib.import_module(target)
        except Exception as exc:
            raise UsageError(
                f"metric hook {spec}: cannot import module '{target}' "
                f"({type(exc).__name__}: {exc})",
                hint="put the module on PYTHONPATH, or pass the file: --metric path/to/m.py:fn",
            ) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        found = sorted(n for n in dir(module) if not n.startswith("_"))
        raise UsageError(
            f"metric hook {spec}: no function '{function_name}' in {target}",
            hint="it defines: " + (", ".join(found) if found else "nothing public"),
        )
    return UserMetric(spec=text, name=function_name, function=function)


@dataclass
class UserMetricAccumulator:
    """A hook's values over samples: the mean of each number, `pass_rate`, and extremes."""

    metric: UserMetric
    totals: TaskAccumulator = field(default_factory=TaskAccumulator)

    def update(
        self,
        golden: Mapping[str, np.ndarray],
        candidate: Mapping[str, np.ndarray],
        inputs: Mapping[str, np.ndarray],
    ) -> dict[str, float]:
        """Evaluate one sample, add it, and return its values (with pass_rate 1 or 0)."""
        outcome = self.metric.evaluate(golden, candidate, inputs)
        values = dict(outcome.values)
        if outcome.passed is not None:
            values[PASS_RATE] = 1.0 if outcome.passed else 0.0
        self.totals.add({k: Score(v) for k, v in values.items()})
        return values

    def result(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.totals.result().items() if isinstance(v, float)}


def hook_fingerprint(spec: str | None) -> str | None:
    """sha256 of the hook's source file (a cached build re-judges when the metric changes)."""
    if not spec:
        return None
    target = spec.strip().rpartition(":")[0] or spec.strip()
    path = Path(target)
    if not path.is_file():
        try:
            found = importlib.util.find_spec(target)
        except (ImportError, ValueError):
            found = None
        if found is None or not found.origin or not Path(found.origin).is_file():
            return None
        path = Path(found.origin)
    return hashlib.sha256(path.read_bytes()).hexdigest()
