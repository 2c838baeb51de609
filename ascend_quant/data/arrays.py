"""Arrays -> a calib set: `.npy`, raw `.bin` and `.npz` files, checked against the model input.

A source for one input is any of:

    DIR of .npy / .bin files   one or more samples per file, in natural name order
    DIR of .npz files          one file per sample holding every input by name
    DIR with a manifest.json   an existing calib set (e.g. written by `data.Recorder`)
    FILE.npy / .bin / .npz     one file; a glob; or a list file (.txt/.lst/.list, one path a line)

A file holds one sample (the model input's shape with 1 at the batch dim, or that shape without
the batch dim) or K samples stacked along the batch dim. Inputs without a batch dim take the
whole input tensor per file. Raw `.bin` files have no header: they are read as the model
input's dtype. Nothing is loaded before every file's header has been checked: `.npy` files are
parsed without pickle, and a header claiming more bytes than the file holds is refused before
anything is allocated.
"""

from __future__ import annotations

import glob
import math
import os
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from ascend_quant.__about__ import __version__
from ascend_quant.aisbench_io import read_npy_header
from ascend_quant.data.calibset import (
    MANIFEST,
    CalibSet,
    batch_shape,
    check_replaceable,
    write_samples,
)
from ascend_quant.errors import UsageError
from ascend_quant.tensors import TensorSpec
from ascend_quant.workspace import read_json, safe_name, sha256_file, sha256_json

ARRAY_SUFFIXES = (".npy", ".bin", ".npz")
LIST_SUFFIXES = (".txt", ".lst", ".list")
_GLOB_CHARS = frozenset("*?[")
_MAX_LIST_DEPTH = 8
_KINDS = {"f": "float", "i": "integer", "u": "integer", "b": "bool"}


@dataclass(frozen=True)
class ArrayFile:
    """One file (or .npz member) of an array source, its header checked, nothing loaded."""

    path: Path
    member: str | None  # the array's name inside an .npz
    shape: tuple[int, ...]  # as stored
    dtype: str  # as stored (raw .bin: the model input's dtype)
    fortran: bool
    offset: int  # bytes before the data
    count: int  # samples it holds

    @property
    def where(self) -> str:
        return f"{self.path}[{self.member}]" if self.member else str(self.path)


def sample_shape(spec: TensorSpec, batch_dim: int | None) -> tuple[int, ...]:
    """The shape of one sample of a static input: 1 at the batch dim."""
    shape = tuple(int(d) for d in spec.shape)
    return batch_shape(shape, batch_dim, 1)


def _natural(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _bad(spec: TensorSpec, message: str, hint: str | None = None) -> UsageError:
    return UsageError(f"input '{spec.name}': {message}", hint=hint)


# --------------------------------------------------------------------------- discovery


def resolve_files(source: str, spec: TensorSpec, base: Path | None = None) -> list[Path]:
    """The files (.npy/.bin/.npz, or a calib set's samples) of one input's source, in order."""
    base = Path.cwd() if base is None else Path(base)
    return _expand(source, base, spec, 0)


def _expand(source: str, base: Path, spec: TensorSpec, depth: int) -> list[Path]:
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = base / path
    if not path.exists() and _GLOB_CHARS & set(source):
        matches = sorted(
            (Path(m) for m in glob.glob(str(path), recursive=True)),
            key=lambda p: [str(p.parent), *_natural(p)],
        )
        files = [m for m in matches if m.is_file() and m.suffix.lower() in ARRAY_SUFFIXES]
        if not files:
            raise _bad(spec, f"no .npy/.bin/.npz files match {path}")
        return files
    if path.is_dir():
        own = path / safe_name(spec.name)  # a folder per input, as the Recorder writes
        if own.is_dir() and not (path / MANIFEST).is_file():
            return _expand(str(own), base, spec, depth)
        if (path / MANIFEST).is_file():
            calib_set = CalibSet.load(path)
            if calib_set.dtype != spec.dtype:
                raise _bad(
                    spec,
                    f"calib set {path} holds {calib_set.dtype} samples of shape "
                    f"{list(calib_set.sample_shape)}, but the input is {spec.dtype} "
                    f"{list(spec.shape)}",
                    hint="record or write the set with the model input's dtype",
                )
            return list(calib_set.sample_files)
        files = sorted(
            (
                p
                for p in path.iterdir()
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in ARRAY_SUFFIXES
            ),
            key=_natural,
        )
        if not files:
            raise _bad(
                spec,
                f"no .npy, .bin or .npz files in {path}",
                hint=f"put one file per sample there, or a folder per input named '{spec.name}'",
            )
        return files
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in ARRAY_SUFFIXES:
            return [path]
        if suffix in LIST_SUFFIXES:
            if depth >= _MAX_LIST_DEPTH:
                raise _bad(spec, f"{path}: list files nested too deeply")
            listed: list[Path] = []
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError) as exc:
                raise _bad(spec, f"{path}: not a readable UTF-8 list file ({exc})") from None
            for line in text.splitlines():
                entry = re.sub(r"(^|\s)#.*$", "", line).strip()
                if entry:
                    listed += _expand(entry, path.parent, spec, depth + 1)
            if not listed:
                raise _bad(spec, f"list file {path} names no files")
            return listed
        raise _bad(
            spec,
            f"{path}: unsupported file type '{suffix}'",
            hint="arrays are .npy, .bin or .npz; lists are .txt, .lst or .list",
        )
    raise _bad(spec, f"{source} does not exist", hint="check the path after NAME=")


