"""Which layers ATC quantizes, and with which settings (the AMCT simple-config semantics).

ATC quantizes Conv, Gemm, MatMul, ConvTranspose and AveragePool layers (weights int8 with ARQ,
input activations int8); MaxPool/Add inputs are quantized only when `tensor_quantize` names
them. `skip_layers` are ONNX node names; `skip_layer_types` and `override_layer_types` accept the
Ascend IR type (Conv2D, MatMulV2, ...) or the ONNX op type. Settings resolve per layer as
`override_layer_configs` > `override_layer_types` > common config.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import onnx
from onnx import TensorProto

from ascend_quant.config import HfmgConfig, IfmrConfig, LayerOverride, QuantConfig
from ascend_quant.errors import UsageError
from ascend_quant.quant import ops
from ascend_quant.quant.ops import (
    FP16_OFF_TYPES,
    QUANTIZABLE_TYPES,
    TENSOR_QUANTIZE_TYPES,
    WEIGHTED_TYPES,
)
from ascend_quant.quant.stats import RangeRequest

SUBGRAPH_OPS = ("If", "Loop", "Scan")


@dataclass(frozen=True)
class LayerPlan:
    """One quantizable layer: what gets quantized and with which settings, or why not."""

    name: str
    op_type: str
    ir_type: str
    activation: str  # the input tensor whose range is calibrated
    weight: str | None
    quantize: bool
    reason: str | None = None  # why it is not quantized
    channel_wise: bool = True
    act: RangeRequest | None = None


@dataclass(frozen=True)
class TensorQuantPlan:
    """A `tensor_quantize` entry: one MaxPool/Add input to fake-quantize."""

    layer_name: str
    input_index: int
    tensor: str
    act: RangeRequest


@dataclass(frozen=True)
class QuantPlan:
    layers: list[LayerPlan]
    tensors: list[TensorQuantPlan]
    subgraph_compute: int  # quantizable ops found inside If/Loop/Scan bodies (never quantized)

    @property
    def quantized(self) -> list[LayerPlan]:
        return [p for p in self.layers if p.quantize]


def ir_type(node: onnx.NodeProto, weight_rank: int | None) -> str:
    return ops.ir_type(node.op_type, weight_rank)


def _onnx_types_for(name: str) -> set[str]:
    """Both spellings of a layer type: ONNX op types it means."""
    found = {onnx_t for onnx_t, ir in QUANTIZABLE_TYPES.items() if name in (onnx_t, ir)}
    if name == "Conv3D":
        found.add("Conv")
    return found


def name_nodes(model: onnx.ModelProto) -> int:
    """Name every unnamed main-graph node `<op type>_<index>`, in place; returns how many.

    Deterministic (graph order), so the same preflighted model always gets the same names;
    preflight does it once and writes them, and ORT's quantizer (which selects by name), skip
    lists, reports and keep_dtype files all use them.
    """
    used = {n.name for n in model.graph.node if n.name}
    named = 0
    for index, node in enumerate(model.graph.node):
        if not node.name:
            candidate = f"{node.op_type}_{index}"
            while candidate in used:
                candidate += "_"
            node.name = candidate
            used.add(candidate)
            named += 1
    return named


def tensor_map(original: onnx.ModelProto, converted: onnx.ModelProto) -> dict[str, str]:
    """Each tensor of the original main graph -> its name in the converted model.

    The simulator's FP16 rounding and QDQ insertion keep every original tensor's name (a
    rounded or quantized copy gets a new name, the value under the old name is the candidate's
    counterpart); tensors the conversion removed (e.g. folded) are left out.
    """
    graph = converted.graph
    present = {i.name for i in graph.input} | {o for n in graph.node for o in n.output if o}
    names = [i.name for i in original.graph.input]
    names += [o for n in original.graph.node for o in n.output if o]
    return {name: name for name in dict.fromkeys(names) if name in present}


def _resolve(config: QuantConfig, overrides: list[LayerOverride | None]) -> LayerOverride:
    """Fold the common config and overrides (lowest precedence first) into one setting."""
    channel_wise: bool = config.channel_wise
    algorithm = config.algorithm
    ifmr: IfmrConfig = config.ifmr
    hfmg: HfmgConfig = config.hfmg
    for override in overrides:
        if override is None:
            continue
        channel_wise = override.channel_wise if override.channel_wise is not None else channel_wise
        algorithm = override.algorithm or algorithm
        ifmr = override.ifmr or ifmr
        hfmg = override.hfmg or hfmg
    return LayerOverride(channel_wise=channel_wise, algorithm=algorithm, ifmr=ifmr, hfmg=hfmg)


def range_request(config: QuantConfig, setting: LayerOverride) -> RangeRequest:
    """The activation algorithm for a layer; `asymmetric` of IFMR/HFMG beats activation_offset."""
    ifmr = setting.ifmr or config.ifmr
    hfmg = setting.hfmg or config.hfmg
    algorithm = setting.algorithm or config.algorithm
    own = (
        ifmr.asymmetric if algorithm == "ifmr" else hfmg.asymmetric if algorithm == "hfmg" else None
    )
    asymmetric = config.activation_offset if own is None else own
    return RangeRequest(
        algorithm=algorithm,
        symmetric=not asymmetric,
        search_range_start=ifmr.search_range_start,
        search_range_end=ifmr.search_range_end,
        search_step=ifmr.search_step,
        max_percentile=ifmr.max_percentile,
        min_percentile=ifmr.min_percentile,
        num_of_bins=hfmg.num_of_bins,
    )


def _unknown(kind: str, name: str, known: list[str]) -> UsageError:
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return UsageError(
        f"{kind} '{name}' is not a node of the model",
        hint=f"did you mean '{match[0]}'?" if match else "use the ONNX node names (`inspect`)",
    )


def _count_subgraph_compute(graph: onnx.GraphProto) -> int:
    total = 0
    for node in graph.node:
        for attr in node.attribute:
            subgraphs = list(attr.graphs) + ([attr.g] if attr.HasField("g") else [])
            for sub in subgraphs:
                total += sum(1 for n in sub.node if n.op_type in QUANTIZABLE_TYPES)
                total += _count_subgraph_compute(sub)
    return total


def plan_layers(model: onnx.ModelProto, config: QuantConfig) -> QuantPlan:
    """Decide, per main-graph node, whether and how ATC would quantize it."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    names = [n.name for n in graph.node]
    by_name = {n.name: n for n in graph.node}
    for layer in config.skip_layers:
        if layer not in by_name:
            raise _unknown("skip_layers entry", layer, names)
    for layer in config.override_layer_configs:
        if layer not in by_name:
            raise _unknown("override_layer_configs entry", layer, names)
    skip_types: set[str] = set()
    for type_name in config.skip_layer_types:
        skip_types |= _onnx_types_for(type_name) or {type_name}
    fp16_weights = any(i.data_type == TensorProto.FLOAT16 for i in inits.values())

    layers: list[LayerPlan] = []
    for node in graph.node:
        if node.op_type not in QUANTIZABLE_TYPES:
            continue
        weight = node.input[1] if node.op_type in WEIGHTED_TYPES and len(node.input) > 1 else None
        rank = len(inits[weight].dims) if weight in inits else None
        ir = ir_type(node, rank)
        reason = None
        if node.name in config.skip_layers:
            reason = "skip_layers"
        elif node.op_type in skip_types or ir in skip_types:
            reason = "skip_layer_types"
        elif weight is not None and weight not in inits:
            reason = "weight is not a constant initializer"
        elif weight is not None and inits[weight].data_type not in (
            TensorProto.FLOAT,
            TensorProto.FLOAT16,
        ):
            reason = "weight is not floating point"
        elif fp16_weights and ir in FP16_OFF_TYPES:
            reason = f"{ir} quantization is off for FP16 weights"
        setting = _resolve(
            config,
            [
                config.override_layer_types.get(node.op_type),
                config.override_layer_types.get(ir),
                config.override_layer_configs.get(node.name),
            ],
        )
        layers.append(
            LayerPlan(
                name=node.name,
                op_type=node.op_type,
                ir_type=ir,
                activation=node.input[0],
                weight=weight,
                quantize=reason is None,
                reason=reason,
                channel_wise=bool(setting.channel_wise),
                act=range_request(config, setting),
            )
        )

    tensors: list[TensorQuantPlan] = []
    for entry in config.tensor_quantize:
        node = by_name.get(entry.layer_name)
        if node is None:
            raise _unknown("tensor_quantize layer", entry.layer_name, names)
        if node.op_type not in TENSOR_QUANTIZE_TYPES:
            raise UsageError(
                f"tensor_quantize layer '{entry.layer_name}' is a {node.op_type}",
                hint="tensor_quantize applies only to MaxPool and Add inputs",
            )
        if not 0 <= entry.input_index < len(node.input) or node.input[entry.input_index] in inits:
            raise UsageError(
                f"tensor_quantize: '{entry.layer_name}' has no activation input "
                f"{entry.input_index}",
                hint=f"input_index must be 0..{len(node.input) - 1} and not a constant",
            )
        setting = _resolve(config, [config.override_layer_configs.get(node.name)])
        tensors.append(
            TensorQuantPlan(
                layer_name=node.name,
                input_index=entry.input_index,
                tensor=node.input[entry.input_index],
                act=range_request(config, setting),
            )
        )
    return QuantPlan(layers, tensors, _count_subgraph_compute(graph))


def nothing_quantized_reason(plan: QuantPlan) -> str:
    """Why a plan quantizes nothing, in words a user can act on."""
    if plan.layers:
        reasons = sorted({p.reason or "" for p in plan.layers})
        return f"all {len(plan.layers)} quantizable layer(s) were excluded ({', '.join(reasons)})"
    if plan.subgraph_compute:
        return (
            f"the {plan.subgraph_compute} quantizable op(s) are inside If/Loop subgraphs, "
            "which are not quantized"
        )
    return "the model has no quantizable ops (Conv, Gemm, MatMul, ConvTranspose, AveragePool)"
