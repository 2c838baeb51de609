from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from ascend_quant.backends import atc_argv
from ascend_quant.backends.atc import commands_for
from ascend_quant.backends.toolkit import Toolkit
from ascend_quant.config import AippConfig
from ascend_quant.errors import UsageError
from ascend_quant.gears import make_gears

NPU = Toolkit(
    atc=Path("/t/atc"), amct_onnx=Path("/t/amct_onnx"), npu_visible=True, npu_soc="Ascend310P3"
)
NO_NPU = Toolkit(atc=Path("/t/atc"), amct_onnx=Path("/t/amct_onnx"))
IMAGE_GEARS = make_gears("image_size", ((16, 16), (32, 32)), {"input": (1, 3, 16, 16)}, {})


def flags(argv: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in argv if a.startswith("--"))


def test_fp16_argv(make_request, tmp_path: Path) -> None:
    request = make_request()
    [argv] = commands_for(request, "fp16")
    assert argv[0] == "atc"
    assert all(a.startswith("--") and "=" in a for a in argv[1:])  # gflags --flag=value
    f = flags(argv)
    assert f["model"] == str(request.model)
    assert f["framework"] == "5"
    assert f["output"] == str(tmp_path / "out" / "work" / "conv_fp16" / "conv_fp16")
    assert f["soc_version"] == "Ascend310P3"
    assert f["input_format"] == "NCHW"
    assert f["input_shape"] == "input:1,3,16,16"
    assert f["log"] == "error"
    for absent in (
        "precision_mode",
        "precision_mode_v2",
        "compression_optimize_conf",
        "insert_op_conf",
        "enable_small_channel",
    ):
        assert absent not in f


def test_every_option(make_request, tmp_path: Path) -> None:
    request = make_request(
        atc={
            "precision_mode": "allow_mix_precision",
            "output_type": "FP32",
            "op_select_implmode": "high_precision",
            "optypelist_for_implmode": ("Sigmoid", "Softmax"),
            "op_precision_mode": "/x/op.ini",
            "log": "info",
            "extra_args": ("--fusion_switch_file=/x/fusion.cfg",),
        },
        aipp=AippConfig(enabled=True),
        gears=make_gears("batch", ((1,), (2,), (4,)), {"input": (1, 3, 16, 16)}, {}),
    )
    [argv] = commands_for(request, "fp16")
    f = flags(argv)
    assert f["precision_mode"] == "allow_mix_precision"
    assert f["output_type"] == "FP32"
    assert f["op_select_implmode"] == "high_precision"
    assert f["optypelist_for_implmode"] == "Sigmoid,Softmax"
    assert f["op_precision_mode"] == "/x/op.ini"
    assert f["log"] == "info"
    assert f["insert_op_conf"] == str(request.config_dir / "aipp.cfg")
    assert f["enable_small_channel"] == "1"  # C=3 <= 4 with static AIPP
    assert f["dynamic_batch_size"] == "1,2,4"
    assert f["input_shape"] == "input:-1,3,16,16"  # N becomes -1 for the gears
    assert argv[-1] == "--fusion_switch_file=/x/fusion.cfg"


def test_precision_mode_v2_and_dynamic_image_size(make_request) -> None:
    request = make_request(atc={"precision_mode_v2": "mixed_float16"}, gears=IMAGE_GEARS)
    f = flags(commands_for(request, "fp16")[0])
    assert f["precision_mode_v2"] == "mixed_float16"
    assert f["dynamic_image_size"] == "16,16;32,32"
    assert f["input_shape"] == "input:1,3,-1,-1"
    # no shell: the ';' is passed as is, no quotes inside the value
    assert '"' not in f["dynamic_image_size"]


def test_multi_input_shape(make_request) -> None:
    gears = make_gears("batch", ((2,), (4,)), {"a": (2, 3, 8, 8), "b": (2, 4)}, {})
    request = make_request(input_shapes={"a": (2, 3, 8, 8), "b": (2, 4)}, gears=gears)
    assert flags(commands_for(request, "fp16")[0])["input_shape"] == "a:-1,3,8,8;b:-1,4"


def test_atc_route_documented(make_request) -> None:
    request = make_request("int8")
    [argv] = commands_for(request, "atc")
    f = flags(argv)
    assert f["compression_optimize_conf"] == str(request.config_dir / "compression_optimize.cfg")
    assert f["model"] == str(request.model)
    assert f["output"].endswith("conv_int8")
    assert "enable_quantization" not in f


def test_w8_route_uses_the_weight_only_compression_config(make_request) -> None:
    request = make_request("w8")
    assert atc_argv.choose_route(request, NPU) == "w8"
    [argv] = commands_for(request, "w8")
    f = flags(argv)
    assert f["compression_optimize_conf"] == str(request.config_dir / "compression_optimize_w8.cfg")
    assert f["output"].endswith("conv_w8")
    with pytest.raises(UsageError, match="no NPU is visible"):
        atc_argv.check_route(request, "w8", NO_NPU)
    with pytest.raises(UsageError, match="does not support weight-only INT8"):
        atc_argv.check_route(make_request("w8", soc="Ascend310B1"), "w8", NPU)


