"""Calibration sets: one directory per model input holding the raw `.bin` tensors atc, amct_onnx
and ais_bench read, for any dtype and rank (0-D scalars included).

A calib set is a directory (format "ascend-quant-calib/1"):

    manifest.json                what was made, from what, and how
    samples/<NNNNN>_<stem>.bin   one sample each: headerless little-endian
    samples.list                 the sample files, relative to the list file
    batches_bs<N>/<NNNNN>.bin    N samples joined along the batch dim (atc input_data_dir,
                                 amct_onnx --data_dir); the last batch is padded from the start
    samples.info                 optional ModelZoo-style `<index> <path> <width> <height>` (images)

`batch_dim` says which dim counts samples: a sample has size 1 there and a batch of N joins N
samples along it. `batch_dim` None means the input has no batch dim (a recurrent state, a
scalar): a sample is the whole tensor and sets of such inputs can only be batched by 1. Image
sets written before `batch_dim` existed have none in their manifest and mean dim 0.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ascend_quant import aisbench_io
from ascend_quant.data.feeds import Feeds
from ascend_quant.errors import UsageError
from ascend_quant.tensors import TensorSpec
from ascend_quant.workspace import (
    atomic_directory,
    atomic_write_json,
    read_json,
    read_user_file,
    sha256_bytes,
    sha256_file,
)

FORMAT = "ascend-quant-calib/1"
MANIFEST = "manifest.json"
SAMPLES_DIR = "samples"
LIST_FILE = "samples.list"
INFO_FILE = "samples.info"
# The dtypes a calib set may hold: what atc/amct accept as model input types.
DTYPES = ("float32", "float16", "int64", "int32", "int8", "uint8", "bool")


@dataclass(frozen=True)
class CalibSet:
    """A calib set on disk, validated; samples and batches are read lazily."""

    root: Path
    input_name: str
    sample_shape: tuple[int, ...]
    dtype: str
    layout: str  # "NCHW"/"NHWC" for images, "" for arrays
    batch: int
    sample_files: tuple[Path, ...]
    batch_files: tuple[Path, ...]
    manifest_sha256: str
    batch_dim: int | None = 0
    kind: str = "image"  # image | array | random | recorded

    @classmethod
    def load(cls, root: Path) -> CalibSet:
        """Read `root/manifest.json` and check every file's size; UsageError if anything is off."""
        root = Path(root)
        path = root / MANIFEST
        broken = f"{root} is not a valid calib set"
        hint = "re-create it with `ascend-quant calib --out DIR`"
        if root.exists() and not root.is_dir():
            raise UsageError(f"{broken}: it is a file, not a directory", hint=hint)
        if not path.exists():
            raise UsageError(f"{broken}: no {MANIFEST}", hint=hint)
        try:
            raw = read_user_file(path, MANIFEST, 64 << 20, hint)
        except UsageError as exc:
            raise UsageError(f"{broken}: {exc.message}", hint=hint) from None
        try:
            manifest = _parse_manifest(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{broken}: {MANIFEST}: {exc}", hint=hint) from None
        shape = tuple(int(d) for d in manifest["shape"])
        dtype = str(manifest["dtype"])
        batch = int(manifest["batch"])
        batch_dim = manifest.get("batch_dim", 0)
        sample_bytes = math.prod(shape) * np.dtype(dtype).itemsize
        samples = tuple(root / s["file"] for s in manifest["samples"])
        batches = tuple(root / f for f in manifest["batch_files"])
        if not samples:
            raise UsageError(f"{broken}: it has no samples", hint=hint)
        if len(batches) != math.ceil(len(samples) / batch):
            raise UsageError(
                f"{broken}: {len(batches)} batch files for {len(samples)} samples of batch {batch}",
                hint=hint,
            )
        for files, size in ((samples, sample_bytes), (batches, sample_bytes * batch)):
            for file in files:
                try:
                    actual = file.stat().st_size
                except FileNotFoundError:
                    raise UsageError(f"{broken}: {file} is missing", hint=hint) from None
                if actual != size:
                    raise UsageError(
                        f"{broken}: {file} has {actual} bytes, expected {size}", hint=hint
                    )
        return cls(
            root=root,
            input_name=str(manifest["input_name"]),
            sample_shape=shape,
            dtype=dtype,
            layout=str(manifest["layout"]),
            batch=batch,
            sample_files=samples,
            batch_files=batches,
            manifest_sha256=sha256_bytes(raw),
            batch_dim=None if batch_dim is None else int(batch_dim),
            kind=str(manifest.get("kind", "image")),
        )

    @property
    def samples_dir(self) -> Path:
        return self.root / SAMPLES_DIR

    @property
    def batch_dir(self) -> Path:
        return self.root / batch_dir_name(self.batch)

    @property
    def manifest(self) -> dict[str, Any]:
        return dict(read_json(self.root / MANIFEST))

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """The shape of one batch file: the sample shape with N at the batch dim."""
        return batch_shape(self.sample_shape, self.batch_dim, self.batch)

    def __len__(self) -> int:
        return len(self.sample_files)

    def samples_intact(self) -> bool:
        """Whether every sample file still has the bytes its manifest hashed: what makes a set
        safe to reuse (`load` checks sizes only, which miss an edit in place)."""
        return all(
            sha256_file(file) == entry["sha256"]
            for entry, file in zip(self.manifest["samples"], self.sample_files)
        )

    def iter_samples(self) -> Iterator[np.ndarray]:
        """Each sample as an array of `sample_shape`, one file read at a time."""
        dtype = np.dtype(self.dtype).newbyteorder("<")
        for file in self.sample_files:
            yield np.fromfile(file, dtype=dtype).reshape(self.sample_shape)

    def iter_batches(self) -> Iterator[np.ndarray]:
        """Each batch file as an array of `batch_shape`, padded last batch included."""
        dtype = np.dtype(self.dtype).newbyteorder("<")
        for file in self.batch_files:
            yield np.fromfile(file, dtype=dtype).reshape(self.batch_shape)


def _parse_manifest(raw: bytes) -> dict[str, Any]:
    manifest = json.loads(raw)
    if not isinstance(manifest, dict):
        raise ValueError("not a JSON object")
    if manifest.get("format") != FORMAT:
        raise ValueError(f"format is {manifest.get('format')!r}, expected {FORMAT!r}")
    for key in ("input_name", "shape", "dtype", "layout", "batch", "samples", "batch_files"):
        if key not in manifest:
            raise KeyError(f"missing key '{key}'")
    if manifest["dtype"] not in DTYPES:
        raise ValueError(f"unknown dtype {manifest['dtype']!r}")
    if int(manifest["batch"]) < 1:
        raise ValueError("batch must be >= 1")
    batch_dim = manifest.get("batch_dim", 0)
    if batch_dim is not None and not 0 <= int(batch_dim) < max(1, len(manifest["shape"])):
        raise ValueError(f"batch_dim {batch_dim} is outside shape {manifest['shape']}")
    if batch_dim is None and int(manifest["batch"]) != 1:
        raise ValueError("a set without a batch dim must have batch 1")
    return manifest


def batch_dir_name(batch: int) -> str:
    return f"batches_bs{batch}"


def batch_shape(sample_shape: Sequence[int], batch_dim: int | None, batch: int) -> tuple[int, ...]:
    """`sample_shape` with `batch` at `batch_dim` (unchanged without a batch dim)."""
    shape = list(sample_shape)
    if batch_dim is not None:
        shape[batch_dim] = batch
    return tuple(shape)


# --------------------------------------------------------------------------- writing


def check_replaceable(out_dir: Path) -> None:
    """Never swap away a directory that is not one of ours."""
    if out_dir.exists() and (
        not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file())
    ):
        raise UsageError(
            f"refusing to replace {out_dir}: it exists and is not a calib set (no {MANIFEST})",
            hint="choose an empty or new --out directory",
        )


