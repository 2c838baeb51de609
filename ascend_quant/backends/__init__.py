"""Backend selection: `atc` (real CANN), `sim` (ONNX Runtime on the CPU), or `auto`."""

from __future__ import annotations

import logging

from ascend_quant.backends.base import Backend
from ascend_quant.errors import UsageError

log = logging.getLogger("ascend_quant")

SIMULATED_NOTICE = "no CANN toolkit found: using the simulated backend (figures measured on the CPU)"


def auto_backend_name() -> str:
    """`atc` when a CANN toolkit with atc is installed, else `sim`."""
    from ascend_quant.backends.toolkit import discover

    return "atc" if discover().atc is not None else "sim"


def get_backend(name: str) -> Backend:
    """Return the backend called `name`; `auto` picks one and says so when it is the simulator."""
    if name == "auto":
        name = auto_backend_name()
        if name == "sim":
            log.warning(SIMULATED_NOTICE)
    if name == "sim":
        from ascend_quant.backends.sim import SimBackend

        return SimBackend()
    if name == "atc":
        from ascend_quant.backends.atc import AtcBackend

        return AtcBackend()
    raise UsageError(f"unknown backend '{name}'", hint="use one of: auto, atc, sim")
