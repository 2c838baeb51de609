"""Isolated error: each layer as the candidate computes it, fed the golden's own inputs.

For a layer L of a candidate model C (FP16-rounded or INT8 fake-quant, whose tensors keep the
golden's names), the replica of L is every node of C between L's output and the nearest tensors
the golden also computes: for INT8 the activation's Quantize/Dequantize, the weight's Dequantize,
L itself and its output rounding; for FP16 the weight's Cast, L and its rounding. Grafted into
the golden model and fed from the golden's tensors, each replica computes L's output with L's
own error only (rknn's "single", ORT qdq_loss_debug's qdq_err). All replicas of all candidates
live in one model with the golden, so one session pass per sample gives the golden and every
isolated output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import onnx
from onnx import version_converter

from ascend_quant.errors import UsageError

SEPARATOR = "::iso:"


def iso_name(tag: str, layer: str, tensor: str) -> str:
    """The name of `tensor` inside the replica of `layer` of candidate `tag`."""
    return f"{tensor}{SEPARATOR}{tag}:{layer}"


@dataclass(frozen=True)
class Replicas:
    """The golden model with replicas grafted in, and each replica's output name."""

    model: onnx.ModelProto
    outputs: dict[str, dict[str, str]]  # tag -> {golden tensor (layer output): replica output}
    skipped: dict[str, list[str]]  # tag -> layers with no replica (output absent in candidate)


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def graft_replicas(
    golden: onnx.ModelProto,
    candidates: Mapping[str, onnx.ModelProto],
    layers: Mapping[str, Sequence[str]],
) -> Replicas:
    """Golden + for every candidate tag and every golden tensor in `layers[tag]` its replica.

    `layers[tag]` names golden tensors (the layers' outputs); each must exist in the candidate
    under the same name (the simulator and preflight keep names).
    """
    host = onnx.ModelProto()
    host.CopyFrom(golden)
    wanted = max([_opset(host)] + [_opset(c) for c in candidates.values()])
    if _opset(host) < wanted:
        try:
            host = version_converter.convert_version(host, wanted)
        except Exception as exc:
            raise UsageError(
                f"cannot raise the golden model to opset {wanted} for per-layer isolation: {exc}"
            ) from None
    domains = {o.domain: o.version for o in host.opset_import}
    graph = host.graph
    stop = {i.name for i in graph.input} | {o for n in graph.node for o in n.output if o}
    outputs: dict[str, dict[str, str]] = {}
    skipped: dict[str, list[str]] = {}
    for tag, cand in candidates.items():
        for imp in cand.opset_import:
            if imp.domain not in domains:
                host.opset_import.append(imp)
                domains[imp.domain] = imp.version
        producer = {o: n for n in cand.graph.node for o in n.output if o}
        position = {id(n): i for i, n in enumerate(cand.graph.node)}
        inits = {i.name: i for i in cand.graph.initializer}
        outputs[tag] = {}
        for tensor in layers.get(tag, ()):
            if tensor not in producer:
                skipped.setdefault(tag, []).append(tensor)
                continue
            nodes, used_inits = _replica(tensor, producer, position, inits, stop)
            layer = producer[tensor].name or tensor
            rename = {t: iso_name(tag, layer, t) for t in _internal(nodes, used_inits)}
            for name in used_inits:
                init = onnx.TensorProto()
                init.CopyFrom(inits[name])
                init.name = rename[name]
                graph.initializer.append(init)
            for node in nodes:
                copy = onnx.NodeProto()
                copy.CopyFrom(node)
                copy.name = iso_name(tag, layer, node.name or node.output[0])
                for i, name in enumerate(copy.input):
                    if name in rename:
                        copy.input[i] = rename[name]
                for i, name in enumerate(copy.output):
                    if name:
                        copy.output[i] = rename.get(name, name)
                graph.node.append(copy)
            outputs[tag][tensor] = rename[tensor]
    return Replicas(host, outputs, skipped)


def _replica(
    start: str,
    producer: Mapping[str, onnx.NodeProto],
    position: Mapping[int, int],
    inits: Mapping[str, onnx.TensorProto],
    stop: set[str],
) -> tuple[list[onnx.NodeProto], list[str]]:
    """The candidate's nodes from `start` back to golden tensors, in graph order, and the
    initializers they read."""
    seen: dict[int, onnx.NodeProto] = {}
    used: list[str] = []
    order: list[onnx.NodeProto] = []
    pending = [start]
    visited: set[str] = set()
    while pending:
        tensor = pending.pop()
        if tensor in visited or not tensor:
            continue
        visited.add(tensor)
        if tensor != start and tensor in stop:
            continue
        if tensor in inits:
            used.append(tensor)
            continue
        node = producer.get(tensor)
        if node is None:
            continue  # a graph input of the candidate that the golden also has
        if id(node) not in seen:
            seen[id(node)] = node
            order.append(node)
            pending.extend(node.input)
    order.sort(key=lambda n: position.get(id(n), 0))
    return order, used


def _internal(nodes: Sequence[onnx.NodeProto], inits: Sequence[str]) -> list[str]:
    """Tensors the replica itself produces or owns (renamed); golden tensors it reads are not."""
    names = list(inits)
    for node in nodes:
        names.extend(o for o in node.output if o)
    return names
