"""FP16 simulation of an NPU running in `force_fp16`: weights and activations rounded to FP16.

Weights are stored as FP16 initializers followed by a Cast(FLOAT) (ONNX Runtime folds the cast
when the session is created, and the file is as large as an FP16 model's); every float tensor
the graph produces (and every float graph input) passes through Cast(FLOAT16) -> Cast(FLOAT), so
FP32 CPU kernels compute on FP16-representable values and each result is rounded as an FP16
kernel's output would be. Values beyond +-65504 become inf, exactly as on the device.

`keep_dtype` (atc's `--keep_dtype` file: one `OpName` or `OpType::TypeName` per line) keeps those
ops in FP32: their weights stay FP32, their outputs are not rounded, and an FP16 op that reads
one rounds that value on entry (atc inserts a Cast there). `OpType::` matches the ONNX op type or,
for the ops Ascend quantizes, the Ascend IR type (Conv2D, MatMulV2, ...).

What is not modelled: FP16 accumulation inside a kernel (the NPU's cube unit accumulates in FP32
for matmul/conv, which is what FP32 kernels on rounded inputs give) and the NPU's own op kernels.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Collection, Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ascend_quant.errors import UsageError
from ascend_quant.quant.ops import QUANTIZABLE_TYPES
from ascend_quant.runners.ort import expose_outputs, make_session

log = logging.getLogger("ascend_quant")

ROUND_SUFFIX = "__fp16"
FP16_MAX = float(np.finfo(np.float16).max)  # 65504
Q_OPS = ("QuantizeLinear", "DequantizeLinear")


def round_fp16(values: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest FP16 (overflow -> inf), as float32."""
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype=np.float32).astype(np.float16).astype(np.float32)


def overflowing_weights(model: onnx.ModelProto) -> list[str]:
    """Float32 initializers with finite values beyond the FP16 range (they become inf)."""
    names = []
    for init in model.graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            data = numpy_helper.to_array(init)
            if np.any(np.isfinite(data) & (np.abs(data) > FP16_MAX)):
                names.append(init.name)
    return names


def _round_tensor(tensor: onnx.TensorProto) -> None:
    if tensor.data_type != TensorProto.FLOAT:
        return
    rounded = numpy_helper.from_array(round_fp16(numpy_helper.to_array(tensor)), tensor.name)
    tensor.CopyFrom(rounded)


TYPE_PREFIX = "OpType::"


def kept_nodes(model: onnx.ModelProto, keep_dtype: Iterable[str]) -> set[str]:
    """Names of the main-graph nodes a `--keep_dtype` list keeps in FP32.

    An op name that is not a node of the model is an error (a typo would silently keep nothing);
    a type that matches no node only keeps nothing.
    """
    entries = list(keep_dtype)
    if not entries:
        return set()
    nodes = list(model.graph.node)
    names = {n.name for n in nodes if n.name}
    kept: set[str] = set()
    for entry in entries:
        if entry.startswith(TYPE_PREFIX):
            wanted = entry[len(TYPE_PREFIX) :]
            kept |= {
                n.name
                for n in nodes
                if n.name and wanted in (n.op_type, QUANTIZABLE_TYPES.get(n.op_type))
            }
        elif entry in names:
            kept.add(entry)
        else:
            match = difflib.get_close_matches(entry, sorted(names), n=1, cutoff=0.6)
            raise UsageError(
                f"keep_dtype entry '{entry}' is not a node of the model",
                hint=f"did you mean '{match[0]}'?"
                if match
                else "write an ONNX node name, or OpType::<type> for every op of a type",
            )
    return kept


def _kept_weights(model: onnx.ModelProto, kept: Collection[str]) -> set[str]:
    """Initializers read only by kept (FP32) nodes: they stay FP32."""
    if not kept:
        return set()
    inits = {i.name for i in model.graph.initializer}
    readers: dict[str, set[bool]] = {}
    for node in model.graph.node:
        for name in node.input:
            if name in inits:
                readers.setdefault(name, set()).add(node.name in kept)
    return {name for name, kinds in readers.items() if kinds == {True}}


def round_weights(model: onnx.ModelProto, kept: Collection[str] = ()) -> None:
    """Round float32 initializers and Constant values in place (quantization scales and the
    weights of kept FP32 nodes excepted)."""
    keep = _qdq_parameter_names(model) | _kept_weights(model, kept)
    for init in model.graph.initializer:
        if init.name not in keep:
            _round_tensor(init)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and node.output[0] not in keep:
                    _round_tensor(attr.t)


