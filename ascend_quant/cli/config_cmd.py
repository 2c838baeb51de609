"""`ascend-quant config`."""

from __future__ import annotations

from ascend_quant.errors import UsageError


def config() -> None:
    """Placeholder until its issue lands."""
    raise UsageError("'config' is not implemented yet")
