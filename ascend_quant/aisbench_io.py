"""ais_bench's input and output file conventions, shared by every runner.

Inputs: one directory (or comma-separated file list) per model input, in input order; directory
contents natural-sorted; `.bin` is raw bytes in the input's dtype, `.npy` is loaded with NumPy.
When the input tensor is an exact multiple of the file size, consecutive files are concatenated
to fill it and the last batch is padded by repeating the first file. Outputs are named
`<stem of the first input file>_<output index>.<bin|npy|txt>`.
"""

from __future__ import annotations

import math
import re
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from ascend_quant.errors import UsageError
from ascend_quant.gears import Gears
from ascend_quant.tensors import TensorSpec

INPUT_SUFFIXES = (".bin", ".npy")
OUTFMTS = ("BIN", "NPY", "TXT")


def natural_key(name: str) -> list[object]:
    """Sort key that orders 'img_2' before 'img_10', as ais_bench does."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


_INPUT_HINT = "pass a directory of .bin/.npy files (or one file) per model input"
_NPY_HINT = "write plain numeric arrays with numpy.save (no object arrays, no pickles)"


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def list_input_files(path: Path) -> list[Path]:
    """A directory's .bin/.npy files natural-sorted, or the single file given; special files
    (FIFOs, devices) are refused by type, before anything reads them."""
    path = Path(path)
    if path.is_dir():
        named = [p for p in path.iterdir() if p.suffix.lower() in INPUT_SUFFIXES]
        special = [p for p in named if not p.is_dir() and not _regular(p)]
        if special:
            raise UsageError(f"{special[0]} is not a regular file", hint=_INPUT_HINT)
        files = [p for p in named if _regular(p)]
        if not files:
            raise UsageError(f"no .bin or .npy files in {path}", hint=_INPUT_HINT)
        return sorted(files, key=lambda p: natural_key(p.name))
    if _regular(path):
        return [path]
    if path.exists():
        raise UsageError(f"input {path} is not a regular file or a directory", hint=_INPUT_HINT)
    raise UsageError(f"input not found: {path}", hint=_INPUT_HINT)


def read_npy_header(handle: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """(shape, fortran_order, dtype) from an open .npy file's header, never unpickling;
    ValueError for a header NumPy cannot read or a format version it does not know."""
    fmt = np.lib.format
    version = fmt.read_magic(handle)
    if version == (1, 0):
        return fmt.read_array_header_1_0(handle)
    if version == (2, 0):
        return fmt.read_array_header_2_0(handle)
    raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of an .npy file, read without unpickling anything and checked against the
    file's size; UsageError for anything that is not a plain numeric array."""
    try:
        with open(path, "rb") as handle:
            shape, _, dtype = read_npy_header(handle)
            offset = handle.tell()
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise UsageError(
            f"{path} is not a valid .npy file ({str(exc).splitlines()[0][:120]})", hint=_NPY_HINT
        ) from None
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "fiub":
        raise UsageError(
            f"{path} holds {dtype} data; only numeric arrays are read (never pickles)",
            hint=_NPY_HINT,
        )
    shape = tuple(int(d) for d in shape)
    need = math.prod(shape) * dtype.itemsize
    have = path.stat().st_size - offset
    if need > have:
        raise UsageError(
            f"{path}: its header claims {list(shape)} {dtype} ({need} bytes) but it holds {have}",
            hint="the file is truncated; write it again with numpy.save",
        )
    return shape, dtype


def load_npy(path: Path) -> np.ndarray:
    """An .npy file's array, its header checked first (see `npy_header`)."""
    npy_header(path)
    return np.load(path, allow_pickle=False)


def parse_input_arg(text: str) -> list[Path]:
    """`--input dir1,dir2` -> [dir1, dir2] (one entry per model input)."""
    return [Path(part) for part in text.split(",") if part]


def _element_count(spec: TensorSpec) -> int:
    if not all(isinstance(d, int) and d >= 0 for d in spec.shape):
        raise UsageError(
            f"input '{spec.name}' has a dynamic shape {spec.shape}",
            hint="resolve it first with --input-shape",
        )
    return math.prod(int(d) for d in spec.shape)


def _strip_ones(shape: Sequence[int]) -> tuple[int, ...]:
    dims = tuple(int(d) for d in shape)
    while dims and dims[0] == 1:
        dims = dims[1:]
    return dims


def _check_npy_shape(spec: TensorSpec, path: Path, per_inference: int) -> None:
    """An .npy file says its shape, so it must be the input's (leading 1s aside) or, several
    files per inference, a slice of its dim 0: the bytes of [1, 4, 8, 8] or an NHWC latent
    joined or reshaped into a [1, 4, 16, 16] input would run and give a plausible wrong image."""
    shape = npy_header(path)[0]
    want = tuple(int(d) for d in spec.shape)
    if per_inference == 1:
        fits = _strip_ones(shape) == _strip_ones(want)
    else:
        fits = len(shape) == len(want) and tuple(shape[1:]) == want[1:]
    if not fits:
        raise UsageError(
            f"input '{spec.name}': {path} holds {list(shape)}, but the model takes "
            f"{spec.dtype} {list(want)}",
            hint="save one whole input tensor per .npy file (or a slice of its dim 0), "
            "in the model's layout",
        )


