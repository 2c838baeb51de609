"""Peak runtime memory of a simulated .om, measured in a fresh process.

In the benchmarking process the allocator keeps memory freed by earlier sessions, so whichever
model is measured first looks larger; a child process that has imported only what it needs
starts every model from the same state. Run as `python -m ascend_quant.backends.simmem OM`; it
prints one JSON object: {"peak_memory_bytes": int | null}.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

from ascend_quant.backends.simfile import read_sim_om
from ascend_quant.data.feeds import check_feeds
from ascend_quant.runners.memory import PeakMemory
from ascend_quant.runners.ort import OrtRunner

TIMEOUT_S = 300


class ChildProbe:
    """Peak RSS that opening `om` and one inference add, measured in a fresh interpreter that
    starts at construction; `result()` waits for it. Several probes run at once (each process
    has its own peak, so they do not disturb each other's figure); wait for them before timing
    anything, since they do compete for the CPU."""

    def __init__(self, om: Path) -> None:
        self._child = subprocess.Popen(
            [sys.executable, "-m", "ascend_quant.backends.simmem", str(om)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._peak: int | None = None
        self._done = False

    def result(self) -> int | None:
        """The peak in bytes; None: unknown (the child failed or timed out)."""
        if not self._done:
            self._peak = self._wait()
            self._done = True
        return self._peak

    def _wait(self) -> int | None:
        try:
            stdout, _ = self._child.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.communicate()
            return None
        if self._child.returncode != 0:
            return None
        try:
            value = json.loads(stdout.strip().splitlines()[-1])["peak_memory_bytes"]
        except (ValueError, IndexError, KeyError, TypeError):
            return None
        return int(value) if isinstance(value, int) else None


def _warm_up() -> None:
    """One trivial session first: ONNX Runtime's one-time start-up (thread pools, kernel
    registry, about 30 MB) belongs to the process, not to the model measured."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "warm", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with OrtRunner(model) as runner:
        runner.infer({"x": np.zeros((1, 4), dtype=np.float32)})


def _main(om: str) -> None:
    _warm_up()
    with PeakMemory() as memory:
        _, onnx_bytes = read_sim_om(Path(om))
        with OrtRunner(onnx_bytes) as runner:
            runner.infer(check_feeds(runner.input_specs()))
    print(json.dumps({"peak_memory_bytes": memory.bytes}))


if __name__ == "__main__":
    _main(sys.argv[1])
