"""`ascend-quant build`."""

from __future__ import annotations

from ascend_quant.errors import UsageError


def build() -> None:
    """Placeholder until its issue lands."""
    raise UsageError("'build' is not implemented yet")