def _read_file(path: Path, dtype: np.dtype) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        return load_npy(path).astype(dtype, copy=False).reshape(-1)
    return np.fromfile(path, dtype=dtype)


def _files_per_inference(spec: TensorSpec, first: Path) -> int:
    dtype = np.dtype(spec.dtype)
    tensor_bytes = _element_count(spec) * dtype.itemsize
    if first.suffix.lower() == ".npy":
        file_bytes = math.prod(npy_header(first)[0]) * dtype.itemsize
    else:
        file_bytes = first.stat().st_size
    if file_bytes == 0 or tensor_bytes % file_bytes:
        raise UsageError(
            f"input '{spec.name}': tensor size {tensor_bytes} bytes is not a multiple of "
            f"file size {file_bytes} bytes ({first.name})",
            hint=f"each file must hold {spec.dtype} data of shape {list(spec.shape)} "
            "or a whole fraction of it",
        )
    return tensor_bytes // file_bytes


def iter_feeds(
    input_paths: Sequence[Path], specs: Sequence[TensorSpec]
) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """Yield (output stem, {input name: array}) per inference, streaming one batch at a time."""
    if len(input_paths) != len(specs):
        raise UsageError(
            f"the model has {len(specs)} input(s) but {len(input_paths)} input path(s) were given",
            hint="pass one directory per model input, comma-separated, in input order",
        )
    file_lists = [list_input_files(p) for p in input_paths]
    per_inference = [_files_per_inference(s, files[0]) for s, files in zip(specs, file_lists)]
    counts = [math.ceil(len(files) / n) for files, n in zip(file_lists, per_inference)]
    if len(set(counts)) > 1:
        raise UsageError(
            "the inputs give different numbers of inferences: "
            + ", ".join(f"{s.name}={c}" for s, c in zip(specs, counts)),
            hint="give every input directory the same number of samples",
        )
    for index in range(counts[0]):
        feeds: dict[str, np.ndarray] = {}
        stem = ""
        for spec, files, n in zip(specs, file_lists, per_inference):
            chunk = files[index * n : (index + 1) * n]
            chunk += [files[0]] * (n - len(chunk))  # pad the last batch like ais_bench
            stem = stem or chunk[0].stem
            for path in dict.fromkeys(chunk):
                if path.suffix.lower() == ".npy":
                    _check_npy_shape(spec, path, n)
            dtype = np.dtype(spec.dtype)
            data = np.concatenate([_read_file(f, dtype) for f in chunk])
            if data.size != _element_count(spec):
                raise UsageError(
                    f"input '{spec.name}': {chunk[0].name} holds {data.size} values, "
                    f"expected {_element_count(spec)}"
                )
            feeds[spec.name] = data.reshape([int(d) for d in spec.shape])
        yield stem, feeds


def output_path(out_dir: Path, stem: str, index: int, outfmt: str = "BIN") -> Path:
    if outfmt not in OUTFMTS:
        raise UsageError(f"unknown output format '{outfmt}'", hint="use BIN, NPY or TXT")
    return Path(out_dir) / f"{stem}_{index}.{outfmt.lower()}"


def write_output(path: Path, array: np.ndarray) -> None:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, array)
    elif suffix == ".txt":
        np.savetxt(path, array.reshape(array.shape[0] if array.ndim > 1 else 1, -1))
    else:
        np.ascontiguousarray(array).tofile(path)


def read_output(path: Path, spec: TensorSpec) -> np.ndarray:
    """Read an output file written by ais_bench or our runner back as an array of `spec`."""
    path = Path(path)
    dtype = np.dtype(spec.dtype)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        data = load_npy(path)
    elif suffix == ".txt":
        data = np.loadtxt(path, dtype=dtype)
    else:
        data = np.fromfile(path, dtype=dtype)
    if all(isinstance(d, int) for d in spec.shape) and data.size == math.prod(spec.shape):
        return data.reshape(spec.shape)
    return data


def gear_of_files(gears: Gears, dtypes: dict[str, str], input_paths: Sequence[Path]) -> int:
    """The gear whose per-input tensor sizes equal the first input files' sizes (one sample per
    file), so a gear model's inputs name their gear; UsageError when none fits."""
    names = list(gears.template)
    sizes = [list_input_files(Path(p))[0].stat().st_size for p in input_paths]
    for index in range(len(gears)):
        shapes = gears.shapes(index)
        want = [math.prod(shapes[n]) * np.dtype(dtypes.get(n, "float32")).itemsize for n in names]
        if want == sizes:
            return index
    raise UsageError(
        f"the input files ({', '.join(f'{s} bytes' for s in sizes)}) fit none of the model's "
        f"{gears.kind} gears ({', '.join(gears.labels)})",
        hint="make the inputs at one gear's shape, or pass --gear",
    )
