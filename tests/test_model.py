from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import tiny_models
from onnx import TensorProto, helper, numpy_helper

from ascend_quant import model as M
from ascend_quant.errors import ModelError, UsageError


def _raw_save(model: onnx.ModelProto, path: Path) -> Path:
    """Save exactly as given (no IR adjustment), like a real exporter would."""
    path.write_bytes(model.SerializeToString())
    return path


def _ir3_model() -> onnx.ModelProto:
    """IR 3 / opset 8: initializers not listed as inputs, which IR < 4 forbids."""
    model = tiny_models.conv_net()
    model.opset_import[0].version = 8
    model.ir_version = 3
    return model


def _constant_weights_model() -> onnx.ModelProto:
    model = tiny_models.conv_net()
    graph = model.graph
    constants = [
        helper.make_node("Constant", [], [init.name], name=f"const_{init.name}", value=init)
        for init in graph.initializer
    ]
    del graph.initializer[:]
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(constants + nodes)
    return model


def _if_model() -> onnx.ModelProto:
    """Conv inside both branches of an If: invisible to calibration."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    flag = helper.make_tensor_value_info("flag", TensorProto.BOOL, [])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, None)
    w = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")

    def branch(name: str, scale: float) -> onnx.GraphProto:
        out = helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, None)
        s = numpy_helper.from_array(np.array(scale, np.float32), f"{name}_s")
        nodes = [
            helper.make_node("Conv", ["input", "w"], [f"{name}_c"], name=f"{name}_conv"),
            helper.make_node("Mul", [f"{name}_c", f"{name}_s"], [f"{name}_out"]),
        ]
        return helper.make_graph(nodes, name, [], [out], [s])

    node = helper.make_node(
        "If",
        ["flag"],
        ["output"],
        name="if",
        then_branch=branch("t", 1.0),
        else_branch=branch("e", -1.0),
    )
    graph = helper.make_graph([node], "ifnet", [x, flag], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _quantized_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 4, 4])
    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.uint8), "z"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"], name="q"),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["output"], name="dq"),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "qdq", [x], [y], inits),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    return model


def _run(model_path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Outputs in graph order, on the same ORT settings `run_ort` uses (so rounding matches)."""
    return list(M.run_ort(onnx.load(str(model_path)), feeds).values())


# ------------------------------------------------------------------ loading


def test_load_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="model not found"):
        M.load_model(tmp_path / "nope.onnx")


def test_load_not_onnx(tmp_path: Path) -> None:
    path = tmp_path / "x.onnx"
    path.write_text("this is not a protobuf at all\n" * 3)
    with pytest.raises(ModelError, match="not an ONNX model"):
        M.load_model(path)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="no graph"):
        M.load_model(empty)


def test_load_directory_and_om(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="directory"):
        M.load_model(tmp_path)
    om = tmp_path / "m.om"
    om.write_bytes(b"IMOD")
    with pytest.raises(ModelError, match=r"Ascend \.om"):
        M.load_model(om)


def test_external_data_loads_and_missing_data_is_named(tmp_path: Path) -> None:
    path = tmp_path / "ext.onnx"
    onnx.save(
        tiny_models.conv_net(),
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    result = M.preflight(path, tmp_path / "out")
    assert result.summary.param_count == 8 * 3 * 9 + 8 + 4 * 8 * 9 + 4
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ModelError, match="external data"):
        M.load_model(path)


def test_checker_failure_is_a_model_error(tmp_path: Path) -> None:
    model = tiny_models.conv_net()
    model.graph.node[1].input[0] = "does_not_exist"
    path = _raw_save(model, tmp_path / "bad.onnx")
    with pytest.raises(ModelError, match="fails the ONNX checker"):
        M.preflight(path, tmp_path / "out")


# ------------------------------------------------------------------ repairs


