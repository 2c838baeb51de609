"""`ascend-quant socs`."""

from __future__ import annotations

from ascend_quant.errors import UsageError


def socs() -> None:
    """Placeholder until its issue lands."""
    raise UsageError("'socs' is not implemented yet")
