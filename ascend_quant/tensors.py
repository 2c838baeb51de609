"""What goes into and comes out of a model: `TensorSpec`, `InputProfile`, `graph_io`, dtype maps.

The ground floor of the package (it imports nothing of ours, and not even onnx: element types
are a table here, so the backends' contract can name tensors without loading onnx). `graph_io`
is the one place that reads a graph's inputs and outputs; everything else asks it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: onnx is heavy and this module must stay light
    import onnx

# (ONNX TensorProto element type, its ONNX name, the numpy dtype name we use for it)
_ELEMENT_TYPES: tuple[tuple[int, str, str], ...] = (
    (1, "FLOAT", "float32"),
    (2, "UINT8", "uint8"),
    (3, "INT8", "int8"),
    (4, "UINT16", "uint16"),
    (5, "INT16", "int16"),
    (6, "INT32", "int32"),
    (7, "INT64", "int64"),
    (8, "STRING", "object"),
    (9, "BOOL", "bool"),
    (10, "FLOAT16", "float16"),
    (11, "DOUBLE", "float64"),
    (12, "UINT32", "uint32"),
    (13, "UINT64", "uint64"),
    (14, "COMPLEX64", "complex64"),
    (15, "COMPLEX128", "complex128"),
    (16, "BFLOAT16", "bfloat16"),
)
# ONNX element type -> numpy dtype name ("float32", "int64", ...)
ONNX_TO_NUMPY: dict[int, str] = {elem: np_name for elem, _, np_name in _ELEMENT_TYPES}
# numpy dtype name -> ONNX element type
NUMPY_TO_ONNX: dict[str, int] = {np_name: elem for elem, _, np_name in _ELEMENT_TYPES}
# ONNX element type -> ONNX name ("FLOAT", "INT64"), as onnx.TensorProto.DataType.Name gives it
ONNX_NAMES: dict[int, str] = {elem: name for elem, name, _ in _ELEMENT_TYPES}
# ONNX Runtime's type strings ("tensor(float)") -> numpy dtype name
ORT_TO_NUMPY: dict[str, str] = {
    f"tensor({name.lower()})": np_name for _, name, np_name in _ELEMENT_TYPES
}


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as the graph declares it."""

    name: str
    dtype: str  # numpy dtype name, e.g. "float32"
    shape: tuple[int | str, ...]  # str: a symbolic (dynamic) dim, "?" when unnamed

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def with_shape(self, shape: tuple[int | str, ...]) -> TensorSpec:
        return replace(self, shape=tuple(shape))


@dataclass(frozen=True)
class InputProfile:
    """A model input plus what the user told us about it and the graph cannot say.

    `batch_dim` is the dim that counts samples (None: the input has no batch dim, e.g. a state
    tensor or a scalar); it is marked by the user, never guessed. Gears are not here: atc's
    gears are joint over all inputs, so they live in one model-wide `gears.Gears` record.
    """

    spec: TensorSpec
    batch_dim: int | None = None

    @property
    def name(self) -> str:
        return self.spec.name


def dtype_name(elem_type: int) -> str:
    """The numpy dtype name of an ONNX element type ("undefined" for 0, as onnx spells it)."""
    if elem_type == 0:
        return "undefined"
    return ONNX_TO_NUMPY.get(elem_type, f"onnx_type_{elem_type}")


def onnx_type_name(elem_type: int) -> str:
    """ "INT64", "FLOAT16": the ONNX spelling, for messages."""
    return ONNX_NAMES.get(elem_type, f"element type {elem_type}")


def onnx_elem_type(dtype: str) -> int:
    """The ONNX element type of a numpy dtype name; KeyError for dtypes ONNX has none for."""
    return NUMPY_TO_ONNX[dtype]


def ort_dtype_name(ort_type: str) -> str:
    """ONNX Runtime's "tensor(float)" as "float32" (unknown strings are returned unchanged)."""
    return ORT_TO_NUMPY.get(ort_type, ort_type)


def value_spec(value: onnx.ValueInfoProto) -> TensorSpec:
    """A graph value's name, dtype and dims (a dim without a positive value is symbolic)."""
    tensor = value.type.tensor_type
    dims: list[int | str] = []
    if tensor.HasField("shape"):
        for dim in tensor.shape.dim:
            if dim.HasField("dim_value") and dim.dim_value > 0:
                dims.append(int(dim.dim_value))
            else:
                dims.append(dim.dim_param or "?")
    return TensorSpec(value.name, dtype_name(tensor.elem_type), tuple(dims))


def input_values(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph inputs a caller feeds: those that are not initializers (old IRs list weights)."""
    weights = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in weights]


def graph_io(model: onnx.ModelProto) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """(inputs, outputs) of a model's main graph, in graph order, initializers skipped."""
    inputs = [value_spec(v) for v in input_values(model)]
    outputs = [value_spec(v) for v in model.graph.output]
    return inputs, outputs
