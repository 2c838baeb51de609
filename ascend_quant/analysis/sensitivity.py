"""Per-layer isolated sensitivity, the ranking tuning starts from (AMCT's single-layer score).

For every candidate layer, a copy of the layer is added to the FP32 model that reads the same
golden input but at the lower precision (INT8: its input fake-quantized with the range the build
calibrates for it and its weight quantized as ARQ does, per channel, symmetric; FP16: every float
input and its weights rounded to FP16 and its output rounded too). One FP32 pass over the
evaluation set then gives each layer's own error, not the error it inherits from upstream:
sensitivity = -SQNR (dB) of the copy against the original output (a non-finite copy, i.e. an
FP16 overflow, is the most sensitive of all). For INT8 it also measures the clip fraction: the
share of the layer's input values on the evaluation data outside its calibrated range, which is
what the calibration strategy of tuning acts on.

This is the minimal ranking `build --tune` needs; the full per-layer analysis (accumulated and
isolated error, reports, advice) is `ascend-quant analyze`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ascend_quant.comparator import ErrorAccumulator
from ascend_quant.config import BuildConfig, Precision
from ascend_quant.data.calibset import CalibFeeds, CalibSet
from ascend_quant.quant.calibrate import collect, ranges
from ascend_quant.quant.fp16 import round_fp16
from ascend_quant.quant.layers import LayerPlan, name_nodes, plan_layers
from ascend_quant.quant.qdq import activation_requests
from ascend_quant.quant.stats import quant_params
from ascend_quant.runners.ort import OrtRunner
from ascend_quant.tensors import graph_io

SUFFIX = "__iso"
OVERFLOW = 1e6  # the sensitivity of a layer whose lower-precision copy is not finite


@dataclass(frozen=True)
class LayerScore:
    """What the per-layer analysis says about one layer under a configuration."""

    sensitivity: float  # higher = this layer alone hurts more (-SQNR dB)
    clip_fraction: float = 0.0  # share of its input values outside the calibrated range


def _feeds(model: onnx.ModelProto, dirs: dict[str, Path], limit: int | None = None) -> CalibFeeds:
    sets = {name: CalibSet.load(Path(d)) for name, d in dirs.items()}
    return CalibFeeds(graph_io(model)[0], sets, limit)


def _weight_axis(node: onnx.NodeProto, rank: int) -> int:
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if node.op_type == "MatMul":
        return rank - 1
    return 0


def _arq(weight: np.ndarray, axis: int, channel_wise: bool, bits: int) -> np.ndarray:
    """ARQ weights as ATC quantizes them: symmetric int8 (per output channel), dequantized."""
    limit = 2 ** (bits - 1) - 1
    if channel_wise and weight.ndim > 1:
        moved = np.moveaxis(weight, axis, 0)
        absmax = np.abs(moved.reshape(moved.shape[0], -1)).max(axis=1)
        scale = np.where(absmax > 0, absmax / limit, 1.0).reshape(-1, *[1] * (moved.ndim - 1))
        quant = np.clip(np.round(moved / scale), -limit, limit) * scale
        return np.moveaxis(quant, 0, axis).astype(np.float32)
    absmax = float(np.abs(weight).max()) or 1.0
    scale = absmax / limit
    return (np.clip(np.round(weight / scale), -limit, limit) * scale).astype(np.float32)


class _Composite:
    """The FP32 model plus one lower-precision copy per candidate layer."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = onnx.ModelProto()
        self.model.CopyFrom(model)
        self.inits = {i.name: i for i in self.model.graph.initializer}
        self.by_name = {n.name: n for n in self.model.graph.node}
        self.pairs: dict[str, tuple[str, str]] = {}  # layer -> (output, copy's output)
        self.extra: list[onnx.NodeProto] = []

    def add_init(self, name: str, value: np.ndarray) -> str:
        self.model.graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    def add_copy(self, node: onnx.NodeProto, inputs: list[str], round_output: bool) -> None:
        out = node.output[0]
        copy = helper.make_node(
            node.op_type,
            inputs,
            [out + SUFFIX + ("32" if round_output else "")],
            name=node.name + SUFFIX,
            domain=node.domain,
        )
        copy.attribute.extend(node.attribute)
        self.extra.append(copy)
        result = copy.output[0]
        if round_output:
            result = self.fp16(copy.output[0], out + SUFFIX)
        self.pairs[node.name] = (out, result)

    def fp16(self, source: str, target: str) -> str:
        half = target + "_h"
        self.extra += [
            helper.make_node("Cast", [source], [half], to=TensorProto.FLOAT16),
            helper.make_node("Cast", [half], [target], to=TensorProto.FLOAT),
        ]
        return target

    def finish(self) -> onnx.ModelProto:
        self.model.graph.node.extend(self.extra)  # each copy reads tensors the graph made above
        return self.model


