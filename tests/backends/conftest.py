from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fakes.cann import isolate, use_fakes_on_path

from ascend_quant.backends.base import ConvertRequest
from ascend_quant.config import AtcConfig


@pytest.fixture
def fake_cann(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., None]:
    """Call with FAKE_* settings to (re)install the stand-ins on PATH; installed once by default."""

    def install(**env: str) -> None:
        use_fakes_on_path(monkeypatch, tmp_path, **env)

    install()
    return install


@pytest.fixture
def no_cann(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


def write_configs(config_dir: Path, calib: Path | None, batch: int = 2) -> Path:
    """Hand-written stand-ins for the rendered configs (render.py is tested on its own)."""
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "simple_config.cfg").write_text("version : 1\nactivation_offset : true\n")
    (config_dir / "amct_config.cfg").write_text("batch_num : 2\nactivation_offset : true\n")
    (config_dir / "quant_config.json").write_text('{"quantize_info": {}}\n')
    (config_dir / "aipp.cfg").write_text("aipp_op {\n  aipp_mode : static\n}\n")
    if calib is not None:  # the model's N (1), as atc's --input_shape: the first sample
        data = calib / "samples" / "00000_img0.bin"
        (config_dir / "compression_optimize.cfg").write_text(
            "calibration:\n{\n"
            f"    input_data_dir: {data}\n"
            "    input_shape: input:1,3,16,16\n"
            f"    config_file: {config_dir / 'simple_config.cfg'}\n"
            "    infer_soc: Ascend310P3\n    infer_device_id: 0\n    log: info\n}\n"
        )
    return config_dir


@pytest.fixture
def make_request(tmp_path: Path, conv_model: Path) -> Callable[..., ConvertRequest]:
    """ConvertRequest for the tiny conv net; INT8 requests get a calib set and configs."""
    from fakes.cann import make_calib_set

    calib = make_calib_set(tmp_path / "calib")
    configs = write_configs(tmp_path / "configs", calib)

    def build(precision: str = "fp16", calib_dirs: dict[str, Path] | None = None, **over: Any):
        atc = AtcConfig(**over.pop("atc", {}))
        fields: dict[str, Any] = {
            "model": conv_model,
            "source_sha256": "0" * 64,
            "input_shapes": {"input": (1, 3, 16, 16)},
            "soc": "Ascend310P3",
            "precision": precision,
            "out_dir": tmp_path / "out",
            "name": "conv",
            "atc": atc,
            "calib_dirs": calib_dirs
            if calib_dirs is not None
            else ({"input": calib} if precision == "int8" else {}),
            "config_dir": configs,
        }
        fields.update(over)
        return ConvertRequest(**fields)

    return build
