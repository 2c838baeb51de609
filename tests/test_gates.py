from __future__ import annotations

import math

import pytest

from ascend_quant.config import Thresholds, load_build_config
from ascend_quant.errors import UsageError
from ascend_quant.gates import (
    Extremes,
    Gate,
    GateFailure,
    judge,
    limits_by_metric,
    merge_gates,
    parse_gate,
    verdict_line,
)


def test_parse_gate_forms() -> None:
    assert parse_gate("psnr_db>=35") == (None, Gate("psnr_db", ">=", 35.0))
    assert parse_gate("worst:recall >= 0.9") == (None, Gate("recall", ">=", 0.9, "worst"))
    assert parse_gate("boxes:worst:recall>=0.9") == ("boxes", Gate("recall", ">=", 0.9, "worst"))
    # output names may contain ':'
    assert parse_gate("out:0:rmse<=2") == ("out:0", Gate("rmse", "<=", 2.0))
    with pytest.raises(UsageError, match="not"):
        parse_gate("psnr_db=35")


@pytest.mark.parametrize(
    "text",
    ["cosine>=1.5", "cosine>=nan", "kl<=-0.1", "iou>=1.2", "recall>=-0.5", "psnr_db>=abc"],
)
def test_thresholds_are_range_checked_on_read(text: str) -> None:
    with pytest.raises(UsageError):
        parse_gate(text)


def test_thresholds_config_range_checked() -> None:
    with pytest.raises(UsageError, match=r"cosine_min 1.5 is outside \[-1, 1\]"):
        Thresholds(cosine_min=1.5)
    with pytest.raises(UsageError, match="rmse_max -1"):
        load_build_config(overrides={"thresholds": {"rmse_max": -1}})
    with pytest.raises(UsageError, match="kl_max nan"):
        load_build_config(overrides={"thresholds": {"kl_max": math.nan}})
    with pytest.raises(UsageError, match="outside"):
        load_build_config(
            overrides={"accuracy": {"gates": [{"metric": "ssim", "op": ">=", "threshold": 2}]}}
        )
    with pytest.raises(UsageError, match="finite"):
        load_build_config(
            overrides={
                "accuracy": {"gates": [{"metric": "psnr_db", "op": ">=", "threshold": math.inf}]}
            }
        )


def test_merge_replaces_same_metric_and_scope() -> None:
    merged = merge_gates(
        [Gate("cosine", ">=", 0.99), Gate("psnr_db", ">=", 30, "worst")],
        [Gate("psnr_db", ">=", 35, "worst"), Gate("psnr_db", ">=", 40)],
    )
    assert merged == (
        Gate("cosine", ">=", 0.99),
        Gate("psnr_db", ">=", 35, "worst"),
        Gate("psnr_db", ">=", 40),
    )
    assert limits_by_metric(merged)["psnr_db"] == "worst ≥ 35, ≥ 40"


def test_worst_sample_gate_names_the_sample_and_nan_fails_with_reason() -> None:
    ext = Extremes()
    for name, value in (("a", 40.0), ("b", 22.5), ("c", 38.0)):
        ext.update({"psnr_db": value, "ssim": 0.99}, name)
    gates = [Gate("psnr_db", ">=", 30, "worst"), Gate("psnr_db", ">=", 30)]
    failures = judge(gates, {"psnr_db": 33.5}, ext, candidate="int8", output="out")
    assert [f.text() for f in failures] == ["int8 out psnr_db 22.5 < 30 sample b"]
    assert verdict_line(failures) == "FAILED: int8 out psnr_db 22.5 < 30 sample b"
    ext.update({"psnr_db": math.nan}, "d")
    failures = judge(
        gates,
        {"psnr_db": math.nan},
        ext,
        candidate="fp16",
        output="out",
        nan_reason="candidate output has 1 NaN/Inf values",
    )
    assert verdict_line(failures) == (
        "FAILED: fp16 out psnr_db NaN (needs >= 30) sample d "
        "(candidate output has 1 NaN/Inf values) (+1 other failed gate)"
    )
    # undefined metrics are not judged
    assert (
        judge([Gate("cosine", ">=", 0.99)], {"cosine": None}, None, candidate="a", output="o") == []
    )
    assert verdict_line([]) == "PASSED"


def test_gate_failure_round_trips_through_json() -> None:
    from ascend_quant.report import json_safe

    failure = GateFailure("int8", "out", "cosine", math.nan, ">=", 0.99, reason="overflow")
    back = GateFailure.from_mapping(json_safe(failure))
    assert back.text() == failure.text()
