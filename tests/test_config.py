from __future__ import annotations

from pathlib import Path

import pytest

from ascend_quant.config import (
    BuildConfig,
    QuantConfig,
    format_input_shape,
    from_mapping,
    load_build_config,
    merge,
    parse_input_shape,
    to_mapping,
)
from ascend_quant.errors import UsageError


def test_defaults_round_trip() -> None:
    config = BuildConfig()
    assert from_mapping(BuildConfig, to_mapping(config)) == config


def test_unknown_key_suggests_the_close_one() -> None:
    with pytest.raises(UsageError) as info:
        from_mapping(QuantConfig, {"activaton_offset": True})
    assert "activaton_offset" in info.value.message
    assert info.value.hint == "did you mean 'activation_offset'?"


def test_wrong_type_names_the_key() -> None:
    with pytest.raises(UsageError, match=r"quant\.channel_wise: expected true or false"):
        from_mapping(BuildConfig, {"quant": {"channel_wise": "yes"}})


def test_literal_rejects_unknown_value_with_suggestion() -> None:
    with pytest.raises(UsageError) as info:
        from_mapping(QuantConfig, {"algorithm": "hfgm"})
    assert info.value.hint == "did you mean 'hfmg'?"


def test_precedence_defaults_file_flags(tmp_path: Path) -> None:
    project = tmp_path / "ascend-quant.toml"
    project.write_text(
        'socs = ["Ascend310B1"]\n[quant]\nalgorithm = "hfmg"\nchannel_wise = false\n'
    )
    config = load_build_config(project, {"quant": {"algorithm": "minmax"}})
    assert config.socs == ("Ascend310B1",)
    assert config.quant.algorithm == "minmax"  # flag beats file
    assert config.quant.channel_wise is False  # file beats default
    assert config.quant.activation_offset is True  # default


def test_merge_keeps_nested_defaults() -> None:
    config = merge(BuildConfig(), {"quant": {"ifmr": {"search_step": 0.02}}})
    assert config.quant.ifmr.search_step == 0.02
    assert config.quant.ifmr.search_range_start == 0.7


def test_bad_toml_is_a_usage_error(tmp_path: Path) -> None:
    project = tmp_path / "bad.toml"
    project.write_text("socs = [\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_build_config(project)


def test_parse_input_shape_atc_syntax() -> None:
    shapes = parse_input_shape("in0:16,3,224,224;in1:16,4;scalar:")
    assert shapes == {"in0": (16, 3, 224, 224), "in1": (16, 4), "scalar": ()}
    assert format_input_shape(shapes) == "in0:16,3,224,224;in1:16,4;scalar:"


@pytest.mark.parametrize("text", ["in0", "in0:1,x", "in0:0,3"])
def test_parse_input_shape_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_input_shape(text)
