"""The public Python API: everything the CLI does is importable from the package."""

from __future__ import annotations

import subprocess
import sys

import pytest

import ascend_quant


@pytest.mark.parametrize("name", [n for n in ascend_quant.__all__ if n != "__version__"])
def test_every_export_resolves(name: str) -> None:
    assert getattr(ascend_quant, name) is not None


def test_all_lists_exactly_the_lazy_exports() -> None:
    assert set(ascend_quant.__all__) == {"__version__", *ascend_quant._EXPORTS}


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        ascend_quant.nope  # noqa: B018


def test_import_is_cheap() -> None:
    code = "import sys, ascend_quant; print('onnxruntime' in sys.modules, 'onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
