"""The user metric hook: module and file forms, errors as usage errors naming the hook, and its
figures gated like built-in metrics."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tiny_models
from fake_backend import Perturb, install, make_om, write_inputs
from typer.testing import CliRunner

from ascend_quant.cli.app import app
from ascend_quant.compare import compare_models
from ascend_quant.config import AccuracyConfig, Thresholds
from ascend_quant.errors import UsageError
from ascend_quant.gates import Gate
from ascend_quant.tasks import TaskOptions
from ascend_quant.usermetric import MetricOutcome, UserMetricAccumulator, load_metric

HOOKS = textwrap.dedent(
    """
    import numpy as np

    def metric(golden, candidate, inputs):
        g, m = golden["output"], candidate["output"]
        return {"max_diff": float(np.abs(g - m).max()), "input_mean": float(inputs["input"].mean())}

    def agree(golden, candidate, inputs):
        same = float(np.mean(golden["output"].argmax(1) == candidate["output"].argmax(1)))
        return {"agreement": same, "passed": same >= 0.9}

    def broken(golden, candidate, inputs):
        return golden["no such output"]

    def wrong_type(golden, candidate, inputs):
        return 0.5

    def not_a_number(golden, candidate, inputs):
        return {"score": "high"}

    def nan(golden, candidate, inputs):
        return {"score": float("nan")}
    """
)


@pytest.fixture
def hooks(tmp_path: Path) -> Path:
    path = tmp_path / "hooks" / "my_metrics.py"
    path.parent.mkdir()
    path.write_text(HOOKS)
    return path


@pytest.fixture
def conv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    model = tiny_models.save(tiny_models.conv_net(), tmp_path / "conv.onnx")
    inputs = write_inputs(tmp_path / "eval", (1, 3, 16, 16), 4)
    om = make_om(tmp_path / "conv_int8.om")
    install(
        monkeypatch,
        model,
        {"conv_int8.om": Perturb(noise=0.01, bad_sample="sample_2", bad_noise=3)},
    )
    return model, inputs, om


def test_file_and_module_forms_load(hooks: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    by_file = load_metric(str(hooks))
    assert by_file.name == "metric"
    assert load_metric(f"{hooks}:agree").name == "agree"
    monkeypatch.syspath_prepend(str(hooks.parent))
    by_module = load_metric("my_metrics:agree")
    g = {"output": np.eye(3)}
    assert by_module.evaluate(g, g, {}) == MetricOutcome({"agreement": 1.0}, True)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{hooks}:broken", "metric hook {hooks}:broken raised KeyError"),
        ("{hooks}:wrong_type", "returned float, not a dict"),
        ("{hooks}:not_a_number", "value 'score' is 'high', not a number"),
        ("{hooks}:missing", "no function 'missing'"),
        ("{dir}/nope.py:fn", "file .* not found"),
        ("no_such_module_xyz:fn", "cannot import module 'no_such_module_xyz'"),
    ],
)
def test_hook_errors_are_usage_errors_naming_the_hook(hooks: Path, spec: str, message: str) -> None:
    spec = spec.format(hooks=hooks, dir=hooks.parent)
    with pytest.raises(UsageError, match=message.format(hooks=hooks)) as info:
        metric = load_metric(spec)
        metric.evaluate({"output": np.zeros(2)}, {"output": np.zeros(2)}, {})
    assert spec.split(":")[0] in info.value.message


def test_accumulator_means_and_pass_rate(hooks: Path) -> None:
    acc = UserMetricAccumulator(load_metric(f"{hooks}:agree"))
    good = {"output": np.eye(4)}
    bad = {"output": np.eye(4)[::-1]}
    assert acc.update(good, good, {}) == {"agreement": 1.0, "pass_rate": 1.0}
    assert acc.update(good, bad, {}) == {"agreement": 0.0, "pass_rate": 0.0}
    assert acc.result() == {"agreement": 0.5, "pass_rate": 0.5}


def test_hook_is_aggregated_gated_and_names_the_failing_sample(conv, hooks, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, inputs, om = conv
    loose = Thresholds(cosine_min=-1, rel_euclidean_max=100, rmse_max=100, mean_rel_error_max=1e6)
    result = compare_models(
        model, [om], [inputs], tmp_path / "a", loose,
        accuracy=AccuracyConfig(metric=f"{hooks}:agree"),
    )  # fmt: skip
    hook = result.candidates[0].outputs[-1]
    assert hook.output == "agree" and hook.task == "user" and hook.samples == 4
    assert 0 < hook.metrics["agreement"] < 1  # type: ignore[operator]
    assert hook.metrics["pass_rate"] == 0.75
    assert hook.worst_sample["agreement"] == "sample_2"
    assert result.verdict == "FAILED: conv_int8 agree pass_rate 0 < 1 sample sample_2"
    assert result.metric_hook == f"{hooks}:agree"
    # the default function `metric` of a file, receiving the inputs; a gate on its number
    result = compare_models(
        model, [om], [inputs], tmp_path / "b", loose,
        accuracy=AccuracyConfig(
            metric=str(hooks),
            outputs={"metric": TaskOptions(gates=(Gate("max_diff", "<=", 0.5, "worst"),))},
        ),
    )  # fmt: skip
    hook = result.candidates[0].outputs[-1]
    assert 0.4 < hook.metrics["input_mean"] < 0.6  # type: ignore[operator]  # uniform [0, 1) inputs
    assert result.verdict.startswith("FAILED: conv_int8 metric max_diff ")
    assert result.verdict.endswith(" > 0.5 sample sample_2")


def test_nan_from_the_hook_fails_with_reason(conv, hooks, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, inputs, om = conv
    result = compare_models(
        model, [om], [inputs], tmp_path / "a", Thresholds(),
        accuracy=AccuracyConfig(metric=f"{hooks}:nan", gates=(Gate("score", ">=", 0.5),)),
    )  # fmt: skip
    hook = result.candidates[0].outputs[-1]
    assert math.isnan(hook.metrics["score"])  # type: ignore[arg-type]
    assert [f.short() for f in hook.gate_failures] == [
        "score NaN (needs >= 0.5) (the metric returned non-finite score)"
    ]


def test_gate_on_an_unknown_metric_is_a_usage_error(conv, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, inputs, om = conv
    with pytest.raises(UsageError, match="unknown metric 'psnr'") as info:
        compare_models(
            model, [om], [inputs], tmp_path / "a", Thresholds(),
            accuracy=AccuracyConfig(gates=(Gate("psnr", ">=", 30),)),
        )  # fmt: skip
    assert "psnr_db" not in (info.value.hint or "")  # conv_net's output is not an image
    assert "cosine" in (info.value.hint or "")


def test_cli_hook_error_exits_2_naming_the_hook(conv, hooks, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, inputs, om = conv
    args = ["compare", str(model), str(om), "-i", str(inputs), "-o", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*args, "--metric", f"{hooks}:broken"])
    assert isinstance(result.exception, UsageError)
    assert f"metric hook {hooks}:broken raised KeyError" in result.exception.message
