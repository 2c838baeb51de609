"""The CLI process limits OpenBLAS to one thread before NumPy loads (see cli/__init__.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = (
    "import ascend_quant.cli, os, numpy; "
    "print(os.environ['OPENBLAS_NUM_THREADS'], len(os.listdir('/proc/self/task')))"
)


def _run(env: dict[str, str]) -> list[str]:
    env = {**env, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_one_blas_thread_unless_the_user_says_otherwise() -> None:
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    setting, threads = _run(base)
    assert setting == "1"
    if Path("/proc/self/task").is_dir():
        assert threads == "1"  # NumPy loaded without starting BLAS worker threads
    assert _run({**base, "OPENBLAS_NUM_THREADS": "2"})[0] == "2"
