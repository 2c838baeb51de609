"""`ascend-quant bench`."""

from __future__ import annotations

from ascend_quant.errors import UsageError


def bench() -> None:
    """Placeholder until its issue lands."""
    raise UsageError("'bench' is not implemented yet")
