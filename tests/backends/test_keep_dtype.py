"""atc's --keep_dtype from the config to keep_dtype.cfg, atc_fp16.sh, the stand-in and the
simulator: ops kept in FP32 stay FP32 everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import tiny_models
from fakes.pylib import fakecann
from onnx import TensorProto, helper, numpy_helper

from ascend_quant import render
from ascend_quant.backends import atc_argv
from ascend_quant.config import AtcConfig, BuildConfig, merge
from ascend_quant.errors import UsageError
from ascend_quant.quant.fp16 import kept_nodes, simulate_fp16
from ascend_quant.runners.ort import OrtRunner


def _overflow_net() -> onnx.ModelProto:
    """input -> Mul(1e6) -> Relu -> Mul(1e-6): the middle overflows FP16, FP32 is exact."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])
    inits = [
        numpy_helper.from_array(np.array(1e6, np.float32), "k"),
        numpy_helper.from_array(np.array(1e-6, np.float32), "inv"),
    ]
    nodes = [
        helper.make_node("Mul", ["input", "k"], ["big"], name="scale_up"),
        helper.make_node("Relu", ["big"], ["act"], name="relu"),
        helper.make_node("Mul", ["act", "inv"], ["output"], name="scale_down"),
    ]
    return tiny_models._model(nodes, [x], [y], inits)


X = np.array([[0.5, 1.0, 2.0, 3.0]], np.float32)


def test_fp16_overflows_without_keep_dtype() -> None:
    out = OrtRunner(simulate_fp16(_overflow_net())).infer({"input": X})["output"]
    assert not np.all(np.isfinite(out))


def test_kept_ops_run_in_fp32() -> None:
    model = _overflow_net()
    ref = OrtRunner(model).infer({"input": X})["output"]
    sim_model = simulate_fp16(model, keep_dtype=["OpType::Mul", "relu"])
    out = OrtRunner(sim_model).infer({"input": X})["output"]
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    weights = {i.name: i for i in sim_model.graph.initializer}
    assert weights["k"].data_type == TensorProto.FLOAT  # kept op's weight stays FP32


def test_fp16_op_after_a_kept_op_reads_a_rounded_value() -> None:
    """Only scale_up in FP32: relu (FP16) receives 1e6*x cast to FP16, which overflows."""
    out = OrtRunner(simulate_fp16(_overflow_net(), keep_dtype=["scale_up"])).infer({"input": X})
    assert not np.all(np.isfinite(out["output"]))


def test_unknown_op_name_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="not a node") as info:
        kept_nodes(_overflow_net(), ["scale_upp"])
    assert "scale_up" in (info.value.hint or "")
    assert kept_nodes(_overflow_net(), ["OpType::Conv2D"]) == set()


def test_conv_ir_type_matches() -> None:
    assert kept_nodes(tiny_models.conv_net(), ["OpType::Conv2D"]) == {"conv1", "conv2"}


def test_keep_dtype_cfg_is_rendered_in_atc_format(tmp_path: Path) -> None:
    config = merge(BuildConfig(), {"atc": {"keep_dtype": ["scale_up", "OpType::Exp"]}})
    files = render.render_configs(config, "Ascend310P3", {"input": (1, 4)}, {}, tmp_path)
    text = files[render.KEEP_DTYPE_CONFIG].read_text()
    assert text == "scale_up\nOpType::Exp\n"
    assert render.read_keep_dtype(text) == ["scale_up", "OpType::Exp"]


@pytest.mark.parametrize("entry", ["a\nb", " a", "", "OpType::"])
def test_bad_entries_are_refused(tmp_path: Path, entry: str) -> None:
    config = merge(BuildConfig(), {"atc": {"keep_dtype": [entry]}})
    with pytest.raises(UsageError):
        render.render_configs(config, "Ascend310P3", {"input": (1, 4)}, {}, tmp_path)


def test_atc_argv_names_the_file(make_request) -> None:
    request = make_request(atc={"keep_dtype": ("conv1",)})
    argv = atc_argv.atc_command(request, "fp16", request.model)
    assert f"--keep_dtype={request.config_dir / 'keep_dtype.cfg'}" in argv
    plain = atc_argv.atc_command(make_request(), "fp16", request.model)
    assert not any(a.startswith("--keep_dtype") for a in plain)


def test_extra_args_cannot_repeat_keep_dtype(make_request) -> None:
    with pytest.raises(UsageError, match="repeats a flag"):  # refused when the config is built
        make_request(atc={"extra_args": ("--keep_dtype=x.cfg",)})


def test_the_simulated_backend_honours_keep_dtype(tmp_path: Path) -> None:
    from ascend_quant.backends.base import ConvertRequest
    from ascend_quant.backends.sim import SimBackend, open_runner

    path = tiny_models.save(_overflow_net(), tmp_path / "overflow.onnx")
    outputs = {}
    for keep in ((), ("OpType::Mul", "OpType::Relu")):
        request = ConvertRequest(
            model=path,
            source_sha256="0" * 64,
            input_shapes={"input": (1, 4)},
            soc="Ascend310P3",
            precision="fp16",
            out_dir=tmp_path / f"om{len(keep)}",
            name="overflow",
            atc=AtcConfig(keep_dtype=keep),
        )
        artifact = SimBackend().convert(request)
        outputs[keep] = open_runner(artifact.path).infer({"input": X})["output"]
    assert not np.all(np.isfinite(outputs[()]))
    np.testing.assert_allclose(outputs[("OpType::Mul", "OpType::Relu")], X, rtol=1e-6)


@pytest.mark.slow
def test_the_atc_stand_in_receives_the_rendered_file(
    fake_cann, tmp_path: Path, conv_model: Path
) -> None:
    """config -> keep_dtype.cfg -> atc --keep_dtype: the stand-in reads the same lines."""
    from ascend_quant.backends import get_backend
    from ascend_quant.jobs import convert_model

    config = merge(BuildConfig(), {"atc": {"keep_dtype": ["conv1", "OpType::Relu"]}})
    artifact = convert_model(
        conv_model, config, "Ascend310P3", "fp16", tmp_path / "ws", {}, get_backend("atc")
    )
    info = fakecann.read_om(str(artifact.path))
    assert info is not None
    assert info["received"]["keep_dtype"] == "conv1\nOpType::Relu\n"
    script = (tmp_path / "ws" / "Ascend310P3" / "configs" / "atc_fp16.sh").read_text()
    assert "--keep_dtype=" in script and "keep_dtype.cfg" in script


def test_atc_config_field_round_trips() -> None:
    config = merge(BuildConfig(), {"atc": {"keep_dtype": ["a"]}})
    assert config.atc == AtcConfig(keep_dtype=("a",))
    assert json.loads(json.dumps(config.atc.keep_dtype)) == ["a"]
