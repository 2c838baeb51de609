from __future__ import annotations

import logging

import numpy as np
import onnx
import tiny_models
from onnx import TensorProto, helper, numpy_helper

from ascend_quant.quant.fp16 import (
    find_overflow,
    overflowing_weights,
    report_overflow,
    round_fp16,
    simulate_fp16,
)
from ascend_quant.runners.ort import OrtRunner


def _scale_net(factor: float) -> object:
    """input -> Mul(factor) -> Relu -> Mul(1/factor): overflows FP16 when factor is large."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])
    inits = [
        numpy_helper.from_array(np.array(factor, np.float32), "k"),
        numpy_helper.from_array(np.array(1.0 / factor, np.float32), "inv"),
    ]
    nodes = [
        helper.make_node("Mul", ["input", "k"], ["big"], name="scale_up"),
        helper.make_node("Relu", ["big"], ["act"], name="relu"),
        helper.make_node("Mul", ["act", "inv"], ["output"], name="scale_down"),
    ]
    return tiny_models._model(nodes, [x], [y], inits)


def test_rounding_is_visible_but_small():
    model = tiny_models.sr_net()
    x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    ref = OrtRunner(model).infer({"input": x})["output"]
    sim_model = simulate_fp16(model)
    sim = OrtRunner(sim_model).infer({"input": x})["output"]
    diff = np.abs(sim - ref)
    assert diff.max() > 0  # FP16 rounding survived ORT's optimisations
    assert diff.max() < 1e-2
    # every value the simulated model outputs is an FP16 number
    np.testing.assert_array_equal(sim, round_fp16(sim))
    # weights are stored in FP16
    weights = {i.name: numpy_helper.to_array(i) for i in sim_model.graph.initializer}
    assert weights["w1__fp16w"].dtype == np.float16


def test_output_names_and_graph_unchanged_for_consumers():
    model = tiny_models.conv_net()
    sim_model = simulate_fp16(model)
    assert [o.name for o in sim_model.graph.output] == ["output"]
    assert [i.name for i in sim_model.graph.input] == ["input"]
    casts = [n for n in sim_model.graph.node if n.name.endswith(("_cast16", "_cast32"))]
    assert len(casts) == 2 * 4  # input, c1, r1, output
    weight_casts = [n for n in sim_model.graph.node if n.name.endswith("w_cast")]
    assert len(weight_casts) == 4  # w1, b1, w2, b2


def test_values_beyond_fp16_range_become_inf_and_are_named(caplog):
    model = _scale_net(1e4)
    x = np.array([[10.0, 7.0, -1.0, 0.001]], np.float32)
    fp32 = OrtRunner(model).infer({"input": x})["output"]
    assert np.all(np.isfinite(fp32))
    sim = simulate_fp16(model)
    out = OrtRunner(sim).infer({"input": x})["output"]
    assert np.isinf(out[0, 0]) and np.isinf(out[0, 1])
    names = find_overflow(sim, [{"input": x}])
    assert names[:2] == ["big", "act"] and "output" in names
    with caplog.at_level(logging.WARNING, logger="ascend_quant"):
        report_overflow(names)
    assert "big" in caplog.text and "FP16 overflow" in caplog.text


def test_a_real_overflow_is_still_found_against_the_fp32_reference():
    model = _scale_net(1e4)
    x = np.array([[10.0, 7.0, -1.0, 0.001]], np.float32)
    names = find_overflow(simulate_fp16(model), [{"input": x}], reference=model)
    assert names[:2] == ["big", "act"] and "output" in names


def test_weights_beyond_fp16_range_are_named():
    model = _scale_net(1e5)
    assert overflowing_weights(model) == ["k"]
    weights = {i.name: numpy_helper.to_array(i) for i in simulate_fp16(model).graph.initializer}
    assert weights["k__fp16w"].dtype == np.float16 and np.isinf(weights["k__fp16w"]).any()


def test_weights_are_stored_as_fp16_and_the_file_halves():
    from tiny_models import sr_net

    model = sr_net(hw=8)
    sim = simulate_fp16(model)
    floats = [i for i in sim.graph.initializer if i.data_type == onnx.TensorProto.FLOAT]
    assert floats == []
    weight_bytes = sum(len(i.raw_data) for i in model.graph.initializer)
    sim_weight_bytes = sum(len(i.raw_data) for i in sim.graph.initializer)
    assert sim_weight_bytes * 2 == weight_bytes


def test_no_overflow_reported_in_range():
    sim = simulate_fp16(_scale_net(100.0))
    assert find_overflow(sim, [{"input": np.ones((1, 4), np.float32)}]) == []


def test_only_tensors_near_the_fp16_range_are_checked():
    from ascend_quant.quant.calibrate import collect_pass
    from ascend_quant.quant.fp16 import activation_tensors, overflow_candidates

    model = _scale_net(1e5)
    feeds = [{"input": np.array([[0.5, 1.0, -2.0, 0.1]], np.float32)}]
    tensors = activation_tensors(model)
    assert tensors[0] == "input" and {"big", "act"} <= set(tensors)
    absmax = collect_pass(model, [], feeds, absmax_of=tensors).absmax  # in-graph reductions
    assert absmax["input"] == 2.0 and absmax["big"] == 2e5 and absmax["act"] == 1e5
    sim = simulate_fp16(model)
    candidates = overflow_candidates(sim, absmax)
    assert candidates == ["big", "act"]  # input (2.0) and output (1.0) cannot overflow
    assert find_overflow(sim, feeds, names=candidates) == ["big", "act"]
    assert find_overflow(sim, feeds, names=[]) == []
    safe = _scale_net(100.0)
    safe_absmax = collect_pass(safe, [], feeds, absmax_of=activation_tensors(safe)).absmax
    assert overflow_candidates(simulate_fp16(safe), safe_absmax) == []
    assert set(overflow_candidates(sim, {})) >= {"big", "act", "input__fp16_in"}
