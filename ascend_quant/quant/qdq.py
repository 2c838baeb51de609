"""The INT8 fake-quant (QDQ) model, built with ONNX Runtime's QDQQuantizer from our ranges.

What ATC does to a quantized layer, and how it maps onto QDQ:
- input activation: int8 (AscendQuant) with an offset when `activation_offset` (asymmetric), zero
  offset otherwise -> QuantizeLinear/DequantizeLinear to int8 (`QInt8`; asymmetric carries a
  zero point in [-128, 127], symmetric uses [-127, 127] and zero point 0). UInt8 is not used:
  Ascend activations are signed int8 with an offset, and the int8 and uint8 grids with the same
  (scale, range) give identical dequantized values only up to the offset convention.
- weights: int8 symmetric (ARQ), per output channel when `channel_wise` -> DequantizeLinear on
  an int8 initializer, per-channel along the output axis.
- bias: int32 with scale = input scale x weight scale (AscendDequant) -> ORT's bias quantization.
- output: the layer's float result is not quantized (AscendDequant emits float), so the QDQ
  model quantizes no outputs of quantized layers (`OpTypesToExcludeOutputQuantization`).
`tensor_quantize` entries get a Q/DQ pair on that MaxPool/Add input only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper, version_converter

from ascend_quant.config import QuantConfig
from ascend_quant.errors import UsageError
from ascend_quant.quant.layers import QuantPlan, nothing_quantized_reason
from ascend_quant.quant.ops import QUANTIZABLE_TYPES
from ascend_quant.quant.stats import QMAX, QMIN, RangeRequest, quant_params

log = logging.getLogger("ascend_quant")

MIN_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear (axis attribute)


@dataclass
class QdqResult:
    """The fake-quant model and what was quantized, for the container's metadata."""

    model: onnx.ModelProto
    layers: list[dict[str, Any]]
    tensors: dict[str, dict[str, Any]]  # tensor -> scale, zero_point, axis, dtype
    op_counts: dict[str, int] = field(default_factory=dict)
    absmax: dict[str, float] = field(default_factory=dict)  # FP32 max |x| seen in calibration

    @property
    def quantized_layers(self) -> int:
        return sum(1 for layer in self.layers if layer["quantized"])


def ensure_opset(model: onnx.ModelProto, minimum: int = MIN_OPSET) -> onnx.ModelProto:
    """Convert the default-domain opset up to `minimum` when it is older."""
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if version >= minimum:
        return model
    try:
        return version_converter.convert_version(model, minimum)
    except Exception as exc:  # the converter raises bare RuntimeErrors/ValueErrors
        raise UsageError(
            f"cannot convert the model from opset {version} to {minimum} for per-channel "
            f"quantization: {exc}",
            hint="export the model with opset 13 or newer",
        ) from None


def _weight_overrides(
    model: onnx.ModelProto, plan: QuantPlan, bits: int
) -> dict[str, list[dict[str, Any]]]:
    """Per-tensor weights where channel_wise is off; explicit scales when quant_bits < 8."""
    inits = {i.name: i for i in model.graph.initializer}
    overrides: dict[str, list[dict[str, Any]]] = {}
    for layer in plan.quantized:
        if layer.weight is None or layer.weight in overrides:
            continue
        if bits == 8:
            if not layer.channel_wise:
                overrides[layer.weight] = [{"symmetric": True}]
            continue
        data = numpy_helper.to_array(inits[layer.weight]).astype(np.float32)
        limit = 2 ** (bits - 1) - 1
        if layer.channel_wise:
            node = next(n for n in model.graph.node if n.name == layer.name)
            axis = weight_axis(node, data.ndim)
            moved = np.moveaxis(data, axis, 0).reshape(data.shape[axis], -1)
            absmax = np.abs(moved).max(axis=1)
            overrides[layer.weight] = [
                {
                    "axis": axis,
                    "scale": np.float32(a / limit if a else 1.0),
                    "zero_point": np.int8(0),
                }
                for a in absmax
            ]
        else:
            absmax = float(np.abs(data).max())
            overrides[layer.weight] = [
                {"scale": np.float32(absmax / limit if absmax else 1.0), "zero_point": np.int8(0)}
            ]
    return overrides


