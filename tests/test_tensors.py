"""tensors.py: the one reader of a graph's inputs/outputs and the dtype maps."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ascend_quant import tensors
from ascend_quant.tensors import InputProfile, TensorSpec, graph_io


def _model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, None])
    t = helper.make_tensor_value_info("t", TensorProto.INT64, [])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT16, [2, 0])
    nodes = [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT16)]
    init = [helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])]
    graph = helper.make_graph(nodes, "g", [x, w, t], [y], initializer=init)
    return helper.make_model(graph)


def test_graph_io_skips_initializers_and_keeps_order() -> None:
    inputs, outputs = graph_io(_model())
    assert inputs == [
        TensorSpec("x", "float32", ("N", 3, "?")),
        TensorSpec("t", "int64", ()),
    ]
    assert outputs == [TensorSpec("y", "float16", (2, "?"))]
    assert not inputs[0].is_static and inputs[1].is_static and inputs[1].rank == 0


@pytest.mark.parametrize(
    "elem",
    [
        TensorProto.FLOAT,
        TensorProto.FLOAT16,
        TensorProto.INT64,
        TensorProto.INT32,
        TensorProto.INT8,
        TensorProto.UINT8,
        TensorProto.BOOL,
        TensorProto.DOUBLE,
    ],
)
def test_dtype_maps_agree_with_onnx_and_numpy(elem: int) -> None:
    name = tensors.dtype_name(elem)
    assert np.dtype(helper.tensor_dtype_to_np_dtype(elem)).name == name
    assert tensors.onnx_elem_type(name) == elem
    assert tensors.onnx_type_name(elem) == TensorProto.DataType.Name(elem)


def test_ort_names_match_onnxruntime() -> None:
    import onnxruntime as ort

    from ascend_quant.onnx_io import to_ort_bytes

    session = ort.InferenceSession(to_ort_bytes(_model()), providers=["CPUExecutionProvider"])
    got = {i.name: tensors.ort_dtype_name(i.type) for i in session.get_inputs()}
    assert got == {"x": "float32", "t": "int64"}
    assert tensors.ort_dtype_name("tensor(weird)") == "tensor(weird)"


def test_input_profile_defaults() -> None:
    spec = TensorSpec("state", "float32", (2, 1, 128))
    profile = InputProfile(spec)
    assert profile.name == "state" and profile.batch_dim is None
    assert InputProfile(spec, batch_dim=1).batch_dim == 1
    assert spec.with_shape((2, 1, 64)).shape == (2, 1, 64)
