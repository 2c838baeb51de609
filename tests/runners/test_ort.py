"""OrtRunner: the Runner contract on ONNX Runtime (specs, feeds, timing, exposed tensors)."""

from __future__ import annotations

import numpy as np
import pytest
import tiny_models
from onnx import TensorProto, helper
from runners.sessions import spins

from ascend_quant.errors import UsageError
from ascend_quant.golden import golden_runner
from ascend_quant.runners.ort import OrtRunner, expose_outputs, run_once


def _x(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((1, 3, 16, 16), dtype=np.float32)


def test_specs_infer_and_latency(conv_model) -> None:
    with OrtRunner(conv_model) as runner:
        assert runner.name == "conv.onnx"
        assert [s.name for s in runner.input_specs()] == ["input"]
        assert runner.input_specs()[0].dtype == "float32"
        assert runner.output_specs()[0].shape == (1, 4, 16, 16)
        out = runner.infer({"input": _x()})
        assert list(out) == ["output"] and out["output"].shape == (1, 4, 16, 16)
        assert runner.last_latency_ms > 0


def test_closed_runner_refuses(conv_model) -> None:
    runner = OrtRunner(conv_model)
    with runner:
        pass
    with pytest.raises(UsageError, match="closed"):
        runner.infer({"input": _x()})


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        ({}, "missing input"),
        ({"input": _x(), "other": _x()}, "unknown input"),
        ({"input": _x().astype(np.float64)}, "is float64, the model wants float32"),
        ({"input": np.zeros((1, 3, 8, 8), np.float32)}, r"shape \[1, 3, 8, 8\]"),
    ],
)
def test_feeds_are_checked_against_the_specs(conv_model, feeds, message) -> None:
    with OrtRunner(conv_model) as runner, pytest.raises(UsageError, match=message):
        runner.infer(feeds)


def test_with_outputs_exposes_intermediate_tensors_and_inputs(conv_model) -> None:
    x = _x(1)
    with OrtRunner(conv_model) as runner:
        plain = runner.infer({"input": x})
        with runner.with_outputs(["c1", "r1", "input"]) as wide:
            names = [s.name for s in wide.output_specs()]
            assert names == ["output", "c1", "r1", "input"]
            out = wide.infer({"input": x})
    np.testing.assert_array_equal(out["output"], plain["output"])
    np.testing.assert_array_equal(out["r1"], np.maximum(out["c1"], 0))
    np.testing.assert_array_equal(out["input"], x)


def test_with_outputs_rejects_unknown_tensors(conv_model) -> None:
    with OrtRunner(conv_model) as runner, pytest.raises(UsageError, match="no tensor named nope"):
        runner.with_outputs(["nope"])


def test_expose_outputs_keeps_integer_types() -> None:
    model = tiny_models.conv_net()
    model.graph.node.append(helper.make_node("Shape", ["output"], ["shape"], name="shape"))
    exposed = expose_outputs(model, ["shape", "r1"])
    types = {o.name: o.type.tensor_type.elem_type for o in exposed.graph.output}
    assert types["shape"] == TensorProto.INT64 and types["r1"] == TensorProto.FLOAT
    out = run_once(exposed, {"input": _x()})
    np.testing.assert_array_equal(out["shape"], [1, 4, 16, 16])


def test_model_not_found(tmp_path) -> None:
    with pytest.raises(UsageError, match="model not found"):
        OrtRunner(tmp_path / "missing.onnx")


def test_sessions_sleep_between_runs_unless_timing(conv_model) -> None:
    """Golden, compare, preflight and analysis runs do work between runs: their threads sleep;
    only latency timing asks for ORT's spinning threads."""
    with OrtRunner(conv_model) as runner, runner.with_outputs(["output"]) as exposed:
        assert not spins(runner) and not spins(exposed)
    with golden_runner(conv_model) as golden:
        assert not spins(golden)
    with OrtRunner(conv_model, spin=True) as timed, timed.with_outputs(["output"]) as exposed:
        assert spins(timed) and spins(exposed)
