"""ONNX preflight: load, repair, check, resolve input shapes, simplify with verification, summarise.

Real exported models get a few things wrong that break the later stages (reference §1.2, §3.2):
IR < 4 graphs whose initializers are not graph inputs fail the checker and onnxsim; opset < 13
makes ONNX Runtime's per-channel QDQ write an invalid model without raising; weights stored as
`Constant` nodes are quantized as activations; and onnx writes IR versions ONNX Runtime cannot
read. `preflight` repairs each of these and says what it repaired.
"""

from __future__ import annotations

import copy
import logging
import math
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxsim
from onnx import helper, numpy_helper

from ascend_quant.config import GearsConfig, parse_input_shape
from ascend_quant.data.feeds import check_feeds
from ascend_quant.errors import ModelError, UsageError, not_a_model_file
from ascend_quant.gears import GearKind, Gears, chosen_kind, make_gears
from ascend_quant.onnx_io import ORT_MAX_IR_VERSION, ort_ir_version, save_for_ort
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.quant.layers import name_nodes
from ascend_quant.quant.ops import FP16_OFF_TYPES, QUANTIZABLE_TYPES
from ascend_quant.runners.ort import run_once
from ascend_quant.tensors import TensorSpec, graph_io, input_values
from ascend_quant.workspace import atomic_write_json, sha256_file

log = logging.getLogger("ascend_quant")

ATC_OPSET_RANGE = (11, 18)  # ai.onnx opsets ATC documents (reference §1.2, --framework)
QDQ_MIN_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear (axis) needs opset 13
SUBGRAPH_OPS = ("If", "Loop", "Scan")
QUANTIZED_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
AMCT_DEPLOY_OPS = ("AscendQuant", "AscendDequant", "AscendWeightQuant", "AscendAntiQuant")

VERIFY_RTOL = 1e-3
VERIFY_ATOL = 1e-4
_CHECKER_LIMIT = 2_000_000_000  # the in-memory checker cannot take protos over 2 GB
# One sample of all inputs (and a calibration batch of them) must fit in this many bytes; checked
# before anything is allocated, so an absurd shape is a usage error rather than a swapping machine.
MAX_SAMPLE_BYTES = 2 << 30


@dataclass(frozen=True)
class ModelSummary:
    ir_version: int
    opsets: dict[str, int]
    producer: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    op_counts: dict[str, int]
    param_count: int
    param_bytes: int
    quantizable_nodes: list[tuple[str, str, str]]  # (node name, onnx op type, ascend ir type)
    subgraph_ops: int
    already_quantized: bool
    warnings: list[str]


@dataclass(frozen=True)
class PreflightResult:
    model_path: Path  # the model to convert (simplified if that worked)
    source_path: Path
    source_sha256: str
    input_shapes: dict[str, tuple[int, ...]]
    output_shapes: dict[str, tuple[int, ...]]
    summary: ModelSummary
    repairs: list[str]
    warnings: list[str]
    simplified: bool
    declared_inputs: list[TensorSpec] = field(default_factory=list)  # before shapes were fixed
    pinned: dict[str, Any] = field(default_factory=dict)  # input -> the value folded in
    gears: Gears | None = None  # input_shapes are then the calibration gear's shapes


# ----------------------------------------------------------------------------------------------
# Loading


def load_model(path: Path) -> onnx.ModelProto:
    """Load an .onnx file with its external data, or raise a one-line UsageError/ModelError."""
    path = Path(path)
    if not path.is_file():  # missing, a directory, or a FIFO/device that would block the read
        raise not_a_model_file(path)
    if path.suffix.lower() == ".om":
        raise ModelError(
            f"{path} is an Ascend .om, not an ONNX model",
            hint="pass the .onnx the .om was converted from",
        )
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError and friends: not a protobuf ModelProto
        raise ModelError(
            f"{path} is not an ONNX model ({type(exc).__name__}: {str(exc)[:200]})",
            hint="export the model to ONNX first (e.g. torch.onnx.export)",
        ) from None
    if not model.HasField("graph") or not (model.graph.node or model.graph.output):
        raise ModelError(
            f"{path} is not an ONNX model (no graph)",
            hint="export the model to ONNX first (e.g. torch.onnx.export)",
        )
    try:
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, str(path.parent))
    except Exception as exc:
        raise ModelError(
            f"{path}: its external data cannot be read ({str(exc)[:200]})",
            hint="keep the .onnx beside the data files it names",
        ) from None
    return model