def _qdq_parameter_names(model: onnx.ModelProto) -> set[str]:
    """Scales of Q/DQ nodes stay FP32: they are part of the int8 arithmetic, not FP16 data."""
    return {name for n in model.graph.node if n.op_type in Q_OPS for name in n.input[1:]}


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    inferred = onnx.shape_inference.infer_shapes(model)
    infos = (
        list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)
    )
    return {
        vi.name
        for vi in infos
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type == TensorProto.FLOAT
    }


def insert_activation_rounding(
    model: onnx.ModelProto, skip_op_types: Iterable[str] = Q_OPS, kept: Collection[str] = ()
) -> list[str]:
    """Round every float main-graph tensor to FP16 in place; returns the rounded tensor names.

    A node output `x` is renamed `x__fp32` and followed by Cast(FLOAT16) -> Cast(FLOAT) that
    produces `x` again, so consumers and graph outputs keep their names. Outputs of `kept`
    nodes stay FP32; an FP16 node reading one (or a graph input a kept node also reads) reads
    a rounded copy instead.
    """
    skip = set(skip_op_types)
    kept = set(kept)
    floats = _float_tensors(model)
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    new_nodes: list[onnx.NodeProto] = []
    rounded: list[str] = []

    def pair(source: str, target: str) -> list[onnx.NodeProto]:
        half = f"{target}{ROUND_SUFFIX}"
        return [
            helper.make_node(
                "Cast", [source], [half], name=f"{half}_cast16", to=TensorProto.FLOAT16
            ),
            helper.make_node("Cast", [half], [target], name=f"{half}_cast32", to=TensorProto.FLOAT),
        ]

    renamed_inputs: dict[str, str] = {}
    for graph_input in graph.input:
        if graph_input.name in floats and graph_input.name not in initializers:
            target = f"{graph_input.name}{ROUND_SUFFIX}_in"
            renamed_inputs[graph_input.name] = target
            new_nodes.extend(pair(graph_input.name, target))
            rounded.append(graph_input.name)
    kept_outputs: set[str] = set()
    for node in graph.node:
        if node.name not in kept:
            for i, name in enumerate(node.input):
                if name in renamed_inputs:
                    node.input[i] = renamed_inputs[name]
                elif name in kept_outputs:  # an FP32 value entering an FP16 op: atc's Cast
                    target = f"{name}{ROUND_SUFFIX}_from32"
                    renamed_inputs[name] = target
                    new_nodes.extend(pair(name, target))
                    rounded.append(target)
                    node.input[i] = target
        new_nodes.append(node)
        if node.op_type in skip:
            continue
        if node.name in kept:
            kept_outputs.update(o for o in node.output if o in floats)
            continue
        for i, name in enumerate(node.output):
            if not name or name not in floats:
                continue
            raw = f"{name}__fp32"
            node.output[i] = raw
            new_nodes.extend(pair(raw, name))
            rounded.append(name)
    del graph.node[:]
    graph.node.extend(new_nodes)
    return rounded


def store_weights_fp16(model: onnx.ModelProto, kept: Collection[str] = ()) -> None:
    """Store float32 initializers as FP16 plus a Cast back to float, in place.

    Quantization scales and the weights of kept FP32 nodes stay FP32. The cast nodes go first
    in the graph so that every consumer still finds the weight under its original name.
    """
    keep = _qdq_parameter_names(model) | _kept_weights(model, kept)
    casts: list[onnx.NodeProto] = []
    for init in model.graph.initializer:
        if init.data_type != TensorProto.FLOAT or init.name in keep:
            continue
        name = init.name
        with np.errstate(over="ignore"):
            half = numpy_helper.to_array(init).astype(np.float16)
        init.CopyFrom(numpy_helper.from_array(half, f"{name}{ROUND_SUFFIX}w"))
        casts.append(
            helper.make_node(
                "Cast",
                [init.name],
                [name],
                name=f"{name}{ROUND_SUFFIX}w_cast",
                to=TensorProto.FLOAT,
            )
        )
    nodes = casts + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def simulate_fp16(
    model: onnx.ModelProto, skip_op_types: Iterable[str] = Q_OPS, keep_dtype: Iterable[str] = ()
) -> onnx.ModelProto:
    """A copy of `model` with FP16 weights and FP16-rounded activations (see module docstring),
    except the ops `keep_dtype` keeps in FP32."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    kept = kept_nodes(copy, keep_dtype)
    round_weights(copy, kept)
    insert_activation_rounding(copy, skip_op_types, kept)
    store_weights_fp16(copy, kept)
    return copy


# An FP32 max |x| below FP16_MAX / OVERFLOW_MARGIN cannot reach the FP16 range in the FP16
# simulation: FP16 rounding moves each value by 2^-11 relative, which compounds to a few percent
# over a deep network, far from a factor of 4.
OVERFLOW_MARGIN = 4.0
INPUT_SUFFIX = f"{ROUND_SUFFIX}_in"


def activation_tensors(model: onnx.ModelProto) -> list[str]:
    """The float32 tensors an FP16 simulation of `model` rounds: node outputs and graph inputs."""
    floats = _float_tensors(model)
    initializers = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name in floats and i.name not in initializers]
    for node in model.graph.node:
        names.extend(o for o in node.output if o and o in floats)
    return list(dict.fromkeys(names))


def rounded_tensors(sim: onnx.ModelProto) -> list[str]:
    """The tensors an FP16-simulated model rounds (its Cast-to-FP32 outputs), in graph order."""
    return [
        n.output[0]
        for n in sim.graph.node
        if n.op_type == "Cast" and n.name.endswith(f"{ROUND_SUFFIX}_cast32")
    ]


def fp32_name(rounded: str) -> str:
    """The FP32 model's tensor a rounded tensor stands for (graph inputs get a suffix)."""
    return rounded[: -len(INPUT_SUFFIX)] if rounded.endswith(INPUT_SUFFIX) else rounded


