"""`ascend-quant convert`."""

from __future__ import annotations

from ascend_quant.errors import UsageError


def convert() -> None:
    """Placeholder until its issue lands."""
    raise UsageError("'convert' is not implemented yet")
