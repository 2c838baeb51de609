from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ascend_quant import prototext as pt
from ascend_quant.cli.config_cmd import effective_config, flag_overrides, to_toml
from ascend_quant.config import BuildConfig
from ascend_quant.errors import UsageError

sys.path.insert(0, str(Path(__file__).parent))
from clirun import run_cli


def test_show_precedence_defaults_file_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "ascend-quant.toml"
    project.write_text('[quant]\nalgorithm = "hfmg"\nchannel_wise = false\nbatch_num = 3\n')
    code, out, err = run_cli(
        capsys,
        "config",
        "--show",
        "--json",
        "--config",
        str(project),
        "--algorithm",
        "ifmr",
        "--search-range",
        "0.8,1.2",
        "--skip-layers",
        "a, b",
        "--soc",
        "Ascend310B1",
        "--calib-batch",
        "4",
        "--aipp",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["quant"]["algorithm"] == "ifmr"  # flag beats file
    assert data["quant"]["channel_wise"] is False  # file beats default
    assert data["quant"]["activation_offset"] is True  # default
    assert data["quant"]["batch_num"] == 3
    assert data["quant"]["ifmr"]["search_range_start"] == 0.8
    assert data["quant"]["ifmr"]["search_step"] == 0.01
    assert data["quant"]["skip_layers"] == ["a", "b"]
    assert data["socs"] == ["Ascend310B1"]
    assert data["calib"]["batch"] == 4 and data["aipp"]["enabled"] is True


def test_show_toml_is_valid_toml(capsys: pytest.CaptureFixture[str]) -> None:
    import tomllib

    code, out, _ = run_cli(capsys, "config", "--show", "--no-channel-wise", "--num-of-bins", "512")
    assert code == 0
    data = tomllib.loads(out)
    assert data["quant"]["channel_wise"] is False
    assert data["quant"]["hfmg"]["num_of_bins"] == 512
    assert "# batch_num = (unset)" in out


def test_to_toml_round_trips_a_full_config() -> None:
    import tomllib

    from ascend_quant.config import from_mapping, to_mapping

    config = from_mapping(
        BuildConfig,
        {
            "quant": {
                "tensor_quantize": [{"layer_name": 'p "1"', "input_index": 1}],
                "override_layer_types": {"Conv": {"channel_wise": False}},
            },
            "output_thresholds": {"out": {"cosine_min": 0.9}},
        },
    )
    data = tomllib.loads(to_toml(to_mapping(config)))
    assert from_mapping(BuildConfig, data) == config


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--search-range", "1.3"], "is not START,END"),
        (["--search-range", "1.3,0.7"], "START <= END"),
        (["--algorithm", "hfgm"], "did you mean 'hfmg'"),
        (["--soc", "ascend310p3"], "case-sensitive"),
    ],
)
def test_flag_errors(
    tmp_path: Path,
    conv_model: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    code, _, err = run_cli(
        capsys,
        "config",
        str(conv_model),
        "--out",
        str(tmp_path / "o"),
        *(["--soc", "Ascend310P3"] if "--soc" not in args else []),
        *args,
    )
    assert code == 2
    assert message in err
    assert not (tmp_path / "o" / "quant_config.json").exists()


def test_unknown_key_in_project_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "ascend-quant.toml"
    project.write_text("[quant]\nchanel_wise = false\n")
    code, _, err = run_cli(capsys, "config", "--show", "--config", str(project))
    assert code == 2
    assert "unknown config key 'quant.chanel_wise'" in err and "channel_wise" in err


def test_missing_model_or_out(capsys: pytest.CaptureFixture[str], conv_model: Path) -> None:
    assert run_cli(capsys, "config", "--soc", "Ascend310P3")[0] == 2
    code, _, err = run_cli(capsys, "config", str(conv_model), "--soc", "Ascend310P3")
    assert code == 2 and "--out" in err


def test_config_renders_files_and_scripts(
    tmp_path: Path, conv_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out ü 'x'"
    code, stdout, err = run_cli(
        capsys,
        "config",
        str(conv_model),
        "--soc",
        "Ascend310P3",
        "--out",
        str(out),
        "--json",
        "--no-activation-offset",
        "--skip-layer-types",
        "Conv",
    )
    assert code == 0, err
    files = json.loads(stdout)["Ascend310P3"]
    assert {"quant_config.json", "simple_config.cfg", "amct_config.cfg"} <= set(files)
    simple = pt.parse((out / "simple_config.cfg").read_text())
    assert simple["activation_offset"] is False
    assert simple["skip_layer_types"] == ["Conv2D", "Conv3D"]
    if "atc_fp16.sh" in files:  # present when the atc backend is importable
        script = (out / "atc_fp16.sh").read_text()
        assert "set -euo pipefail" in script and "--soc_version=Ascend310P3" in script
    assert "compression_optimize.cfg not written" in err  # no calibration data given


@pytest.mark.parametrize(
    ("key", "toml"),
    [
        ("skip_layers", '[quant]\nskip_layers = ["conv9"]\n'),
        ("keep_dtype", '[atc]\nkeep_dtype = ["conv9"]\n'),
        ("override_layer_configs", "[quant.override_layer_configs.conv9]\nchannel_wise = false\n"),
    ],
)
def test_config_refuses_node_names_the_model_lacks(
    tmp_path: Path, conv_model: Path, capsys: pytest.CaptureFixture[str], key: str, toml: str
) -> None:
    """docs/config.md: an op name that is not a node of the model is an error with a suggestion
    (it was written into the .cfg files, where atc would skip it silently)."""
    project = tmp_path / "ascend-quant.toml"
    project.write_text(toml)
    out = tmp_path / "out"
    code, _, err = run_cli(
        capsys, "config", str(conv_model), "--soc", "Ascend310P3", "--out", str(out),
        "--config", str(project),
    )  # fmt: skip
    assert code == 2, err
    assert f"{key} entry 'conv9' is not a node of the model" in err
    assert "did you mean" in err
    assert not (out / "simple_config.cfg").exists()


def test_quant_config_json_as_config(
    tmp_path: Path, conv_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = tmp_path / "first"
    code, _, err = run_cli(
        capsys,
        "config",
        str(conv_model),
        "--soc",
        "Ascend310B1",
        "--out",
        str(first),
        "--algorithm",
        "hfmg",
        "--num-of-bins",
        "2048",
        "--batch-num",
        "2",
    )
    assert code == 0, err
    code, out, err = run_cli(
        capsys,
        "config",
        "--show",
        "--json",
        "--config",
        str(first / "quant_config.json"),
        "--batch-num",
        "5",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["socs"] == ["Ascend310B1"]
    assert data["quant"]["algorithm"] == "hfmg" and data["quant"]["hfmg"]["num_of_bins"] == 2048
    assert data["quant"]["batch_num"] == 5  # the flag still wins
    assert data["input_shape"] == "input:1,3,16,16"


def test_flag_overrides_only_given() -> None:
    assert flag_overrides() == {}
    assert flag_overrides(search_step=0.02) == {"quant": {"ifmr": {"search_step": 0.02}}}
    with pytest.raises(UsageError):
        effective_config(None, {"quant": {"batch_num": "x"}})


def test_config_with_a_calib_set_writes_every_file(
    tmp_path: Path, conv_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ascend_quant.config import CalibConfig, PreprocessConfig
    from ascend_quant.data.images import make_calib_set

    calib_dir = tmp_path / "calib set"
    make_calib_set(calib_dir, PreprocessConfig(size=(16, 16)), CalibConfig(limit=2, jobs=1))
    out = tmp_path / "cfg"
    code, stdout, err = run_cli(
        capsys,
        "config",
        str(conv_model),
        "--soc",
        "Ascend310P3",
        "--out",
        str(out),
        "--calib",
        str(calib_dir),
        "--json",
        "--aipp",
    )
    assert code == 0, err
    files = set(json.loads(stdout)["Ascend310P3"])
    assert {"compression_optimize.cfg", "aipp.cfg", "amct_config.cfg"} <= files
    comp = pt.parse((out / "compression_optimize.cfg").read_text())["calibration"]
    assert Path(comp["input_data_dir"]).is_file()
    assert Path(comp["input_data_dir"]).stat().st_size == 3 * 16 * 16 * 4
    if "amct_int8.sh" in files:
        assert "amct_onnx calibration" in (out / "amct_int8.sh").read_text()
    code, _, err = run_cli(
        capsys,
        "config",
        str(conv_model),
        "--soc",
        "Ascend310P3",
        "--out",
        str(out),
        "--calib",
        f"other={calib_dir}",
    )
    assert code == 2 and "'other' is not an input of the model" in err


def test_config_takes_calib_sources_as_convert_does(
    tmp_path: Path, conv_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--calib` means the same in config and convert: a source becomes a calib set here too."""
    from PIL import Image

    images = tmp_path / "photos"
    images.mkdir()
    for i in range(3):
        Image.new("RGB", (20, 24), (40 * i, 90, 200 - 30 * i)).save(images / f"p{i}.png")
    out = tmp_path / "cfg"
    code, stdout, err = run_cli(
        capsys,
        "config",
        str(conv_model),
        "--soc",
        "Ascend310P3",
        "--out",
        str(out),
        "--calib",
        str(images),
        "--json",
    )
    assert code == 0, err
    assert "compression_optimize.cfg" in json.loads(stdout)["Ascend310P3"]
    comp = pt.parse((out / "compression_optimize.cfg").read_text())["calibration"]
    made = Path(comp["input_data_dir"])
    assert made.is_file() and out / "calib" in made.parents