def write_batches(
    root: Path,
    files: list[str],
    batch: int,
    batch_dim: int | None = 0,
    sample_shape: Sequence[int] = (),
    dtype: str = "float32",
) -> tuple[list[str], int]:
    """Write `batches_bs<batch>/` from the sample files; returns (names, padded samples).

    Batch 1 hard-links the samples; along dim 0 the bytes are concatenated as they are; along
    any other dim the samples are read and joined with numpy (one batch in memory at a time).
    """
    if batch_dim is None and batch != 1:
        raise UsageError("an input without a batch dim can only be calibrated with batch 1")
    directory = root / batch_dir_name(batch)
    directory.mkdir()
    count = math.ceil(len(files) / batch)
    padded = count * batch - len(files)
    order = files + [files[i % len(files)] for i in range(padded)]
    names = []
    for k in range(count):
        name = f"{batch_dir_name(batch)}/{k:05d}.bin"
        target = root / name
        members = order[k * batch : (k + 1) * batch]
        if batch == 1:
            try:
                os.link(root / members[0], target)
                names.append(name)
                continue
            except OSError:
                pass
        if batch_dim in (0, None) or batch == 1:
            with open(target, "wb") as out:
                for member in members:
                    with open(root / member, "rb") as handle:
                        shutil.copyfileobj(handle, out)
        else:
            little = np.dtype(dtype).newbyteorder("<")
            parts = [np.fromfile(root / m, dtype=little).reshape(sample_shape) for m in members]
            np.ascontiguousarray(np.concatenate(parts, axis=batch_dim)).tofile(target)
        names.append(name)
    return names, padded


