"""Progress reporting that the library can call without knowing about terminals.

Library functions take a `Progress` and call `progress.task(...)`; the CLI passes a rich-backed
implementation, Python callers get `NullProgress` by default.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:
    from rich.console import Console

Advance = Callable[[int], None]


class Progress(Protocol):
    def task(
        self, description: str, total: int | None = None
    ) -> contextlib.AbstractContextManager[Advance]:
        """Open a unit of work of `total` steps; the yielded callable advances it."""
        ...


class NullProgress:
    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Advance]:
        yield _ignore


def _ignore(n: int = 1) -> None:
    return None


class RichProgress:
    """Rich progress bars on stderr; one bar per task, all in one live display."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import Progress as _RichProgress

        self._progress = _RichProgress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Advance]:
        task_id = self._progress.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            self._progress.advance(task_id, n)

        try:
            yield advance
        finally:
            if total is not None:
                self._progress.update(task_id, completed=total)
            else:
                self._progress.update(task_id, total=1, completed=1)


class LineProgress:
    """Plain progress lines for logs and pipes: one when a task starts, one when it ends (with
    its time), and, once a counted task has run `long_s` seconds, one at every further 10 %.
    Each line is written whole and never wrapped, prefixed with the time since the run started.
    Short loops print no percentages: in a log they are noise."""

    def __init__(
        self,
        stream: TextIO | None = None,
        long_s: float = 2.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._stream = stream
        self._clock = clock
        self._long_s = long_s
        self._start = clock()

    def _line(self, text: str) -> None:
        stream = self._stream or sys.stderr
        stream.write(f"[{self._clock() - self._start:7.1f}s] {text}\n")
        stream.flush()

    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Advance]:
        started = self._clock()
        self._line(f"{description} ...")
        done = 0
        next_tenth = 1

        def advance(n: int = 1) -> None:
            nonlocal done, next_tenth
            done += n
            if total and total >= 10:
                tenth = done * 10 // total
                if next_tenth <= tenth < 10:
                    if self._clock() - started >= self._long_s:
                        self._line(f"{description}: {tenth * 10}% ({done}/{total})")
                    next_tenth = tenth + 1

        try:
            yield advance
        except BaseException:
            self._line(f"{description} stopped after {self._clock() - started:.1f}s")
            raise
        self._line(f"{description} done in {self._clock() - started:.1f}s")


NULL_PROGRESS = NullProgress()
