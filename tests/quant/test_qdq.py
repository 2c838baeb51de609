from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
import tiny_models
from onnx import TensorProto, helper, numpy_helper

from ascend_quant.config import LayerOverride, QuantConfig, TensorQuantize
from ascend_quant.errors import UsageError
from ascend_quant.quant.qdq import quantize_model
from ascend_quant.runners.ort import OrtRunner


def _feeds(shape, count=4, seed=0):
    rng = np.random.default_rng(seed)
    return [{"input": rng.random(shape, dtype=np.float32)} for _ in range(count)]


def _ops(model: onnx.ModelProto) -> Counter[str]:
    return Counter(n.op_type for n in model.graph.node)


def _layer(result, name):
    return next(layer for layer in result.layers if layer["name"] == name)


def _pool_add_net() -> onnx.ModelProto:
    """input -> Conv -> MaxPool -> Add(residual from AveragePool) -> Gemm-free output."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 4, 4])
    w = numpy_helper.from_array(
        np.random.default_rng(0).normal(size=(4, 3, 1, 1)).astype(np.float32), "w"
    )
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], name="conv"),
        helper.make_node(
            "MaxPool", ["c"], ["m"], name="maxpool", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node(
            "AveragePool", ["c"], ["a"], name="avgpool", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Add", ["m", "a"], ["output"], name="add"),
    ]
    return tiny_models._model(nodes, [x], [y], [w])


def _matmul_net() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [2, 8])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [2, 5])
    w = numpy_helper.from_array(
        np.random.default_rng(1).normal(size=(8, 5)).astype(np.float32), "w"
    )
    nodes = [helper.make_node("MatMul", ["input", "w"], ["output"], name="mm")]
    return tiny_models._model(nodes, [x], [y], [w])


def _if_net() -> onnx.ModelProto:
    """All compute inside the branches of an If."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, None)
    w = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")

    def branch(name):
        out = helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, None)
        conv = helper.make_node("Conv", ["input", "w"], [f"{name}_out"], name=f"{name}_conv")
        return helper.make_graph([conv], name, [], [out])

    cond = numpy_helper.from_array(np.array(True), "cond")
    node = helper.make_node(
        "If",
        ["cond"],
        ["output"],
        name="if",
        then_branch=branch("then"),
        else_branch=branch("else"),
    )
    return tiny_models._model([node], [x], [y], [w, cond])


def test_conv_per_channel_scales_and_counts():
    result, ranges = quantize_model(tiny_models.conv_net(), QuantConfig(), _feeds((1, 3, 16, 16)))
    assert result.quantized_layers == 2
    ops = _ops(result.model)
    # one Q per activation, DQ for activations, weights and int32 biases
    assert ops["QuantizeLinear"] == 2 and ops["DequantizeLinear"] == 6
    assert len(result.tensors["w1"]["scale"]) == 8 and result.tensors["w1"]["axis"] == 0
    assert len(result.tensors["w2"]["scale"]) == 4
    assert result.tensors["input"]["dtype"] == "int8"
    assert set(ranges) == {"input", "r1"}
    # outputs of quantized layers are not quantized (AscendDequant emits float)
    producers = {o: n.op_type for n in result.model.graph.node for o in n.output}
    assert producers["output"] == "Conv"


def test_per_tensor_when_channel_wise_off():
    result, _ = quantize_model(
        tiny_models.conv_net(), QuantConfig(channel_wise=False), _feeds((1, 3, 16, 16))
    )
    assert len(result.tensors["w1"]["scale"]) == 1 and result.tensors["w1"]["axis"] is None


def test_symmetric_activations_have_zero_offset():
    asym, _ = quantize_model(tiny_models.conv_net(), QuantConfig(), _feeds((1, 3, 16, 16)))
    sym, _ = quantize_model(
        tiny_models.conv_net(), QuantConfig(activation_offset=False), _feeds((1, 3, 16, 16))
    )
    assert asym.tensors["input"]["zero_point"] == [-128]  # inputs in [0, 1): all offset
    assert sym.tensors["input"]["zero_point"] == [0]
    assert _layer(sym, "conv1")["symmetric"] is True


def test_skip_layers_by_name():
    result, _ = quantize_model(
        tiny_models.conv_net(), QuantConfig(skip_layers=("conv2",)), _feeds((1, 3, 16, 16))
    )
    assert _layer(result, "conv2")["quantized"] is False
    assert _layer(result, "conv2")["reason"] == "skip_layers"
    assert result.quantized_layers == 1
    assert "w2" not in result.tensors


@pytest.mark.parametrize("type_name", ["MatMulV2", "Gemm"])
def test_skip_layer_types_both_spellings(type_name):
    model = tiny_models.classifier()
    result, _ = quantize_model(
        model, QuantConfig(skip_layer_types=(type_name,)), _feeds((1, 3, 16, 16))
    )
    assert _layer(result, "fc")["quantized"] is False
    assert _layer(result, "conv")["quantized"] is True