def weight_axis(node: onnx.NodeProto, weight_rank: int) -> int:
    """The output-channel axis of a layer's weight (the axis per-channel scales run along)."""
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if node.op_type == "MatMul":
        return weight_rank - 1
    return 0


def _choose_requests(plan: QuantPlan) -> dict[str, RangeRequest]:
    """One range request per activation tensor (first consumer wins, as one Q/DQ is shared)."""
    requests: dict[str, RangeRequest] = {}
    for layer in plan.quantized:
        assert layer.act is not None
        previous = requests.setdefault(layer.activation, layer.act)
        if previous != layer.act:
            log.warning(
                "tensor '%s' feeds layers with different calibration settings; "
                "using the first consumer's",
                layer.activation,
            )
    for entry in plan.tensors:
        requests.setdefault(entry.tensor, entry.act)
    return requests


def activation_requests(plan: QuantPlan) -> dict[str, RangeRequest]:
    """Tensor -> the algorithm that calibrates it (quantized layer inputs, tensor_quantize)."""
    return _choose_requests(plan)


def build_qdq(
    model: onnx.ModelProto,
    plan: QuantPlan,
    ranges: dict[str, tuple[float, float]],
    config: QuantConfig,
) -> QdqResult:
    """Insert Q/DQ with ONNX Runtime's QDQQuantizer using our calibrated ranges."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    if not plan.quantized:
        raise UsageError(
            f"nothing was quantized: {nothing_quantized_reason(plan)}",
            hint="remove entries from skip_layers/skip_layer_types, or convert to FP16",
        )
    if config.quant_bits not in (6, 7, 8):
        raise UsageError(f"quant_bits {config.quant_bits} is not supported (use 6, 7 or 8)")
    model = ensure_opset(model)
    model = onnx.shape_inference.infer_shapes(model)
    requests = _choose_requests(plan)
    layer_tensors = {layer.activation for layer in plan.quantized}
    overrides: dict[str, list[dict[str, Any]]] = {
        name: [{"symmetric": requests[name].symmetric}] for name in layer_tensors
    }
    overrides.update(_weight_overrides(model, plan, config.quant_bits))
    tensors_range = TensorsData(
        CalibrationMethod.MinMax,
        {
            name: TensorData(
                lowest=np.float32(ranges[name][0]), highest=np.float32(ranges[name][1])
            )
            for name in layer_tensors
        },
    )
    op_types = sorted({layer.op_type for layer in plan.quantized})
    quantizer = QDQQuantizer(
        model,
        True,  # per_channel unless a per-tensor override says otherwise
        False,  # reduce_range
        QuantType.QInt8,
        QuantType.QInt8,
        tensors_range,
        [layer.name for layer in plan.quantized],
        [],
        op_types,
        {
            "ActivationSymmetric": False,
            "WeightSymmetric": True,
            "OpTypesToExcludeOutputQuantization": list(QUANTIZABLE_TYPES),
            "ForceQuantizeNoInputCheck": True,  # AveragePool's input even without a producer Q
            "QDQOpTypePerChannelSupportToAxis": {"MatMul": -1},
            "QDQKeepRemovableActivations": True,
            "TensorQuantOverrides": overrides,
        },
    )
    qmodel: onnx.ModelProto = quantizer.quantize_model()
    _restore_float_consumers(qmodel, {layer.name for layer in plan.quantized})
    _insert_tensor_quantize(qmodel, plan, ranges, requests)
    return _summarise(qmodel, plan)


def _restore_float_consumers(model: onnx.ModelProto, quantized: set[str]) -> None:
    """Give non-quantized consumers of a quantized activation the float tensor back.

    ONNX Runtime rewires every consumer of a quantized tensor to its DequantizeLinear output;
    ATC inserts AscendQuant in front of the quantized layer only, so other consumers (and a
    graph output of the same name) keep the float value.
    """
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    inits = {i.name for i in graph.initializer}
    graph_outputs = {o.name for o in graph.output}
    dq_to_float: dict[str, str] = {}
    extra: list[onnx.NodeProto] = []
    for node in list(graph.node):
        if node.op_type != "DequantizeLinear" or node.input[0] in inits:
            continue
        q = producers.get(node.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue
        dq_out = node.output[0]
        if dq_out in graph_outputs:  # ORT renamed the producer's output and made DQ emit it
            new_dq = f"{dq_out}_DequantizeLinear_Output"
            node.output[0] = new_dq
            for consumer in graph.node:
                for i, name in enumerate(consumer.input):
                    if name == dq_out and consumer.name in quantized:
                        consumer.input[i] = new_dq
            extra.append(
                helper.make_node("Identity", [q.input[0]], [dq_out], name=f"{dq_out}_float")
            )
            dq_to_float[dq_out] = dq_out
            dq_to_float[new_dq] = q.input[0]
        else:
            dq_to_float[dq_out] = q.input[0]
    for consumer in graph.node:
        if consumer.name in quantized or consumer.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for i, name in enumerate(consumer.input):
            if name in dq_to_float and dq_to_float[name] != name:
                consumer.input[i] = dq_to_float[name]
    graph.node.extend(extra)
    if extra:  # keep topological order: Identity after its producer
        _toposort(graph)


def _toposort(graph: onnx.GraphProto) -> None:
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        progressed = False
        for node in list(pending):
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
                pending.remove(node)
                progressed = True
        if not progressed:  # leave the rest as they were (ORT reports real cycles itself)
            ordered.extend(pending)
            break
    del graph.node[:]
    graph.node.extend(ordered)


def _insert_tensor_quantize(
    model: onnx.ModelProto,
    plan: QuantPlan,
    ranges: dict[str, tuple[float, float]],
    requests: dict[str, RangeRequest],
) -> None:
    """A Q/DQ pair on each `tensor_quantize` input, feeding only that MaxPool/Add."""
    by_name = {n.name: n for n in model.graph.node}
    for index, entry in enumerate(plan.tensors):
        lo, hi = ranges[entry.tensor]
        scale, zero = quant_params(lo, hi, requests[entry.tensor].symmetric)
        prefix = f"{entry.tensor}_tq{index}"
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(np.array(scale, dtype=np.float32), f"{prefix}_scale"),
                numpy_helper.from_array(np.array(zero, dtype=np.int8), f"{prefix}_zero_point"),
            ]
        )
        node = by_name[entry.layer_name]
        source = node.input[entry.input_index]
        q = helper.make_node(
            "QuantizeLinear",
            [source, f"{prefix}_scale", f"{prefix}_zero_point"],
            [f"{prefix}_q"],
            name=f"{prefix}_QuantizeLinear",
        )
        dq = helper.make_node(
            "DequantizeLinear",
            [f"{prefix}_q", f"{prefix}_scale", f"{prefix}_zero_point"],
            [f"{prefix}_dq"],
            name=f"{prefix}_DequantizeLinear",
        )
        position = list(model.graph.node).index(node)
        model.graph.node.insert(position, dq)
        model.graph.node.insert(position, q)
        node.input[entry.input_index] = f"{prefix}_dq"


def _summarise(model: onnx.ModelProto, plan: QuantPlan) -> QdqResult:
    """Count what was actually inserted and read back every tensor's scale and zero point."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    by_name = {n.name: n for n in graph.node}
    tensors: dict[str, dict[str, Any]] = {}
    counts = {"QuantizeLinear": 0, "DequantizeLinear": 0}
    for node in graph.node:
        if node.op_type in counts:
            counts[node.op_type] += 1
        if node.op_type == "DequantizeLinear" and node.input[1] in inits:
            source = node.input[0]
            q = producers.get(source)
            original = q.input[0] if q is not None and q.op_type == "QuantizeLinear" else source
            scale = numpy_helper.to_array(inits[node.input[1]])
            zero = (
                numpy_helper.to_array(inits[node.input[2]])
                if len(node.input) > 2 and node.input[2] in inits
                else np.zeros_like(scale, dtype=np.int8)
            )
            axis = next((a.i for a in node.attribute if a.name == "axis"), None)
            tensors[_original_name(original)] = {
                "scale": np.atleast_1d(scale).astype(float).tolist(),
                "zero_point": np.atleast_1d(zero).astype(int).tolist(),
                "axis": axis if scale.ndim else None,
                "dtype": str(zero.dtype),
            }
    layers: list[dict[str, Any]] = []
    for layer in plan.layers:
        node = by_name.get(layer.name)
        inputs_dq = 0
        if node is not None and layer.quantize:
            wanted = [node.input[0]] + ([node.input[1]] if layer.weight else [])
            inputs_dq = sum(
                1 for t in wanted if t in producers and producers[t].op_type == "DequantizeLinear"
            )
        quantized = layer.quantize and inputs_dq == (2 if layer.weight else 1)
        if layer.quantize and not quantized:
            log.warning(
                "layer '%s' was planned for INT8 but ONNX Runtime did not quantize it", layer.name
            )
        act = layer.act
        layers.append(
            {
                "name": layer.name,
                "op_type": layer.op_type,
                "ir_type": layer.ir_type,
                "quantized": quantized,
                "reason": layer.reason
                if not layer.quantize
                else None
                if quantized
                else "not quantized by ONNX Runtime (unknown tensor type?)",
                "channel_wise": layer.channel_wise if layer.weight else None,
                "algorithm": act.algorithm if act else None,
                "symmetric": act.symmetric if act else None,
                "qdq_inputs": inputs_dq,
            }
        )
    result = QdqResult(model, layers, tensors, counts)
    if result.quantized_layers == 0:
        raise UsageError(
            "nothing was quantized: ONNX Runtime inserted no Q/DQ into any planned layer",
            hint="check that the layers' input types are known (run onnx shape inference)",
        )
    return result


