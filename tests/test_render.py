from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import pytest

from ascend_quant import prototext as pt
from ascend_quant import render
from ascend_quant.__about__ import __version__
from ascend_quant.config import BuildConfig, from_mapping, merge, to_mapping
from ascend_quant.errors import UsageError

GOLDEN = Path(__file__).parent / "golden"
UPDATE = bool(os.environ.get("UPDATE_GOLDEN"))
TRICKY = "out dir 'q\" ü"  # spaces, both quotes, non-ASCII


def _normalise(text: str, tmp_path: Path) -> str:
    return text.replace(str(tmp_path), "<TMP>").replace(f"ascend-quant {__version__}", "<GEN>")


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden {path}: run with UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), name


def _calib_file(tmp_path: Path, name: str = "input", batches: int = 1) -> Path:
    folder = tmp_path / TRICKY / "calib" / name / "batches_bs1"
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(batches):
        (folder / f"{k:05d}.bin").write_bytes(b"\0" * 8)
    return folder / "00000.bin"


def _sample_file(tmp_path: Path, name: str = "input") -> Path:
    folder = tmp_path / TRICKY / "calib" / name / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "00000.bin").write_bytes(b"\0" * 8)
    return folder / "00000.bin"


def _render(
    tmp_path: Path, config: BuildConfig, shapes: dict, soc: str = "Ascend310P3", batches: int = 1
) -> dict[str, Path]:
    files = {n: _calib_file(tmp_path, n, batches) for n in shapes}
    return render.render_configs(
        config,
        soc,
        shapes,
        files,
        tmp_path / TRICKY / "configs",
        model_path=tmp_path / TRICKY / "model" / "m.sim.onnx",
        calib_sample_files={n: _sample_file(tmp_path, n) for n in shapes},
    )


FULL = {
    "socs": ["Ascend310P3"],
    "quant": {
        "activation_offset": False,
        "channel_wise": True,
        "skip_layers": ['/head/"cls"/Conv', "c\\d é"],
        "skip_layer_types": ["Gemm", "BatchMatMulV2"],
        "skip_fusion_layers": ["bn 1"],
        "ifmr": {"search_range_start": 0.8, "search_step": 0.02, "asymmetric": True},
        "override_layer_types": {"MatMulV2": {"channel_wise": False}},
        "override_layer_configs": {"/conv'1": {"ifmr": {"max_percentile": 0.9999}}},
        "tensor_quantize": [{"layer_name": "pool 1", "input_index": 0}],
        "batch_num": 2,
    },
    "calib": {"batch": 4, "seed": 7, "sources": ["imgs/ü dir", "a'b"]},
    "preprocess": {
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "color": "bgr",
    },
    "aipp": {"enabled": True, "crop": True, "src_image_size": [256, 256]},
    "atc": {"enable_first_layer_quantization": True, "infer_device_id": 1, "log": "info"},
}


@pytest.mark.parametrize(
    ("case", "data", "shapes", "expected"),
    [
        (
            "default",
            {},
            {"input": (1, 3, 224, 224)},
            [
                "quant_config.json",
                "simple_config.cfg",
                "compression_optimize.cfg",
                "amct_config.cfg",
                "simple_config_w8.cfg",
                "compression_optimize_w8.cfg",
            ],
        ),
        (
            "full",
            FULL,
            {"image": (1, 3, 224, 224), "aux": (1, 4)},
            [
                "quant_config.json",
                "simple_config.cfg",
                "compression_optimize.cfg",
                "amct_config.cfg",
                "simple_config_w8.cfg",
                "compression_optimize_w8.cfg",
                "aipp.cfg",
            ],
        ),
        (
            "hfmg",
            {
                "quant": {
                    "algorithm": "hfmg",
                    "hfmg": {"num_of_bins": 1024},
                    "override_layer_types": {"Conv": {"algorithm": "ifmr"}},
                }
            },
            {"input": (1, 1, 32, 32)},
            [
                "quant_config.json",
                "amct_config.cfg",
                "simple_config_w8.cfg",
                "compression_optimize_w8.cfg",
            ],
        ),
    ],
)
def test_golden_configs(
    tmp_path: Path, case: str, data: dict, shapes: dict, expected: list[str]
) -> None:
    config = from_mapping(BuildConfig, data)
    files = _render(tmp_path, config, shapes, batches=3)
    assert list(files) == expected
    for name, path in files.items():
        _golden(f"{case}.{name}", _normalise(path.read_text(encoding="utf-8"), tmp_path))
        assert not list(path.parent.glob(".*.tmp"))


