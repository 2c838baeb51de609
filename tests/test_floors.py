"""Lower floors never import higher ones (ARCHITECTURE.md): checked on the import statements."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ascend_quant"

# floor -> modules of ours it must never import (any import, module-level or local)
FORBIDDEN = {
    "tensors.py": ("ascend_quant.",),
    "runners": ("ascend_quant.backends", "ascend_quant.quant", "ascend_quant.compare",
                "ascend_quant.model", "ascend_quant.pipeline", "ascend_quant.cli"),
    "quant": ("ascend_quant.backends", "ascend_quant.compare", "ascend_quant.bench",
              "ascend_quant.pipeline", "ascend_quant.cli"),
    "backends": ("ascend_quant.bench", "ascend_quant.compare", "ascend_quant.pipeline",
                 "ascend_quant.cli"),
}  # fmt: skip


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
    return names


@pytest.mark.parametrize("floor", sorted(FORBIDDEN))
def test_floor_imports_nothing_above_it(floor: str) -> None:
    root = PACKAGE / floor
    files = [root] if root.is_file() else sorted(root.rglob("*.py"))
    assert files
    bad = [
        f"{f.relative_to(PACKAGE)} imports {name}"
        for f in files
        for name in _imports(f)
        if any(name == p.rstrip(".") or name.startswith(p) for p in FORBIDDEN[floor])
    ]
    assert not bad, bad
