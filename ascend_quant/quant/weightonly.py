"""Weight-only INT8 (`weight_compress_only`): int8 weights, activations left in FP16.

What the toolkit's weight-only mode does to a layer ATC would quantize (Conv, Gemm, MatMul with
a constant weight, ConvTranspose): the weight is stored as int8 with a symmetric scale (per
output channel when `channel_wise`; `arq_quantize { asymmetric : false }`), the input activation
is not quantized, and the layer computes on dequantized weights in FP16. The simulated model
holds the int8 weights as initializers followed by DequantizeLinear, so its file is about a
quarter of the FP32 one for large weights, and ONNX Runtime folds the dequantization once when
the session is created. No calibration data is needed: nothing is measured on activations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ascend_quant.config import QuantConfig
from ascend_quant.errors import UsageError
from ascend_quant.quant.layers import name_nodes, nothing_quantized_reason, plan_layers
from ascend_quant.quant.qdq import ensure_opset, weight_axis

QUANTIZED_SUFFIX = "__w8"


@dataclass
class WeightOnlyResult:
    """The weight-compressed model and a record per planned layer (for the manifest)."""

    model: onnx.ModelProto
    layers: list[dict[str, Any]]

    @property
    def quantized_layers(self) -> int:
        return sum(1 for layer in self.layers if layer["quantized"])


def quantize_weight(
    data: np.ndarray, axis: int | None, bits: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 (or 6/7-bit on the int8 grid) values and scales; axis None: one scale."""
    limit = 2 ** (bits - 1) - 1
    values = data.astype(np.float32)
    if axis is None:
        absmax = np.array(np.abs(values).max(), dtype=np.float32)
    else:
        moved = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
        absmax = np.abs(moved).max(axis=1).astype(np.float32)
    scale = np.where(absmax > 0, absmax / limit, 1.0).astype(np.float32)
    q = np.clip(np.rint(values / _broadcast(scale, axis, values.ndim)), -limit, limit)
    return q.astype(np.int8), scale


def compress_weights(model: onnx.ModelProto, config: QuantConfig) -> WeightOnlyResult:
    """A copy of `model` whose quantizable layers read int8 weights through DequantizeLinear.

    The layer choice is ATC's (`plan_layers`: skip_layers, skip_layer_types, overrides'
    channel_wise); weights shared by several layers are compressed once.
    """
    if config.quant_bits not in (6, 7, 8):
        raise UsageError(f"quant_bits {config.quant_bits} is not supported (use 6, 7 or 8)")
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy = ensure_opset(copy)  # per-channel DequantizeLinear needs opset 13
    name_nodes(copy)
    plan = plan_layers(copy, config)
    graph = copy.graph
    inits = {i.name: i for i in graph.initializer}
    nodes = {n.name: n for n in graph.node}
    layers: list[dict[str, Any]] = []
    done: dict[str, dict[str, Any]] = {}
    dequant: list[onnx.NodeProto] = []
    for layer in plan.layers:
        record: dict[str, Any] = {
            "name": layer.name,
            "op_type": layer.op_type,
            "ir_type": layer.ir_type,
            "weight": layer.weight,
        }
        if not layer.quantize or layer.weight is None:
            reason = layer.reason or "no constant weight (activations are not quantized)"
            layers.append({**record, "quantized": False, "reason": reason})
            continue
        if layer.weight in done:
            layers.append({**record, **done[layer.weight]})
            continue
        init = inits[layer.weight]
        data = numpy_helper.to_array(init)
        axis = weight_axis(nodes[layer.name], data.ndim) if layer.channel_wise else None
        if layer.op_type == "ConvTranspose" and layer.channel_wise and data.ndim != 4:
            axis = None
        bits = config.quant_bits if layer.op_type == "Conv" else 8  # 6/7 bits: Conv2d only
        q, scale = quantize_weight(data, axis, bits)
        q_name = f"{layer.weight}{QUANTIZED_SUFFIX}"
        s_name = f"{q_name}_scale"
        graph.initializer.remove(init)
        graph.initializer.extend(
            [numpy_helper.from_array(q, q_name), numpy_helper.from_array(scale, s_name)]
        )
        node = helper.make_node(
            "DequantizeLinear",
            [q_name, s_name],
            [layer.weight],
            name=f"{layer.weight}{QUANTIZED_SUFFIX}_dq",
        )
        if axis is not None:
            node.attribute.append(helper.make_attribute("axis", axis))
        dequant.append(node)
        restored = q.astype(np.float32) * _broadcast(scale, axis, data.ndim)
        error = float(np.max(np.abs(restored - data)))
        done[layer.weight] = {
            "quantized": True,
            "channel_wise": axis is not None,
            "axis": axis,
            "bits": bits,
            "max_abs_error": error,
        }
        layers.append({**record, **done[layer.weight]})
    if not done:
        raise UsageError(
            f"no weight was compressed: {nothing_quantized_reason(plan)}",
            hint="remove entries from skip_layers/skip_layer_types, or convert to FP16",
        )
    ordered = dequant + list(graph.node)  # dequantized weights exist before any consumer
    del graph.node[:]
    graph.node.extend(ordered)
    return WeightOnlyResult(copy, layers)


def _broadcast(scale: np.ndarray, axis: int | None, ndim: int) -> np.ndarray:
    if axis is None:
        return scale
    return scale.reshape([-1 if i == axis else 1 for i in range(ndim)])