def _int8_model(
    model: onnx.ModelProto,
    config: BuildConfig,
    names: Sequence[str],
    calib_dirs: dict[str, Path],
) -> tuple[_Composite, dict[str, tuple[str, float, float]]]:
    """The composite for INT8 and, per layer, (its input tensor, calibrated lo, hi)."""
    plan = plan_layers(model, config.quant)
    layers: dict[str, LayerPlan] = {p.name: p for p in plan.quantized if p.name in set(names)}
    requests = activation_requests(plan)
    feeds = _feeds(model, calib_dirs, config.quant.batch_num)
    calibrated = ranges(collect(model, list(requests), iter(feeds), total=len(feeds)), requests)
    comp = _Composite(model)
    clip: dict[str, tuple[str, float, float]] = {}
    for name, layer in layers.items():
        node = comp.by_name[name]
        lo, hi = calibrated[layer.activation]
        symmetric = bool(layer.act.symmetric) if layer.act is not None else False
        scale, zero = quant_params(lo, hi, symmetric)
        s = comp.add_init(f"{name}{SUFFIX}_s", np.array(scale, np.float32))
        z = comp.add_init(f"{name}{SUFFIX}_z", np.array(zero, np.int8))
        q, dq = f"{name}{SUFFIX}_q", f"{name}{SUFFIX}_dq"
        comp.extra += [
            helper.make_node("QuantizeLinear", [layer.activation, s, z], [q]),
            helper.make_node("DequantizeLinear", [q, s, z], [dq]),
        ]
        inputs = [dq, *node.input[1:]]
        if layer.weight is not None and layer.weight in comp.inits:
            weight = numpy_helper.to_array(comp.inits[layer.weight]).astype(np.float32)
            axis = _weight_axis(node, weight.ndim)
            quantized = _arq(weight, axis, layer.channel_wise, config.quant.quant_bits)
            inputs[1] = comp.add_init(f"{name}{SUFFIX}_w", quantized)
        comp.add_copy(node, inputs, round_output=False)
        clip[name] = (layer.activation, lo, hi)
    return comp, clip


def _fp16_model(model: onnx.ModelProto, names: Sequence[str]) -> _Composite:
    inferred = onnx.shape_inference.infer_shapes(model)
    floats = {
        v.name
        for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
        if v.type.tensor_type.elem_type == TensorProto.FLOAT
    }
    comp = _Composite(model)
    for name in names:
        node = comp.by_name.get(name)
        if node is None or not node.output or node.output[0] not in floats:
            continue
        inputs = []
        for i, source in enumerate(node.input):
            if source in comp.inits and comp.inits[source].data_type == TensorProto.FLOAT:
                value = round_fp16(numpy_helper.to_array(comp.inits[source]))
                inputs.append(comp.add_init(f"{name}{SUFFIX}_i{i}", value))
            elif source in floats:
                inputs.append(comp.fp16(source, f"{name}{SUFFIX}_in{i}"))
            else:
                inputs.append(source)
        comp.add_copy(node, inputs, round_output=True)
    return comp


def isolated_scores(
    config: BuildConfig,
    precision: Precision,
    names: Sequence[str],
    model_path: Path,
    calib_dirs: dict[str, Path],
    eval_dirs: dict[str, Path],
) -> dict[str, LayerScore]:
    """Each layer's own error at `precision` under `config`, on the evaluation set."""
    model = onnx.load(str(model_path))
    name_nodes(model)
    clip: dict[str, tuple[str, float, float]] = {}
    if precision == "int8":
        comp, clip = _int8_model(model, config, names, calib_dirs)
    else:
        comp = _fp16_model(model, names)
    pairs = comp.pairs
    runner = OrtRunner(comp.finish(), name="sensitivity")
    watch = [t for pair in pairs.values() for t in pair] + [c[0] for c in clip.values()]
    graph_inputs = {s.name for s in runner.input_specs()}
    exposed = runner.with_outputs([t for t in dict.fromkeys(watch) if t not in graph_inputs])
    errors = {name: ErrorAccumulator() for name in pairs}
    clipped = dict.fromkeys(clip, 0)
    seen = dict.fromkeys(clip, 0)
    for feeds in _feeds(model, eval_dirs):
        values = {**feeds, **exposed.infer(feeds)}
        for name, (out, copy) in pairs.items():
            errors[name].update(values[out], values[copy])
        for name, (tensor, lo, hi) in clip.items():
            data = values[tensor]
            clipped[name] += int(np.count_nonzero((data < lo) | (data > hi)))
            seen[name] += int(data.size)
    exposed.close()
    runner.close()
    scores: dict[str, LayerScore] = {}
    for name, acc in errors.items():
        result = acc.result()
        sqnr = result["sqnr_db"]
        if result["nonfinite"]:
            sensitivity = OVERFLOW
        elif sqnr is None or not math.isfinite(sqnr):
            sensitivity = -200.0  # exact (or an all-zero golden): nothing to gain
        else:
            sensitivity = -float(sqnr)
        fraction = clipped[name] / seen[name] if seen.get(name) else 0.0
        scores[name] = LayerScore(sensitivity, fraction)
    return scores
