"""Run the real console entry point in-process: exit code, stdout and stderr."""

from __future__ import annotations

import pytest

from ascend_quant.cli import common
from ascend_quant.cli.app import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    common.console.width = common.err_console.width = 200  # no wrapping in assertions
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
