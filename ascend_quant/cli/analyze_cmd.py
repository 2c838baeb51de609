"""`ascend-quant analyze`: which layers cost accuracy, and the fix ready to paste.

It takes exactly `build`'s model, data, preprocessing and quantization options (same names,
same meaning), builds what is missing in the same workspace (reusing every cached stage), and
runs only the per-layer analysis instead of the benchmark and the comparison.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

from ascend_quant.cli import build_cmd

# build's options that measure speed or judge outputs: analyze does neither.
_NOT_ANALYZE = {
    "loop",
    "warmup",
    "analyze",
    "analyze_only",
    "cosine_min",
    "task",
    "output_range",
    "gate",
    "metric",
    "strict",
}


def analyze(**options: Any) -> None:
    """Per-layer FP16/INT8 error (accumulated vs isolated), ranked, with skip_layers advice."""
    unset: dict[str, Any] = {n: None for n in _NOT_ANALYZE}  # what typer passes for unset flags
    build_cmd.build(**{**options, **unset, "analyze": True, "analyze_only": True})


_build = inspect.signature(build_cmd.build)
analyze.__signature__ = _build.replace(  # type: ignore[attr-defined]
    parameters=[p for name, p in _build.parameters.items() if name not in _NOT_ANALYZE]
)
analyze.__annotations__ = {
    k: v for k, v in typing.get_type_hints(build_cmd.build).items() if k not in _NOT_ANALYZE
}
