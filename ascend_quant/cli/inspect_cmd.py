"""`ascend-quant inspect`."""

from __future__ import annotations

from ascend_quant.errors import UsageError


def inspect() -> None:
    """Placeholder until its issue lands."""
    raise UsageError("'inspect' is not implemented yet")
