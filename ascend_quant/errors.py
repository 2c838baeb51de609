"""One error hierarchy. Each error knows its exit code and carries a hint for the user.

The CLI prints `error: <message>` and `hint: <hint>` and exits with `exit_code`; the library raises.
"""

from __future__ import annotations

import os

EXIT_OK = 0
EXIT_THRESHOLD = 1
EXIT_USAGE = 2
EXIT_TOOLCHAIN = 3


class AscendQuantError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(AscendQuantError):
    """Bad flags, bad config, or bad input files (images, models, .bin sizes)."""


def not_a_model_file(path: object) -> UsageError:
    """The error for a model path that is missing, a directory or a special file."""
    text = str(path)
    if os.path.isdir(text):
        what = "is a directory, not a model file"
    elif os.path.exists(text):
        what = "is not a regular file"
    else:
        what = "not found"
    return UsageError(f"model {what}: {text}", hint="pass the path of the .onnx or .om file")


class ModelError(UsageError):
    """The ONNX model cannot be loaded, checked or handled as asked."""


class ToolchainError(AscendQuantError):
    """A CANN tool (atc, amct_onnx, ais_bench) is missing or failed."""

    exit_code = EXIT_TOOLCHAIN

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        log_path: str | None = None,
        codes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, hint)
        self.log_path = log_path
        self.codes = codes


class InProcessUnavailable(ToolchainError):
    """This host cannot load the model in-process (e.g. ais_bench's Python API is missing), though
    its backend may still run it through a command-line tool (`Backend.run` and its files)."""


class WorkspaceBusyError(UsageError):
    """Another build holds the workspace lock."""


class ThresholdFailed(AscendQuantError):
    """Accuracy thresholds were breached; raised only where a verdict must stop the caller."""

    exit_code = EXIT_THRESHOLD
