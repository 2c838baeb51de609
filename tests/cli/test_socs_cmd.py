from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from clirun import run_cli


def test_socs_json_lists_every_soc(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "socs", "--json")
    assert code == 0
    data = {s["name"]: s for s in json.loads(out)}
    assert len(data) == 27
    assert data["Ascend035"]["int8_routes"] == ["amct"]
    assert data["Ascend310P3"]["first_layer_quantization"] is True


def test_socs_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "socs")
    assert code == 0
    assert "Ascend910B4-1" in out and "Ascend910PremiumA" in out and "reserved" in out