# --------------------------------------------------------------------------- headers


def _npy_header(
    handle: IO[bytes], where: str, spec: TensorSpec
) -> tuple[tuple[int, ...], np.dtype[Any], bool]:
    """Parse an .npy header without ever unpickling; UsageError on anything odd."""
    try:
        shape, fortran, dtype = read_npy_header(handle)
    except (ValueError, OSError, EOFError) as exc:
        raise _bad(
            spec,
            f"{where} is not a valid .npy file ({str(exc).splitlines()[0][:120]})",
            hint="write it with numpy.save",
        ) from None
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "fiub":
        raise _bad(
            spec,
            f"{where} holds {dtype} data (Python objects or records are never loaded: "
            "a pickled .npy could run code)",
            hint="save a plain numeric array: numpy.save(path, array.astype(numpy.float32))",
        )
    return tuple(int(d) for d in shape), dtype, bool(fortran)


def _check_bytes(
    spec: TensorSpec, where: str, shape: tuple[int, ...], dtype: np.dtype[Any], available: int
) -> None:
    claimed = math.prod(shape) * dtype.itemsize
    if claimed != available:
        raise _bad(
            spec,
            f"{where}: its header claims {dtype.name} {list(shape)} ({claimed} bytes) but "
            f"the file holds {available} bytes of data",
            hint="the file is truncated or corrupt; write it again with numpy.save",
        )


def _fit(
    spec: TensorSpec,
    batch_dim: int | None,
    where: str,
    shape: tuple[int, ...],
    dtype: str,
) -> int:
    """How many samples a stored array of `shape`/`dtype` holds; UsageError if it fits none."""
    want = sample_shape(spec, batch_dim)
    found_kind = _KINDS.get(np.dtype(dtype).kind)
    want_kind = _KINDS[np.dtype(spec.dtype).kind]
    if found_kind != want_kind:
        raise _bad(
            spec,
            f"{where} holds {dtype} (a {found_kind or dtype} array) but the input is "
            f"{spec.dtype} {list(want)}",
            hint=f"convert it: numpy.save(path, array.astype(numpy.{spec.dtype}))",
        )
    if shape == want:
        return 1
    if batch_dim is None:
        if want == () and shape == (1,):
            return 1
        hint = (
            f"this input has no batch dim, so each file is one whole {list(want)} tensor; "
            f"if one of its dims counts samples, set [inputs.{spec.name}] batch_dim"
        )
    else:
        rest = want[:batch_dim] + want[batch_dim + 1 :]
        if len(shape) == len(want) and shape[:batch_dim] + shape[batch_dim + 1 :] == rest:
            return shape[batch_dim]
        if shape == rest:
            return 1
        hint = (
            f"a sample is {list(want)}; a file may also stack K samples along dim {batch_dim} "
            f"(the batch dim; change it with [inputs.{spec.name}] batch_dim)"
        )
    raise _bad(
        spec,
        f"{where} holds {dtype} {list(shape)}, expected {spec.dtype} {list(want)}",
        hint=hint,
    )


def plan(files: Sequence[Path], spec: TensorSpec, batch_dim: int | None) -> list[ArrayFile]:
    """Read and check every file's header; no array data is loaded."""
    planned = []
    for path in files:
        suffix = path.suffix.lower()
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise _bad(spec, f"{path} cannot be read ({exc.strerror or exc})") from None
        if suffix == ".npy":
            with open(path, "rb") as handle:
                shape, dtype, fortran = _npy_header(handle, str(path), spec)
                offset = handle.tell()
            _check_bytes(spec, str(path), shape, dtype, size - offset)
            count = _fit(spec, batch_dim, str(path), shape, dtype.name)
            planned.append(ArrayFile(path, None, shape, dtype.str, fortran, offset, count))
        elif suffix == ".npz":
            planned.append(_plan_npz(path, spec, batch_dim))
        else:
            planned.append(_plan_bin(path, size, spec, batch_dim))
    return planned


