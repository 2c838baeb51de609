"""The README's "stages one by one" commands and its Python snippet run as written, on the
bundled example, from a copy of a checkout (examples/ and calib/)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def block(marker: str, language: str) -> str:
    """The fenced block right after `<!-- marker -->`."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {marker} -->\n```{language}\n(.*?)\n```", text, re.S)
    assert match, f"README has no <!-- {marker} --> {language} block"
    return match.group(1)


def commands(script: str) -> list[list[str]]:
    """Logical lines (backslash continuations joined, comments dropped) as argv lists."""
    joined = script.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]


@pytest.fixture
def checkout(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    for name in ("examples", "calib"):
        shutil.copytree(ROOT / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASCEND", "ASCEND_QUANT"))}
    env["PYTHONPATH"] = str(ROOT)
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if "fakes" not in p
    )
    return tmp_path, env


def test_block_parsing() -> None:
    assert commands("a b \\\n  c  # note\n\nd 'e f'") == [["a", "b", "c"], ["d", "e f"]]


@pytest.mark.slow
def test_stages_and_python_snippet_run_as_written(
    checkout: tuple[Path, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Both in one test, the snippet in the background: each spends most of its time in
    preflight and the simulator, so together they take about as long as the longer one."""
    cwd, env = checkout
    snippet_dir = tmp_path_factory.mktemp("snippet")
    for name in ("examples", "calib"):
        shutil.copytree(ROOT / name, snippet_dir / name)
    snippet = subprocess.Popen(
        [sys.executable, "-c", block("python", "python")],
        cwd=snippet_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines = commands(block("stages", "bash"))
        assert [argv[1] for argv in lines][:3] == ["doctor", "socs", "inspect"]
        for argv in lines:
            assert argv[0] == "ascend-quant", argv
            done = subprocess.run(
                [sys.executable, "-m", "ascend_quant", *argv[1:]],
                cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            assert done.returncode == 0, (argv, done.stdout[-2000:], done.stderr[-2000:])
        assert (cwd / "work/compare/report.html").is_file()
        assert (cwd / "work/out/Ascend310P3/om/espcn_x2_fp16.om").is_file()
        assert done.stdout.strip().splitlines()[-1] == "PASSED"
        out, err = snippet.communicate(timeout=600)
    finally:
        snippet.kill()
    assert snippet.returncode == 0, err[-3000:]
    assert out.strip().splitlines()[-1] == "True PASSED"
    assert (snippet_dir / "work/calib/manifest.json").is_file()
