"""`ascend-quant doctor`."""

from __future__ import annotations

from ascend_quant.errors import UsageError


def doctor() -> None:
    """Placeholder until its issue lands."""
    raise UsageError("'doctor' is not implemented yet")
