"""Shared assertions of the robustness suite: the exit code, no traceback, `error:` + `hint:`,
and that a refused command left nothing behind."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from clirun import run_cli

# Files a refused build may leave: the lock it took (empty, released by the kernel).
HARMLESS = {".lock"}


def files_under(root: Path) -> list[str]:
    if not root.exists():
        return []
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name not in HARMLESS
    )


def refused(
    capsys: pytest.CaptureFixture[str], *args: str, out: Path | None = None, code: int = 2
) -> str:
    """Run the CLI, assert a clean refusal, return stderr."""
    before = files_under(out) if out is not None else []
    exit_code, stdout, err = run_cli(capsys, *args)
    assert exit_code == code, (exit_code, stdout, err)
    assert "Traceback" not in err + stdout
    lines = err.splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert len(errors) == 1, err  # one error (warnings may come before it), then its hint
    assert any(line.startswith("hint: ") for line in lines[errors[0] + 1 :]), err
    assert "internal error" not in err
    if out is not None:
        assert files_under(out) == before, "a refused command left partial output"
    return err
