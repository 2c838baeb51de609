from __future__ import annotations

import pytest

from ascend_quant import prototext as pt
from ascend_quant.render import pstr, pval


def test_nested_repeated_comments_and_both_block_styles() -> None:
    text = """
    # a comment
    version : 1   # trailing comment
    skip_layers : "a"
    skip_layers : 'b'
    common_config { arq_quantize : { channel_wise : false } }
    override_layer_types : { layer_type : "MatMulV2" calibration_config : {
        ifmr_quantize : { search_range_start : 0.8  search_step : 2e-2 } } }
    """
    data = pt.parse_and_validate(text, pt.ATC_SIMPLE_CONFIG)
    assert data == {
        "version": 1,
        "skip_layers": ["a", "b"],
        "common_config": {"arq_quantize": {"channel_wise": False}},
        "override_layer_types": [
            {
                "layer_type": "MatMulV2",
                "calibration_config": {
                    "ifmr_quantize": {"search_range_start": 0.8, "search_step": 0.02}
                },
            }
        ],
    }


def test_string_escapes() -> None:
    text = r'a : "q\"b\\c\n\t\101\x42 é" b : "x" "y"'
    assert pt.parse(text) == {"a": 'q"b\\c\n\tAB é', "b": "xy"}
    assert pt.parse(r'a : "\303\251"') == {"a": "é"}  # octal UTF-8 bytes


@pytest.mark.parametrize(
    "value", ["plain", 'quo"te', "back\\slash", "new\nline", "tab\t", "ünï €", "\x01ctl", ""]
)
def test_pstr_round_trips(value: str) -> None:
    assert pt.parse(f"k : {pstr(value)}") == {"k": value}


@pytest.mark.parametrize("value", [True, False, 0, 7, 0.999999, 1e-7, 123.675, 0.0171247538316637])
def test_pval_round_trips(value: object) -> None:
    assert pt.parse(f"k : {pval(value)}") == {"k": value}


def test_bare_values_of_the_compression_config() -> None:
    text = "calibration:\n{\n  input_data_dir: ./a.bin,./b.bin\n  input_shape: x:16,3,8,8;y:16,4\n}"
    data = pt.parse_and_validate(text, pt.COMPRESSION_OPTIMIZE_CONFIG)
    assert data["calibration"] == {
        "input_data_dir": "./a.bin,./b.bin",
        "input_shape": "x:16,3,8,8;y:16,4",
    }


@pytest.mark.parametrize(
    ("text", "schema", "message"),
    [
        ("batch_num : 4", pt.ATC_SIMPLE_CONFIG, "unknown key 'batch_num'"),
        (
            "common_config { hfmg_quantize { num_of_bins : 8 } }",
            pt.ATC_SIMPLE_CONFIG,
            "unknown key 'common_config.hfmg_quantize'",
        ),
        ("version : 1 version : 2", pt.ATC_SIMPLE_CONFIG, "given 2 times"),
        ("activation_offset : 1", pt.ATC_SIMPLE_CONFIG, "expected bool"),
        ("common_config : 3", pt.ATC_SIMPLE_CONFIG, "must be a message"),
        ("version { }", pt.ATC_SIMPLE_CONFIG, "must be a value"),
        ("calibration { log : loud }", pt.COMPRESSION_OPTIMIZE_CONFIG, "not one of"),
        ('k : "open', pt.ATC_SIMPLE_CONFIG, "unterminated string"),
        ("a { b : 1", pt.ATC_SIMPLE_CONFIG, "missing '}'"),
        ("a 1", pt.ATC_SIMPLE_CONFIG, "expected ':'"),
        ('a : "\\q"', pt.ATC_SIMPLE_CONFIG, "unknown escape"),
    ],
)
def test_errors(text: str, schema: pt.Schema, message: str) -> None:
    with pytest.raises(pt.ProtoTextError, match=message):
        pt.parse_and_validate(text, schema, "x.cfg")


def test_unknown_key_suggests() -> None:
    with pytest.raises(pt.ProtoTextError) as info:
        pt.parse_and_validate("activaton_offset : true", pt.AMCT_SIMPLE_CONFIG)
    assert info.value.hint == "did you mean 'activation_offset'?"


def test_error_names_the_line() -> None:
    with pytest.raises(pt.ProtoTextError, match=r"x\.cfg:3: unterminated"):
        pt.parse('a : 1\nb : 2\nc : "x\n', "x.cfg")


def test_amct_and_aipp_schemas() -> None:
    amct = pt.parse_and_validate(
        "batch_num : 4\ncommon_config : { hfmg_quantize : { num_of_bins : 4096 } }",
        pt.AMCT_SIMPLE_CONFIG,
    )
    assert amct["common_config"]["hfmg_quantize"]["num_of_bins"] == 4096
    aipp = pt.parse_and_validate(
        "aipp_op { aipp_mode : static input_format : RGB888_U8 min_chn_0 : 123.675 }",
        pt.AIPP_CONFIG,
    )
    assert aipp["aipp_op"][0]["min_chn_0"] == 123.675
    with pytest.raises(pt.ProtoTextError, match="not one of"):
        pt.parse_and_validate("aipp_op { input_format : RGB }", pt.AIPP_CONFIG)
