"""Models built in code with deliberately sensitive layers, for the tuning tests and benchmark.

`outlier_chain(n, sensitive)`: n 3x3 convolutions (8 channels, ReLU between them, residual-free)
on a 3-channel image. Before each layer in `sensitive`, the previous layer emits one extra
channel that is a constant ~`outlier` (a large bias) which the sensitive layer ignores (zero
weights). Quantizing that layer's input per tensor spreads 256 levels over [0, outlier], so its
real signal (about 0..2) falls into one or two levels: INT8 fails, and keeping exactly that layer
in float fixes it. No calibration setting helps (the outlier is real, not a clipped tail).

`spiky_input(hw)` with `spiky_samples`: the input's rare spikes are clipped by IFMR's default
range, and the output carries them (see their docstrings): a calibration override fixes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ascend_quant.onnx_io import save_for_ort

OPSET = 17
CH = 8


def _w(shape: tuple[int, ...], seed: int, scale: float) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def layer_name(i: int) -> str:
    return f"conv{i}"


def outlier_chain(
    n: int = 8, sensitive: Iterable[int] = (3,), hw: int = 16, outlier: float = 400.0
) -> onnx.ModelProto:
    """See the module docstring; layer i is named `conv{i}`, 0 <= i < n."""
    marked = set(sensitive)
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, hw, hw])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, hw, hw])
    inits, nodes = [], []
    source, in_ch = "input", 3
    for i in range(n):
        last = i == n - 1
        out_ch = 3 if last else CH
        extra = 1 if (i + 1) in marked and not last else 0  # the outlier channel for layer i+1
        weight = _w((out_ch + extra, in_ch, 3, 3), 10 + i, (2.0 / (9 * in_ch)) ** 0.5)
        bias = np.full(out_ch + extra, 0.05, np.float32)
        if in_ch > CH:  # this layer ignores the outlier channel it receives
            weight[:, CH:] = 0.0
        if extra:
            weight[out_ch:] *= 0.01
            bias[out_ch:] = outlier
        inits += [
            numpy_helper.from_array(weight, f"w{i}"),
            numpy_helper.from_array(bias, f"b{i}"),
        ]
        out = "output" if last else f"c{i}"
        nodes.append(
            helper.make_node(
                "Conv", [source, f"w{i}", f"b{i}"], [out], name=layer_name(i), pads=[1, 1, 1, 1]
            )
        )
        if not last:
            nodes.append(helper.make_node("Relu", [out], [f"r{i}"], name=f"relu{i}"))
            source = f"r{i}"
        in_ch = out_ch + extra
    graph = helper.make_graph(nodes, "outlier_chain", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_for_ort(model, path)
    return path


def overflow_chain(hw: int = 12, gain: float = 1e5) -> onnx.ModelProto:
    """conv0 -> relu0 -> `amplify` (x gain) -> `clamp` (ReLU) -> conv1 (weights / gain) -> ...

    In FP32 the gain cancels; in FP16 `amplify`'s output (relu0 values of 1 or more times 1e5) is
    beyond 65504 and becomes inf. Keeping `amplify`, `clamp` and `conv1` (each reads the
    previous one's output) in FP32 is the fix; keeping only some of them is not. The ReLU keeps
    onnxsim from folding the gain into conv1's weights.
    """
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, hw, hw])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, hw, hw])
    w0 = _w((CH, 3, 3, 3), 1, 3.0)
    w1 = _w((CH, CH, 1, 1), 2, (2.0 / CH) ** 0.5) / gain  # 1x1: cheap to keep in FP32
    w2 = _w((3, CH, 3, 3), 3, (2.0 / (9 * CH)) ** 0.5)
    inits = [
        numpy_helper.from_array(w0, "w0"),
        numpy_helper.from_array(np.full(CH, 0.1, np.float32), "b0"),
        numpy_helper.from_array(np.array(gain, np.float32), "gain"),
        numpy_helper.from_array(w1.astype(np.float32), "w1"),
        numpy_helper.from_array(np.full(CH, 0.1, np.float32), "b1"),
        numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(np.zeros(3, np.float32), "b2"),
    ]
    pads = [1, 1, 1, 1]
    nodes = [
        helper.make_node("Conv", ["input", "w0", "b0"], ["c0"], name="conv0", pads=pads),
        helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
        helper.make_node("Mul", ["r0", "gain"], ["big"], name="amplify"),
        helper.make_node("Relu", ["big"], ["bigr"], name="clamp"),
        helper.make_node("Conv", ["bigr", "w1", "b1"], ["c1"], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["output"], name="conv2", pads=pads),
    ]
    graph = helper.make_graph(nodes, "overflow_chain", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


SPIKE = 8.0


def spiky_input(hw: int = 64) -> onnx.ModelProto:
    """output = conv0(input) + conv1(Clip(input, 0, 1)), both 3 -> 3 channels.

    conv0 (1x1) carries the input's spikes to the output; conv1 (3x3, small weights) reads the
    input clamped to [0, 1], so its activation never holds a spike."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, hw, hw])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, hw, hw])
    inits = [
        numpy_helper.from_array(_w((3, 3, 1, 1), 1, 1.0), "w0"),
        numpy_helper.from_array(np.zeros(3, np.float32), "b0"),
        numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
        numpy_helper.from_array(np.array(1.0, np.float32), "hi"),
        numpy_helper.from_array(_w((3, 3, 3, 3), 2, 0.05), "w1"),
        numpy_helper.from_array(np.zeros(3, np.float32), "b1"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w0", "b0"], ["c0"], name="conv0"),
        helper.make_node("Clip", ["input", "lo", "hi"], ["clamped"], name="clamp"),
        helper.make_node("Conv", ["clamped", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c0", "c1"], ["output"], name="add"),
    ]
    graph = helper.make_graph(nodes, "spiky_input", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def spiky_samples(count: int, spikes: int, hw: int = 64, seed: int = 0) -> list[np.ndarray]:
    """Inputs uniform in [0, 1); `spikes` pixels of each set to SPIKE in every channel.

    Calibrated on 16 samples with one spiky value in all (one in ~200k), IFMR's MSE search takes
    that value for an outlier and clips the range well below it; evaluated on samples where 1%
    of the pixels spike, the clipped spikes fail the gate, and IFMR from the true max passes."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        sample = rng.uniform(0.0, 1.0, (1, 3, hw, hw)).astype(np.float32)
        where = rng.choice(hw * hw, spikes, replace=False)
        sample.reshape(1, 3, -1)[:, :, where] = SPIKE
        samples.append(sample)
    return samples


def attention(tokens: int = 8, dim: int = 16) -> onnx.ModelProto:
    """input[1, T, D] -> q, k, v projections (weighted MatMuls) -> softmax(q @ kᵀ) @ v -> out
    projection. `scores` and `mix` multiply two activations: the toolkit never quantizes them."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, tokens, dim])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, tokens, dim])
    inits = [
        numpy_helper.from_array(_w((dim, dim), i, 0.3), f"w_{n}") for i, n in enumerate("qkvo")
    ]
    nodes = [
        *(helper.make_node("MatMul", ["input", f"w_{n}"], [n], name=f"proj_{n}") for n in "qkv"),
        helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"], name="scores"),
        helper.make_node("Softmax", ["s"], ["a"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["a", "v"], ["m"], name="mix"),
        helper.make_node("MatMul", ["m", "w_o"], ["output"], name="proj_o"),
    ]
    graph = helper.make_graph(nodes, "attention", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model