def test_ir3_model_is_repaired_and_converted(tmp_path: Path) -> None:
    path = _raw_save(_ir3_model(), tmp_path / "ir3.onnx")
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(onnx.load(str(path)))  # really broken before the repair
    result = M.preflight(path, tmp_path / "out")
    assert any(r.startswith("IR version 3 -> ") for r in result.repairs), result.repairs
    assert any("opset 8 -> 13" in r for r in result.repairs)
    assert result.summary.opsets["ai.onnx"] == 13
    repaired = onnx.load(str(result.model_path))
    onnx.checker.check_model(repaired)
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    original = M.run_ort(tiny_models.conv_net(), {"input": x})["output"]
    repaired_out = M.run_ort(repaired, {"input": x})["output"]
    np.testing.assert_allclose(repaired_out, original, rtol=1e-5)


def test_initializers_listed_as_inputs_are_removed(tmp_path: Path) -> None:
    model = tiny_models.conv_net()
    for init in model.graph.initializer:
        model.graph.input.append(
            helper.make_tensor_value_info(init.name, init.data_type, list(init.dims))
        )
    result = M.preflight(_raw_save(model, tmp_path / "m.onnx"), tmp_path / "out")
    assert [t.name for t in result.summary.inputs] == ["input"]
    assert any("4 initializers removed" in r for r in result.repairs)


def test_opset11_model_is_converted_to_13(tmp_path: Path) -> None:
    model = tiny_models.sr_net()
    model.opset_import[0].version = 11
    result = M.preflight(_raw_save(model, tmp_path / "sr11.onnx"), tmp_path / "out")
    assert "opset 11 -> 13 (per-channel QDQ needs 13)" in result.repairs
    assert onnx.load(str(result.model_path)).opset_import[0].version == 13
    x = np.random.default_rng(2).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(
        _run(result.model_path, {"input": x})[0],
        M.run_ort(tiny_models.sr_net(), {"input": x})["output"],
        rtol=1e-5,
    )


