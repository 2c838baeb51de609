"""Eval sets become feeds one way (`iter_eval_feeds`): golden and candidates see samples joined
along each input's own batch dim, not their bytes concatenated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ascend_quant.model as model_module
from ascend_quant.backends.base import run_to_files
from ascend_quant.data.calibset import iter_eval_feeds, set_root, write_samples
from ascend_quant.data.feeds import check_feeds
from ascend_quant.errors import UsageError
from ascend_quant.golden import record_golden
from ascend_quant.model import run_ort
from ascend_quant.onnx_io import save_for_ort
from ascend_quant.runners.ort import OrtRunner
from ascend_quant.tensors import TensorSpec, graph_io


def _state_model() -> onnx.ModelProto:
    """state[2, B=2, 4] -> state * c: dim 0 is layers, dim 1 the batch."""
    x = helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, 2, 4])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 2, 4])
    c = numpy_helper.from_array(np.arange(1, 9, dtype=np.float32).reshape(2, 1, 4), "c")
    node = helper.make_node("Mul", ["state", "c"], ["out"])
    graph = helper.make_graph([node], "g", [x], [y], [c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _setup(tmp_path: Path) -> tuple[onnx.ModelProto, Path, list[np.ndarray], list[np.ndarray]]:
    model = _state_model()
    save_for_ort(model, tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    samples = [rng.standard_normal((2, 1, 4)).astype(np.float32) for _ in range(3)]
    write_samples(
        tmp_path / "eval", "state", iter(samples), sample_shape=(2, 1, 4), dtype="float32",
        batch_dim=1,
    )  # fmt: skip
    padded = samples + samples[:1]  # the last feed is padded from the start
    expected = [
        run_ort(model, {"state": np.concatenate(padded[k : k + 2], axis=1)})["out"] for k in (0, 2)
    ]
    return model, tmp_path / "eval" / "samples", samples, expected


def test_golden_joins_samples_along_the_batch_dim(tmp_path: Path) -> None:
    _model, samples_dir, _samples, expected = _setup(tmp_path)
    golden = record_golden(tmp_path / "m.onnx", [samples_dir], tmp_path / "golden")
    assert golden.stems == ["00000", "00002"]
    for stem, want in zip(golden.stems, expected):
        np.testing.assert_array_equal(golden.read(stem)[0], want)


def test_simulated_candidates_join_samples_along_the_batch_dim(tmp_path: Path) -> None:
    model, samples_dir, _samples, expected = _setup(tmp_path)
    run = run_to_files(OrtRunner(model), [samples_dir], tmp_path / "out")
    got = [np.fromfile(files[0], dtype=np.float32).reshape(2, 2, 4) for files in run.outputs]
    assert [Path(files[0]).stem for files in run.outputs] == ["00000_0", "00002_0"]
    for array, want in zip(got, expected):
        np.testing.assert_array_equal(array, want)


def test_check_feeds_is_the_one_preflight_feed() -> None:
    specs = [
        TensorSpec("x", "float16", ("N", 3)),
        TensorSpec("t", "int64", (2,)),
        TensorSpec("m", "bool", (4,)),
    ]
    feeds = check_feeds(specs, {"x": (2, 3)}, seed=1)
    assert feeds["x"].shape == (2, 3) and feeds["x"].dtype == np.float16
    assert feeds["x"].min() >= 0 and feeds["x"].max() < 1
    assert not feeds["t"].any() and feeds["t"].dtype == np.int64
    assert feeds["m"].dtype == bool
    assert check_feeds(specs)["x"].shape == (1, 3)
    np.testing.assert_array_equal(check_feeds(specs, seed=1)["t"], feeds["t"])
    assert not hasattr(model_module, "random_feeds")  # one implementation, in data/feeds.py


def test_a_missing_path_beside_a_set_is_not_read_as_the_set(tmp_path: Path) -> None:
    """`run --input set/samplez` (a typo) once ran the set's samples and exited 0."""
    model, samples_dir, _samples, _expected = _setup(tmp_path)
    typo = samples_dir.parent / "samplez"
    with pytest.raises(UsageError, match="input not found"):
        list(iter_eval_feeds([typo], graph_io(model)[0]))
    assert set_root(samples_dir) == samples_dir.parent
    assert set_root(samples_dir.parent) == samples_dir.parent
    assert set_root(samples_dir.parent / "batches_bs1") is None