def _check(model: onnx.ModelProto, where: str) -> None:
    if model.ByteSize() > _CHECKER_LIMIT:
        log.warning(f"{where}: model over 2 GB, the ONNX checker was skipped")
        return
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid model"
        raise ModelError(
            f"{where} fails the ONNX checker: {first}",
            hint="re-export the model, or fix it with onnx tools; --debug shows the traceback",
        ) from None


def _infer_shapes(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False), None
    except Exception as exc:
        return model, f"ONNX shape inference failed ({str(exc).splitlines()[0][:200]})"


# ----------------------------------------------------------------------------------------------
# Summary (pure)


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def _all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for sub in _subgraphs(node):
            yield from _all_nodes(sub)


def _is_quantized_op(op_type: str) -> bool:
    return (
        op_type in QUANTIZED_OPS
        or op_type in AMCT_DEPLOY_OPS
        or op_type.startswith("QLinear")
        or "Integer" in op_type  # ConvInteger, MatMulInteger, MatMulIntegerToFloat
    )


def _ascend_type(node: onnx.NodeProto, ranks: dict[str, int]) -> str:
    if node.op_type == "Conv" and len(node.input) > 1 and ranks.get(node.input[1]) == 5:
        return "Conv3D"
    return QUANTIZABLE_TYPES[node.op_type]


def _float16_model(model: onnx.ModelProto) -> bool:
    f16 = onnx.TensorProto.FLOAT16
    return any(i.data_type == f16 for i in model.graph.initializer) or any(
        v.type.tensor_type.elem_type == f16 for v in input_values(model)
    )


def summarize(model: onnx.ModelProto) -> ModelSummary:
    """What `inspect` shows, and what the later stages need to know, as data."""
    graph = model.graph
    opsets = {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import}
    op_counts = dict(sorted(Counter(n.op_type for n in graph.node).items()))
    subgraph_nodes = [n for top in graph.node for sub in _subgraphs(top) for n in _all_nodes(sub)]

    param_count = param_bytes = 0
    ranks: dict[str, int] = {}
    for init in graph.initializer:
        count = math.prod(init.dims)
        param_count += count
        try:
            itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize
        except Exception:
            itemsize = 0
        param_bytes += count * itemsize
        ranks[init.name] = len(init.dims)

    fp16 = _float16_model(model)
    quantizable = [
        (node.name, node.op_type, _ascend_type(node, ranks))
        for node in graph.node
        if node.op_type in QUANTIZABLE_TYPES
    ]
    if fp16:
        quantizable = [q for q in quantizable if q[2] not in FP16_OFF_TYPES]
    quantized_ops = Counter(n.op_type for n in _all_nodes(graph) if _is_quantized_op(n.op_type))

    warnings: list[str] = []
    opset = opsets.get("ai.onnx")
    low, high = ATC_OPSET_RANGE
    if opset is not None and not low <= opset <= high:
        warnings.append(
            f"opset {opset} is outside the ai.onnx v{low}-v{high} ATC documents; atc may "
            "reject the model (re-export with an opset in that range)"
        )
    if quantized_ops:
        warnings.append(f"the model is already quantized: {refuse_int8_text(quantized_ops)}")
    elif not quantizable:
        warnings.append(
            "no quantizable layers (Conv, Gemm, MatMul, ConvTranspose, AveragePool): INT8 "
            "will not be faster than FP16 for this model"
        )
    if fp16:
        warnings.append(
            "FP16 inputs or weights: ATC does not quantize AvgPool/MaxPool/Add/BatchMatMulV2 "
            "in FP16 models"
        )
    if subgraph_nodes:
        hidden = Counter(n.op_type for n in subgraph_nodes if n.op_type in QUANTIZABLE_TYPES)
        owners = sorted({n.op_type for n in graph.node if n.op_type in SUBGRAPH_OPS})
        detail = f", {sum(hidden.values())} of them quantizable" if hidden else ""
        warnings.append(
            f"{len(subgraph_nodes)} ops are inside {'/'.join(owners) or 'control-flow'} "
            f"subgraphs{detail}: onnxsim, shape fixing and INT8 calibration do not reach them"
        )

    inputs, outputs = graph_io(model)
    return ModelSummary(
        ir_version=int(model.ir_version),
        opsets=opsets,
        producer=" ".join(p for p in (model.producer_name, model.producer_version) if p),
        inputs=inputs,
        outputs=outputs,
        op_counts=op_counts,
        param_count=int(param_count),
        param_bytes=int(param_bytes),
        quantizable_nodes=quantizable,
        subgraph_ops=len(subgraph_nodes),
        already_quantized=bool(quantized_ops),
        warnings=warnings,
    )


