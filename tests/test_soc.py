from __future__ import annotations

import logging

import pytest

from ascend_quant.errors import UsageError
from ascend_quant.soc import all_socs, get_soc

# Every string of the reference §2 table, including the ones "the source also lists".
DOCUMENTED = [
    "Ascend310",
    "Ascend310P1",
    "Ascend310P3",
    "Ascend310P5",
    "Ascend310P7",
    "Ascend310B1",
    "Ascend910",
    "Ascend910A",
    "Ascend910B",
    "Ascend910ProA",
    "Ascend910ProB",
    "Ascend910PremiumA",
    "Ascend910B1",
    "Ascend910B2",
    "Ascend910B3",
    "Ascend910B4",
    "Ascend910B2C",
    "Ascend910B4-1",
    "Ascend910_9391",
    "Ascend910_9381",
    "Ascend910_9372",
    "Ascend910_9362",
    "Ascend910_9392",
    "Ascend910_9382",
    "Ascend035",
    "Ascend035A",
    "Ascend035B",
]


def test_registry_holds_every_documented_string() -> None:
    assert sorted(s.name for s in all_socs()) == sorted(DOCUMENTED)


def test_capabilities() -> None:
    p3, b1, ipv = get_soc("Ascend310P3"), get_soc("Ascend310B1"), get_soc("Ascend035")
    assert p3.atc_calibration and p3.first_layer_quantization and p3.dynamic_shape_range
    assert b1.first_layer_quantization and not b1.dynamic_shape_range
    assert not ipv.atc_calibration and not ipv.dynamic_shape_range
    assert ipv.int8_routes == ("amct",) and p3.int8_routes == ("atc", "amct")
    assert not get_soc("Ascend910B3").first_layer_quantization
    assert get_soc("Ascend910_9391").query.startswith("npu-smi info -t board")
    assert get_soc("Ascend910B1").family == "Ascend 910B (A2)"
    assert get_soc("Ascend910B").family == "Ascend 910"


def test_weight_only_int8_only_on_310p_and_a2() -> None:
    """Reference: weight_compress_only runs on the Atlas inference series (310P) and A2 only."""
    for name in ("Ascend310P1", "Ascend310P3", "Ascend910B1", "Ascend910B4"):
        assert get_soc(name).weight_compress_only and get_soc(name).w8_refusal is None
    for name in ("Ascend310", "Ascend310B1", "Ascend910B", "Ascend910_9391", "Ascend035"):
        reason = get_soc(name).w8_refusal
        assert reason is not None and name in reason and "310P" in reason


def test_miscased_name_suggests_the_right_case() -> None:
    with pytest.raises(UsageError) as info:
        get_soc("ascend310p3")
    assert info.value.message == "unknown soc_version 'ascend310p3'"
    assert info.value.hint == "did you mean 'Ascend310P3'? (soc_version is case-sensitive)"


def test_missing_prefix_and_typos() -> None:
    with pytest.raises(UsageError) as info:
        get_soc("310B1")
    assert info.value.hint is not None and "'Ascend310B1'" in info.value.hint
    with pytest.raises(UsageError) as info:
        get_soc("Ascend310P4")
    assert info.value.hint is not None and info.value.hint.startswith("did you mean 'Ascend310P")
    assert "case-sensitive" not in info.value.hint
    with pytest.raises(UsageError) as info:
        get_soc("Ascend310P")  # a family: every chip, not the one difflib ranks first (P7)
    assert info.value.hint is not None and info.value.hint.startswith("name the chip:")
    assert "Ascend310P1" in info.value.hint and "Ascend310P3" in info.value.hint
    with pytest.raises(UsageError) as info:
        get_soc("tpu-v4")
    assert info.value.hint is not None and "ascend-quant socs" in info.value.hint


def test_ascend950_gets_an_honest_hint() -> None:
    with pytest.raises(UsageError) as info:
        get_soc("Ascend950PR_1234")
    assert info.value.hint is not None and "not documented" in info.value.hint


def test_910b_trap_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ascend_quant"):
        get_soc("Ascend910B2")
        assert caplog.records == []
        get_soc("Ascend910B")
    assert len(caplog.records) == 1
    assert "first-generation" in caplog.records[0].getMessage()


def test_reserved_and_box16_names_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ascend_quant"):
        assert not get_soc("Ascend910_9392").supported
        get_soc("Ascend910B2C")
    messages = [r.getMessage() for r in caplog.records]
    assert "reserved" in messages[0] and "Ascend910B2" in messages[1]
