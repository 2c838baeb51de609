"""`--calib NAME=SOURCE` / `--eval NAME=SOURCE` on calib, convert and compare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tiny_models
from clirun import run_cli
from onnx import TensorProto, helper

from ascend_quant.model import pin_inputs


def _data(root: Path, seed: int, count: int = 4) -> list[str]:
    rng = np.random.default_rng(seed)
    shapes = {"sample": (1, 4, 8, 8), "encoder_hidden_states": (1, 7, 16)}
    for name, shape in shapes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            np.save(root / name / f"{i}.npy", rng.standard_normal(shape).astype(np.float32))
    (root / "timestep").mkdir()
    for i in range(count):
        np.save(root / "timestep" / f"{i}.npy", np.array(100 * i, np.int64))
    return [f"{name}={root / name}" for name in ("sample", "timestep", "encoder_hidden_states")]


@pytest.mark.slow
def test_calib_convert_compare_take_named_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tiny_models.save(tiny_models.unet_like(TensorProto.INT64), tmp_path / "unet.onnx")
    calib = _data(tmp_path / "calib", 0)
    flags = [a for item in calib for a in ("--calib", item)]
    code, out, err = run_cli(
        capsys, "calib", "--model", str(model), *flags, "--out", str(tmp_path / "sets"), "--json"
    )
    assert code == 0, err
    rows = {r["input_name"]: r for r in json.loads(out)}
    assert rows["timestep"]["shape"] == [] and rows["timestep"]["dtype"] == "int64"
    assert rows["sample"]["batch_dim"] is None and rows["sample"]["count"] == 4

    code, out, err = run_cli(
        capsys, "convert", str(model), "--backend", "sim", "--precision", "int8",
        *flags, "--out", str(tmp_path / "conv"), "--json",
    )  # fmt: skip
    assert code == 0, err
    om = Path(json.loads(out)["path"])
    assert json.loads(out)["details"]["quantized_layers"] > 0

    evals = _data(tmp_path / "eval", 1, count=3)
    eval_flags = [a for item in evals for a in ("--eval", item)]
    code, out, err = run_cli(
        capsys, "compare", str(model), str(om), *eval_flags, "--out", str(tmp_path / "cmp"),
        "--calib", str(tmp_path / "calib"), "--json",
    )  # fmt: skip
    assert code in (0, 1), err
    result = json.loads(out)
    assert result["candidates"][0]["outputs"][0]["samples"] == 3

    code, _out, err = run_cli(capsys, "compare", str(model), str(om), "--out", str(tmp_path / "x"))
    assert code == 2 and "--input DIRS or --eval" in err
    code, _out, err = run_cli(
        capsys, "calib", "--calib", "sample=/nope", "--out", str(tmp_path / "y")
    )
    assert code == 2 and "needs the model" in err


@pytest.mark.slow
def test_compare_eval_takes_pinned_values_like_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`[inputs.sr] value` needs no eval data: the golden is the model with the value folded in,
    as the .om was converted."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    sr = helper.make_tensor_value_info("sr", TensorProto.INT64, [])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [
        helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x", "srf"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "vad", [x, sr], [y])
    source = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model = tiny_models.save(source, tmp_path / "vad.onnx")
    pinned = tiny_models.save(pin_inputs(source, {"sr": 3})[0], tmp_path / "vad_pinned.onnx")
    code, out, err = run_cli(
        capsys, "convert", str(pinned), "--backend", "sim", "--out", str(tmp_path / "c"), "--json"
    )
    assert code == 0, err
    om = json.loads(out)["path"]
    (tmp_path / "x").mkdir()
    for i in range(3):
        np.save(tmp_path / "x" / f"{i}.npy", np.full((1, 4), i + 1, np.float32))
    (tmp_path / "q.toml").write_text("[inputs.sr]\nvalue = 3\n")
    code, out, err = run_cli(
        capsys, "compare", str(model), om, "--eval", f"x={tmp_path / 'x'}",
        "--config", str(tmp_path / "q.toml"), "--out", str(tmp_path / "cmp"), "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["passed"] and result["candidates"][0]["outputs"][0]["samples"] == 3
    # ais_bench folders for the inputs that are left (--input) take the pins the same way
    code, out, err = run_cli(
        capsys, "compare", str(model), om, "--input", str(tmp_path / "x"),
        "--config", str(tmp_path / "q.toml"), "--out", str(tmp_path / "cmp2"), "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["passed"] and result["candidates"][0]["outputs"][0]["samples"] == 3
