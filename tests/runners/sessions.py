"""What an ORT session the tool opened was configured with."""

from __future__ import annotations

from ascend_quant.runners.ort import OrtRunner


def spins(runner: OrtRunner) -> bool:
    """Whether the runner's ORT session lets idle intra-op threads spin (ORT's default)."""
    options = runner._session.get_session_options()
    try:
        return options.get_session_config_entry("session.intra_op.allow_spinning") != "0"
    except RuntimeError:  # not set: ORT's default, spinning
        return True
