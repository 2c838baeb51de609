"""Bad settings, from a project file or flags, are refused (exit 2) before anything is written."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import tiny_models
from harness import files_under, refused, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

import ascend_quant.cli.app as cli_app
from ascend_quant.config import BuildConfig, from_mapping
from ascend_quant.errors import UsageError


@pytest.fixture
def sr(tmp_path: Path) -> Path:
    return tiny_models.save(tiny_models.sr_net(hw=8), tmp_path / "sr.onnx")


@pytest.mark.parametrize(
    "toml, message",
    [
        ("[thresholds]\ncosine_min = nan\n", "cosine_min nan"),
        ("[thresholds]\ncosine_min = 7.0\n", "cosine_min 7.0 is outside"),
        ("[thresholds]\nkl_max = -inf\n", "kl_max -inf"),
        ("[quant.ifmr]\nsearch_range_start = 1.5\nsearch_range_end = 0.5\n", "search range"),
        ("[quant.ifmr]\nsearch_step = 0.0\n", "search_step"),
        ("[quant.ifmr]\nmax_percentile = 1.5\n", "max_percentile 1.5"),
        ("[quant]\nalgorithm = 'hfmg'\n[quant.hfmg]\nnum_of_bins = 0\n", "num_of_bins 0"),
        ("[quant]\nbatch_num = 0\n", "batch_num 0"),
        (r"[quant]" "\n" r'skip_layers = ["conv\n}\nskip_layers: \"x\""]', "control character"),
        ("[calib]\nbatch = 0\n", "batch 0"),
        ("[atc]\ntimeout_s = nan\n", "timeout_s"),
        ("[atc]\nextra_args = ['--soc_version=Ascend910B1']\n", "--soc_version"),
        ("[atc]\nextra_args = ['--model=/tmp/other.onnx']\n", "--model"),
        (r"[atc]" "\n" r'extra_args = ["--log=info\n--output=/tmp/x"]', "control character"),
        (r"[aipp]" "\n" r"enabled = true" "\n" r'input_format = "RGB888_U8\naipp_op {"', "aipp"),
        ("[preprocess]\nscale = inf\n", "finite"),
        ("[preprocess]\nsize = [30000, 30000]\n", "16384"),
    ],
)
def test_bad_values_are_refused_before_config_writes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, sr: Path, toml: str, message: str
) -> None:
    project = tmp_path / "ascend-quant.toml"
    project.write_text(toml)
    out = tmp_path / "configs"
    err = refused(
        capsys, "config", str(sr), "--soc", "Ascend310P3", "--config", str(project),
        "--out", str(out), out=out,
    )  # fmt: skip
    assert message in err
    assert not out.exists()


def test_non_utf8_project_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, sr: Path
) -> None:
    project = tmp_path / "bad.toml"
    project.write_bytes(b'[quant]\nalgorithm = "\xff\xfe"\n')
    err = refused(capsys, "build", str(sr), "--config", str(project), "--out", str(tmp_path / "w"))
    assert "not UTF-8" in err


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_project_file_of_the_wrong_type(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, sr: Path, kind: str
) -> None:
    """Refused by type before it is opened: a FIFO would block the read forever."""
    path = tmp_path / "cfg.toml"
    if kind == "directory":
        path.mkdir()
    else:
        os.mkfifo(path)
    err = refused(capsys, "build", str(sr), "--config", str(path), "--out", str(tmp_path / "w"))
    assert "is a directory" in err if kind == "directory" else "not a regular file" in err


def test_model_without_inputs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    const = helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["y"], value=const)],
        "g",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tiny_models.save(model, tmp_path / "const.onnx")
    out = tmp_path / "w"
    err = refused(capsys, "build", str(path), "--backend", "sim", "--out", str(out), out=out)
    assert "has no inputs" in err


@pytest.mark.parametrize(
    "declared, override",
    [((1, 3, 30000, 30000), None), ((1, 3, 8, 8), "input:100000000000000000000,3,8,8")],
)
def test_absurd_shapes_are_refused_before_allocating(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, declared: tuple, override: str | None
) -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(declared))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(declared))
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["y"])], "g", [x], [y])
    path = tiny_models.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "m.onnx"
    )
    out = tmp_path / "w"
    args = ["build", str(path), "--backend", "sim", "--out", str(out)]
    err = refused(capsys, *args, *(["--input-shape", override] if override else []), out=out)
    assert "GiB, over the 2 GiB limit" in err
    assert files_under(out) == []


_FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**30), 10**30)


@settings(max_examples=60, deadline=None)
@given(
    cosine=_FLOATS,
    start=_FLOATS,
    end=_FLOATS,
    step=_FLOATS,
    bins=st.integers(-(2**40), 2**40),
)
def test_any_number_is_a_config_or_a_usage_error(
    cosine: float, start: float, end: float, step: float, bins: int
) -> None:
    """Never another exception: every value is either accepted (and sane) or refused."""
    data = {
        "thresholds": {"cosine_min": cosine},
        "quant": {
            "ifmr": {"search_range_start": start, "search_range_end": end, "search_step": step},
            "hfmg": {"num_of_bins": bins},
        },
    }
    try:
        config = from_mapping(BuildConfig, data)
    except UsageError as exc:
        assert exc.hint
        return
    ifmr = config.quant.ifmr
    assert math.isfinite(config.thresholds.cosine_min)
    assert 0 < ifmr.search_range_start < ifmr.search_range_end and ifmr.search_step > 0
    assert config.quant.hfmg.num_of_bins >= 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["build"], "Missing argument"),
        (["build", "m.onnx", "--bogus"], "No such option: --bogus"),
        (["bench", "--loop", "x", "m.om"], "Invalid value for '--loop'"),
    ],
)
def test_click_usage_errors_print_error_and_hint(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """Typer's own usage errors take the same form as ours: no box, `error:` + `hint:`."""
    err = refused(capsys, *args)
    assert message in err and "--help" in err


@pytest.mark.parametrize(
    "args, hint",
    [
        (["buidl", "m.onnx"], "hint: see `ascend-quant --help`"),
        (["--debug", "build", "m.onnx", "--bogus"], "hint: see `ascend-quant build --help`"),
    ],
)
def test_click_error_hints_name_a_real_command(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    hint: str,
) -> None:
    """A mistyped command once got the hint `ascend-quant buidl --help`, which fails again."""
    monkeypatch.setitem(cli_app._state, "debug", False)  # --debug sticks in-process otherwise
    err = refused(capsys, *args)
    assert hint in err


def test_debug_is_accepted_after_the_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The internal-error hint says "re-run with --debug"; appended to the failed command it
    once failed as `No such option: --debug (Possible options: --tune-budget)`."""
    monkeypatch.setitem(cli_app._state, "debug", False)  # --debug sticks in-process otherwise
    code, _out, err = run_cli(capsys, "build", str(tmp_path / "missing.onnx"), "--debug")
    assert code == 2 and "No such option" not in err
    assert "error: model not found" in err and "missing.onnx" in err
    assert cli_app._state["debug"]  # and the traceback is shown, as asked
