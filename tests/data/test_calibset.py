"""data/calibset.py: sets of any dtype/rank, and feeding a model at its batch size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ascend_quant.data.calibset import CalibFeeds, CalibSet, write_samples
from ascend_quant.errors import UsageError
from ascend_quant.tensors import TensorSpec


def _set(root: Path, name: str, samples: list[np.ndarray], batch_dim: int | None) -> CalibSet:
    return write_samples(
        root / name,
        name,
        iter(samples),
        sample_shape=tuple(samples[0].shape),
        dtype=samples[0].dtype.name,
        batch_dim=batch_dim,
    )


@pytest.mark.parametrize("dtype", ["float32", "float16", "int64", "int32", "int8", "uint8", "bool"])
def test_any_dtype_round_trips(tmp_path: Path, dtype: str) -> None:
    samples = [np.array(v).astype(dtype) for v in (0, 1, 1)]
    got = _set(tmp_path, "s", samples, None)
    assert got.dtype == dtype and got.sample_shape == ()
    assert [s.item() for s in got.iter_samples()] == [s.item() for s in samples]
    assert CalibSet.load(got.root).manifest["kind"] == "array"


def test_feeds_group_batched_inputs_and_repeat_none(tmp_path: Path) -> None:
    x = _set(tmp_path, "x", [np.full((1, 2), i, np.float32) for i in range(4)], 0)
    t = _set(tmp_path, "t", [np.array(i, np.int64) for i in range(2)], None)
    specs = [TensorSpec("x", "float32", (2, 2)), TensorSpec("t", "int64", ())]
    feeds = list(CalibFeeds(specs, {"x": x, "t": t}))
    assert len(feeds) == 2
    assert feeds[1]["x"].tolist() == [[2, 2], [3, 3]] and int(feeds[1]["t"]) == 1
    with pytest.raises(UsageError, match="different numbers of batches: x=2, t=1"):
        CalibFeeds(specs, {"x": x, "t": _set(tmp_path, "t1", [np.array(0)], None)})
    with pytest.raises(UsageError, match="is float32"):
        CalibFeeds([TensorSpec("x", "float32", (2, 3)), specs[1]], {"x": x, "t": t})
    with pytest.raises(UsageError, match="no calibration data for input"):
        CalibFeeds(specs, {"x": x})