def test_full_values_parse_back(tmp_path: Path) -> None:
    files = _render(
        tmp_path, from_mapping(BuildConfig, FULL), {"image": (1, 3, 224, 224), "aux": (1, 4)}
    )
    simple = pt.parse(files["simple_config.cfg"].read_text())
    assert simple["skip_layers"] == ['/head/"cls"/Conv', "c\\d é"]
    assert simple["skip_layer_types"] == ["MatMulV2", "BatchMatMulV2"]
    assert simple["override_layer_configs"]["layer_name"] == "/conv'1"
    comp = pt.parse(files["compression_optimize.cfg"].read_text())["calibration"]
    data_files = comp["input_data_dir"].split(",")
    assert [Path(f).parent.parent.name for f in data_files] == ["image", "aux"]
    assert all(Path(f).is_file() for f in data_files)
    # The model's batch (1), not the calibration batch (4): atc --input_shape uses the same N.
    assert comp["input_shape"] == "image:1,3,224,224;aux:1,4"
    assert all(Path(f).parent.name == "samples" for f in data_files)
    assert Path(comp["config_file"]) == files["simple_config.cfg"]
    aipp = pt.parse(files["aipp.cfg"].read_text())["aipp_op"]
    assert aipp["min_chn_0"] == pytest.approx(255 * 0.485)
    assert aipp["var_reci_chn_2"] == pytest.approx(1 / (255 * 0.225))
    assert aipp["rbuv_swap_switch"] is True and aipp["crop_size_w"] == 224
    assert aipp["load_start_pos_w"] == 16
    amct = pt.parse(files["amct_config.cfg"].read_text())
    assert amct["batch_num"] == 2 and "tensor_quantize" not in amct


def test_weight_only_configs(tmp_path: Path) -> None:
    """W8: weight_compress_only with symmetric ARQ weights, no activation settings, its own
    compression config; not written for a soc without weight-only INT8."""
    config = from_mapping(
        BuildConfig,
        {
            "quant": {
                "skip_layers": ["/head"],
                "override_layer_types": {"Gemm": {"channel_wise": False}},
            }
        },
    )
    files = _render(tmp_path, config, {"input": (1, 3, 8, 8)})
    w8 = pt.parse(files["simple_config_w8.cfg"].read_text())
    common = w8["common_config"]
    assert common["weight_compress_only"] is True
    assert common["arq_quantize"] == {"channel_wise": True, "asymmetric": False}
    assert "ifmr_quantize" not in common and "activation_offset" not in w8
    assert w8["skip_layers"] == "/head"
    override = w8["override_layer_types"]
    assert override["layer_type"] == "MatMulV2"
    assert override["calibration_config"]["arq_quantize"]["channel_wise"] is False
    comp = pt.parse(files["compression_optimize_w8.cfg"].read_text())["calibration"]
    assert Path(comp["config_file"]) == files["simple_config_w8.cfg"]
    other = _render(tmp_path / "b1", config, {"input": (1, 3, 8, 8)}, soc="Ascend310B1")
    assert "simple_config_w8.cfg" not in other and "compression_optimize_w8.cfg" not in other


def test_aipp_generalises_to_other_scales(tmp_path: Path) -> None:
    config = from_mapping(
        BuildConfig,
        {"aipp": {"enabled": True}, "preprocess": {"scale": 1.0, "mean": [127.5], "std": [64.0]}},
    )
    ops = render.aipp_ops(config, {"x": (1, 3, 8, 8)})
    assert [c["min_chn"] for c in ops[0]["channels"]] == [127.5] * 3
    assert [c["var_reci_chn"] for c in ops[0]["channels"]] == [1 / 64] * 3
    # scale 2/255 (pixels to [0, 2]), mean 1: min_chn = 127.5, var_reci = (2/255)/std
    config = merge(config, {"preprocess": {"scale": 2 / 255, "mean": [1.0], "std": [0.5]}})
    channel = render.aipp_ops(config, {"x": (1, 3, 8, 8)})[0]["channels"][0]
    assert channel["min_chn"] == pytest.approx(127.5)
    assert channel["var_reci_chn"] == pytest.approx(4 / 255)


