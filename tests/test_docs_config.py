"""docs/config.md's commands and config-file blocks run as written on the bundled example: node
names are checked against the model, so a made-up name in an example is a failing example."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from cli.clirun import run_cli

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "config.md"
README = ROOT / "README.md"
MODEL = ROOT / "examples" / "sr" / "espcn_x2.onnx"


def blocks(language: str, doc: Path = DOC) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)\n```", doc.read_text(encoding="utf-8"), re.S)


def test_every_toml_block_configures_the_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = blocks("toml")
    assert len(texts) >= 2
    for index, text in enumerate(texts):
        config = tmp_path / f"block{index}.toml"
        config.write_text(text, encoding="utf-8")
        out = tmp_path / f"out{index}"
        args = ("config", str(MODEL), "--soc", "Ascend310P3", "--out", str(out))
        code, _, err = run_cli(capsys, *args, "--config", str(config))
        assert code == 0, f"{text}\n{err}"
        names = re.findall(r'"(/[^"]+)"|layer_name = "([^"]+)"', text)
        rendered = (out / "quant_config.json").read_text(encoding="utf-8")
        for name in filter(None, (n for pair in names for n in pair)):
            assert name in rendered, name  # the example's nodes reach the configs


@pytest.mark.slow
def test_commands_run_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("examples", "calib"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    (script,) = blocks("bash")
    lines = [shlex.split(line) for line in script.replace("\\\n", " ").splitlines()]
    assert len(lines) >= 3
    for argv in lines:
        assert argv[0] == "ascend-quant"
        code, _, err = run_cli(capsys, *argv[1:])
        assert code == 0, f"{shlex.join(argv)}\n{err}"
    assert (tmp_path / "work" / "configs" / "keep_dtype.cfg").read_text().split() == [
        "/Resize",
        "OpType::DepthToSpace",
    ]


def test_readme_project_file_configures_the_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's `ascend-quant.toml` (its input_shape is the bundled example's)."""
    (text,) = [b for b in blocks("toml", README) if 'input_shape = "input:' in b]
    config = tmp_path / "ascend-quant.toml"
    config.write_text(text, encoding="utf-8")
    args = ("config", str(MODEL), "--out", str(tmp_path / "out"), "--config", str(config))
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
