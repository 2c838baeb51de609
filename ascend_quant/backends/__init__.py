"""Backend selection: `atc` (real CANN), `sim` (ONNX Runtime on the CPU), or `auto`."""

from __future__ import annotations

import logging
from pathlib import Path

from ascend_quant.backends.base import Backend
from ascend_quant.errors import UsageError, not_a_model_file

log = logging.getLogger("ascend_quant")

SIMULATED_NOTICE = (
    "no CANN toolkit found: using the simulated backend (figures measured on the CPU)"
)


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


def backend_for_om(path: Path) -> Backend:
    """The backend that can run this .om: the simulator's container or a real IMOD model."""
    from ascend_quant.backends.omfile import is_real_om
    from ascend_quant.backends.simfile import is_sim_om

    path = Path(path)
    if not path.is_file():
        raise not_a_model_file(path)
    if is_sim_om(path):
        return get_backend("sim")
    if is_real_om(path):
        return get_backend("atc")
    raise UsageError(
        f"{path} is neither a real Ascend .om (IMOD header) nor an ascend-quant simulated .om",
        hint="convert the ONNX model first with `ascend-quant convert`",
    )


def describe_om(path: Path) -> dict[str, object]:
    """Header and metadata of a real or simulated .om, for `inspect`."""
    from ascend_quant.backends.omfile import is_real_om, read_om_header
    from ascend_quant.backends.simfile import is_sim_om, read_sim_om

    path = Path(path)
    if is_sim_om(path):
        metadata, onnx_bytes = read_sim_om(path)
        return {"kind": "simulated", "path": str(path), "onnx_bytes": len(onnx_bytes), **metadata}
    if is_real_om(path):
        return {"kind": "real", "path": str(path), **read_om_header(path)}
    raise UsageError(
        f"{path} is not an .om file (no IMOD header, not an ascend-quant simulated .om)"
    )