@pytest.mark.parametrize(
    ("data", "shapes", "message"),
    [
        ({}, {"x": (1, 16)}, "no image input"),
        ({"preprocess": {"mean": [2.0]}}, {"x": (1, 3, 8, 8)}, "outside AIPP's"),
        (
            {"aipp": {"src_image_size": [16, 16]}},
            {"x": (1, 3, 8, 8)},
            "AIPP cannot resize" if False else "differs from the input",
        ),
        ({"aipp": {"crop": True, "src_image_size": [4, 4]}}, {"x": (1, 3, 8, 8)}, "smaller"),
        ({"preprocess": {"std": [0.0]}}, {"x": (1, 3, 8, 8)}, "std"),
        ({"preprocess": {"mean": [0.1, 0.2]}}, {"x": (1, 3, 8, 8)}, "2 values for 3 channels"),
    ],
)
def test_aipp_errors(data: dict, shapes: dict, message: str) -> None:
    config = merge(BuildConfig(), {"aipp": {"enabled": True}, **data})
    with pytest.raises(UsageError, match=message):
        render.aipp_ops(config, shapes)


def test_route_errors(tmp_path: Path) -> None:
    shapes = {"input": (1, 3, 8, 8)}
    hfmg_atc = from_mapping(
        BuildConfig, {"quant": {"algorithm": "hfmg"}, "atc": {"int8_route": "atc"}}
    )
    with pytest.raises(UsageError, match="only IFMR"):
        _render(tmp_path, hfmg_atc, shapes)
    minmax_amct = from_mapping(
        BuildConfig, {"quant": {"algorithm": "minmax"}, "atc": {"int8_route": "amct"}}
    )
    with pytest.raises(UsageError, match="only in the simulator"):
        _render(tmp_path, minmax_amct, shapes)
    atc_route = from_mapping(BuildConfig, {"atc": {"int8_route": "atc"}})
    with pytest.raises(UsageError, match="does not support ATC-native"):
        _render(tmp_path, atc_route, shapes, soc="Ascend035")
    with pytest.raises(UsageError, match="no calibration batch file"):
        render.render_configs(atc_route, "Ascend310P3", shapes, {}, tmp_path / "o")
    with pytest.raises(UsageError, match="unknown soc_version"):
        _render(tmp_path, BuildConfig(), shapes, soc="Ascend310p3")
    assert not (tmp_path / "o").exists()


def test_auto_route_skips_what_it_cannot_serve(tmp_path: Path) -> None:
    shapes = {"input": (1, 3, 8, 8)}
    minmax = from_mapping(BuildConfig, {"quant": {"algorithm": "minmax"}})
    weight_only = ["simple_config_w8.cfg", "compression_optimize_w8.cfg"]
    assert list(_render(tmp_path, minmax, shapes)) == ["quant_config.json", *weight_only]
    assert "simple_config.cfg" not in _render(tmp_path, BuildConfig(), shapes, soc="Ascend035")
    no_calib = render.render_configs(BuildConfig(), "Ascend310P3", shapes, {}, tmp_path / "n")
    assert list(no_calib) == ["quant_config.json", "simple_config.cfg", "amct_config.cfg"]


def test_comma_in_calibration_path_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "a,b"
    folder.mkdir()
    (folder / "0.bin").write_bytes(b"")
    with pytest.raises(UsageError, match="contains ','"):
        render.render_configs(
            BuildConfig(),
            "Ascend310P3",
            {"x": (1, 3, 8, 8)},
            {"x": folder / "0.bin"},
            tmp_path / "o",
        )


def test_first_layer_warning_for_unsupported_soc(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = from_mapping(BuildConfig, {"atc": {"enable_first_layer_quantization": True}})
    with caplog.at_level(logging.WARNING, logger="ascend_quant"):
        files = _render(tmp_path, config, {"input": (1, 3, 8, 8)}, soc="Ascend910B3")
    assert "enable_first_layer" not in files["compression_optimize.cfg"].read_text()
    assert any("does not support it" in r.getMessage() for r in caplog.records)


def test_batch_num_counts_the_batch_files(tmp_path: Path) -> None:
    files = _render(tmp_path, BuildConfig(), {"input": (1, 3, 8, 8)}, batches=5)
    assert pt.parse(files["amct_config.cfg"].read_text())["batch_num"] == 5


def test_quant_config_round_trip(tmp_path: Path) -> None:
    config = from_mapping(BuildConfig, FULL)
    files = _render(tmp_path, config, {"image": (1, 3, 224, 224), "aux": (1, 4)})
    overrides = render.read_quant_config(files["quant_config.json"])
    back = from_mapping(BuildConfig, overrides)
    for section in ("quant", "calib", "preprocess", "aipp", "atc"):
        assert getattr(back, section) == getattr(config, section), section
    assert back.socs == ("Ascend310P3",)
    assert back.input_shape == "image:1,3,224,224;aux:1,4"


def test_read_quant_config_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        render.read_quant_config(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(UsageError, match="not valid JSON"):
        render.read_quant_config(bad)
    files = _render(tmp_path, BuildConfig(), {"input": (1, 3, 8, 8)})
    data = json.loads(files["quant_config.json"].read_text())
    data["quantize_info"]["activaton_offset"] = True
    bad.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="activaton_offset") as info:
        render.read_quant_config(bad)
    assert info.value.hint == "did you mean 'activation_offset'?"
    data = json.loads(files["quant_config.json"].read_text())
    data["dataset_info"]["calib_batch_size"] = 0
    bad.write_text(json.dumps(data))
    with pytest.raises(UsageError, match=r"calib_batch_size: 0 is below 1"):
        render.read_quant_config(bad)
    data["dataset_info"] = {"extra": 1}
    bad.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="missing 'calib_batch_size'"):
        render.read_quant_config(bad)