def write_samples(
    out_dir: Path,
    input_name: str,
    samples: Iterable[np.ndarray],
    *,
    sample_shape: tuple[int, ...],
    dtype: str,
    batch: int = 1,
    batch_dim: int | None = 0,
    kind: str = "array",
    sources: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> CalibSet:
    """Stream `samples` (each exactly `sample_shape` and `dtype`) into a calib set at `out_dir`.

    One sample is in memory at a time; the directory is replaced atomically, so an exception
    from `samples` (a bad file found half-way) leaves the previous set untouched. `sources`
    names where each sample came from (recorded in the manifest, one per sample or empty).
    """
    out_dir = Path(out_dir)
    if dtype not in DTYPES:
        raise UsageError(
            f"input '{input_name}' is {dtype}; calibration sets hold " + ", ".join(DTYPES)
        )
    if batch < 1:
        raise UsageError(f"--batch must be at least 1, got {batch}")
    if batch_dim is None and batch != 1:
        raise UsageError(
            f"input '{input_name}' has no batch dim, so it cannot be calibrated with batch {batch}",
            hint=f"use batch 1, or mark its batch dim: [inputs.{input_name}] batch_dim = 0",
        )
    check_replaceable(out_dir)
    little = np.dtype(dtype).newbyteorder("<")
    with atomic_directory(out_dir) as tmp:
        samples_dir = tmp / SAMPLES_DIR
        samples_dir.mkdir()
        entries: list[dict[str, Any]] = []
        for index, sample in enumerate(samples):
            if tuple(sample.shape) != tuple(sample_shape) or sample.dtype.name != dtype:
                raise UsageError(
                    f"input '{input_name}': sample {index} is {sample.dtype.name} "
                    f"{list(sample.shape)}, expected {dtype} {list(sample_shape)}"
                )
            array = np.ascontiguousarray(sample, dtype=little)
            name = f"{SAMPLES_DIR}/{index:05d}.bin"
            array.tofile(tmp / name)
            entry: dict[str, Any] = {
                "file": name,
                "sha256": hashlib.sha256(array.data.cast("B")).hexdigest(),
            }
            if index < len(sources):
                entry["source"] = sources[index]
            entries.append(entry)
        if not entries:
            raise UsageError(f"input '{input_name}': no samples to write")
        files = [e["file"] for e in entries]
        (tmp / LIST_FILE).write_text("".join(f"{f}\n" for f in files), encoding="utf-8")
        batch_files, padded = write_batches(tmp, files, batch, batch_dim, sample_shape, dtype)
        manifest = {
            "format": FORMAT,
            "kind": kind,
            "input_name": input_name,
            "shape": list(sample_shape),
            "dtype": dtype,
            "layout": "",
            "batch": batch,
            "batch_dim": batch_dim,
            "count": len(entries),
            "samples_dir": SAMPLES_DIR,
            "list_file": LIST_FILE,
            "info_file": None,
            "batch_dir": batch_dir_name(batch),
            "batch_files": batch_files,
            "padded_samples": padded,
            **dict(extra or {}),
            "samples": entries,
            "skipped": [],
        }
        atomic_write_json(tmp / MANIFEST, manifest)
    return CalibSet.load(out_dir)


# --------------------------------------------------------------------------- feeding a model


class CalibFeeds:
    """The feeds of a model, at its batch size, streamed from one calib set per input.

    For an input with a batch dim of size B: B consecutive samples joined along it (the set's
    own batch files when its N is B; the last group padded from the start). For an input without
    one: one sample per feed. Every input must give the same number of feeds.
    """

    def __init__(
        self,
        specs: Sequence[TensorSpec],
        sets: Mapping[str, CalibSet],
        limit: int | None = None,
    ) -> None:
        names = [s.name for s in specs]
        missing = [n for n in names if n not in sets]
        if missing:
            raise UsageError(
                f"no calibration data for input(s) {', '.join(missing)}",
                hint="give every model input data: --calib NAME=SOURCE (calib_dirs: input -> dir)",
            )
        extra = [n for n in sets if n not in names]
        if extra:
            raise UsageError(
                f"calibration data given for unknown input(s) {', '.join(extra)}",
                hint=f"the model's inputs are {', '.join(names)}",
            )
        self.specs = list(specs)
        self._sets = {n: sets[n] for n in names}
        counts = {}
        for spec in self.specs:
            calib = self._sets[spec.name]
            shape = tuple(int(d) if isinstance(d, int) else -1 for d in spec.shape)
            if not _same_but_batch(calib, shape) or calib.dtype != spec.dtype:
                raise UsageError(
                    f"calib set {calib.root} holds {calib.dtype} samples of shape "
                    f"{list(calib.sample_shape)}, but input '{spec.name}' is {spec.dtype} "
                    f"{list(shape)}",
                    hint="re-create the calib set with the model's input size and dtype",
                )
            group = self.samples_per_feed(spec.name)
            counts[spec.name] = (
                len(calib.batch_files) if group == calib.batch else math.ceil(len(calib) / group)
            )
        if len(set(counts.values())) > 1:
            raise UsageError(
                "the calib sets give different numbers of batches: "
                + ", ".join(f"{k}={v}" for k, v in counts.items()),
                hint="give every input the same number of samples",
            )
        total = next(iter(counts.values())) if counts else 0
        self._total = total if limit is None else min(total, limit)

    def samples_per_feed(self, name: str) -> int:
        """Samples per feed for `name`: the model's size at the set's batch dim (1 if none)."""
        calib = self._sets[name]
        spec = next(s for s in self.specs if s.name == name)
        if calib.batch_dim is None or calib.batch_dim >= len(spec.shape):
            return 1
        size = spec.shape[calib.batch_dim]
        return size if isinstance(size, int) and size > 0 else 1

    def __len__(self) -> int:
        return self._total

    def _stream(self, name: str) -> Iterator[np.ndarray]:
        calib = self._sets[name]
        group_size = self.samples_per_feed(name)
        if group_size == calib.batch:
            yield from calib.iter_batches()
            return
        if group_size == 1:
            yield from calib.iter_samples()
            return
        axis = calib.batch_dim or 0
        group: list[np.ndarray] = []
        for sample in calib.iter_samples():
            group.append(sample)
            if len(group) == group_size:
                yield np.concatenate(group, axis=axis)
                group = []
        if group:
            pad = calib.iter_samples()
            while len(group) < group_size:
                group.append(next(pad))
            yield np.concatenate(group, axis=axis)

    def __iter__(self) -> Iterator[Feeds]:
        streams = {name: self._stream(name) for name in self._sets}
        for _ in range(self._total):
            yield {name: next(it) for name, it in streams.items()}

    @property
    def manifest_sha256(self) -> dict[str, str]:
        return {name: calib.manifest_sha256 for name, calib in self._sets.items()}


def _same_but_batch(calib: CalibSet, shape: tuple[int, ...]) -> bool:
    """The set's samples fit `shape` everywhere but at the batch dim; dynamic (-1) dims match."""
    sample = calib.sample_shape
    if len(sample) != len(shape):
        return False
    return all(
        i == calib.batch_dim or want == -1 or want == have
        for i, (have, want) in enumerate(zip(sample, shape))
    )


def shared_feeds(eval_sets: Sequence[CalibSet], calib_sets: Sequence[CalibSet]) -> int:
    """How many evaluation feeds are calibration feeds: sample k of every input identical.

    Per feed, not per file: a timestep or a pinned-like scalar repeats across sets by design,
    so one equal input does not make a feed seen in calibration.
    """

    def feeds(sets: Sequence[CalibSet]) -> list[tuple[str, ...]]:
        columns = [[str(e["sha256"]) for e in s.manifest["samples"]] for s in sets]
        return list(zip(*columns))

    seen = set(feeds(calib_sets))
    return sum(1 for feed in feeds(eval_sets) if feed in seen)


def set_root(path: Path) -> Path | None:
    """The calib set `path` is (its root or its `samples/` folder), or None for plain files.

    Only the `samples/` folder itself leads to its parent: any other path beside a set (a
    mistyped or missing one) must not silently read the set's samples."""
    path = Path(path)
    candidates = [path, path.parent] if path.name == SAMPLES_DIR and path.is_dir() else [path]
    for root in candidates:
        if (root / MANIFEST).is_file() and (root / SAMPLES_DIR).is_dir():
            return root
    return None


def iter_eval_feeds(
    input_paths: Sequence[Path], specs: Sequence[TensorSpec]
) -> Iterator[tuple[str, Feeds]]:
    """(output stem, feeds) per inference at the model's batch: the one way sets become feeds.

    Calib sets (their roots or `samples/` folders) go through `CalibFeeds`, which joins samples
    along each input's own batch dim; plain ais_bench files fall back to `aisbench_io.iter_feeds`
    (bytes joined, right only for dim 0). The stem is the first input's first sample of the
    feed, as ais_bench names its outputs.
    """
    roots = [set_root(p) for p in input_paths]
    if not roots or any(r is None for r in roots) or len(roots) != len(specs):
        yield from aisbench_io.iter_feeds(input_paths, specs)
        return
    sets = {s.name: CalibSet.load(r) for s, r in zip(specs, roots) if r is not None}
    source = CalibFeeds(specs, sets)
    first = sets[specs[0].name]
    step = source.samples_per_feed(specs[0].name)
    for index, feeds in enumerate(source):
        yield first.sample_files[(index * step) % len(first)].stem, feeds
