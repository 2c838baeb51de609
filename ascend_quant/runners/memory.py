"""Peak resident memory of a block of code, for the runtime-memory column of `bench`.

Linux only: the kernel's high-water mark (VmHWM) is reset on entry (`5` to clear_refs) and read
on exit, minus the resident size on entry. Elsewhere the figure is unknown (None).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak resident memory a block adds to this process, in bytes (`.bytes`; None: unknown).

    It measures what the block holds at its worst moment (an ONNX Runtime session: weights,
    arena, intermediate tensors), not what the process had before.
    """

    def __init__(self) -> None:
        self.bytes: int | None = None
        self._base: int | None = None

    def __enter__(self) -> PeakMemory:
        with contextlib.suppress(OSError):
            _CLEAR_REFS.write_text("5")
            self._base = _status_kib("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        peak = _status_kib("VmHWM")
        if self._base is not None and peak is not None:
            self.bytes = max(0, peak - self._base) * 1024