def _plan_bin(path: Path, size: int, spec: TensorSpec, batch_dim: int | None) -> ArrayFile:
    want = sample_shape(spec, batch_dim)
    sample_bytes = math.prod(want) * np.dtype(spec.dtype).itemsize
    dtype = np.dtype(spec.dtype).newbyteorder("<").str
    if sample_bytes and size == sample_bytes:
        return ArrayFile(path, None, want, dtype, False, 0, 1)
    if sample_bytes and batch_dim is not None and size % sample_bytes == 0 and size:
        count = size // sample_bytes
        return ArrayFile(path, None, batch_shape(want, batch_dim, count), dtype, False, 0, count)
    hint = (
        "raw .bin files are headerless little-endian arrays of the input's dtype; "
        "a 2x gap usually means float16/float32 were mixed up (.npy files say their dtype)"
    )
    if batch_dim is None and size and sample_bytes % size == 0:
        hint = (
            f"the file holds 1/{sample_bytes // size} of the input: if a dim of it counts "
            f"samples, mark it: [inputs.{spec.name}] batch_dim = <dim>"
        )
    raise _bad(
        spec,
        f"{path} has {size} bytes; a {spec.dtype} {list(want)} sample is {sample_bytes} bytes"
        + ("" if batch_dim is None else " (or a multiple of it)"),
        hint=hint,
    )


def _plan_npz(path: Path, spec: TensorSpec, batch_dim: int | None) -> ArrayFile:
    try:
        with zipfile.ZipFile(path) as archive:
            members = {Path(n).stem if n.endswith(".npy") else n: n for n in archive.namelist()}
            if spec.name not in members:
                raise _bad(
                    spec,
                    f"{path} has no array named '{spec.name}' (it holds: "
                    f"{', '.join(sorted(members)) or 'nothing'})",
                    hint="save every input by name: numpy.savez(path, **{name: array})",
                )
            info = archive.getinfo(members[spec.name])
            where = f"{path}[{spec.name}]"
            with archive.open(info) as handle:
                shape, dtype, fortran = _npy_header(handle, where, spec)
                offset = handle.tell()
    except zipfile.BadZipFile as exc:
        raise _bad(spec, f"{path} is not a valid .npz file ({exc})") from None
    _check_bytes(spec, where, shape, dtype, info.file_size - offset)
    count = _fit(spec, batch_dim, where, shape, dtype.name)
    return ArrayFile(path, members[spec.name], shape, dtype.str, fortran, offset, count)


# --------------------------------------------------------------------------- reading


def _load(item: ArrayFile) -> np.ndarray:
    """The stored array: memory-mapped for .npy/.bin, read whole for an .npz member."""
    dtype = np.dtype(item.dtype)
    order = "F" if item.fortran else "C"
    if item.member is None:
        if math.prod(item.shape) == 0:
            return np.zeros(item.shape, dtype)
        return np.memmap(item.path, dtype, "r", item.offset, item.shape, order)  # type: ignore[call-overload]
    with zipfile.ZipFile(item.path) as archive, archive.open(item.member) as handle:
        handle.read(item.offset)
        data = handle.read(math.prod(item.shape) * dtype.itemsize)
    return np.frombuffer(data, dtype).reshape(item.shape, order="F" if item.fortran else "C")


