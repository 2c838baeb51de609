"""Weight-only INT8 (w8): int8 weights, activations not quantized, a quarter of the FP32 size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from ascend_quant.backends.base import ConvertRequest
from ascend_quant.backends.sim import SimBackend, open_runner
from ascend_quant.backends.simfile import read_sim_om
from ascend_quant.cli.app import app
from ascend_quant.config import QuantConfig
from ascend_quant.errors import UsageError
from ascend_quant.onnx_io import save_for_ort
from ascend_quant.quant.weightonly import compress_weights, quantize_weight
from ascend_quant.runners.ort import OrtRunner


def _big_model() -> onnx.ModelProto:
    """input[1,16,8,8] -> Conv 16->64 -> Relu -> Conv 64->64 -> Flatten -> MatMul [4096,32]."""
    rng = np.random.default_rng(0)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    inits = [
        numpy_helper.from_array(w(64, 16, 3, 3), "w1"),
        numpy_helper.from_array(w(64), "b1"),
        numpy_helper.from_array(w(64, 64, 3, 3), "w2"),
        numpy_helper.from_array(w(64 * 8 * 8, 32), "wm"),
        numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "flat"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c2", "flat"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "wm"], ["output"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "w8",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 16, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 32])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture()
def big_model(tmp_path: Path) -> Path:
    return save_for_ort(_big_model(), tmp_path / "big.onnx")


def _request(model: Path, out: Path, precision: str, **kw) -> ConvertRequest:
    return ConvertRequest(
        model=model,
        source_sha256="0" * 64,
        input_shapes={"input": (1, 16, 8, 8)},
        soc="Ascend310P3",
        precision=precision,  # type: ignore[arg-type]
        out_dir=out,
        name="big",
        **kw,
    )


def test_quantize_weight_is_symmetric_per_channel() -> None:
    data = np.array([[1.0, -0.5], [0.02, 0.01]], dtype=np.float32)
    q, scale = quantize_weight(data, axis=0)
    assert q.dtype == np.int8 and q[0, 0] == 127 and q[1, 0] == 127
    np.testing.assert_allclose(scale, [1.0 / 127, 0.02 / 127], rtol=1e-6)
    q_tensor, scale_tensor = quantize_weight(data, axis=None)
    assert scale_tensor.shape == () and q_tensor[1, 1] == 1  # one scale: small rows lose bits


def test_w8_conversion_int8_weights_fp16_activations(big_model: Path, tmp_path: Path) -> None:
    artifact = SimBackend().convert(_request(big_model, tmp_path, "w8"))
    fp32_size = big_model.stat().st_size
    _, payload = read_sim_om(artifact.path)
    model = onnx.load_from_string(payload)
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" not in ops  # no activation is quantized
    assert ops.count("DequantizeLinear") == 3  # one per weight: w1, w2, wm
    int8 = {i.name for i in model.graph.initializer if i.data_type == TensorProto.INT8}
    assert int8 == {"w1__w8", "w2__w8", "wm__w8"}
    # Activations are FP16-rounded (Cast to FLOAT16 and back) as in the FP16 build.
    assert any(n.op_type == "Cast" and n.output[0] == "r1__fp16" for n in model.graph.node)
    # Large weights dominate: the container is about a quarter of the FP32 model.
    assert 0.22 < artifact.path.stat().st_size / fp32_size < 0.32
    manifest = json.loads(artifact.manifest_path.read_text())
    assert manifest["precision"] == "w8" and manifest["weight_compress_only"] is True
    assert manifest["quantized_layers"] == 3
    assert all(layer["channel_wise"] for layer in manifest["layers"])

    x = np.random.default_rng(1).standard_normal((1, 16, 8, 8)).astype(np.float32)
    golden = OrtRunner(big_model).infer({"input": x})["output"]
    with open_runner(artifact.path) as runner:
        got = runner.infer({"input": x})["output"]
    cosine = float(golden.ravel() @ got.ravel() / np.linalg.norm(golden) / np.linalg.norm(got))
    assert not np.array_equal(got, golden) and cosine > 0.999


def test_w8_respects_skip_layers_and_channel_wise() -> None:
    config = QuantConfig(skip_layers=("conv1",), channel_wise=False)
    result = compress_weights(_big_model(), config)
    by_name = {layer["name"]: layer for layer in result.layers}
    assert by_name["conv1"]["quantized"] is False and by_name["conv1"]["reason"] == "skip_layers"
    assert by_name["conv2"]["quantized"] and by_name["conv2"]["axis"] is None
    names = {i.name: i.data_type for i in result.model.graph.initializer}
    assert names["w1"] == TensorProto.FLOAT and names["w2__w8"] == TensorProto.INT8


def test_w8_refused_on_a_soc_without_weight_only(big_model: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "convert",
            str(big_model),
            "--soc",
            "Ascend310B1",
            "--precision",
            "w8",
            "--backend",
            "sim",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    error = result.exception
    assert isinstance(error, UsageError) and error.exit_code == 2  # main() prints error: + hint:
    assert "does not support weight-only INT8" in error.message and "310P" in error.message
    assert error.hint and "int8" in error.hint
    assert not (tmp_path / "out" / "Ascend310B1" / "om").exists()


def test_bench_reports_peak_memory_labelled_as_simulated(big_model: Path, tmp_path: Path) -> None:
    from ascend_quant.config import BenchConfig

    artifact = SimBackend().convert(_request(big_model, tmp_path, "w8"))
    result = SimBackend().bench(artifact.path, BenchConfig(warmup=0, loop=2, duration_s=None))
    assert result.peak_memory_bytes is not None and result.peak_memory_bytes > 0
    assert "simulated" in result.memory_source and "not NPU" in result.memory_source