def refuse_int8_text(quantized_ops: Counter[str] | dict[str, int]) -> str:
    ops = ", ".join(f"{op} x{count}" for op, count in sorted(quantized_ops.items()))
    return (
        f"it contains {ops}. INT8 post-training quantization needs the float model: "
        "calibrating again would quantize already-rounded values twice. Convert it to FP16, "
        "or quantize the float original"
    )


def refuse_int8_reason(summary: ModelSummary) -> str | None:
    """Why INT8 conversion is refused for this model, or None when it may proceed."""
    if not summary.already_quantized:
        return None
    ops = {op: n for op, n in summary.op_counts.items() if _is_quantized_op(op)}
    return "the model is already quantized: " + refuse_int8_text(
        ops or {"quantized ops in subgraphs": summary.subgraph_ops}
    )


# ----------------------------------------------------------------------------------------------
# Repairs: each returns the (possibly new) model and a message saying what it did, or None.


def repair_ir_version(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    """IR < 4 requires initializers to be graph inputs; lift the model to IR >= 4 instead."""
    weights = {init.name for init in model.graph.initializer}
    listed = [v for v in model.graph.input if v.name in weights]
    if model.ir_version >= 4 and not listed:
        return model, None
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    parts = []
    if fixed.ir_version < 4:
        new_ir = max(4, helper.find_min_ir_version_for(list(fixed.opset_import), True))
        parts.append(f"IR version {fixed.ir_version} -> {new_ir}")
        fixed.ir_version = new_ir
    if listed:
        keep = [v for v in fixed.graph.input if v.name not in weights]
        del fixed.graph.input[:]
        fixed.graph.input.extend(keep)
        parts.append(f"{len(listed)} initializers removed from the graph inputs (they are weights)")
    return fixed, "; ".join(parts)


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    if len(node.attribute) != 1:
        return None
    attr = node.attribute[0]
    if attr.name == "value":
        return numpy_helper.to_array(attr.t)
    scalar = {"value_float": np.float32, "value_int": np.int64}
    vector = {"value_floats": np.float32, "value_ints": np.int64}
    if attr.name in scalar:
        return np.array(helper.get_attribute_value(attr), dtype=scalar[attr.name])
    if attr.name in vector:
        return np.array(list(helper.get_attribute_value(attr)), dtype=vector[attr.name])
    return None  # sparse_value / strings: leave the node as it is


def repair_constant_weights(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    """Fold top-level Constant nodes into initializers so weights are not seen as activations."""
    folded: list[onnx.TensorProto] = []
    keep: list[onnx.NodeProto] = []
    for node in model.graph.node:
        value = _constant_value(node) if node.op_type == "Constant" else None
        if value is None:
            keep.append(node)
        else:
            folded.append(numpy_helper.from_array(value, node.output[0]))
    if not folded:
        return model, None
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    del fixed.graph.node[:]
    fixed.graph.node.extend(keep)
    fixed.graph.initializer.extend(folded)
    weights = sum(1 for t in folded if len(t.dims) >= 2)
    return fixed, (
        f"{len(folded)} Constant nodes folded into initializers ({weights} of them weight "
        "tensors that would otherwise be quantized as activations)"
    )


def repair_opset(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str | None, str | None]:
    """Convert ai.onnx opset < 13 to 13: ORT's per-channel QDQ silently breaks below it.

    Returns (model, repair message, warning when the conversion failed).
    """
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if current is None or current >= QDQ_MIN_OPSET:
        return model, None, None
    try:
        from onnx import version_converter

        converted = version_converter.convert_version(model, QDQ_MIN_OPSET)
        onnx.checker.check_model(converted)
    except Exception as exc:
        return (
            model,
            None,
            f"opset {current} could not be converted to {QDQ_MIN_OPSET} "
            f"({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}); INT8 "
            "per-channel quantization needs opset 13: re-export with opset >= 13",
        )
    return converted, f"opset {current} -> {QDQ_MIN_OPSET} (per-channel QDQ needs 13)", None


def repair_ort_ir(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    """Note an IR version newer than ONNX Runtime reads; the model is saved with save_for_ort."""
    target = ort_ir_version(model)
    if model.ir_version <= target:
        return model, None
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    fixed.ir_version = target
    return fixed, (
        f"IR version {model.ir_version} -> {target} (onnxruntime reads IR <= {ORT_MAX_IR_VERSION})"
    )


# ----------------------------------------------------------------------------------------------
# Shapes


def resolve_input_shapes(
    inputs: list[TensorSpec], input_shape: str | None
) -> tuple[dict[str, tuple[int, ...]], list[str]]:
    """Static shapes for every input from the declared dims and atc-syntax `input_shape`.

    Returns (shapes, warnings). Raises UsageError naming every dynamic dim without a value.
    """
    given = parse_input_shape(input_shape) if input_shape else {}
    names = [t.name for t in inputs]
    for name in given:
        if name not in names:
            import difflib

            match = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
            raise UsageError(
                f"--input-shape names '{name}', which is not a model input "
                f"(inputs: {', '.join(names)})",
                hint=f"did you mean '{match[0]}'?" if match else None,
            )
    shapes: dict[str, tuple[int, ...]] = {}
    missing: list[str] = []
    warnings: list[str] = []
    for info in inputs:
        if info.name in given:
            dims = given[info.name]
            if len(dims) != len(info.shape):
                raise UsageError(
                    f"--input-shape gives {info.name} {len(dims)} dims, the model declares "
                    f"{len(info.shape)} {_fmt_shape(info.shape)}"
                )
            if -1 in dims:
                raise UsageError(
                    f"--input-shape {info.name}: -1 is for atc's dynamic gears; preflight "
                    "needs a concrete value for every dim",
                    hint="give the largest or most common size, e.g. 1 for the batch",
                )
            for i, (want, declared) in enumerate(zip(dims, info.shape)):
                if isinstance(declared, int) and declared != want:
                    warnings.append(
                        f"--input-shape overrides {info.name} dim {i}: declared {declared}, "
                        f"using {want}"
                    )
            shapes[info.name] = tuple(dims)
            continue
        dynamic = [(i, d) for i, d in enumerate(info.shape) if not isinstance(d, int)]
        if dynamic:
            missing.append(
                f"{info.name} {_fmt_shape(info.shape)} dims "
                + ", ".join(f"{i} ('{d}')" for i, d in dynamic)
            )
        else:
            shapes[info.name] = tuple(int(d) for d in info.shape)
    if missing:
        example = ";".join(
            f"{t.name}:{','.join(str(d) if isinstance(d, int) else '<' + d + '>' for d in t.shape)}"
            for t in inputs
        )
        raise UsageError(
            "dynamic input dims need a value: " + "; ".join(missing),
            hint=f'pass them in atc syntax, e.g. --input-shape "{example}"',
        )
    return shapes, warnings


def check_memory(
    shapes: dict[str, tuple[int, ...]], dtypes: dict[str, str], samples: int = 1, what: str = ""
) -> int:
    """Bytes of `samples` samples of every input (dims x dtype x samples); UsageError above
    MAX_SAMPLE_BYTES, before anything is allocated."""
    total = 0
    for name, dims in shapes.items():
        try:
            itemsize = np.dtype(dtypes.get(name, "float32")).itemsize
        except TypeError:
            itemsize = 4
        total += math.prod(dims) * max(itemsize, 1) * samples
    if total > MAX_SAMPLE_BYTES:
        text = "; ".join(f"{n}:{','.join(map(str, d))}" for n, d in shapes.items())
        raise UsageError(
            f"{what or 'the model inputs'} ({text}"
            + (f", x{samples} samples" if samples > 1 else "")
            + f") would take {total / 2**30:.3g} GiB, over the {MAX_SAMPLE_BYTES / 2**30:g} GiB "
            "limit",
            hint="check the input shape (a typo in --input-shape?) or use a smaller size/batch",
        )
    return total


def resolve_gears(
    inputs: list[TensorSpec],
    input_shape: str | None,
    config: GearsConfig | None,
    input_format: str = "NCHW",
    extra_args: tuple[str, ...] = (),
) -> Gears | None:
    """The model's gears from the config, validated against its inputs (None: static)."""
    if config is None:
        chosen_kind(extra_args=extra_args)
        return None
    kind, values = chosen_kind(config.batch, config.image_size, config.dims, extra_args)
    if kind is None:
        return None
    given = parse_input_shape(input_shape) if input_shape else {}
    return make_gears(
        kind,
        values,
        {t.name: t.shape for t in inputs},
        given,
        input_format=input_format,
        image_inputs=config.inputs,
        calib=config.calib_gear,
    )


def resizes(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]]) -> bool:
    """Whether `shapes` change a size the model declares (not just fill a dynamic dim)."""
    return any(
        dim.HasField("dim_value") and dim.dim_value != want
        for value in input_values(model)
        for dim, want in zip(value.type.tensor_type.shape.dim, shapes.get(value.name, ()))
    )


def override_input_dims(
    model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]]
) -> onnx.ModelProto:
    """The model with declared input sizes replaced by `shapes` (`--input-shape` overriding a
    fixed dim: a fully convolutional model exported at one size, converted at another); inner
    and output shapes are dropped, to be inferred from the new sizes. `model` itself, not a
    copy, when no declared size changes (`resizes`)."""
    if not resizes(model, shapes):
        return model
    resized = onnx.ModelProto()
    resized.CopyFrom(model)
    for value in input_values(resized):
        for dim, want in zip(value.type.tensor_type.shape.dim, shapes.get(value.name, ())):
            if dim.HasField("dim_value"):
                dim.dim_value = int(want)
    del resized.graph.value_info[:]
    for output in resized.graph.output:
        output.type.tensor_type.ClearField("shape")
    return resized


