"""Rendered files are data, not code: user text reaches a .cfg, .json, .sh or argv literally
(escaped for its target) or is refused; override templates cannot touch files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tiny_models
from fakes.cann import use_fakes_on_path
from harness import refused, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from ascend_quant import render
from ascend_quant.config import BuildConfig, merge, toolkit_name_problem
from ascend_quant.errors import UsageError


def _relu_model(path: Path, name: str) -> Path:
    """A 1x3x8x8 model whose only input is called `name`."""
    x = helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", [name], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return tiny_models.save(model, path)


# ------------------------------------------------------------------ override templates


@pytest.mark.parametrize(
    "template, message",
    [
        ('{{ model_path.write_text("pwned") }}', "has no attribute 'write_text'"),
        ("{{ config.templates.unlink() }}", "has no attribute 'unlink'"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "__class__"),
        ("{{ tensors.append(1) }}", "SecurityError"),
        ("{{ data_files.update({'x': 1}) }}", "SecurityError"),
        ("{% include 'quant_config.json.j2' %}", "includes or calls itself"),
        ("{% for i in range(10**9) %}x{% endfor %}", "range"),
        (
            "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}",
            "renders more than",
        ),
    ],
)
def test_override_templates_see_plain_values_only(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, template: str, message: str
) -> None:
    model = _relu_model(tmp_path / "m.onnx", "input")
    overrides = tmp_path / "templates"
    overrides.mkdir()
    (overrides / "quant_config.json.j2").write_text(template)
    target = tmp_path / "victim.txt"
    target.write_text("safe")
    out = tmp_path / "cfg"
    err = refused(
        capsys, "config", str(model), "--soc", "Ascend310P3", "--out", str(out),
        "--templates", str(overrides),
    )  # fmt: skip
    assert message in err
    assert target.read_text() == "safe" and not (tmp_path / "pwned").exists()
    assert list(out.glob("*/configs/*")) == []  # every file is rendered before any is written


# ------------------------------------------------------------------ input names


@pytest.mark.parametrize("name", ["in;put", "x:0", "a,b", "new\nline"])
def test_names_with_separators_are_refused_for_the_toolkit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    use_fakes_on_path(monkeypatch, tmp_path)
    model = _relu_model(tmp_path / "m.onnx", name)
    out = tmp_path / "ws"
    err = refused(
        capsys, "convert", str(model), "--soc", "Ascend310P3", "--backend", "atc",
        "--out", str(out),
    )  # fmt: skip
    assert repr(name) in err and "rename the model input" in err
    assert not list(out.glob("*/om/*.om"))


@pytest.mark.parametrize("name", ["in;put", "x:0", "new\nline", 'q"uote'])
def test_config_keeps_names_literally_or_skips_the_toolkit_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    """quant_config.json holds the name exactly; the .cfg files are skipped, with a warning,
    when the name cannot be written into atc's --input_shape."""
    model = _relu_model(tmp_path / "m.onnx", name)
    out = tmp_path / "cfg"
    code, _, err = run_cli(capsys, "config", str(model), "--soc", "Ascend310P3", "--out", str(out))
    assert code == 0, err
    data = json.loads((out / "quant_config.json").read_text())
    assert [t["name"] for t in data["model_info"]["input_tensor_info"]] == [name]
    for cfg in out.glob("*.cfg"):
        parsed = render.validate_rendered(cfg.name, cfg.read_text())
        assert "skip_layers" not in parsed  # nothing smuggled in through the comment lines
    if toolkit_name_problem(name):
        assert not (out / "amct_config.cfg").exists() and repr(name) in err


@pytest.mark.slow
def test_input_names_never_escape_the_workspace(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`../../x` and `/abs` become safe directory names; the manifest keeps the real name."""
    project = tmp_path / "deep" / "project"
    project.mkdir(parents=True)
    x = helper.make_tensor_value_info("../../x", TensorProto.FLOAT, [1, 3, 8, 8])
    z = helper.make_tensor_value_info("/abs", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    weight = numpy_helper.from_array(np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1), "w")
    nodes = [
        helper.make_node("Conv", ["../../x", "w"], ["c"]),
        helper.make_node("Add", ["c", "/abs"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [x, z], [y], initializer=[weight])
    model = tiny_models.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), project / "m.onnx"
    )
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    ws = project / "ws"
    code, _, err = run_cli(
        capsys, "build", str(model), "--backend", "sim", "--out", str(ws), "--limit", "2",
        "--loop", "2", "--warmup", "0",
    )  # fmt: skip
    assert code in (0, 1), err
    after = sorted(str(p) for p in tmp_path.rglob("*"))
    outside = [p for p in after if p not in before and not p.startswith(str(ws))]
    assert outside == []
    for label in ("calib", "eval"):
        names = {
            json.loads(m.read_text())["input_name"] for m in (ws / label).glob("*/manifest.json")
        }
        assert names == {"../../x", "/abs"}
    for label in ("calib", "eval"):
        assert all(not d.name.startswith(".") for d in (ws / label).iterdir())


# ------------------------------------------------------------------ layer names and argv

_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1
)


@settings(max_examples=40, deadline=None)
@given(layer=_TEXT)
def test_layer_names_render_literally_or_are_refused(tmp_path_factory, layer: str) -> None:
    out = tmp_path_factory.mktemp("cfg")
    try:
        config = merge(BuildConfig(), {"quant": {"skip_layers": [layer]}})
    except UsageError as exc:
        assert "control character" in exc.message and exc.hint
        return
    files = render.render_configs(config, "Ascend310P3", {"input": (1, 3, 8, 8)}, {}, out)
    for name in ("simple_config.cfg", "amct_config.cfg"):
        parsed = render.validate_rendered(name, files[name].read_text())
        assert parsed["skip_layers"] in (layer, [layer])


@settings(max_examples=25, deadline=None)
@given(value=_TEXT)
def test_script_arguments_reach_the_program_literally(tmp_path_factory, value: str) -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    script = tmp_path_factory.mktemp("sh") / "run.sh"
    render.render_script([["printf", "%s", value]], script)
    ran = subprocess.run([str(script)], capture_output=True, timeout=30, check=True)
    assert ran.stdout == value.encode("utf-8", "surrogateescape")