def test_atc_route_sample_dialect(make_request) -> None:
    request = make_request("int8", atc={"flag_dialect": "sample"})
    f = flags(commands_for(request, "atc")[0])
    assert f["enable_quantization"] == "true"
    assert f["quantization_config"] == str(request.config_dir / "quant_config.json")
    assert "compression_optimize_conf" not in f


def test_amct_route(make_request, tmp_path: Path) -> None:
    request = make_request("int8")
    amct, atc = commands_for(request, "amct")
    assert amct[:2] == ["amct_onnx", "calibration"]
    f = flags(amct)
    save = tmp_path / "out" / "work" / "conv_int8" / "amct" / "conv"
    assert f["model"] == str(request.model)
    assert f["save_path"] == str(save)
    assert f["input_shape"] == "input:2,3,16,16"  # the calibration batch N
    assert f["data_dir"] == str(tmp_path / "calib" / "batches_bs2")
    assert f["data_types"] == "float32"
    assert f["calibration_config"] == str(request.config_dir / "amct_config.cfg")
    g = flags(atc)
    assert g["model"] == f"{save}_deploy_model.onnx"
    assert g["input_shape"] == "input:1,3,16,16"  # the deploy shape, as for FP16
    assert "compression_optimize_conf" not in g


def test_amct_route_two_inputs(make_request, tmp_path: Path) -> None:
    from fakes.cann import make_calib_set

    a = make_calib_set(tmp_path / "ca", "a", (1, 3, 8, 8))
    b = make_calib_set(tmp_path / "cb", "b", (1, 4), dtype="float16")
    request = make_request(
        "int8", input_shapes={"a": (1, 3, 8, 8), "b": (1, 4)}, calib_dirs={"b": b, "a": a}
    )
    f = flags(commands_for(request, "amct")[0])
    assert f["input_shape"] == "a:2,3,8,8;b:2,4"
    assert f["data_dir"] == f"{a}/batches_bs2;{b}/batches_bs2"
    assert f["data_types"] == "float32;float16"


def test_argv_survives_a_shell_round_trip(make_request) -> None:
    request = make_request(gears=IMAGE_GEARS)
    argv = commands_for(request, "fp16")[0]
    assert shlex.split(shlex.join(argv)) == argv


def test_unknown_route(make_request) -> None:
    with pytest.raises(UsageError, match="unknown conversion route"):
        commands_for(make_request(), "int4")


# ------------------------------------------------------------------ route choice


def test_route_choice(make_request) -> None:
    assert atc_argv.choose_route(make_request(), NPU) == "fp16"
    assert atc_argv.choose_route(make_request("int8"), NPU) == "atc"
    assert atc_argv.choose_route(make_request("int8"), NO_NPU) == "amct"
    other = Toolkit(atc=Path("/t/atc"), npu_visible=True, npu_soc="Ascend910B3")
    assert atc_argv.choose_route(make_request("int8"), other) == "amct"
    assert atc_argv.choose_route(make_request("int8", soc="Ascend035"), NPU) == "amct"
    forced = make_request("int8", atc={"int8_route": "amct"})
    assert atc_argv.choose_route(forced, NPU) == "amct"


def test_route_auto_needs_rendered_atc_config(make_request) -> None:
    request = make_request("int8")
    (request.config_dir / "compression_optimize.cfg").unlink()
    assert atc_argv.choose_route(request, NPU) == "amct"


def test_soc_support() -> None:
    assert atc_argv.soc_supports_atc_calibration("Ascend310P3")
    assert atc_argv.soc_supports_atc_calibration("Ascend910B3")
    assert not atc_argv.soc_supports_atc_calibration("Ascend035")
    assert not atc_argv.soc_supports_atc_calibration("NotAChip")


# ------------------------------------------------------------------ pre-checks


def test_clean_requests_pass(make_request) -> None:
    atc_argv.precheck(make_request(), "fp16", NO_NPU)
    atc_argv.precheck(make_request("int8"), "amct", NO_NPU)
    request = make_request("int8")
    atc_argv.precheck(request, "atc", NPU)