def gear_dims_symbolic(model: onnx.ModelProto, gears: Gears) -> onnx.ModelProto:
    """The model with every input's static dims fixed and its gear dims named `gear_<k>`,
    so one graph serves every gear (atc's -1 dims) and nothing folds a gear dim away."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    names = _gear_dim_names(gears.kind, gears.template)
    for value in input_values(fixed):
        if value.name not in gears.template:
            continue
        dims = value.type.tensor_type.shape.dim
        for i, (dim, want) in enumerate(zip(dims, gears.template[value.name])):
            if want == -1:
                dim.Clear()
                dim.dim_param = names[value.name][i]
            else:
                dim.Clear()
                dim.dim_value = int(want)
    del fixed.graph.value_info[:]
    return fixed


def _gear_dim_names(
    kind: GearKind, template: dict[str, tuple[int, ...]]
) -> dict[str, dict[int, str]]:
    """batch: every input's N is `gear_batch`; image size: `gear_h`/`gear_w`; dims: gear_d<k>."""
    result: dict[str, dict[int, str]] = {}
    k = 0
    for name, dims in template.items():
        result[name] = {}
        per_input = 0
        for i, d in enumerate(dims):
            if d != -1:
                continue
            if kind == "batch":
                result[name][i] = "gear_batch"
            elif kind == "image_size":
                result[name][i] = ("gear_h", "gear_w")[per_input]
                per_input += 1
            else:
                result[name][i] = f"gear_d{k}"
                k += 1
    return result


