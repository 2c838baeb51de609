"""What keeping a layer in float costs: the explicit cost model of tuning.

The cost of a layer is its share of the model's multiply-accumulates (MACs) among the layers that
could run at the lower precision: for INT8, the quantizable layers (Conv, Gemm, MatMul,
ConvTranspose, AveragePool); for FP16, every op (an op without MACs counts one per output element,
so element-wise ops are cheap but not free). Parameters (weight elements) are counted too, for the
size figure. MACs are what an NPU's cube unit spends its time on, so this is a fair first proxy
for "how much speed a float layer gives back"; an NPU cost model measured per op can replace it
behind the same `LayerCost` table.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import onnx

from ascend_quant.config import QuantConfig
from ascend_quant.quant.layers import plan_layers
from ascend_quant.quant.ops import QUANTIZABLE_TYPES


@dataclass(frozen=True)
class LayerCost:
    name: str
    op_type: str
    macs: int
    params: int


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Static shapes of every tensor shape inference can resolve (dynamic dims count as 1)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, tuple[int, ...]] = {}
    graph = inferred.graph
    for info in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = info.type.tensor_type
        if tensor_type.HasField("shape"):
            shapes[info.name] = tuple(max(d.dim_value, 1) for d in tensor_type.shape.dim)
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def _attr(node: onnx.NodeProto, name: str, default: object) -> object:
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def _macs(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> int:
    out = shapes.get(node.output[0]) if node.output else None
    out_elems = math.prod(out) if out else 0
    if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1:
        weight = shapes.get(node.input[1])
        if not weight:
            return out_elems
        if node.op_type == "Conv":  # per output element: Cin/group * kernel
            return out_elems * math.prod(weight[1:])
        source = shapes.get(node.input[0])  # per input element: Cout/group * kernel
        return (math.prod(source) if source else out_elems) * math.prod(weight[1:])
    if node.op_type in ("Gemm", "MatMul") and len(node.input) > 1:
        a = shapes.get(node.input[0])
        if not a:
            return out_elems
        transposed = node.op_type == "Gemm" and bool(_attr(node, "transA", 0))
        k = a[-2] if transposed and len(a) >= 2 else a[-1]
        return out_elems * k
    if node.op_type == "AveragePool":
        kernel = _attr(node, "kernel_shape", [1])
        size = 1
        for k in kernel if isinstance(kernel, (list, tuple)) else [1]:
            size *= int(k)
        return out_elems * size
    return out_elems


def layer_costs(model: onnx.ModelProto, op_types: Iterable[str] | None = None) -> list[LayerCost]:
    """MACs and weight elements of every main-graph node (of `op_types`, when given)."""
    wanted = set(op_types) if op_types is not None else None
    shapes = _shapes(model)
    inits = {i.name: i for i in model.graph.initializer}
    costs = []
    for node in model.graph.node:
        if wanted is not None and node.op_type not in wanted:
            continue
        if node.op_type in ("Constant", "Identity", "Shape", "Reshape", "Flatten", "Squeeze"):
            macs = 0  # no arithmetic; layout only
        else:
            macs = _macs(node, shapes)
        params = sum(math.prod(inits[n].dims) for n in node.input if n in inits)
        costs.append(LayerCost(node.name, node.op_type, macs, int(params)))
    return costs


def quantizable_costs(model: onnx.ModelProto) -> list[LayerCost]:
    """The layers INT8 tuning may keep in float, with their MACs: only those the toolkit would
    quantize at all. A MatMul of two activations (a transformer's attention) or a layer whose
    weight is computed is never INT8, so keeping it "in float" changes nothing; counted, it was
    ranked first (no analysis score) and spent the max_float budget on no-ops."""
    quantized = {p.name for p in plan_layers(model, QuantConfig()).layers if p.quantize}
    return [c for c in layer_costs(model, QUANTIZABLE_TYPES) if c.name in quantized]


def shares(costs: Iterable[LayerCost]) -> dict[str, float]:
    """Each layer's share of the total MACs of `costs` (equal shares when nothing has MACs)."""
    items = list(costs)
    total = sum(c.macs for c in items)
    if total == 0:
        return {c.name: 1.0 / len(items) for c in items} if items else {}
    return {c.name: c.macs / total for c in items}
