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


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(array, name)


def unet_like(timestep: int = TensorProto.FLOAT, hw: int = 8, tokens: int = 7) -> onnx.ModelProto:
    """sample[1,4,H,W], timestep[] (float or int64), encoder_hidden_states[1,T,16] -> out[1,4,H,W].

    A conv, a time embedding (Cast -> MatMul -> Sin added per channel) and cross-attention whose
    keys and values are MatMuls of the text embedding: the shape of a diffusion UNet block.
    """
    c = 8
    inputs = [
        helper.make_tensor_value_info("sample", TensorProto.FLOAT, [1, 4, hw, hw]),
        helper.make_tensor_value_info("timestep", timestep, []),
        helper.make_tensor_value_info("encoder_hidden_states", TensorProto.FLOAT, [1, tokens, 16]),
    ]
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, hw, hw])
    inits = [
        _init("w_in", _weights((c, 4, 3, 3), 1)),
        _init("b_in", _weights((c,), 2, 0.1)),
        _init("w_t", _weights((1, c), 3, 0.01)),
        _init("t_shape", np.array([1, 1], np.int64)),
        _init("tc_shape", np.array([1, c, 1, 1], np.int64)),
        _init("seq_shape", np.array([1, c, hw * hw], np.int64)),
        _init("img_shape", np.array([1, c, hw, hw], np.int64)),
        _init("w_q", _weights((c, c), 4)),
        _init("w_k", _weights((16, c), 5)),
        _init("w_v", _weights((16, c), 6)),
        _init("w_out", _weights((4, c, 3, 3), 7)),
        _init("b_out", _weights((4,), 8, 0.1)),
    ]
    nodes = [
        helper.make_node("Conv", ["sample", "w_in", "b_in"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("Cast", ["timestep"], ["t_f"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["t_f", "t_shape"], ["t_2d"]),
        helper.make_node("MatMul", ["t_2d", "w_t"], ["t_emb"]),
        helper.make_node("Sin", ["t_emb"], ["t_sin"]),
        helper.make_node("Reshape", ["t_sin", "tc_shape"], ["t_c"]),
        helper.make_node("Add", ["h", "t_c"], ["h_t"]),
        helper.make_node("Relu", ["h_t"], ["h_r"]),
        helper.make_node("Reshape", ["h_r", "seq_shape"], ["h_seq"]),
        helper.make_node("Transpose", ["h_seq"], ["x"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["x", "w_q"], ["q"]),
        helper.make_node("MatMul", ["encoder_hidden_states", "w_k"], ["k"]),
        helper.make_node("MatMul", ["encoder_hidden_states", "w_v"], ["v"]),
        helper.make_node("Transpose", ["k"], ["k_t"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "k_t"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["attn"], axis=-1),
        helper.make_node("MatMul", ["attn", "v"], ["ctx"]),
        helper.make_node("Add", ["x", "ctx"], ["x_res"]),
        helper.make_node("Transpose", ["x_res"], ["x_back"], perm=[0, 2, 1]),
        helper.make_node("Reshape", ["x_back", "img_shape"], ["h_img"]),
        helper.make_node("Conv", ["h_img", "w_out", "b_out"], ["out"], pads=[1, 1, 1, 1]),
    ]
    return _model(nodes, inputs, [out], inits)


def vad_like(frame: int = 32, hidden: int = 16) -> onnx.ModelProto:
    """input[N,frame], state[2,N,hidden] (dim 0 is NOT the batch), sr[] int64 ->
    output[N,hidden], stateN[2,N,hidden]: a voice-activity model's inputs."""
    inputs = [
        helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", frame]),
        helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "N", hidden]),
        helper.make_tensor_value_info("sr", TensorProto.INT64, []),
    ]
    outputs = [
        helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", hidden]),
        helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "N", hidden]),
    ]
    inits = [
        _init("w_in", _weights((frame, hidden), 11)),
        _init("w_h", _weights((hidden, hidden), 12)),
        _init("axes0", np.array([0], np.int64)),
        _init("sr_scale", np.array(1.0 / 16000, np.float32)),
    ]
    nodes = [
        helper.make_node("MatMul", ["input", "w_in"], ["x"]),
        helper.make_node("ReduceMean", ["state"], ["s_mean"], axes=[0], keepdims=0),
        helper.make_node("MatMul", ["s_mean", "w_h"], ["s_h"]),
        helper.make_node("Cast", ["sr"], ["sr_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["sr_f", "sr_scale"], ["sr_n"]),
        helper.make_node("Add", ["x", "s_h"], ["xs"]),
        helper.make_node("Mul", ["xs", "sr_n"], ["xs_sr"]),
        helper.make_node("Tanh", ["xs_sr"], ["output"]),
        helper.make_node("Unsqueeze", ["output", "axes0"], ["o1"]),
        helper.make_node("Add", ["state", "o1"], ["stateN"]),
    ]
    return _model(nodes, inputs, outputs, inits)


def image_and_vector(hw: int = 16, cond: int = 8) -> onnx.ModelProto:
    """image[1,3,H,W] + cond[1,8] -> logits[1,10]: an image input beside an array input."""
    inputs = [
        helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, hw, hw]),
        helper.make_tensor_value_info("cond", TensorProto.FLOAT, [1, cond]),
    ]
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])
    inits = [
        _init("w_c", _weights((8, 3, 3, 3), 21)),
        _init("w_g", _weights((10, 8 + cond), 22)),
        _init("b_g", _weights((10,), 23, 0.1)),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "w_c"], ["f"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["f"], ["f_r"]),
        helper.make_node("GlobalAveragePool", ["f_r"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Concat", ["flat", "cond"], ["both"], axis=1),
        helper.make_node("Gemm", ["both", "w_g", "b_g"], ["logits"], transB=1),
    ]
    return _model(nodes, inputs, [out], inits)


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


def tiny_unet(batch: int = 2, hw: int = 8, tokens: int = 4, dim: int = 8) -> onnx.ModelProto:
    """An untrained denoiser with the diffusion example's interface: sample[N,3,H,W],
    timestep[N], context[N,T,D] -> eps[N,3,H,W] (Conv(sample) + t/1000 + mean(context))."""
    x = helper.make_tensor_value_info("sample", TensorProto.FLOAT, [batch, 3, hw, hw])
    t = helper.make_tensor_value_info("timestep", TensorProto.FLOAT, [batch])
    c = helper.make_tensor_value_info("context", TensorProto.FLOAT, [batch, tokens, dim])
    y = helper.make_tensor_value_info("eps", TensorProto.FLOAT, [batch, 3, hw, hw])
    inits = [
        numpy_helper.from_array(_weights((3, 3, 3, 3), 12, 0.2), "w"),
        numpy_helper.from_array(np.array([1, 2, 3], dtype=np.int64), "axes123"),
        numpy_helper.from_array(np.array([3], dtype=np.int64), "axis3"),
        numpy_helper.from_array(np.array(0.001, dtype=np.float32), "per_step"),
    ]
    nodes = [
        helper.make_node("Conv", ["sample", "w"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Unsqueeze", ["timestep", "axes123"], ["t4"], name="t4"),
        helper.make_node("Mul", ["t4", "per_step"], ["ts"], name="ts"),
        helper.make_node("ReduceMean", ["context"], ["cm"], name="cm", axes=[1, 2], keepdims=1),
        helper.make_node("Unsqueeze", ["cm", "axis3"], ["cm4"], name="cm4"),
        helper.make_node("Add", ["conv", "ts"], ["a1"], name="a1"),
        helper.make_node("Add", ["a1", "cm4"], ["eps"], name="a2"),
    ]
    return _model(nodes, [x, t, c], [y], inits)


def masked_text_encoder(
    vocab: int = 10, tokens: int = 6, dim: int = 8, classes: int = 3
) -> onnx.ModelProto:
    """A one-head attention text classifier as PyTorch exports it: input_ids and
    attention_mask (int64 [1, T]) -> Gather embedding -> scores + Where(mask == 0, -inf, 0) ->
    Softmax -> mean -> logits [1, classes]. The -inf is the FP32 model's own; an all-zero mask
    makes every output NaN."""
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, tokens])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, tokens])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])
    inits = [
        numpy_helper.from_array(_weights((vocab, dim), 21, 1.0), "embedding"),
        numpy_helper.from_array(_weights((dim, dim), 22), "wq"),
        numpy_helper.from_array(_weights((dim, dim), 23), "wk"),
        numpy_helper.from_array(_weights((dim, classes), 24), "wout"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array(-np.inf, np.float32), "neg_inf"),
        numpy_helper.from_array(np.array(0.0, np.float32), "fzero"),
    ]
    nodes = [
        helper.make_node("Gather", ["embedding", "input_ids"], ["emb"], name="gather"),
        helper.make_node("MatMul", ["emb", "wq"], ["q"], name="q_proj"),
        helper.make_node("MatMul", ["emb", "wk"], ["k"], name="k_proj"),
        helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"], name="scores"),
        helper.make_node("Unsqueeze", ["attention_mask", "axis1"], ["mask3"], name="mask3"),
        helper.make_node("Equal", ["mask3", "zero"], ["padded"], name="padded"),
        helper.make_node("Where", ["padded", "neg_inf", "fzero"], ["bias"], name="mask_bias"),
        helper.make_node("Add", ["scores", "bias"], ["masked"], name="masked"),
        helper.make_node("Softmax", ["masked"], ["attn"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["attn", "emb"], ["ctx"], name="context"),
        helper.make_node("ReduceMean", ["ctx"], ["pooled"], name="pool", axes=[1], keepdims=0),
        helper.make_node("MatMul", ["pooled", "wout"], ["logits"], name="head"),
    ]
    return _model(nodes, [ids, mask], [y], inits)