def test_template_override_by_name(tmp_path: Path) -> None:
    overrides = tmp_path / "tpl"
    overrides.mkdir()
    bundled = (render.templates_dir() / "amct_config.cfg.j2").read_text()
    (overrides / "amct_config.cfg.j2").write_text(
        bundled.replace("batch_num : {{ batch_num | pval }}", "batch_num : 42")
    )
    config = from_mapping(BuildConfig, {"templates": str(overrides)})
    files = _render(tmp_path, config, {"input": (1, 3, 8, 8)})
    assert pt.parse(files["amct_config.cfg"].read_text())["batch_num"] == 42
    assert "version : 1" in files["simple_config.cfg"].read_text()  # bundled one still used


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("batch_num : 1\nhfmg_quant : {}\n", "unknown key 'hfmg_quant'"),
        ("batch_num : {{ no_such_value }}\n", "undefined"),
        ("{{ ''.__class__.__mro__ }}\n", "unsafe|__class__"),
    ],
)
def test_bad_override_templates_write_nothing(tmp_path: Path, template: str, message: str) -> None:
    overrides = tmp_path / "tpl"
    overrides.mkdir()
    (overrides / "amct_config.cfg.j2").write_text(template)
    config = from_mapping(BuildConfig, {"templates": str(overrides)})
    with pytest.raises(UsageError, match=message):
        _render(tmp_path, config, {"input": (1, 3, 8, 8)})
    assert not (tmp_path / TRICKY / "configs").exists()


def test_missing_templates_dir() -> None:
    with pytest.raises(UsageError, match="not a directory"):
        render.environment(Path("/nonexistent/templates"))


TRICKY_ARGV = [
    [
        "amct_onnx",
        "calibration",
        "--model=/w/m ü.onnx",
        "--input_shape=a:1,3;b:1",
        '--data_dir=it\'s "here"',
        "$HOME",
        "`date`",
        "x*",
    ],
    ["atc", "--framework=5", "--output=/w/out dir/m", "--log=error"],
]


def test_golden_script_and_it_runs(tmp_path: Path) -> None:
    path = render.render_script(
        TRICKY_ARGV, tmp_path / "amct_int8.sh", comment="m for Ascend310P3: INT8\nsecond line"
    )
    _golden("amct_int8.sh", _normalise(path.read_text(encoding="utf-8"), tmp_path))
    assert os.access(path, os.X_OK)
    # Run it with stand-ins that print their argv, one element per line, NUL-terminated.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("amct_onnx", "atc"):
        stub = bin_dir / tool
        stub.write_text('#!/bin/sh\nprintf "%s\\0" "$(basename "$0")" "$@"\n')
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    out = subprocess.run([str(path)], env=env, capture_output=True, check=True).stdout
    assert out.decode().split("\0")[:-1] == TRICKY_ARGV[0] + TRICKY_ARGV[1]


def test_script_rejects_empty_commands(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        render.render_script([], tmp_path / "x.sh")
    with pytest.raises(UsageError):
        render.render_script([[]], tmp_path / "x.sh")


def test_filters() -> None:
    assert render.shquote("a b'c") == "'a b'\"'\"'c'"
    assert render.cfgval("./a/b.bin,./c.bin") == "./a/b.bin,./c.bin"
    assert render.cfgval("a b") == '"a b"'
    assert render.cfgval("ü") == '"ü"'
    assert render.tojson({"a": ("é",)}) == '{"a": ["é"]}'
    assert render.ascend_layer_types(["Conv", "Gemm", "Conv2D"]) == ["Conv2D", "Conv3D", "MatMulV2"]
    assert to_mapping(BuildConfig())["quant"]["algorithm"] == "ifmr"