def _refuse_gear(
    model: onnx.ModelProto,
    gears: Gears | None,
    gear_feeds: list[dict[str, np.ndarray]],
    error: Exception,
) -> None:
    """A model that runs at some gears but not at others cannot be converted with them."""
    if gears is None:
        return
    failed: list[tuple[str, str]] = []
    for i, feeds in enumerate(gear_feeds):
        try:
            run_ort(model, feeds)
        except Exception as exc:
            failed.append((gears.label(i), str(exc).splitlines()[0][:200]))
    if failed and len(failed) < len(gear_feeds):
        label, why = failed[0]
        raise UsageError(
            f"the model does not run at gear {label} ({why})",
            hint="a node fixes that dim (e.g. a Reshape to a constant size); re-export the "
            "model with the dim dynamic, or drop the gear",
        )
    del error


def _fmt_shape(shape: tuple[int | str, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def save_reference(
    model_path: Path,
    pinned: Mapping[str, Any],
    shapes: Mapping[str, tuple[int, ...]] | None,
    out: Path,
) -> Path:
    """The FP32 reference of a model converted with inputs pinned (folded in: no longer fed) or
    declared sizes changed by `--input-shape`, as preflight does, saved to `out` for ORT;
    `model_path` itself when neither changes the model."""
    shapes = shapes or {}
    try:
        proto = onnx.load(str(model_path), load_external_data=False)  # the graph is enough
        if not pinned and not resizes(proto, shapes):
            return model_path
        onnx.load_external_data_for_model(proto, str(Path(model_path).parent))
    except Exception as exc:
        raise UsageError(f"{model_path}: not a loadable ONNX model ({exc})") from None
    return save_for_ort(override_input_dims(pin_inputs(proto, pinned)[0], shapes), out)


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run `model` once on the CPU with ONNX Runtime; name -> output array."""
    return run_once(model, feeds)


def outputs_match(
    expected: dict[str, np.ndarray], actual: dict[str, np.ndarray]
) -> tuple[bool, str]:
    """Allclose per output, tolerances scaled to each output's finite magnitude. NaN and inf
    match where both models give them: a transformer's all-masked check feed gives NaN logits
    in the original too, and that is agreement, not a difference."""
    if set(expected) != set(actual):
        return False, f"outputs differ: {sorted(expected)} vs {sorted(actual)}"
    for name, want in expected.items():
        got = actual[name]
        if want.shape != got.shape:
            return False, f"{name}: shape {list(got.shape)} != {list(want.shape)}"
        if want.dtype.kind in "fc":
            finite = want[np.isfinite(want)]
            scale = float(np.max(np.abs(finite))) if finite.size else 0.0
            atol = VERIFY_ATOL * max(scale, 1.0)
            if not np.allclose(got, want, rtol=VERIFY_RTOL, atol=atol, equal_nan=True):
                diff = float(np.max(np.abs(got.astype(np.float64) - want)))
                return False, f"{name}: max abs difference {diff:.3g}"
        elif not np.array_equal(got, want):
            return False, f"{name}: values differ"
    return True, ""


# ----------------------------------------------------------------------------------------------
# Preflight


def _simplify(
    model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]] | None
) -> tuple[onnx.ModelProto | None, str | None]:
    """onnxsim with the static shapes; `shapes=None` keeps the (gear) dims symbolic."""
    try:
        overwrite = {k: list(v) for k, v in shapes.items()} if shapes is not None else None
        simplified, ok = onnxsim.simplify(model, overwrite_input_shapes=overwrite)
    except Exception as exc:
        message = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        return None, f"onnxsim failed ({type(exc).__name__}: {message})"
    if not ok:
        return None, "onnxsim's own check failed"
    return simplified, None


def pin_inputs(
    model: onnx.ModelProto, values: Mapping[str, Any]
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """Fold inputs pinned to a constant (e.g. a sample rate) into the model as initializers.

    atc needs static inputs anyway; a pinned input is no longer fed, calibrated or evaluated.
    Returns (model, {name: the array folded in, of the input's dtype and shape}).
    """
    if not values:
        return model, {}
    specs = {spec.name: spec for spec in graph_io(model)[0]}
    folded: dict[str, np.ndarray] = {}
    for name, raw in values.items():
        spec = specs.get(name)
        if spec is None:
            raise UsageError(
                f"[inputs.{name}] value: the model has no input '{name}' "
                f"(its inputs: {', '.join(specs)})"
            )
        try:
            value = np.array(raw, dtype=spec.dtype)
        except (TypeError, ValueError, OverflowError) as exc:
            raise UsageError(
                f"[inputs.{name}] value = {raw!r} is not {spec.dtype} ({exc})",
                hint=f"write a number or a nested list that fits {spec.dtype}",
            ) from None
        if not spec.is_static:
            raise UsageError(
                f"[inputs.{name}] value: input '{name}' has dynamic dims {list(spec.shape)}",
                hint=f'give its shape with --input-shape "{name}:..."',
            )
        shape = tuple(int(d) for d in spec.shape)
        if value.shape != shape:
            if value.size != 1:
                raise UsageError(
                    f"[inputs.{name}] value has shape {list(value.shape)}, input '{name}' is "
                    f"{list(shape)}",
                    hint="give one number (it fills the input) or a list of the input's shape",
                )
            value = np.full(shape, value.reshape(()), dtype=spec.dtype)
        folded[name] = value
    pinned = copy.deepcopy(model)
    kept = [v for v in pinned.graph.input if v.name not in folded]
    del pinned.graph.input[:]
    pinned.graph.input.extend(kept)
    for name, value in folded.items():
        pinned.graph.initializer.append(numpy_helper.from_array(value, name))
    return pinned, folded


def preflight(
    model_path: Path,
    out_dir: Path,
    input_shape: str | None = None,
    simplify: bool = True,
    progress: Progress = NULL_PROGRESS,
    pinned: Mapping[str, Any] | None = None,
    gears_config: GearsConfig | None = None,
    input_format: str = "NCHW",
    extra_args: tuple[str, ...] = (),
    log_warnings: bool = True,
) -> PreflightResult:
    """Load, repair, check, fix shapes, simplify (verified on ORT) and write the model to convert.

    Writes `out_dir/<stem>.sim.onnx` (or `<stem>.fixed.onnx` when not simplified) and
    `out_dir/<stem>.json` (summary, repairs, warnings, shapes), each atomically.
    `log_warnings=False`: the caller shows `result.warnings` itself (`build` does, for a fresh
    and a reused preflight alike), so each is printed once.
    """
    model_path = Path(model_path)
    out_dir = Path(out_dir)
    stem = model_path.stem
    repairs: list[str] = []
    warnings: list[str] = []

    with progress.task(f"preflight {model_path.name}", total=5) as advance:
        model = load_model(model_path)
        source_sha = sha256_file(model_path)
        advance(1)

        model, message = repair_ir_version(model)
        repairs += [message] if message else []
        model, message = repair_constant_weights(model)
        repairs += [message] if message else []
        model, message, problem = repair_opset(model)
        repairs += [message] if message else []
        warnings += [problem] if problem else []
        model, message = repair_ort_ir(model)
        repairs += [message] if message else []
        _check(model, str(model_path))
        model, folded = pin_inputs(model, pinned or {})
        model, problem = _infer_shapes(model)
        warnings += [problem] if problem else []
        advance(1)

        inputs, _ = graph_io(model)
        if not inputs:
            raise ModelError(
                f"{model_path} has no inputs (every value is a constant): there is nothing to "
                "convert, calibrate or compare",
                hint="export the model with its real inputs (not folded into constants)",
            )
        gears = resolve_gears(inputs, input_shape, gears_config, input_format, extra_args)
        if gears is None:
            shapes, shape_warnings = resolve_input_shapes(inputs, input_shape)
            warnings += shape_warnings
            gear_shapes = [shapes]
        else:
            model, problem = _infer_shapes(gear_dims_symbolic(model, gears))
            warnings += [problem] if problem else []
            shapes = gears.calib_shapes
            gear_shapes = [gears.shapes(i) for i in range(len(gears))]
        dtypes = {t.name: t.dtype for t in inputs}
        for gear_shape in gear_shapes:
            check_memory(gear_shape, dtypes, what=f"one sample for {stem}")
        # after the memory check: a refused size is never written into the graph
        resized_model = override_input_dims(model, shapes) if gears is None else model
        resized = resized_model is not model
        if resized:
            model, problem = _infer_shapes(resized_model)
            warnings += [problem] if problem else []
        # every gear runs once; the calibration gear's run is the reference for the rest
        gear_feeds = [check_feeds(inputs, s) for s in gear_shapes]
        calib_at = gears.calib_index if gears is not None else 0
        references: list[dict[str, np.ndarray]] | None
        try:
            references = [run_ort(model, f) for f in gear_feeds]
            reference: dict[str, np.ndarray] | None = references[calib_at]
        except Exception as exc:
            references = reference = None
            _refuse_gear(model, gears, gear_feeds, exc)
            if resized:
                raise UsageError(
                    f"{model_path.name} does not run at --input-shape {input_shape} "
                    f"({str(exc).splitlines()[0][:200]})",
                    hint="a node fixes that size (e.g. a Reshape to a constant): use the "
                    "declared shape, or re-export the model with that dim dynamic",
                ) from None
            warnings.append(
                f"ONNX Runtime cannot run the model ({str(exc).splitlines()[0][:200]}); output "
                "shapes are the declared ones and simplification is not verified"
            )
        advance(1)

        final, simplified = model, False
        outputs = reference
        if simplify and references is not None:
            candidate, problem = _simplify(model, shapes if gears is None else None)
            if candidate is not None:
                try:
                    ok, why, checked = True, "", None
                    for at, (f, want) in enumerate(zip(gear_feeds, references)):
                        got = run_ort(candidate, f)
                        checked = got if at == calib_at else checked
                        ok, why = outputs_match(want, got)
                        if not ok:
                            break
                except Exception as exc:
                    ok, why = False, f"it does not run on ONNX Runtime ({str(exc)[:160]})"
                if ok:
                    # Its outputs on the check give the output shapes: no third run.
                    final, simplified, outputs = candidate, True, checked
                else:
                    problem = f"the simplified model differs from the original: {why}"
            if problem:
                warnings.append(f"{problem}; keeping the unsimplified model")
        elif simplify:
            warnings.append("simplification skipped: the model does not run on ONNX Runtime")
        advance(1)

        if outputs is not None:
            output_shapes = {name: tuple(int(d) for d in a.shape) for name, a in outputs.items()}
        else:
            output_shapes = {
                t.name: tuple(d for d in t.shape if isinstance(d, int))
                for t in graph_io(final)[1]
                if all(isinstance(d, int) for d in t.shape)
            }
        named = name_nodes(final)
        if named:
            repairs.append(
                f"named {named} unnamed node(s) <op type>_<index> (skip lists, reports and "
                "every backend use these names)"
            )
        summary = summarize(final)
        for message in summary.warnings + warnings if log_warnings else []:
            log.warning(message)

        out_path = out_dir / f"{stem}.{'sim' if simplified else 'fixed'}.onnx"
        save_for_ort(final, out_path)
        stale = out_dir / f"{stem}.{'fixed' if simplified else 'sim'}.onnx"
        stale.unlink(missing_ok=True)
        result = PreflightResult(
            model_path=out_path,
            source_path=model_path,
            source_sha256=source_sha,
            input_shapes=shapes,
            output_shapes=output_shapes,
            summary=summary,
            repairs=repairs,
            warnings=summary.warnings + warnings,
            simplified=simplified,
            declared_inputs=inputs,
            pinned={name: value.tolist() for name, value in folded.items()},
            gears=gears,
        )
        atomic_write_json(out_dir / f"{stem}.json", preflight_record(result))
        advance(1)
    return result


def preflight_record(result: PreflightResult) -> dict[str, Any]:
    """The JSON form of a preflight result (what `<stem>.json` and `inspect --json` hold)."""
    record = asdict(result)
    record["model_path"] = str(result.model_path)
    record["source_path"] = str(result.source_path)
    record["input_shapes"] = {k: list(v) for k, v in result.input_shapes.items()}
    record["output_shapes"] = {k: list(v) for k, v in result.output_shapes.items()}
    record["int8_refused"] = refuse_int8_reason(result.summary)
    record["gears"] = result.gears.record() if result.gears is not None else None
    return record
