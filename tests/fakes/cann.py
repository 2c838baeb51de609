"""Putting the CANN stand-ins in place for a test: on PATH, or as a fake install root.

`use_fakes_on_path` mimics a shell where `set_env.sh` was already sourced; `make_cann_root`
builds an install tree in the old (`ascend-toolkit/latest/compiler/bin/atc`, set_env.sh one level
up) or new (`cann/bin/atc`, `cann/set_env.sh`) layout, with version files, for discovery tests.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

FAKES = Path(__file__).resolve().parent
BIN = FAKES / "bin"
PYLIB = FAKES / "pylib"
FAKE_VARS = (
    "ASCEND_TOOLKIT_HOME",
    "ASCEND_HOME_PATH",
    "FAKE_ATC_FAIL",
    "FAKE_ATC_NO_MARKER",
    "FAKE_ATC_NO_OM",
    "FAKE_ATC_BAD_OM",
    "FAKE_ATC_SLEEP",
    "FAKE_ATC_OS_ARCH",
    "FAKE_ATC_DIALECT",
    "FAKE_AMCT_FAIL",
    "FAKE_AMCT_NO_DEPLOY",
    "FAKE_NPU_ABSENT",
    "FAKE_NPU_NAME",
    "FAKE_AISBENCH_MS",
    "FAKE_AISBENCH_NO_JSON",
)


def _system_path() -> str:
    """PATH without any real CANN directory (none exists here, but be safe)."""
    parts = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(p for p in parts if "Ascend" not in p and p != str(BIN))


def isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No toolkit anywhere: standard roots point at an empty dir, fake knobs cleared."""
    from ascend_quant.backends.toolkit import discover

    for name in FAKE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ASCEND_QUANT_CANN_ROOTS", str(tmp_path / "no-cann-here"))
    monkeypatch.setenv("PATH", _system_path())
    monkeypatch.delenv("PYTHONPATH", raising=False)
    discover.cache_clear()


def use_fakes_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> None:
    """atc, amct_onnx, npu-smi on PATH and `python3 -m ais_bench` importable."""
    from ascend_quant.backends.toolkit import discover

    isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("PATH", os.pathsep.join([str(BIN), _system_path()]))
    monkeypatch.setenv("PYTHONPATH", str(PYLIB))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    discover.cache_clear()


def use_aisbench_python_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """ais_bench's Python API importable in this process: the stand-in `InferSession`
    (`pylib/ais_bench/infer/interface.py`), for this test only (without it, the atc backend's
    `open` finds no Python API and `compare` runs through the command line's files)."""
    monkeypatch.syspath_prepend(str(PYLIB))  # the stand-in imports fakecann
    path = PYLIB / "ais_bench" / "infer" / "interface.py"
    spec = importlib.util.spec_from_file_location("ais_bench.infer.interface", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "ais_bench.infer.interface", module)


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)


def make_cann_root(base: Path, layout: str = "old", version: str = "8.0.RC1") -> Path:
    """Build a fake install under `base`; returns the toolkit root (what ASCEND_TOOLKIT_HOME is)."""
    if layout == "old":
        real = base / "ascend-toolkit" / version
        root = base / "ascend-toolkit" / "latest"
        _link(BIN / "atc", real / "compiler" / "bin" / "atc")
        _link(BIN / "amct_onnx", real / "tools" / "amct" / "bin" / "amct_onnx")
        info = real / "aarch64-linux" / "ascend_toolkit_install.info"
        info.parent.mkdir(parents=True, exist_ok=True)
        info.write_text(f"package_name=Ascend-cann-toolkit\nversion={version}\narch=aarch64\n")
        root.symlink_to(real.name)
        script = base / "ascend-toolkit" / "set_env.sh"
        bin_dirs = "$ASCEND_TOOLKIT_HOME/compiler/bin:$ASCEND_TOOLKIT_HOME/tools/amct/bin"
    elif layout == "new":
        root = base / "cann"
        _link(BIN / "atc", root / "bin" / "atc")
        _link(BIN / "amct_onnx", root / "bin" / "amct_onnx")
        (root / "version.cfg").write_text(
            f"# version: 1.0\nruntime_running_version=[{version}.1.100:{version}]\n"
        )
        script = root / "set_env.sh"
        bin_dirs = "$ASCEND_TOOLKIT_HOME/bin"
    else:
        raise ValueError(layout)
    script.write_text(
        "#!/bin/bash\n"
        f'export ASCEND_TOOLKIT_HOME="{root}"\n'
        'export ASCEND_HOME_PATH="$ASCEND_TOOLKIT_HOME"\n'
        'export ASCEND_OPP_PATH="$ASCEND_TOOLKIT_HOME/opp"\n'
        'export ASCEND_AICPU_PATH="$ASCEND_TOOLKIT_HOME"\n'
        f'export PATH="{bin_dirs}:$PATH"\n'
        f'export PYTHONPATH="{PYLIB}:$PYTHONPATH"\n'
        'export LD_LIBRARY_PATH="$ASCEND_TOOLKIT_HOME/lib64:$LD_LIBRARY_PATH"\n'
    )
    return root


def make_calib_set(
    root: Path,
    input_name: str = "input",
    shape: tuple[int, ...] = (1, 3, 16, 16),
    samples: int = 4,
    batch: int = 2,
    dtype: str = "float32",
) -> Path:
    """A calib set in the `ascend-quant-calib/1` layout (samples/ and batches_bs<N>/)."""
    import json
    import math

    import numpy as np

    rng = np.random.default_rng(0)
    (root / "samples").mkdir(parents=True)
    batch_dir = root / f"batches_bs{batch}"
    batch_dir.mkdir()
    arrays = [rng.random(shape).astype(dtype) for _ in range(samples)]
    entries = []
    for i, array in enumerate(arrays):
        name = f"samples/{i:05d}_img{i}.bin"
        array.tofile(root / name)
        entries.append({"file": name})
    batch_files = []
    for k in range(math.ceil(samples / batch)):
        chunk = arrays[k * batch : (k + 1) * batch]
        chunk += arrays[: batch - len(chunk)]
        name = f"batches_bs{batch}/{k:05d}.bin"
        np.concatenate(chunk).tofile(root / name)
        batch_files.append(name)
    manifest = {
        "format": "ascend-quant-calib/1",
        "input_name": input_name,
        "shape": list(shape),
        "dtype": dtype,
        "layout": "NCHW",
        "batch": batch,
        "samples": entries,
        "batch_files": batch_files,
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root
