"""Stable node names: preflight names unnamed nodes once; the simulator records a tensor map."""

from __future__ import annotations

import onnx
import tiny_models

from ascend_quant import model as M
from ascend_quant.backends.sim import open_runner
from ascend_quant.quant.layers import tensor_map
from ascend_quant.quant.ops import QUANTIZABLE_TYPES, ir_type


def _unnamed(tmp_path):  # type: ignore[no-untyped-def]
    model = tiny_models.conv_net()
    for node in model.graph.node:
        node.name = ""
    return tiny_models.save(model, tmp_path / "unnamed.onnx")


def test_preflight_names_every_node_deterministically(tmp_path) -> None:
    path = _unnamed(tmp_path)
    first = M.preflight(path, tmp_path / "a", simplify=False)
    second = M.preflight(path, tmp_path / "b", simplify=False)
    names = [n.name for n in onnx.load(str(first.model_path)).graph.node]
    assert names == ["Conv_0", "Relu_1", "Conv_2"]
    assert names == [n.name for n in onnx.load(str(second.model_path)).graph.node]
    assert any("named 3 unnamed node(s)" in r for r in first.repairs)


def test_named_models_keep_their_names(conv_model, tmp_path) -> None:
    result = M.preflight(conv_model, tmp_path / "o", simplify=False)
    assert [n.name for n in onnx.load(str(result.model_path)).graph.node] == [
        "conv1",
        "relu1",
        "conv2",
    ]
    assert not any("unnamed" in r for r in result.repairs)


def test_one_op_table() -> None:
    assert M.QUANTIZABLE_TYPES is QUANTIZABLE_TYPES
    assert ir_type("Conv", 5) == "Conv3D" and ir_type("Gemm") == "MatMulV2"
    assert ir_type("Relu") == "Relu"


def test_tensor_map_leaves_out_removed_tensors() -> None:
    original = tiny_models.conv_net()
    converted = tiny_models.conv_net()
    del converted.graph.node[1]  # relu1 gone
    mapping = tensor_map(original, converted)
    assert mapping == {"input": "input", "c1": "c1", "output": "output"}


def test_simulated_artifacts_record_the_tensor_map(sr_model, tmp_path) -> None:
    from ascend_quant.backends.base import ConvertRequest
    from ascend_quant.backends.sim import SimBackend

    request = ConvertRequest(
        model=sr_model,
        source_sha256="0" * 64,
        input_shapes={"input": (1, 3, 16, 16)},
        soc="Ascend310P3",
        precision="fp16",
        out_dir=tmp_path,
        name="sr",
    )
    artifact = SimBackend().convert(request)
    with open_runner(artifact.path) as runner:
        mapping = runner.metadata["tensor_map"]
    assert mapping["c1"] == "c1" and mapping["output"] == "output"
