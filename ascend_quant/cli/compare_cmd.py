"""`ascend-quant compare`."""

from __future__ import annotations

from ascend_quant.errors import UsageError


def compare() -> None:
    """Placeholder until its issue lands."""
    raise UsageError("'compare' is not implemented yet")
