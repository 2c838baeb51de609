"""compare_runs: streaming per-tensor accumulators, intermediate tensors, tensor maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tiny_models
from onnx import numpy_helper

from ascend_quant.comparator import ErrorAccumulator, compare_runs, cosine_from, sqnr_from
from ascend_quant.errors import UsageError
from ascend_quant.runners.ort import OrtRunner


def _feeds(n: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    return [{"input": rng.random((1, 3, 16, 16), dtype=np.float32)} for _ in range(n)]


def _perturbed(scale: float = 1.01):
    """conv_net with conv2's weights scaled: c1/r1 equal the golden's, output differs."""
    model = tiny_models.conv_net()
    for init in model.graph.initializer:
        if init.name == "w2":
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * scale, "w2"))
    return model


def test_error_accumulator_equals_the_concatenated_metric() -> None:
    rng = np.random.default_rng(0)
    gs = [rng.standard_normal(50) for _ in range(3)]
    ms = [g + rng.standard_normal(50) * 0.1 for g in gs]
    acc = ErrorAccumulator()
    for g, m in zip(gs, ms):
        acc.update(g, m)
    g, m = np.concatenate(gs), np.concatenate(ms)
    out = acc.result()
    assert out["cosine"] == pytest.approx(g @ m / np.linalg.norm(g) / np.linalg.norm(m))
    assert out["sqnr_db"] == pytest.approx(
        20 * math.log10(np.linalg.norm(g) / np.linalg.norm(m - g))
    )
    assert out["rel_euclidean"] == pytest.approx(np.linalg.norm(m - g) / np.linalg.norm(g))
    assert out["max_abs_error"] == pytest.approx(np.abs(m - g).max())
    assert out["golden_min"] == pytest.approx(g.min()) and out["values"] == 150


def test_nonfinite_candidate_values_are_counted_not_averaged() -> None:
    acc = ErrorAccumulator()
    out = acc.update(np.array([1.0, 2.0, 70000.0]), np.array([1.0, np.inf, np.nan]))
    assert out["nonfinite"] == 2 and out["golden_over_fp16"] == 1
    assert out["cosine"] == pytest.approx(1.0) and out["sqnr_db"] == math.inf


def test_one_accumulator_two_metric_sets_share_the_sums() -> None:
    """Per layer ("error") and per model output (msit's "tensor") read the same sums; only NaN
    differs on purpose: analysis counts it and goes on, a judged output reads NaN and fails."""
    rng = np.random.default_rng(3)
    g = rng.standard_normal((4, 32)).astype(np.float32)
    m = (g + rng.standard_normal(g.shape) * 0.05).astype(np.float32)
    light, msit = ErrorAccumulator(), ErrorAccumulator("tensor")
    for i in range(4):
        light.update(g[i], m[i])
        msit.update(g[i], m[i])
    a, b = light.result(), msit.result()
    assert a["cosine"] == pytest.approx(b["cosine"], abs=1e-9)
    assert a["rel_euclidean"] == pytest.approx(b["rel_euclidean"], rel=1e-6)
    assert a["max_abs_error"] == pytest.approx(b["max_abs_error"], rel=1e-6)
    bad = m.copy()
    bad[1, 0] = np.nan
    light, msit = ErrorAccumulator(), ErrorAccumulator("tensor")
    light.update(g, bad)
    msit.update(g, bad)
    assert light.result()["nonfinite"] == 1 and math.isfinite(light.result()["cosine"])
    assert math.isnan(msit.result()["cosine"])
    assert "candidate output has 1 NaN/Inf values (FP16 overflow?)" in msit.result()["notes"]


def test_degenerate_sums() -> None:
    assert cosine_from(0, 0, 0) == 1.0 and cosine_from(0, 0, 1) is None
    assert sqnr_from(0, 1) is None and sqnr_from(1, 0) == math.inf


def test_intermediate_tensors_locate_where_the_error_starts(conv_model) -> None:
    with OrtRunner(conv_model) as golden, OrtRunner(_perturbed()) as cand:
        result = compare_runs(golden, {"c": cand}, _feeds(3), tensors=["c1", "r1", "output"])
    assert result.samples == 3
    assert result.result("c", "c1")["sqnr_db"] == math.inf
    assert result.result("c", "r1")["max_abs_error"] == 0
    assert 38 < result.result("c", "output")["sqnr_db"] < 45  # weights 1 % off, bias exact


def test_a_candidate_can_be_the_golden_runner_with_a_tensor_map(conv_model) -> None:
    """One runner computing golden and a copy: infers once per sample, compares by map."""
    with OrtRunner(conv_model) as golden:
        calls = []
        original = golden._run

        def counting(feeds):  # type: ignore[no-untyped-def]
            calls.append(1)
            return original(feeds)

        golden._run = counting  # type: ignore[method-assign]
        result = compare_runs(
            golden, {"self": golden}, _feeds(2), tensor_map={"self": {"output": "output"}}
        )
    assert calls == [1, 1]
    assert result.result("self", "output")["cosine"] == pytest.approx(1.0)


def test_missing_tensors_are_listed_and_metric_accumulators_plug_in(conv_model) -> None:
    with OrtRunner(conv_model) as golden, OrtRunner(_perturbed(1.1)) as cand:
        result = compare_runs(
            golden,
            {"c": cand},
            _feeds(2),
            tensor_map={"c": {"r1": "gone"}},
            tensors=["r1", "output"],
            accumulator=lambda _c, _t: ErrorAccumulator("tensor"),
        )
    assert result.missing == {"c": ["r1"]}
    assert 0.99 < result.result("c", "output")["cosine"] < 1.0
    assert "rmse" in result.result("c", "output")


def test_no_samples_is_a_usage_error(conv_model) -> None:
    with OrtRunner(conv_model) as golden, pytest.raises(UsageError, match="no samples"):
        compare_runs(golden, {"g": golden}, [])
