"""`ascend-quant run`."""

from __future__ import annotations

from ascend_quant.errors import UsageError


def run() -> None:
    """Placeholder until its issue lands."""
    raise UsageError("'run' is not implemented yet")
