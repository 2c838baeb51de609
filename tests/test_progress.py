"""Plain progress lines for logs and pipes."""

from __future__ import annotations

import io
import re

import pytest

from ascend_quant.progress import LineProgress


class FakeClock:
    """Seconds that advance only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_at_start_finish_and_every_tenth() -> None:
    stream = io.StringIO()
    progress = LineProgress(stream, long_s=0.0)
    with progress.task("calibrating", total=20) as advance:
        for _ in range(20):
            advance(1)
    with progress.task("preflight m.onnx"):
        pass
    lines = stream.getvalue().splitlines()
    assert all(re.match(r"\[\s*\d+\.\ds\] ", line) for line in lines)
    texts = [line.split("] ", 1)[1] for line in lines]
    assert texts[0] == "calibrating ..."
    assert texts[1:10] == [f"calibrating: {p}% ({p // 5}/20)" for p in range(10, 100, 10)]
    assert texts[10].startswith("calibrating done in ")
    assert texts[11:] == ["preflight m.onnx ...", texts[12]] and texts[12].startswith(
        "preflight m.onnx done in"
    )


def test_a_failing_task_says_it_stopped() -> None:
    stream = io.StringIO()
    with pytest.raises(ValueError), LineProgress(stream).task("convert", total=3) as advance:
        advance(1)
        raise ValueError("boom")
    assert "convert stopped after" in stream.getvalue().splitlines()[-1]


def test_short_loops_print_no_percentages() -> None:
    stream = io.StringIO()
    clock = FakeClock()
    with LineProgress(stream, long_s=2.0, clock=clock).task("comparing", total=10) as advance:
        for _ in range(10):
            advance(1)
            clock.now += 0.5  # 2 s are reached after the 4th sample
    texts = [line.split("] ", 1)[1] for line in stream.getvalue().splitlines()]
    assert texts[0] == "comparing ..."
    # nothing before 2 s; then every tenth from the 5th sample on; 100 % is the "done" line
    assert texts[1:-1] == [f"comparing: {p}% ({p // 10}/10)" for p in range(50, 100, 10)]
    assert texts[-1] == "comparing done in 5.0s"
