from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import tiny_models


@pytest.fixture
def conv_model(tmp_path: Path) -> Path:
    return tiny_models.save(tiny_models.conv_net(), tmp_path / "conv.onnx")


@pytest.fixture
def sr_model(tmp_path: Path) -> Path:
    return tiny_models.save(tiny_models.sr_net(), tmp_path / "sr.onnx")


@pytest.fixture
def classifier_model(tmp_path: Path) -> Path:
    return tiny_models.save(tiny_models.classifier(), tmp_path / "cls.onnx")
