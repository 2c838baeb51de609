"""Every `ascend-quant` command line shown in README.md and examples/*/README.md names a real
command and only options that command has: a documented flag that was renamed or never existed
sends a new user into a usage error on the first copy-paste."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from ascend_quant.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "examples").glob("*/README.md"))]
FENCE = re.compile(r"```[a-z]*\n(.*?)\n```", re.S)
INLINE = re.compile(r"`(ascend-quant [^`]+)`")


def command_lines(text: str) -> list[str]:
    """`ascend-quant ...` lines of fenced blocks (continuations joined, `$ ` prompts dropped)
    and inline code spans that start with `ascend-quant `."""
    found = []
    for body in FENCE.findall(text):
        for line in body.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("ascend-quant "):
                found.append(line)
    for span in INLINE.findall(text):
        found.append(span)
    return found


def options_of(command: Any) -> set[str]:
    """Typer may vendor Click, so the command is read by its attributes, not its class."""
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


def cases() -> list[tuple[str, str]]:
    return [
        (path.relative_to(ROOT).as_posix(), line)
        for path in DOCS
        for line in command_lines(path.read_text(encoding="utf-8"))
    ]


def test_the_docs_show_commands() -> None:
    names = {line.split()[1] for _doc, line in cases()}
    assert {"build", "tune", "compare", "inspect", "analyze"} <= names


@pytest.mark.parametrize("doc, line", cases())
def test_documented_command_lines_use_existing_options(doc: str, line: str) -> None:
    group: Any = typer.main.get_command(app)
    argv = shlex.split(line, comments=True)
    command = group.commands.get(argv[1])
    assert command is not None, f"{doc}: unknown command in `{line}`"
    known = options_of(command) | {"--help", "-h"}
    flags = [a.split("=", 1)[0] for a in argv[2:] if a.startswith("--") or re.fullmatch(r"-\w", a)]
    unknown = [flag for flag in flags if flag not in known]
    assert not unknown, f"{doc}: `{line}` uses {unknown}, which `{argv[1]}` does not have"