def _convert(item: ArrayFile, array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Cast within a kind (float64 -> float32, int32 -> int64); refuse values that change."""
    target = np.dtype(spec.dtype)
    if array.dtype.kind == "f" and array.size and not np.isfinite(array).all():
        raise _bad(
            spec,
            f"{item.where} holds NaN or Inf values",
            hint="calibration ranges need finite data; drop or fix this sample",
        )
    if array.dtype == target:
        return np.array(array, order="C")  # a copy: never a view of a memory-mapped file
    if target.kind in "iu" and array.size:
        info = np.iinfo(target)
        low, high = int(array.min()), int(array.max())
        if low < info.min or high > info.max:
            raise _bad(
                spec,
                f"{item.where} holds values {low}..{high}, outside {spec.dtype}",
                hint=f"the input is {spec.dtype}; store values that fit it",
            )
    return np.array(array, dtype=target, order="C")


def iter_samples(
    items: Sequence[ArrayFile], spec: TensorSpec, batch_dim: int | None
) -> Iterator[np.ndarray]:
    """Every sample of every file, in order, as the input's dtype and `sample_shape`."""
    want = sample_shape(spec, batch_dim)
    for item in items:
        array = _load(item)
        for k in range(item.count):
            if item.count == 1:
                part = array
            else:
                assert batch_dim is not None
                part = np.take(array, [k], axis=batch_dim)
            yield _convert(item, np.asarray(part).reshape(want), spec)
        del array


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class ArrayPlan:
    """One input's checked source: its files and how many samples they hold."""

    spec: TensorSpec
    batch_dim: int | None
    source: str
    items: tuple[ArrayFile, ...]

    def __len__(self) -> int:
        return sum(item.count for item in self.items)


def plan_source(
    sources: str | Sequence[str],
    spec: TensorSpec,
    batch_dim: int | None,
    base: Path | None = None,
) -> ArrayPlan:
    """Find and check one input's files (headers, shapes, dtypes); nothing is loaded."""
    if not spec.is_static:
        raise _bad(
            spec,
            f"has dynamic dims {list(spec.shape)}",
            hint='give it a shape, e.g. --input-shape "name:1,4,64,64"',
        )
    if batch_dim is not None and not 0 <= batch_dim < spec.rank:
        raise _bad(
            spec,
            f"batch_dim {batch_dim} is outside its {spec.rank} dims {list(spec.shape)}",
            hint=f'set [inputs.{spec.name}] batch_dim to a dim index, or to "none"',
        )
    listed = (sources,) if isinstance(sources, str) else tuple(sources)
    files = [f for source in listed for f in resolve_files(source, spec, base)]
    return ArrayPlan(spec, batch_dim, ",".join(listed), tuple(plan(files, spec, batch_dim)))


def feed_count(array_plan: ArrayPlan) -> int:
    """How many model feeds the samples make: B samples per feed at a batch dim of size B."""
    spec, batch_dim = array_plan.spec, array_plan.batch_dim
    group = 1 if batch_dim is None else int(spec.shape[batch_dim])
    return math.ceil(len(array_plan) / max(1, group))


def check_counts(plans: Sequence[ArrayPlan], what: str = "calibration") -> None:
    """Inputs are paired feed by feed, so every input must give the same number of feeds."""
    feeds = {p.spec.name: feed_count(p) for p in plans}
    if len(set(feeds.values())) > 1:
        raise UsageError(
            f"the {what} data have different numbers of samples: "
            + ", ".join(f"{p.spec.name}={len(p)}" for p in plans)
            + (
                " (feeds: " + ", ".join(f"{k}={v}" for k, v in feeds.items()) + ")"
                if any(feeds[p.spec.name] != len(p) for p in plans)
                else ""
            ),
            hint="samples are paired by position across inputs; give every input the same count",
        )


def make_array_set(
    out_dir: Path,
    array_plan: ArrayPlan,
    batch: int = 1,
    limit: int | None = None,
    force: bool = False,
) -> tuple[CalibSet, bool]:
    """Write one input's checked source as a calib set at `out_dir`; returns (set, reused).

    Reused when the files, their bytes and the parameters are what the existing set was made
    from. `limit` keeps the first `limit` samples.
    """
    out_dir = Path(out_dir)
    spec, batch_dim = array_plan.spec, array_plan.batch_dim
    shape = sample_shape(spec, batch_dim)
    resolved = [
        os.path.abspath(i.path) + (f"[{i.member}]" if i.member else "") for i in array_plan.items
    ]
    params = {
        "tool_version": __version__,
        "input_name": spec.name,
        "shape": list(shape),
        "dtype": spec.dtype,
        "batch": batch,
        "batch_dim": batch_dim,
        "limit": limit,
        "sources_resolved": resolved,
        "files_sha256": sha256_json([sha256_file(i.path) for i in array_plan.items]),
    }
    params_sha = sha256_json(params)
    check_replaceable(out_dir)
    existing = None if force else _try_reuse(out_dir, params_sha)
    if existing is not None:
        return existing, True
    samples = iter_samples(array_plan.items, spec, batch_dim)
    sources = [
        f"{i.where}#{k}" if i.count > 1 else i.where
        for i in array_plan.items
        for k in range(i.count)
    ]
    if limit is not None:
        samples = (s for n, s in zip(range(limit), samples))
        sources = sources[:limit]
    calib_set = write_samples(
        out_dir,
        spec.name,
        samples,
        sample_shape=shape,
        dtype=spec.dtype,
        batch=batch,
        batch_dim=batch_dim,
        kind="array",
        sources=sources,
        extra={"params_sha256": params_sha, "sources": [array_plan.source]},
    )
    return calib_set, False


def _try_reuse(out_dir: Path, params_sha: str) -> CalibSet | None:
    if not (out_dir / MANIFEST).is_file():
        return None
    try:
        if read_json(out_dir / MANIFEST).get("params_sha256") != params_sha:
            return None
        calib_set = CalibSet.load(out_dir)
        return calib_set if calib_set.samples_intact() else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UsageError):
        return None
