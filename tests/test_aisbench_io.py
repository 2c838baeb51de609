from __future__ import annotations

import numpy as np
import pytest

from ascend_quant.aisbench_io import (
    iter_feeds,
    list_input_files,
    natural_key,
    output_path,
    parse_input_arg,
    read_output,
    write_output,
)
from ascend_quant.errors import UsageError
from ascend_quant.tensors import TensorSpec

SPEC = TensorSpec("x", "float32", (2, 3))


def _write(folder, name, values):
    folder.mkdir(exist_ok=True)
    path = folder / name
    if name.endswith(".npy"):
        np.save(path, np.asarray(values, np.float32))
    else:
        np.asarray(values, np.float32).tofile(path)
    return path


def test_natural_sort(tmp_path):
    for name in ("a10.bin", "a2.bin", "a1.bin", "B3.bin", "notes.txt"):
        _write(tmp_path, name, [0])
    assert [p.name for p in list_input_files(tmp_path)] == ["a1.bin", "a2.bin", "a10.bin", "B3.bin"]
    assert sorted(["img_10", "img_9"], key=natural_key) == ["img_9", "img_10"]


def test_whole_tensor_per_file(tmp_path):
    _write(tmp_path, "s0.bin", range(6))
    _write(tmp_path, "s1.npy", [range(3), range(3, 6)])
    feeds = list(iter_feeds([tmp_path], [SPEC]))
    assert [stem for stem, _ in feeds] == ["s0", "s1"]
    np.testing.assert_array_equal(feeds[1][1]["x"], np.arange(6, dtype=np.float32).reshape(2, 3))


def test_files_concatenated_to_fill_batch_and_last_padded(tmp_path):
    for i in range(3):
        _write(tmp_path, f"p{i}.bin", [i] * 3)
    feeds = list(iter_feeds([tmp_path], [SPEC]))
    assert [stem for stem, _ in feeds] == ["p0", "p2"]
    np.testing.assert_array_equal(feeds[0][1]["x"], [[0, 0, 0], [1, 1, 1]])
    np.testing.assert_array_equal(feeds[1][1]["x"], [[2, 2, 2], [0, 0, 0]])  # padded with first


def test_size_mismatch_names_both_sizes(tmp_path):
    _write(tmp_path, "bad.bin", range(4))
    with pytest.raises(UsageError) as info:
        list(iter_feeds([tmp_path], [SPEC]))
    assert "24 bytes" in info.value.message and "16 bytes" in info.value.message


def test_input_count_must_match(tmp_path):
    _write(tmp_path, "s.bin", range(6))
    with pytest.raises(UsageError, match="1 input"):
        list(iter_feeds([tmp_path, tmp_path], [SPEC]))
    assert parse_input_arg("a,b") == [tmp_path.__class__("a"), tmp_path.__class__("b")]


def test_output_names_and_formats(tmp_path):
    assert output_path(tmp_path, "img_3", 1, "NPY").name == "img_3_1.npy"
    assert output_path(tmp_path, "img_3", 0).name == "img_3_0.bin"
    with pytest.raises(UsageError):
        output_path(tmp_path, "x", 0, "PNG")
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    for fmt in ("BIN", "NPY", "TXT"):
        path = output_path(tmp_path, "o", 0, fmt)
        write_output(path, data)
        np.testing.assert_allclose(read_output(path, SPEC), data)