def _original_name(name: str) -> str:
    for suffix in ("_quantized", "_QuantizeLinear_Output"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


__all__ = [
    "QMAX",
    "QMIN",
    "QdqResult",
    "activation_requests",
    "build_qdq",
    "ensure_opset",
]


def quantize_model(
    model: onnx.ModelProto,
    config: QuantConfig,
    batches: Any,
    progress: Any = None,
    total: int | None = None,
    absmax_of: Iterable[str] = (),
) -> tuple[QdqResult, dict[str, tuple[float, float]]]:
    """Plan, calibrate (streaming over `batches` of feeds) and build the QDQ model.

    `absmax_of`: float tensors whose FP32 max |x| the same calibration pass also records
    (`result.absmax`, with the calibrated tensors' own), for the FP16 overflow check.
    """
    from ascend_quant.progress import NULL_PROGRESS
    from ascend_quant.quant.calibrate import collect_pass, ranges
    from ascend_quant.quant.layers import name_nodes, plan_layers

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    name_nodes(copy)
    plan = plan_layers(copy, config)
    if not plan.quantized:
        raise UsageError(
            f"nothing was quantized: {nothing_quantized_reason(plan)}",
            hint="remove entries from skip_layers/skip_layer_types, or convert to FP16",
        )
    requests = activation_requests(plan)
    collected = collect_pass(
        copy,
        list(requests),
        batches,
        progress=progress or NULL_PROGRESS,
        total=total,
        absmax_of=absmax_of,
    )
    calibrated = ranges(collected.stats, requests)
    result = build_qdq(copy, plan, calibrated, config)
    result.absmax = collected.all_absmax()
    return result, calibrated
