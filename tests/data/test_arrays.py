"""data/arrays.py: array sources -> calib sets, and every way such a source can be wrong."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ascend_quant.data import arrays
from ascend_quant.data.calibset import CalibSet
from ascend_quant.errors import UsageError
from ascend_quant.tensors import TensorSpec

LATENT = TensorSpec("sample", "float32", (1, 4, 8, 8))
STATE = TensorSpec("state", "float32", (2, 1, 16))
STEP = TensorSpec("t", "int64", ())


def _npys(folder: Path, arrays_: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays_):
        np.save(folder / f"s{i}.npy", a)
    return folder


def _make(tmp: Path, spec: TensorSpec, source: str, batch_dim: int | None, **kw: int) -> CalibSet:
    plan = arrays.plan_source(source, spec, batch_dim)
    calib_set, _ = arrays.make_array_set(tmp / "out" / spec.name, plan, **kw)
    return calib_set


def test_npy_dir_natural_order_and_exact_bytes(tmp_path: Path) -> None:
    data = [np.full((1, 4, 8, 8), i, np.float32) for i in range(11)]
    src = _npys(tmp_path / "lat", data)
    got = _make(tmp_path, LATENT, str(src), 0, batch=2)
    assert len(got) == 11 and got.kind == "array" and got.batch_dim == 0
    # s10 sorts after s9: natural order
    assert (got.sample_files[10]).read_bytes() == data[10].astype("<f4").tobytes()
    assert got.batch_files[0].read_bytes() == data[0].tobytes() + data[1].tobytes()
    assert got.batch_files[-1].read_bytes() == data[10].tobytes() + data[0].tobytes()
    again, reused = arrays.make_array_set(
        tmp_path / "out" / "sample", arrays.plan_source(str(src), LATENT, 0), batch=2
    )
    assert reused and again.manifest_sha256 == got.manifest_sha256


def test_scalar_int64_and_stacked_files(tmp_path: Path) -> None:
    src = _npys(tmp_path / "t", [np.array(5, np.int64), np.array([7], np.int32)])
    got = _make(tmp_path, STEP, str(src), None)
    assert [int(s) for s in got.iter_samples()] == [5, 7]
    assert got.sample_shape == () and got.dtype == "int64" and got.batch_dim is None
    # 3 latents stacked in one file along the batch dim, and one without the batch dim
    stacked = tmp_path / "stack"
    _npys(stacked, [np.arange(3 * 256, dtype=np.float64).reshape(3, 4, 8, 8)])
    np.save(stacked / "s9.npy", np.zeros((4, 8, 8), np.float32))
    lat = _make(tmp_path, LATENT, str(stacked), 0)
    samples = list(lat.iter_samples())
    assert len(samples) == 4 and samples[1][0, 0, 0, 0] == 256.0


def test_state_is_never_split_on_dim0_and_batch_dim1_joins_there(tmp_path: Path) -> None:
    src = _npys(tmp_path / "st", [np.full((2, 1, 16), i, np.float32) for i in range(3)])
    whole = _make(tmp_path, STATE, str(src), None)
    assert len(whole) == 3 and whole.sample_shape == (2, 1, 16)
    with pytest.raises(UsageError, match="no batch dim"):
        _make(tmp_path / "b", STATE, str(src), None, batch=2)
    spec = TensorSpec("state", "float32", (2, 4, 16))
    joined = _make(tmp_path / "c", spec, str(src), 1, batch=2)
    assert joined.batch_shape == (2, 2, 16)
    first = next(joined.iter_batches())
    assert first.shape == (2, 2, 16) and first[0, 1, 0] == 1.0


def test_npz_folder_bin_dir_list_file_and_calib_set_source(tmp_path: Path) -> None:
    npz = tmp_path / "npz"
    npz.mkdir()
    for i in range(2):
        np.savez(npz / f"{i}.npz", sample=np.full((1, 4, 8, 8), i, np.float32), t=np.array(i))
    assert len(_make(tmp_path / "a", LATENT, str(npz), 0)) == 2
    assert [int(s) for s in _make(tmp_path / "a", STEP, str(npz), None).iter_samples()] == [0, 1]
    bins = tmp_path / "bins"
    bins.mkdir()
    np.full((2, 4, 8, 8), 3, np.float32).tofile(bins / "two.bin")
    assert len(_make(tmp_path / "b", LATENT, str(bins), 0)) == 2
    listing = tmp_path / "list.txt"
    listing.write_text("# two files\nbins/two.bin\nnpz/0.npz\n")
    made = _make(tmp_path / "c", LATENT, str(listing), 0)
    assert len(made) == 3
    # a calib set is itself a source
    assert len(_make(tmp_path / "d", LATENT, str(made.root), 0)) == 3
    # a folder per input: the input's own subfolder is used
    _npys(tmp_path / "multi" / "sample", [np.zeros((1, 4, 8, 8), np.float32)])
    assert len(_make(tmp_path / "e", LATENT, str(tmp_path / "multi"), 0)) == 1


def _error(tmp_path: Path, spec: TensorSpec, source: Path, batch_dim: int | None = 0) -> str:
    out = tmp_path / "out" / spec.name
    with pytest.raises(UsageError) as info:
        _make(tmp_path, spec, str(source), batch_dim)
    assert not out.exists()  # nothing half-written
    return f"{info.value.message} | {info.value.hint}"


def test_bad_inputs_one_line_each(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    np.save(d / "a.npy", np.zeros((1, 4, 8, 9), np.float32))
    msg = _error(tmp_path, LATENT, d / "a.npy")
    assert (
        "input 'sample'" in msg
        and "a.npy" in msg
        and "[1, 4, 8, 9]" in msg
        and "[1, 4, 8, 8]" in msg
    )
    np.save(d / "i.npy", np.zeros((1, 4, 8, 8), np.int32))
    assert "int32" in _error(tmp_path, LATENT, d / "i.npy") and "astype" in _error(
        tmp_path, LATENT, d / "i.npy"
    )
    np.save(d / "f.npy", np.array(1.5))
    assert "float" in _error(tmp_path, STEP, d / "f.npy", None)
    np.save(d / "p.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    assert "never loaded" in _error(tmp_path, LATENT, d / "p.npy")
    (d / "junk.npy").write_bytes(b"not an npy at all")
    assert "not a valid .npy" in _error(tmp_path, LATENT, d / "junk.npy")
    # a header claiming a huge array in a tiny file: refused before anything is allocated
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": (1 << 20, 1 << 20)}
    )
    (d / "huge.npy").write_bytes(buf.getvalue() + b"\0" * 16)
    assert "claims float32" in _error(tmp_path, LATENT, d / "huge.npy")
    trunc = d / "t.npy"
    np.save(trunc, np.zeros((1, 4, 8, 8), np.float32))
    trunc.write_bytes(trunc.read_bytes()[:-8])
    assert "truncated" in _error(tmp_path, LATENT, trunc)
    (d / "x.bin").write_bytes(b"\0" * 100)
    assert "100 bytes" in _error(tmp_path, LATENT, d / "x.bin")
    np.save(d / "nan.npy", np.full((1, 4, 8, 8), np.nan, np.float32))
    assert "NaN" in _error(tmp_path, LATENT, d / "nan.npy")
    np.save(d / "big.npy", np.array(1 << 40, np.int64))
    assert "outside int32" in _error(tmp_path, TensorSpec("t", "int32", ()), d / "big.npy", None)
    np.savez(d / "z.npz", other=np.zeros(3))
    assert "no array named 'sample'" in _error(tmp_path, LATENT, d / "z.npz")
    (d / "bad.npz").write_bytes(b"PK\x03\x04broken")
    assert "not a valid .npz" in _error(tmp_path, LATENT, d / "bad.npz")
    assert "does not exist" in _error(tmp_path, LATENT, d / "missing")
    (d / "e").mkdir()
    assert "no .npy" in _error(tmp_path, LATENT, d / "e")
    (d / "a.onnx").write_text("x")
    assert "unsupported file type" in _error(tmp_path, LATENT, d / "a.onnx")


def test_pickled_npz_member_and_ragged_sets(tmp_path: Path) -> None:
    path = tmp_path / "p.npz"
    payload = io.BytesIO()
    np.save(payload, np.array([None], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("sample.npy", payload.getvalue())
    assert "never loaded" in _error(tmp_path, LATENT, path)
    a = _npys(tmp_path / "a", [np.zeros((1, 4, 8, 8), np.float32)] * 3)
    b = _npys(tmp_path / "b", [np.array(1)] * 2)
    plans = [arrays.plan_source(str(a), LATENT, 0), arrays.plan_source(str(b), STEP, None)]
    with pytest.raises(UsageError, match="sample=3, t=2"):
        arrays.check_counts(plans)
