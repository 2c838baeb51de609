from __future__ import annotations

import os
from pathlib import Path

import pytest
from fakes.cann import BIN, PYLIB, isolate, make_cann_root

from ascend_quant.backends import toolkit
from ascend_quant.backends.toolkit import discover, parse_npu_smi, read_version

NPU_SMI_910B = """\
+------------------------------------------------------------------------------------------------+
| npu-smi 23.0.rc3                 Version: 23.0.rc3                                             |
+---------------------------+---------------+----------------------------------------------------+
| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|
| Chip                      | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |
+===========================+===============+====================================================+
| 0     910B3               | OK            | 93.6        40                0    / 0             |
| 0                         | 0000:C1:00.0  | 0           0    / 0          3161 / 65536         |
+===========================+===============+====================================================+
| 1     910B3               | OK            | 90.1        41                0    / 0             |
| 0                         | 0000:C2:00.0  | 0           0    / 0          3161 / 65536         |
+===========================+===============+====================================================+
+---------------------------+---------------+----------------------------------------------------+
| NPU     Chip              | Process id    | Process name             | Process memory(MB)      |
+===========================+===============+====================================================+
| 0       0                 | 4242          | python3                  | 120                     |
+===========================+===============+====================================================+
"""


def test_parse_npu_smi_910b() -> None:
    assert parse_npu_smi(NPU_SMI_910B) == ["910B3", "910B3"]
    assert toolkit.soc_from_chip_name("910B3") == "Ascend910B3"
    assert toolkit.soc_from_chip_name("Ascend910") == "Ascend910"


def test_parse_npu_smi_garbage() -> None:
    assert parse_npu_smi("dcmi module initialize failed. ret is -8005") == []


def test_nothing_found(no_cann: None) -> None:
    tk = discover()
    assert tk.atc is None and tk.amct_onnx is None and tk.root is None
    assert not tk.found and not tk.npu_visible and tk.npu_soc is None


def test_tools_on_path(fake_cann) -> None:
    tk = discover()
    assert tk.atc == BIN / "atc"
    assert tk.amct_onnx == BIN / "amct_onnx"
    assert tk.npu_smi == BIN / "npu-smi"
    assert tk.ais_bench is not None and tk.ais_bench[-2:] == ["-m", "ais_bench"]
    assert tk.npu_visible and tk.npu_soc == "Ascend310P3"
    assert tk.set_env is None  # nothing sourced: the shell already had the tools


def test_npu_name_and_absence(fake_cann) -> None:
    fake_cann(FAKE_NPU_NAME="910B2")
    assert discover().npu_soc == "Ascend910B2"
    fake_cann(FAKE_NPU_ABSENT="1")
    tk = discover()
    assert not tk.npu_visible and tk.npu_soc is None


def test_cache_follows_the_environment(fake_cann, monkeypatch: pytest.MonkeyPatch) -> None:
    first = discover()
    assert discover() is first
    path = os.environ["PATH"].split(os.pathsep)
    monkeypatch.setenv("PATH", os.pathsep.join(p for p in path if p != str(BIN)))
    assert discover().atc is None  # no cache_clear: the cache is keyed on the environment


@pytest.mark.parametrize("layout", ["old", "new"])
def test_standard_root_with_set_env(
    layout: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate(monkeypatch, tmp_path)
    root = make_cann_root(tmp_path / "Ascend", layout, version="8.0.RC1")
    monkeypatch.setenv("ASCEND_QUANT_CANN_ROOTS", str(root))
    discover.cache_clear()
    tk = discover()
    assert tk.atc is not None and tk.atc.name == "atc" and tk.atc.parent.parent.parent.exists()
    assert tk.amct_onnx is not None
    assert tk.set_env is not None and tk.set_env.name == "set_env.sh"
    assert tk.env["ASCEND_TOOLKIT_HOME"] == str(root)
    assert tk.env["ASCEND_OPP_PATH"] == f"{root}/opp"
    assert str(PYLIB) in tk.env["PYTHONPATH"]
    assert tk.ais_bench is not None  # found through the sourced PYTHONPATH
    assert tk.version == "8.0.RC1"
    assert tk.root == root
    # the sourced environment is only captured, never applied to this process
    assert "ASCEND_TOOLKIT_HOME" not in os.environ


def test_old_layout_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)
    root = make_cann_root(tmp_path / "Ascend", "old")
    monkeypatch.setenv("ASCEND_QUANT_CANN_ROOTS", str(root))
    tk = discover()
    assert tk.atc == root / "compiler" / "bin" / "atc"
    assert tk.set_env == root.parent / "set_env.sh"


def test_env_var_root_wins_over_standard_roots(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate(monkeypatch, tmp_path)
    old = make_cann_root(tmp_path / "a", "old", version="7.0.0")
    new = make_cann_root(tmp_path / "b", "new", version="8.5.0")
    monkeypatch.setenv("ASCEND_QUANT_CANN_ROOTS", str(old))
    monkeypatch.setenv("ASCEND_HOME_PATH", str(new))
    tk = discover()
    assert tk.root == new and tk.version == "8.5.0"


def test_root_without_set_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)
    root = tmp_path / "cann-8.5.1"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "atc").symlink_to(BIN / "atc")
    monkeypatch.setenv("ASCEND_TOOLKIT_HOME", str(root))
    tk = discover()
    assert tk.atc == root / "bin" / "atc"
    assert tk.set_env is None
    assert tk.env["PATH"].split(os.pathsep)[0] == str(root / "bin")
    assert tk.version == "8.5.1"  # from the versioned directory name


def test_broken_set_env_keeps_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate(monkeypatch, tmp_path)
    root = tmp_path / "cann"
    root.mkdir()
    (root / "set_env.sh").write_text("exit 3\n")
    monkeypatch.setenv("ASCEND_QUANT_CANN_ROOTS", str(root))
    tk = discover()
    assert tk.atc is None and tk.set_env == root / "set_env.sh"
    assert tk.env["PATH"] == os.environ["PATH"]


def test_read_version_files(tmp_path: Path) -> None:
    (tmp_path / "version.info").write_text("Version=7.0.0\n")
    assert read_version(tmp_path) == "7.0.0"
    (tmp_path / "version.cfg").write_text("toolkit_installed_version=[8.0.0.1.2:8.0.0]\n")
    assert read_version(tmp_path) == "8.0.0"
    empty = tmp_path / "x"
    empty.mkdir()
    assert read_version(empty) is None


def test_as_dict(fake_cann) -> None:
    data = discover().as_dict()
    assert data["found"] is True and data["npu_soc"] == "Ascend310P3"
    assert data["tools"]["atc"].endswith("/atc")