@pytest.mark.parametrize(
    ("atc", "message"),
    [
        ({"precision_mode": "force_fp16", "precision_mode_v2": "fp16"}, "cannot be used together"),
        ({"extra_args": ("--dynamic_dims=1;2",)}, "repeats a flag"),
        ({"precision_mode": "force_fp15"}, "'force_fp15' is not a value atc accepts"),
        ({"precision_mode_v2": "bogus"}, "precision-mode-v2"),
        ({"output_type": "FP64"}, "output-type"),
        ({"log": "verbose"}, "--log"),
        ({"input_format": "NCWH"}, "--input-format"),
        ({"optypelist_for_implmode": ("Sigmoid",)}, "needs op_select_implmode"),
        ({"extra_args": ("--soc_version=Ascend310",)}, "repeats a flag"),
        ({"extra_args": ("--keep_dtype", "x.cfg")}, "--flag=value"),
        ({"timeout_s": 0}, "timeout_s"),
    ],
)
def test_flag_prechecks(make_request, atc: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        atc_argv.precheck(make_request(atc=atc), "fp16", NO_NPU)
    assert info.value.hint


@pytest.mark.parametrize(
    "atc",
    [
        {"precision_mode": "force_fp32"},
        {"precision_mode": "must_keep_origin_dtype"},
        {"precision_mode_v2": "origin"},
        {"op_precision_mode": "high_precision"},
    ],
)
@pytest.mark.parametrize("route", ["atc", "amct"])
def test_high_precision_with_calibration(make_request, atc: dict, route: str) -> None:
    with pytest.raises(UsageError, match="atc refuses it with calibration"):
        atc_argv.precheck(make_request("int8", atc=atc), route, NPU)
    atc_argv.precheck(make_request(atc=atc), "fp16", NPU)  # fine without calibration


def test_high_precision_in_ini_file(make_request, tmp_path: Path) -> None:
    ini = tmp_path / "op.ini"
    ini.write_text("[ByOpType]\nConv2D=high_precision\n")
    with pytest.raises(UsageError, match="op_precision_mode"):
        atc_argv.precheck(make_request("int8", atc={"op_precision_mode": str(ini)}), "amct", NPU)


def test_aipp_checks(make_request) -> None:
    aipp = AippConfig(enabled=True)
    with pytest.raises(UsageError, match="dynamic_dims"):
        atc_argv.precheck(
            make_request(aipp=aipp, atc={"extra_args": ("--dynamic_dims=1;2",)}), "fp16", NO_NPU
        )
    with pytest.raises(UsageError, match="AIPP needs --input-format"):
        atc_argv.precheck(make_request(aipp=aipp, atc={"input_format": "ND"}), "fp16", NO_NPU)


def test_input_names_must_exist(make_request) -> None:
    with pytest.raises(UsageError, match="no input named 'images'") as info:
        atc_argv.precheck(make_request(input_shapes={"images": (1, 3, 16, 16)}), "fp16", NO_NPU)
    assert "input" in str(info.value.message)
    with pytest.raises(UsageError, match="no shape for model input"):
        atc_argv.precheck(make_request(input_shapes={}), "fp16", NO_NPU)


def test_calibration_required_for_int8(make_request) -> None:
    with pytest.raises(UsageError, match="calibration"):
        atc_argv.precheck(make_request("int8", calib_dirs={}), "amct", NO_NPU)


def test_calibration_bin_size(make_request, tmp_path: Path) -> None:
    request = make_request("int8")
    batch = tmp_path / "calib" / "batches_bs2" / "00001.bin"
    batch.write_bytes(batch.read_bytes()[:-4])
    with pytest.raises(UsageError, match="bytes, expected"):
        atc_argv.precheck(request, "amct", NO_NPU)


def test_calibration_shape_and_dtype(make_request, tmp_path: Path) -> None:
    from fakes.cann import make_calib_set

    small = make_calib_set(tmp_path / "small", shape=(1, 3, 8, 8))
    with pytest.raises(UsageError, match="samples of shape"):
        atc_argv.precheck(make_request("int8", calib_dirs={"input": small}), "amct", NO_NPU)
    half = make_calib_set(tmp_path / "half", dtype="float16")
    with pytest.raises(UsageError, match="is float16 but input 'input' is float32"):
        atc_argv.precheck(make_request("int8", calib_dirs={"input": half}), "amct", NO_NPU)


def test_compression_config_data_size(make_request, tmp_path: Path) -> None:
    request = make_request("int8")
    cfg = request.config_dir / "compression_optimize.cfg"
    cfg.write_text(cfg.read_text().replace("input:1,3,16,16", "input:4,3,16,16"))
    with pytest.raises(UsageError, match=r"compression_optimize\.cfg"):
        atc_argv.precheck(request, "atc", NPU)


def test_atc_route_needs_npu_and_soc(make_request) -> None:
    with pytest.raises(UsageError, match="no NPU is visible") as info:
        atc_argv.precheck(make_request("int8"), "atc", NO_NPU)
    assert "--int8-route amct" in info.value.hint
    with pytest.raises(UsageError, match="cannot calibrate INT8 for Ascend035"):
        atc_argv.precheck(make_request("int8", soc="Ascend035"), "atc", NPU)


def test_amct_route_needs_amct(make_request) -> None:
    with pytest.raises(UsageError, match="amct_onnx was not found"):
        atc_argv.precheck(make_request("int8"), "amct", Toolkit(atc=Path("/t/atc")))


def test_missing_config_files(make_request) -> None:
    request = make_request("int8")
    (request.config_dir / "amct_config.cfg").unlink()
    with pytest.raises(UsageError, match=r"amct_config\.cfg is missing"):
        atc_argv.precheck(request, "amct", NO_NPU)
    with pytest.raises(UsageError, match="no config directory"):
        commands_for(make_request("int8", config_dir=None), "atc")


def test_missing_model(make_request, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="model not found"):
        atc_argv.precheck(make_request(model=tmp_path / "nope.onnx"), "fp16", NO_NPU)
