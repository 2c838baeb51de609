"""data/recorder.py and data/feeds.py: capturing feeds of a running loop; random feeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from ascend_quant.data import FeedSource, Recorder, RecordingSession, random_feeds
from ascend_quant.data.calibset import CalibSet
from ascend_quant.errors import UsageError
from ascend_quant.onnx_io import to_ort_bytes
from ascend_quant.tensors import TensorSpec


def _step_model() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    t = helper.make_tensor_value_info("t", TensorProto.INT64, [])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [
        helper.make_node("Cast", ["t"], ["tf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["x", "tf"], ["y"]),
    ]
    return to_ort_bytes(helper.make_model(helper.make_graph(nodes, "g", [x, t], [y])))


def test_recording_session_keeps_the_window_of_every_run(tmp_path: Path) -> None:
    data = _step_model()
    specs = [TensorSpec("x", "float32", (1, 4)), TensorSpec("t", "int64", ())]
    with Recorder(tmp_path / "rec", specs, period=10, steps=(4, 8), every=2) as recorder:
        session = RecordingSession(ort.InferenceSession(data), recorder)
        assert [i.name for i in session.get_inputs()] == ["x", "t"]
        for _run in range(2):
            x = np.zeros((1, 4), np.float32)
            for step in range(10):
                (x,) = session.run(None, {"x": x, "t": np.array(step, np.int64)})
    assert recorder.calls == 20 and recorder.kept == 4
    steps = CalibSet.load(tmp_path / "rec" / "t")
    assert [int(s) for s in steps.iter_samples()] == [4, 6, 4, 6]
    xs = CalibSet.load(tmp_path / "rec" / "x")
    assert xs.kind == "recorded" and xs.batch_dim is None and xs.sample_shape == (1, 4)
    assert next(xs.iter_samples())[0, 0] == sum(range(4))
    assert not list((tmp_path / "rec").glob(".*rec"))  # scratch removed


def test_recorder_limit_errors_and_nothing_written_on_failure(tmp_path: Path) -> None:
    specs = [TensorSpec("x", "float32", ("N", 4))]
    recorder = Recorder(tmp_path / "r", specs, limit=2)
    for _ in range(5):
        recorder.record({"x": np.ones((3, 4), np.float32)})
    assert recorder.kept == 2
    assert len(CalibSet.load(recorder.close()["x"])) == 2
    with pytest.raises(UsageError, match="fed int64"):
        Recorder(tmp_path / "q", specs).record({"x": np.ones((1, 4), np.int64)})
    with pytest.raises(UsageError, match="changed shape"), Recorder(tmp_path / "s", specs) as rec:
        rec.record({"x": np.ones((1, 4), np.float32)})
        rec.record({"x": np.ones((2, 4), np.float32)})
    assert not (tmp_path / "s" / "x").exists()
    with pytest.raises(UsageError, match="no input"):
        Recorder(tmp_path / "u", specs, inputs=["nope"])
    with pytest.raises(UsageError, match="nothing was recorded"):
        Recorder(tmp_path / "w", specs, steps=(5, 6)).close()


def test_random_feeds_seeded_ranges_and_int_needs_range() -> None:
    specs = [TensorSpec("x", "float32", (2, 3)), TensorSpec("t", "int64", ())]
    source = random_feeds(specs, count=3, seed=1, ranges={"t": (0, 1000)})
    assert isinstance(source, FeedSource) and len(source) == 3
    first, again = list(source), list(random_feeds(specs, 3, 1, {"t": (0, 1000)}))
    assert all(np.array_equal(a["x"], b["x"]) for a, b in zip(first, again))
    assert all(0 <= int(f["t"]) < 1000 and f["t"].dtype == np.int64 for f in first)
    with pytest.raises(UsageError, match=r"needs a range") as info:
        random_feeds(specs, 1)
    assert "range = [0, 1000]" in (info.value.hint or "")
    with pytest.raises(UsageError, match="dynamic"):
        random_feeds([TensorSpec("x", "float32", ("N", 3))], 1)
