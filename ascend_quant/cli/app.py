"""The Typer app: global options, command registration and the error-to-exit-code mapping."""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import typer

from ascend_quant.__about__ import __version__
from ascend_quant.cli import (
    analyze_cmd,
    bench_cmd,
    build_cmd,
    calib_cmd,
    compare_cmd,
    config_cmd,
    convert_cmd,
    doctor_cmd,
    inspect_cmd,
    run_cmd,
    socs_cmd,
)
from ascend_quant.cli.common import err_console, styled
from ascend_quant.errors import EXIT_USAGE, AscendQuantError

EXIT_INTERNAL = 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells expect

app = typer.Typer(
    name="ascend-quant",
    help="ONNX to Ascend .om in FP16 and INT8, with the accuracy cost and speed gain measured.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": bool(os.environ.get("ASCEND_QUANT_DEBUG"))}


class _ConsoleHandler(logging.Handler):
    """Library warnings become `warning: ...` lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelname.lower()
        style = {"warning": "yellow", "error": "red"}.get(level, "dim")
        err_console.print(styled((f"{level}:", style), " ", record.getMessage()))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ascend-quant {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    _state["debug"] = _state["debug"] or debug
    logging.getLogger("ascend_quant").setLevel(logging.DEBUG if _state["debug"] else logging.INFO)


class _Interrupted(Exception):
    """Ctrl-C inside a command (Typer would otherwise exit 130 without a word)."""


def _interruptible(command: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            raise _Interrupted() from None

    return wrapper


for _name, _command in (
    ("doctor", doctor_cmd.doctor),
    ("socs", socs_cmd.socs),
    ("calib", calib_cmd.calib),
    ("inspect", inspect_cmd.inspect),
    ("config", config_cmd.config),
    ("convert", convert_cmd.convert),
    ("run", run_cmd.run),
    ("bench", bench_cmd.bench),
    ("compare", compare_cmd.compare),
    ("build", build_cmd.build),
    ("analyze", analyze_cmd.analyze),
    ("tune", build_cmd.tune),
):
    app.command(_name)(_interruptible(_command))


def _is_click_error(exc: Exception) -> bool:
    """Click's own errors (bad option, missing argument, Abort); Typer may vendor Click, so
    they are recognised by their class names rather than imported."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"ClickException", "Abort"})


def _print_click_error(exc: Exception) -> None:
    """A usage error as `error:` + `hint:` and exit 2; `ascend-quant` alone shows the help."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        exc.show()  # type: ignore[attr-defined]
        sys.exit(EXIT_USAGE)
    if type(exc).__name__ == "Abort":
        _print_error("aborted", "nothing was changed")
        sys.exit(EXIT_INTERRUPTED)
    message = exc.format_message()  # type: ignore[attr-defined]
    # the hint names a command only when one was given (`buidl` has no --help of its own)
    words = [a for a in sys.argv[1:] if not a.startswith("-")]
    known = {info.name for info in app.registered_commands}
    command = words[0] if words and words[0] in known else ""
    _print_error(
        message.strip().replace("\n", " "),
        f"see `ascend-quant {command + ' ' if command else ''}--help`",
    )
    sys.exit(getattr(exc, "exit_code", EXIT_USAGE) or EXIT_USAGE)


def _print_error(message: str, hint: str | None) -> None:
    """`error:` and `hint:` lines; the message and hint are printed literally."""
    err_console.print(styled(("error:", "red"), " ", message))
    err_console.print(styled(("hint:", "cyan"), " ", hint or _GENERIC_HINT))


_GENERIC_HINT = "run the command with --help to see what it expects"


def _os_error_hint(exc: OSError) -> str:
    """What to do about a file-system error the library did not anticipate."""
    hints = {
        errno.ENOSPC: "free some disk space (or choose another --out) and run the command again",
        errno.EACCES: "check the permissions of the file or directory named above",
        errno.EROFS: "the file system is read-only: choose another --out",
        errno.ENOENT: "check that the path exists",
        errno.EISDIR: "pass a file here, not a directory",
        errno.ENOTDIR: "a component of the path is a file, not a directory",
    }
    return hints.get(exc.errno or 0, "check the path and the file system named above")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app and turn errors into one line and an exit code."""
    logger = logging.getLogger("ascend_quant")
    if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
        logger.addHandler(_ConsoleHandler())
        logger.propagate = False
    if argv is not None:
        sys.argv = ["ascend-quant", *argv]
    if "--debug" in sys.argv[1:]:
        # Accepted anywhere, as the internal-error hint says "re-run with --debug": a user
        # appends it to the command that failed (`ascend-quant build m.onnx --debug`), which
        # Click would refuse as an unknown option of the subcommand.
        _state["debug"] = True
        sys.argv = [sys.argv[0], *(a for a in sys.argv[1:] if a != "--debug")]
    try:
        # Not standalone: Click's usage errors come back here and print as `error:` + `hint:`
        # like every other bad input, instead of in a box.
        result = app(standalone_mode=False)
        sys.exit(result if isinstance(result, int) else 0)
    except AscendQuantError as exc:
        if _state["debug"]:
            traceback.print_exc()
        _print_error(exc.message, exc.hint)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, _Interrupted):
        _print_error(
            "interrupted",
            "outputs are replaced whole or not at all; "
            "a re-run of build continues from its last finished stage",
        )
        sys.exit(EXIT_INTERRUPTED)
    except OSError as exc:
        if _state["debug"]:
            traceback.print_exc()
        _print_error(str(exc), _os_error_hint(exc))
        sys.exit(EXIT_USAGE)
    except Exception as exc:
        if _is_click_error(exc):
            _print_click_error(exc)
        # a bug: say so in one line, keep the traceback for --debug
        if _state["debug"]:
            traceback.print_exc()
        _print_error(
            f"internal error: {type(exc).__name__}: {exc}",
            "re-run with --debug for the traceback and report it",
        )
        sys.exit(EXIT_INTERNAL)