def test_overrides_layer_beats_type_beats_common():
    config = QuantConfig(
        channel_wise=True,
        override_layer_types={"Conv2D": LayerOverride(channel_wise=False, algorithm="minmax")},
        override_layer_configs={"conv2": LayerOverride(channel_wise=True)},
    )
    result, _ = quantize_model(tiny_models.conv_net(), config, _feeds((1, 3, 16, 16)))
    assert _layer(result, "conv1")["channel_wise"] is False
    assert _layer(result, "conv2")["channel_wise"] is True
    assert _layer(result, "conv2")["algorithm"] == "minmax"  # from the type override
    assert len(result.tensors["w1"]["scale"]) == 1
    assert len(result.tensors["w2"]["scale"]) == 4


def test_matmul_weight_per_channel_on_last_axis():
    result, _ = quantize_model(_matmul_net(), QuantConfig(), _feeds((2, 8)))
    assert result.tensors["w"]["axis"] == 1 and len(result.tensors["w"]["scale"]) == 5
    assert _layer(result, "mm")["ir_type"] == "BatchMatMulV2"


def test_avgpool_quantized_maxpool_add_only_through_tensor_quantize():
    result, _ = quantize_model(_pool_add_net(), QuantConfig(), _feeds((1, 3, 8, 8)))
    assert _layer(result, "avgpool")["quantized"] is True
    assert {layer["name"] for layer in result.layers} == {"conv", "avgpool"}
    by_name = {n.name: n for n in result.model.graph.node}
    producers = {o: n.op_type for n in result.model.graph.node for o in n.output}
    assert producers[by_name["maxpool"].input[0]] == "Conv"
    config = QuantConfig(tensor_quantize=(TensorQuantize("maxpool", 0),))
    tq, _ = quantize_model(_pool_add_net(), config, _feeds((1, 3, 8, 8)))
    by_name = {n.name: n for n in tq.model.graph.node}
    producers = {o: n.op_type for n in tq.model.graph.node for o in n.output}
    assert producers[by_name["maxpool"].input[0]] == "DequantizeLinear"
    assert _ops(tq.model)["QuantizeLinear"] == _ops(result.model)["QuantizeLinear"] + 1


def test_tensor_quantize_rejects_other_layers():
    config = QuantConfig(tensor_quantize=(TensorQuantize("conv", 0),))
    with pytest.raises(UsageError, match="is a Conv") as info:
        quantize_model(_pool_add_net(), config, _feeds((1, 3, 8, 8)))
    assert "MaxPool and Add" in (info.value.hint or "")


def test_nothing_quantized_all_skipped():
    with pytest.raises(UsageError, match="nothing was quantized: all 2 quantizable"):
        quantize_model(
            tiny_models.conv_net(),
            QuantConfig(skip_layer_types=("Conv2D",)),
            _feeds((1, 3, 16, 16)),
        )


def test_nothing_quantized_inside_if():
    with pytest.raises(UsageError, match="inside If/Loop subgraphs"):
        quantize_model(_if_net(), QuantConfig(), _feeds((1, 3, 8, 8)))


def test_nothing_quantized_no_ops():
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])
    model = tiny_models._model([helper.make_node("Relu", ["input"], ["output"])], [x], [y], [])
    with pytest.raises(UsageError, match="no quantizable ops"):
        quantize_model(model, QuantConfig(), _feeds((1, 4)))


def test_unknown_skip_layer_suggests():
    with pytest.raises(UsageError) as info:
        quantize_model(
            tiny_models.conv_net(), QuantConfig(skip_layers=("conv3",)), _feeds((1, 3, 16, 16))
        )
    assert "conv3" in info.value.message and "did you mean 'conv" in (info.value.hint or "")


def test_qdq_model_is_close_to_fp32_and_not_identical():
    model = tiny_models.conv_net()
    feeds = _feeds((1, 3, 16, 16), count=8)
    result, _ = quantize_model(model, QuantConfig(), feeds)
    fp32, int8 = OrtRunner(model), OrtRunner(result.model)
    a = fp32.infer(feeds[0])["output"].ravel()
    b = int8.infer(feeds[0])["output"].ravel()
    cosine = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert 0.999 < cosine < 1.0 and not np.array_equal(a, b)


def test_old_opset_is_converted_for_per_channel():
    model = tiny_models.conv_net()
    model.opset_import[0].version = 11
    result, _ = quantize_model(model, QuantConfig(), _feeds((1, 3, 16, 16)))
    assert result.model.opset_import[0].version >= 13
    assert len(result.tensors["w1"]["scale"]) == 8


def test_quant_bits_seven_limits_weight_levels():
    result, _ = quantize_model(
        tiny_models.conv_net(), QuantConfig(quant_bits=7), _feeds((1, 3, 16, 16))
    )
    weights = {i.name: numpy_helper.to_array(i) for i in result.model.graph.initializer}
    q = next(v for k, v in weights.items() if k.startswith("w1") and v.ndim == 4)
    assert np.abs(q).max() == 63
