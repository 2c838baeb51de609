"""Tiny ONNX models built in code, shared by the tests. Deterministic: fixed seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ascend_quant.onnx_io import save_for_ort

OPSET = 17


def _weights(shape: tuple[int, ...], seed: int, scale: float = 0.3) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def _model(nodes, inputs, outputs, inits, opset: int = OPSET) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def conv_net(channels: int = 3, hw: int = 16, batch: int | str = 1) -> onnx.ModelProto:
    """input[N,C,H,W] -> Conv(8) -> Relu -> Conv(4) -> output."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, channels, hw, hw])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 4, hw, hw])
    inits = [
        numpy_helper.from_array(_weights((8, channels, 3, 3), 1), "w1"),
        numpy_helper.from_array(_weights((8,), 2, 0.1), "b1"),
        numpy_helper.from_array(_weights((4, 8, 3, 3), 3), "w2"),
        numpy_helper.from_array(_weights((4,), 4, 0.1), "b2"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["output"], name="conv2", pads=[1, 1, 1, 1]),
    ]
    return _model(nodes, [x], [y], inits)


def classifier(classes: int = 10, hw: int = 16) -> onnx.ModelProto:
    """input[1,3,H,W] -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> logits."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, hw, hw])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])
    inits = [
        numpy_helper.from_array(_weights((16, 3, 3, 3), 5), "cw"),
        numpy_helper.from_array(_weights((classes, 16), 6), "fw"),
        numpy_helper.from_array(_weights((classes,), 7, 0.1), "fb"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "cw"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], name="fc", transB=1),
    ]
    return _model(nodes, [x], [y], inits)


def sr_net(scale: int = 2, hw: int = 16, batch: int | str = 1) -> onnx.ModelProto:
    """An ESPCN-shaped super-resolution net: Conv -> Relu -> Conv -> DepthToSpace."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, hw, hw])
    y = helper.make_tensor_value_info(
        "output", TensorProto.FLOAT, [batch, 3, hw * scale, hw * scale]
    )
    inits = [
        numpy_helper.from_array(_weights((16, 3, 3, 3), 8), "w1"),
        numpy_helper.from_array(_weights((16,), 9, 0.05), "b1"),
        numpy_helper.from_array(_weights((3 * scale * scale, 16, 3, 3), 10, 0.1), "w2"),
        numpy_helper.from_array(_weights((3 * scale * scale,), 11, 0.05), "b2"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node(
            "DepthToSpace", ["c2"], ["output"], name="d2s", blocksize=scale, mode="CRD"
        ),
    ]
    return _model(nodes, [x], [y], inits)


def passthrough(shape: list[int], op: str = "Identity", **attrs: object) -> onnx.ModelProto:
    """input -> one elementwise op (Identity, Sigmoid, Softmax ...) -> output, same shape.

    Task tests feed hand-made tensors (boxes, masks, step scores) straight through it.
    """
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)
    return _model([helper.make_node(op, ["input"], ["output"], name="op", **attrs)], [x], [y], [])


def save(model: onnx.ModelProto, path: Path) -> Path:
    return save_for_ort(model, path)


def text_recognizer(
    classes: int = 12, height: int | str = 16, width: int | str = "W"
) -> onnx.ModelProto:
    """A CRNN-shaped text-line recognizer: image[1,1,H,W] -> Conv -> Relu -> mean over H ->
    per-column Linear -> logits[1,W,classes]. Any H and W run, as OCR models need."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, height, width])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, width, classes])
    inits = [
        numpy_helper.from_array(_weights((8, 1, 3, 3), 12), "cw"),
        numpy_helper.from_array(_weights((8,), 13, 0.1), "cb"),
        numpy_helper.from_array(_weights((8, classes), 14), "fw"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "h_axis"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "cw", "cb"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("ReduceMean", ["r", "h_axis"], ["m"], name="pool_h", keepdims=0),
        helper.make_node("Transpose", ["m"], ["t"], name="to_columns", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["t", "fw"], ["logits"], name="classifier"),
    ]
    return _model(nodes, [x], [y], inits, opset=18)


def token_net(features: int = 4, seq: int | str = "seq") -> onnx.ModelProto:
    """An ND model: tokens[1,seq,F] -> MatMul -> Relu -> MatMul -> out[1,seq,F]."""
    x = helper.make_tensor_value_info("tokens", TensorProto.FLOAT, [1, seq, features])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, seq, features])
    inits = [
        numpy_helper.from_array(_weights((features, 8), 15), "w1"),
        numpy_helper.from_array(_weights((8, features), 16), "w2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["tokens", "w1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["out"], name="fc2"),
    ]
    return _model(nodes, [x], [y], inits)
