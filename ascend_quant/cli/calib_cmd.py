"""`ascend-quant calib`."""

from __future__ import annotations

from ascend_quant.errors import UsageError


def calib() -> None:
    """Placeholder until its issue lands."""
    raise UsageError("'calib' is not implemented yet")