def overflow_candidates(sim: onnx.ModelProto, absmax: dict[str, float]) -> list[str]:
    """Rounded tensors of `sim` that could overflow in FP16, judged from FP32 max |x|.

    A tensor whose FP32 statistics are unknown (e.g. one the quantization inserted) is checked
    too; non-finite FP32 values count as reaching the range.
    """
    limit = FP16_MAX / OVERFLOW_MARGIN
    chosen = []
    for name in rounded_tensors(sim):
        value = absmax.get(fp32_name(name))
        if value is None or not (value < limit):
            chosen.append(name)
    return chosen


def find_overflow(
    model: onnx.ModelProto,
    batches: Iterable[dict[str, np.ndarray]],
    limit: int | None = None,
    names: Iterable[str] | None = None,
    reference: onnx.ModelProto | None = None,
) -> list[str]:
    """Names of tensors of an FP16-simulated model that hold inf/NaN on any of `batches`.

    `names`: only these rounded tensors (e.g. `overflow_candidates`); default all of them.
    `reference`: the FP32 model `model` simulates; an inf/NaN the FP32 model holds at the same
    place (an attention mask's -inf) is the model's own value, not an overflow, and is not
    counted. Tensors are reported in graph order; the first ones are where the overflow starts
    (later tensors usually inherit it).
    """
    rounded = rounded_tensors(model)
    if names is not None:
        wanted = set(names)
        rounded = [n for n in rounded if n in wanted]
    if not rounded:
        return []
    session = make_session(expose_outputs(model, rounded))
    fp32_of: dict[str, str] = {}
    fetch: list[str] = []
    reference_session = None
    if reference is not None:
        produced = {o for n in reference.graph.node for o in n.output if o}
        graph_inputs = {i.name for i in reference.graph.input}
        fp32_of = {n: fp32_name(n) for n in rounded if fp32_name(n) in produced | graph_inputs}
        fetch = [t for t in dict.fromkeys(fp32_of.values()) if t not in graph_inputs]
        if fetch:
            reference_session = make_session(expose_outputs(reference, fetch))
    bad: set[str] = set()
    for count, feeds in enumerate(batches):
        if limit is not None and count >= limit:
            break
        fp32: dict[str, np.ndarray] = dict(feeds)  # a graph input is its own FP32 value
        if reference_session is not None:
            fp32.update(zip(fetch, reference_session.run(fetch, feeds)))
        for name, value in zip(rounded, session.run(rounded, feeds)):
            if name in bad or np.all(np.isfinite(value)):
                continue
            want = fp32.get(fp32_of.get(name, ""))
            if want is not None and np.shape(want) == np.shape(value):
                with np.errstate(invalid="ignore"):
                    shared = (value == want) | (np.isnan(value) & np.isnan(want))
                if np.all(np.isfinite(value) | shared):
                    continue
            bad.add(name)
    return [n for n in rounded if n in bad]


def report_overflow(names: list[str]) -> None:
    if names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        log.warning("FP16 overflow (inf/NaN beyond +-65504) in %d tensor(s): %s", len(names), shown)