def test_opset_conversion_failure_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    from onnx import version_converter

    def boom(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
        raise RuntimeError("no adapter for op Foo")

    monkeypatch.setattr(version_converter, "convert_version", boom)
    model = tiny_models.conv_net()
    model.opset_import[0].version = 11
    same, repair, warning = M.repair_opset(model)
    assert same is model and repair is None
    assert warning is not None and "no adapter for op Foo" in warning


def test_constant_weights_are_folded(tmp_path: Path) -> None:
    model = _constant_weights_model()
    before = M.summarize(model)
    assert before.param_count == 0 and before.op_counts["Constant"] == 4
    result = M.preflight(_raw_save(model, tmp_path / "c.onnx"), tmp_path / "out", simplify=False)
    assert any("4 Constant nodes folded" in r and "2 of them weight" in r for r in result.repairs)
    assert "Constant" not in result.summary.op_counts
    assert result.summary.param_count == 8 * 3 * 9 + 8 + 4 * 8 * 9 + 4
    assert result.model_path.name == "c.fixed.onnx"


def test_newer_ir_version_is_lowered_for_ort(tmp_path: Path) -> None:
    model = tiny_models.conv_net()
    model.ir_version = 12
    result = M.preflight(_raw_save(model, tmp_path / "new.onnx"), tmp_path / "out")
    assert any(r.startswith("IR version 12 -> ") for r in result.repairs)
    assert onnx.load(str(result.model_path)).ir_version <= 10


def test_preflight_runs_the_model_twice_original_and_simplified(
    tmp_path: Path, conv_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = M.run_ort

    def counting(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(1)
        return real(model, feeds)

    monkeypatch.setattr(M, "run_ort", counting)
    result = M.preflight(conv_model, tmp_path / "out")
    assert result.simplified and len(calls) == 2
    assert result.output_shapes == {"output": (1, 4, 16, 16)}


def test_clean_model_needs_no_repair(tmp_path: Path, conv_model: Path) -> None:
    result = M.preflight(conv_model, tmp_path / "out")
    assert result.repairs == [] and result.warnings == []
    assert result.simplified and result.model_path.name == "conv.sim.onnx"
    record = json.loads((tmp_path / "out" / "conv.json").read_text())
    assert record["output_shapes"] == {"output": [1, 4, 16, 16]}
    assert record["summary"]["quantizable_nodes"] == [
        ["conv1", "Conv", "Conv2D"],
        ["conv2", "Conv", "Conv2D"],
    ]


# ------------------------------------------------------------------ warnings


def test_if_subgraph_compute_is_warned(tmp_path: Path) -> None:
    path = _raw_save(_if_model(), tmp_path / "if.onnx")
    summary = M.summarize(M.load_model(path))
    assert summary.subgraph_ops == 4
    assert summary.quantizable_nodes == []
    assert any("inside If subgraphs, 2 of them quantizable" in w for w in summary.warnings)
    assert any("no quantizable layers" in w for w in summary.warnings)


def test_already_quantized_model_refuses_int8(tmp_path: Path) -> None:
    summary = M.summarize(_quantized_model())
    assert summary.already_quantized
    reason = M.refuse_int8_reason(summary)
    assert reason is not None
    assert "QuantizeLinear x1" in reason and "DequantizeLinear x1" in reason
    assert M.refuse_int8_reason(M.summarize(tiny_models.conv_net())) is None


@pytest.mark.parametrize("op", ["QLinearConv", "ConvInteger", "MatMulInteger", "AscendQuant"])
def test_quantized_op_families(op: str) -> None:
    assert M._is_quantized_op(op)
    assert not M._is_quantized_op("Conv")


def test_opset_outside_atc_range_is_warned() -> None:
    model = tiny_models.conv_net()
    model.opset_import[0].version = 20
    assert any("outside the ai.onnx v11-v18" in w for w in M.summarize(model).warnings)


def test_quantizable_types_and_conv3d() -> None:
    assert M.QUANTIZABLE_TYPES == {
        "Conv": "Conv2D",
        "Gemm": "MatMulV2",
        "MatMul": "BatchMatMulV2",
        "ConvTranspose": "Conv2DTranspose",
        "AveragePool": "AvgPoolV2",
    }
    summary = M.summarize(tiny_models.classifier())
    assert summary.quantizable_nodes == [("conv", "Conv", "Conv2D"), ("fc", "Gemm", "MatMulV2")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4, 4])
    w = numpy_helper.from_array(np.ones((2, 1, 1, 1, 1), np.float32), "w")
    conv3d = helper.make_model(
        helper.make_graph(
            [helper.make_node("Conv", ["x", "w"], ["y"], name="c3")], "g", [x], [y], [w]
        )
    )
    assert M.summarize(conv3d).quantizable_nodes == [("c3", "Conv", "Conv3D")]


# ------------------------------------------------------------------ shapes


def test_dynamic_dims_need_input_shape(tmp_path: Path) -> None:
    path = tiny_models.save(tiny_models.conv_net(batch="N"), tmp_path / "dyn.onnx")
    with pytest.raises(UsageError) as info:
        M.preflight(path, tmp_path / "out")
    assert "input [N,3,16,16] dims 0 ('N')" in info.value.message
    assert info.value.hint is not None and '"input:<N>,3,16,16"' in info.value.hint
    assert not (tmp_path / "out").exists()  # nothing half-written
    result = M.preflight(path, tmp_path / "out", input_shape="input:2,3,16,16")
    assert result.input_shapes == {"input": (2, 3, 16, 16)}
    assert result.output_shapes == {"output": (2, 4, 16, 16)}
    assert result.summary.inputs[0].shape == (2, 3, 16, 16)  # fixed by onnxsim


def test_output_shapes_come_from_a_real_run(tmp_path: Path) -> None:
    model = tiny_models.conv_net()
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 99  # wrong declaration
    path = _raw_save(model, tmp_path / "wrong.onnx")
    result = M.preflight(path, tmp_path / "out", simplify=False)
    assert result.output_shapes == {"output": (1, 4, 16, 16)}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("inptu:1,3,16,16", "not a model input"),
        ("input:1,3,16", "gives input 3 dims"),
        ("input:-1,3,16,16", "-1 is for atc's dynamic gears"),
        ("input:a,3,16,16", "not a whole number"),
    ],
)
def test_input_shape_errors(text: str, message: str) -> None:
    inputs = [M.TensorSpec("input", "float32", ("N", 3, 16, 16))]
    with pytest.raises(UsageError, match=message) as info:
        M.resolve_input_shapes(inputs, text)
    if "inptu" in text:
        assert info.value.hint == "did you mean 'input'?"


