"""Plain progress lines for logs and pipes."""

from __future__ import annotations

import io
import re

import pytest

from ascend_quant.progress import LineProgress


def test_lines_at_start_finish_and_every_tenth() -> None:
    stream = io.StringIO()
    progress = LineProgress(stream)
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