def test_static_override_is_warned() -> None:
    inputs = [M.TensorSpec("input", "float32", (1, 3, 16, 16))]
    shapes, warnings = M.resolve_input_shapes(inputs, "input:1,3,32,32")
    assert shapes == {"input": (1, 3, 32, 32)}
    assert len(warnings) == 2


@pytest.mark.parametrize("simplify", [True, False])
def test_static_override_resizes_the_model(tmp_path: Path, simplify: bool) -> None:
    """A fully convolutional model exported at 16x16 converts at 32x32: the declared sizes are
    rewritten, so every later run (golden, calibration, atc) sees one shape."""
    path = tiny_models.save(tiny_models.conv_net(), tmp_path / "conv.onnx")
    result = M.preflight(path, tmp_path / "out", "input:1,3,32,32", simplify=simplify)
    assert result.input_shapes == {"input": (1, 3, 32, 32)}
    assert result.output_shapes == {"output": (1, 4, 32, 32)}
    saved = onnx.load(str(result.model_path))
    dims = [d.dim_value for d in saved.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 32, 32]
    feeds = {"input": np.zeros((1, 3, 32, 32), np.float32)}
    assert M.run_ort(saved, feeds)["output"].shape == (1, 4, 32, 32)


def test_static_override_refused_where_a_node_fixes_the_size(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    shape = numpy_helper.from_array(np.array([2, 4], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name="fold")], "g", [x], [y], [shape]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tiny_models.save(model, tmp_path / "fixed.onnx")
    with pytest.raises(UsageError, match="does not run at --input-shape x:1,16") as info:
        M.preflight(path, tmp_path / "out", "x:1,16")
    assert info.value.hint is not None and "re-export" in info.value.hint
    assert not (tmp_path / "out" / "fixed.json").exists()


# ------------------------------------------------------------------ simplification


def test_simplifier_mismatch_keeps_the_original(
    tmp_path: Path,
    conv_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def wrong(model: onnx.ModelProto, shapes: dict) -> tuple[onnx.ModelProto, None]:
        bad = onnx.ModelProto()
        bad.CopyFrom(model)
        bias = bad.graph.initializer[3]
        bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 1.0, bias.name))
        return bad, None

    monkeypatch.setattr(M, "_simplify", wrong)
    with caplog.at_level(logging.WARNING, logger="ascend_quant"):
        result = M.preflight(conv_model, tmp_path / "out")
    assert not result.simplified
    assert result.model_path.name == "conv.fixed.onnx"
    assert any("differs from the original" in w for w in result.warnings)
    assert any("differs from the original" in r.getMessage() for r in caplog.records)


def test_simplifier_failure_keeps_the_original(
    tmp_path: Path, conv_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxsim

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simplifier exploded")

    monkeypatch.setattr(onnxsim, "simplify", crash)
    result = M.preflight(conv_model, tmp_path / "out")
    assert not result.simplified
    assert any("simplifier exploded" in w for w in result.warnings)
    # a later successful run removes the stale .fixed.onnx
    monkeypatch.undo()
    again = M.preflight(conv_model, tmp_path / "out")
    assert again.simplified and not (tmp_path / "out" / "conv.fixed.onnx").exists()


def test_outputs_match_tolerances() -> None:
    a = {"y": np.array([1.0, 2.0], np.float32)}
    assert M.outputs_match(a, {"y": a["y"] + 1e-6})[0]
    ok, why = M.outputs_match(a, {"y": a["y"] + 0.5})
    assert not ok and "max abs difference" in why
    assert not M.outputs_match(a, {"z": a["y"]})[0]


def test_onnxsim_is_imported_without_torch_and_torch_stays_importable() -> None:
    """Preflight's onnxsim import hides torch (a ~2 s probe for extras simplify never uses);
    the hiding is undone (no `sys.modules` entry left), so a later `import torch` works."""
    code = (
        "import sys, tiny_models\n"
        "from ascend_quant import model as M\n"
        "simplified, error = M._simplify(tiny_models.conv_net(), None)\n"
        "assert error is None and simplified is not None, error\n"
        "assert 'torch' not in sys.modules  # neither imported nor left hidden\n"
        "print('ok')\n"
    )
    tests = Path(__file__).resolve().parent
    env_path = f"{tests.parent}:{tests}"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": env_path},
        check=False,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
