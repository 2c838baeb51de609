"""Images -> a calib set: discovery, preprocessing workers, the streaming writer.

The set's layout is in `calibset.py`. Workers claim images from a shared counter, decode,
preprocess and write each sample themselves and send back only a few numbers per sample, so
memory stays flat however many images there are. The directory is replaced atomically and a
re-run with the same inputs and parameters reuses it.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import multiprocessing
import os
import random
import re
import stat
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ascend_quant import imageprep
from ascend_quant.__about__ import __version__
from ascend_quant.config import CalibConfig, PreprocessConfig, to_mapping
from ascend_quant.data.calibset import (
    FORMAT,
    INFO_FILE,
    LIST_FILE,
    MANIFEST,
    SAMPLES_DIR,
    CalibSet,
    batch_dir_name,
    check_replaceable,
    write_batches,
)
from ascend_quant.errors import ModelError, UsageError
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.resources import calib_images_dir
from ascend_quant.tensors import NUMPY_TO_ONNX, TensorSpec, graph_io, onnx_type_name
from ascend_quant.workspace import (
    atomic_directory,
    atomic_write_json,
    read_json,
    sha256_bytes,
    sha256_file,
    sha256_json,
    tool_fingerprint,
)

LIST_SUFFIXES = (".txt", ".lst", ".list")
# The dtypes an image sample can be written as.
_DTYPES = ("float32", "float16", "uint8", "int8")
_GLOB_CHARS = frozenset("*?[")
_MAX_LIST_DEPTH = 8

log = logging.getLogger("ascend_quant")


# --------------------------------------------------------------------------- discovery


def discover(sources: Sequence[str], base: Path | None = None) -> list[Path]:
    """Image paths from directories (recursive, sorted), globs and list files, in given order.

    List files hold one source per line, relative to the list file; `#` starts a comment.
    Hidden files and folders are skipped in directory walks. Duplicates keep the first place.
    """
    base = Path.cwd() if base is None else Path(base)
    found: list[Path] = []
    problems: list[str] = []
    looked: list[str] = []
    for source in sources:
        _expand(str(source), base, "", found, problems, looked, 0)
    if problems:
        raise UsageError(
            f"bad image source(s): {'; '.join(problems[:3])}"
            + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""),
            hint="fix the paths; list-file entries are relative to the list file",
        )
    unique: dict[str, Path] = {}
    for path in found:
        unique.setdefault(os.path.normpath(os.path.abspath(path)), path)
    if not unique:
        raise UsageError(
            f"no images found in {', '.join(looked)}",
            hint=f"images must end in {', '.join(imageprep.IMAGE_SUFFIXES)}",
        )
    return [Path(p) for p in unique]


def _expand(
    spec: str,
    base: Path,
    origin: str,
    found: list[Path],
    problems: list[str],
    looked: list[str],
    depth: int,
) -> None:
    where = f"{origin}: " if origin else ""
    path = Path(spec).expanduser()
    if not path.is_absolute():
        path = base / path
    if not path.exists() and _GLOB_CHARS & set(spec):
        looked.append(str(path))
        for match in sorted(glob.glob(str(path), recursive=True)):
            candidate = Path(match)
            if candidate.is_dir():
                found.extend(_walk(candidate, problems))
            elif candidate.is_file() and candidate.suffix.lower() in imageprep.IMAGE_SUFFIXES:
                found.append(candidate)
        return
    if path.is_dir():
        looked.append(str(path))
        found.extend(_walk(path, problems))
    elif path.is_file():
        suffix = path.suffix.lower()
        if suffix in imageprep.IMAGE_SUFFIXES:
            found.append(path)
        elif depth == 0 or suffix in LIST_SUFFIXES:
            if depth >= _MAX_LIST_DEPTH:
                problems.append(f"{where}{path}: list files nested too deeply")
                return
            looked.append(str(path))
            _read_list(path, found, problems, looked, depth)
        else:
            problems.append(
                f"{where}{path}: unsupported file type '{suffix}' (images: "
                f"{', '.join(imageprep.IMAGE_SUFFIXES)}; lists: {', '.join(LIST_SUFFIXES)})"
            )
    elif path.exists():
        problems.append(f"{where}{path} is not a regular file (a FIFO, device or socket)")
    else:
        problems.append(f"{where}{spec} does not exist")


def _walk(directory: Path, problems: list[str]) -> list[Path]:
    """Image files under `directory`; FIFOs, devices and broken links are refused by type
    (reading a FIFO or /dev/zero would block or never end)."""
    files = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.startswith(".") and Path(name).suffix.lower() in imageprep.IMAGE_SUFFIXES:
                path = Path(root) / name
                try:
                    regular = stat.S_ISREG(path.stat().st_mode)
                except OSError:
                    regular = False
                if regular:
                    files.append(path)
                else:
                    problems.append(f"{path}: not a regular file (a FIFO, device or broken link)")
    return sorted(files, key=lambda p: p.relative_to(directory).as_posix())


def _read_list(
    path: Path, found: list[Path], problems: list[str], looked: list[str], depth: int
) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        problems.append(
            f"{path}: neither an image ({', '.join(imageprep.IMAGE_SUFFIXES)}) "
            "nor a UTF-8 text list file"
        )
        return
    for number, line in enumerate(text.splitlines(), start=1):
        entry = re.sub(r"(^|\s)#.*$", "", line).strip()
        if entry:
            _expand(entry, path.parent, f"{path}:{number}", found, problems, looked, depth + 1)


def select(paths: Sequence[Path], limit: int | None, seed: int) -> list[Path]:
    """A deterministic subset of `limit` paths chosen by `seed`, kept in discovery order."""
    if limit is None or limit >= len(paths):
        return list(paths)
    if limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")
    chosen = sorted(random.Random(seed).sample(range(len(paths)), limit))
    return [paths[i] for i in chosen]


# --------------------------------------------------------------------------- target shape


def read_model_input(model: Path, name: str | None) -> tuple[TensorSpec, str]:
    """An image input of the ONNX graph and its layout ("" when the dims do not tell)."""
    import onnx

    try:
        proto = onnx.load(str(model), load_external_data=False)
    except FileNotFoundError:
        raise UsageError(f"model not found: {model}") from None
    except Exception as exc:
        raise ModelError(f"{model}: cannot read the ONNX model: {exc}") from None
    inputs, _ = graph_io(proto)
    names = [i.name for i in inputs]
    chosen = next((i for i in inputs if i.name == name), None)
    if chosen is None:
        if len(inputs) == 1 and name in (None, "input"):
            chosen = inputs[0]
        else:
            raise UsageError(
                f"{model} has no input named '{name}' (inputs: {', '.join(names) or 'none'})",
                hint="images feed one 4-D input, chosen with --input NAME; inputs that take "
                "arrays (token ids, masks, states) get theirs with --calib NAME=SOURCE",
            )
    dims = chosen.shape
    if len(dims) != 4:
        raise UsageError(
            f"input '{chosen.name}' has shape {list(dims)}, not a 4-D image tensor",
            hint=f"images make 4-D tensors; give this input arrays: "
            f"--calib {chosen.name}=DIR of .npy files (with --model)",
        )
    if chosen.dtype not in _DTYPES:
        elem = NUMPY_TO_ONNX.get(chosen.dtype, 0)
        raise UsageError(
            f"input '{chosen.name}' has element type {onnx_type_name(elem)}; images are written "
            + "as "
            + ", ".join(_DTYPES),
            hint=f"give this input arrays: --calib {chosen.name}=DIR of .npy files (with --model)",
        )
    a, c = dims[1], dims[3]
    if a in (1, 3) and c not in (1, 3):
        layout = "NCHW"
    elif c in (1, 3) and a not in (1, 3):
        layout = "NHWC"
    else:
        layout = ""  # ambiguous (e.g. 3x3 images or dynamic): the caller's layout decides
    return chosen, layout


def resolve(
    preprocess: PreprocessConfig, input_name: str, model: Path | None
) -> tuple[PreprocessConfig, str]:
    """The preprocessing with size, layout, colour channels and dtype fixed by the model input."""
    if model is None:
        if preprocess.size is None:
            raise UsageError(
                "no target size",
                hint="pass --size HxW, or --model m.onnx to read it from the model",
            )
        return preprocess, input_name
    spec, model_layout = read_model_input(Path(model), input_name)
    layout = model_layout or preprocess.layout
    _, d1, d2, d3 = spec.shape
    c, h, w = (d1, d2, d3) if layout == "NCHW" else (d3, d1, d2)
    changes: dict[str, Any] = {}
    if layout != preprocess.layout:
        _note_override("layout", preprocess.layout, layout, PreprocessConfig.layout)
        changes["layout"] = layout
    if spec.dtype != preprocess.dtype:
        _note_override("dtype", preprocess.dtype, spec.dtype, PreprocessConfig.dtype)
        changes["dtype"] = spec.dtype
    if isinstance(c, int):
        if c == 1 and preprocess.color != "gray":
            _note_override("color", preprocess.color, "gray", PreprocessConfig.color)
            changes["color"] = "gray"
        elif c == 3 and preprocess.color == "gray":
            log.warning("input '%s' has 3 channels; using rgb instead of gray", spec.name)
            changes["color"] = "rgb"
        elif c not in (1, 3):
            raise UsageError(
                f"input '{spec.name}' has {c} channels; images give 1 (gray) or 3 (rgb/bgr)",
                hint=f"for other data (e.g. latents) pass arrays: --calib {spec.name}=DIR",
            )
    if isinstance(h, int) and isinstance(w, int):
        if preprocess.size is not None and preprocess.size != (h, w):
            raise UsageError(
                f"--size {preprocess.size[0]}x{preprocess.size[1]} disagrees with input "
                f"'{spec.name}' of {model}, which is {h}x{w}",
                hint="drop --size to use the model's size",
            )
        changes["size"] = (h, w)
    elif preprocess.size is None:
        raise UsageError(
            f"input '{spec.name}' of {model} has dynamic height/width (shape {list(spec.shape)})",
            hint="pass --size HxW",
        )
    return replace(preprocess, **changes), spec.name


def _note_override(what: str, asked: str, used: str, default: str) -> None:
    if asked != default:
        log.warning("the model input needs %s %s; using it instead of %s", what, used, asked)


def sample_shape(preprocess: PreprocessConfig) -> tuple[int, ...]:
    assert preprocess.size is not None
    h, w = preprocess.size
    c = imageprep.channels(preprocess.color)
    return (1, c, h, w) if preprocess.layout == "NCHW" else (1, h, w, c)


# --------------------------------------------------------------------------- workers

_WORKER: dict[str, Any] = {}


def _init_worker(
    preprocess: PreprocessConfig,
    samples_dir: str,
    max_pixels: int | None,
    tasks: Sequence[tuple[int, str, str]] = (),
    claimed: Any = None,
    finished: Any = None,
) -> None:
    _WORKER.update(
        preprocess=preprocess,
        samples_dir=Path(samples_dir),
        max_pixels=max_pixels,
        tasks=tasks,
        claimed=claimed,
        finished=finished,
    )


def _work_through() -> list[dict[str, Any]]:
    """Claim tasks from the shared counter until none are left; return their results.

    A lock per image instead of a pickled message per image each way: on two cores the pool's
    messages cost ~8 % of the CPU time (benchmarks/calib_throughput.py).
    """
    tasks, claimed, finished = _WORKER["tasks"], _WORKER["claimed"], _WORKER["finished"]
    results: list[dict[str, Any]] = []
    while True:
        with claimed.get_lock():
            index = claimed.value
            claimed.value = index + 1
        if index >= len(tasks):
            return results
        results.append(_process(tasks[index]))
        with finished.get_lock():
            finished.value += 1


def _process(task: tuple[int, str, str]) -> dict[str, Any]:
    """Decode, preprocess and write one sample; return only small metadata (or the reason)."""
    index, source, filename = task
    result: dict[str, Any] = {"index": index, "source_sha256": None, "error": None}
    try:
        data = Path(source).read_bytes()
    except OSError as exc:
        result["error"] = f"cannot read: {exc.strerror or exc}"
        return result
    result["source_sha256"] = sha256_bytes(data)
    try:
        prepared = imageprep.prepare(data, _WORKER["preprocess"], source, _WORKER["max_pixels"])
    except imageprep.BadImageError as exc:
        result["error"] = exc.reason
        return result
    del data
    # Little-endian and contiguous, then written and hashed in place (no bytes copy).
    array = np.ascontiguousarray(prepared.array, dtype=prepared.array.dtype.newbyteorder("<"))
    array.tofile(_WORKER["samples_dir"] / filename)
    digest = hashlib.sha256(array.data.cast("B")).hexdigest()
    result.update(sha256=digest, width=prepared.width, height=prepared.height)
    return result


def _mp_context() -> Any:
    """fork when this process has one thread (fast: nothing to re-import); else forkserver.

    Forking a multi-threaded process (e.g. with a progress-bar refresh thread) can deadlock a
    child on a lock some other thread held; forkserver avoids that at ~0.3 s of start-up.
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if "forkserver" in methods:
        ctx.set_forkserver_preload(["ascend_quant.data.images"])
    return ctx


def _run(
    tasks: list[tuple[int, str, str]],
    init_args: tuple[Any, ...],
    jobs: int,
    advance: Callable[[int], None],
) -> list[dict[str, Any]]:
    """`_process` over every task on `jobs` processes; results in task order.

    Workers pull task numbers from a shared counter (balanced however long each image takes)
    and send their small results once, at the end; the progress bar follows a second counter.
    """
    if jobs <= 1 or len(tasks) <= 1:
        _init_worker(*init_args)
        results = []
        for task in tasks:
            results.append(_process(task))
            advance(1)
        return results
    ctx = _mp_context()
    claimed, finished = ctx.Value("q", 0), ctx.Value("q", 0)
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(*init_args, tasks, claimed, finished),
    ) as pool:
        futures = [pool.submit(_work_through) for _ in range(jobs)]
        shown = 0
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.1, return_when=FIRST_EXCEPTION)
                for future in done:
                    future.result()  # a failed worker raises here and stops the others below
                now = finished.value
                advance(now - shown)
                shown = now
        except BaseException:
            with claimed.get_lock():
                claimed.value = len(tasks)
            raise
    results = [result for future in futures for result in future.result()]
    return sorted(results, key=lambda result: int(result["index"]))


# --------------------------------------------------------------------------- writer


def _safe_stem(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem).strip("._")[:48] or "image"


def _inputs_sha256(sources: Sequence[str], hashes: Sequence[str | None]) -> str:
    return sha256_json([[s, h] for s, h in zip(sources, hashes)])


def _try_reuse(
    out_dir: Path, params_sha: str, sources: list[str], skip_bad: bool
) -> CalibSet | None:
    """The existing set if it was made from the same parameters and the same source bytes."""
    if not (out_dir / MANIFEST).is_file():
        return None
    try:
        manifest = read_json(out_dir / MANIFEST)
        if manifest.get("params_sha256") != params_sha:
            return None
        if manifest.get("skipped") and not skip_bad:
            return None
        if manifest.get("sources_resolved") != sources:
            return None
        hashes = [sha256_file(Path(s)) for s in sources]
        if _inputs_sha256(sources, hashes) != manifest.get("inputs_sha256"):
            return None
        calib_set = CalibSet.load(out_dir)
        return calib_set if calib_set.samples_intact() else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UsageError):
        return None


def make_calib_set(
    out_dir: Path,
    preprocess: PreprocessConfig,
    calib: CalibConfig,
    *,
    input_name: str = "input",
    model: Path | None = None,
    progress: Progress = NULL_PROGRESS,
    info: bool = False,
    max_pixels: int | None = None,
    force: bool = False,
) -> tuple[CalibSet, bool]:
    """Preprocess images into a calib set at `out_dir`; returns (set, reused).

    `preprocess.size` may be None only when `model` gives it. With no `calib.sources` the bundled
    photographs are used. Every bad image is listed in one UsageError (nothing is written) unless
    `calib.skip_bad`. `max_pixels` (default: Pillow's MAX_IMAGE_PIXELS) refuses bigger images.
    `force` re-creates the set even when the one on disk is up to date.
    """
    out_dir = Path(out_dir)
    preprocess, input_name = resolve(preprocess, input_name, model)
    imageprep.validate(preprocess)
    if calib.batch < 1:
        raise UsageError(f"--batch must be at least 1, got {calib.batch}")
    if calib.jobs is not None and calib.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {calib.jobs}")
    if preprocess.dtype in ("uint8", "int8") and preprocess.scale * 255 < 2:
        log.warning(
            "%s output with scale %g squeezes pixels into [0, %g]; pass --scale 1 for raw pixels",
            preprocess.dtype,
            preprocess.scale,
            preprocess.scale * 255,
        )
    sources = calib.sources or (str(calib_images_dir()),)
    chosen = select(discover(sources), calib.limit, calib.seed)
    resolved = [os.path.abspath(p) for p in chosen]
    shape = sample_shape(preprocess)
    params = {
        "format": FORMAT,
        "tool_version": __version__,
        "tool_fingerprint": tool_fingerprint(),
        "input_name": input_name,
        "shape": list(shape),
        "dtype": preprocess.dtype,
        "layout": preprocess.layout,
        "preprocess": to_mapping(preprocess),
        "batch": calib.batch,
        "info": info,
    }
    params_sha = sha256_json(params)
    check_replaceable(out_dir)
    existing = None if force else _try_reuse(out_dir, params_sha, resolved, calib.skip_bad)
    if existing is not None:
        return existing, True

    width = max(5, len(str(len(chosen) - 1)))
    names = [f"{i:0{width}d}_{_safe_stem(p)}.bin" for i, p in enumerate(chosen)]
    tasks = [(i, src, name) for i, (src, name) in enumerate(zip(resolved, names))]
    jobs = min(calib.jobs or os.cpu_count() or 1, len(tasks))
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    with atomic_directory(out_dir) as tmp:
        samples_dir = tmp / SAMPLES_DIR
        samples_dir.mkdir()
        init_args = (preprocess, str(samples_dir), limit)
        with progress.task(f"preprocessing {len(tasks)} images", total=len(tasks)) as advance:
            results = _run(tasks, init_args, jobs, advance)
        bad = [(resolved[r["index"]], r["error"]) for r in results if r["error"]]
        if bad and not calib.skip_bad:
            raise UsageError(
                f"{len(bad)} of {len(tasks)} images are unusable (nothing was written):\n  "
                + "\n  ".join(f"{path}: {reason}" for path, reason in bad),
                hint="fix or remove them, or pass --skip-bad to leave them out",
            )
        for path, reason in bad:
            log.warning("skipping %s: %s", path, reason)
        good = [r for r in results if not r["error"]]
        if not good:
            raise UsageError(f"all {len(tasks)} images are unusable", hint="see the warnings above")
        samples = []
        for k, result in enumerate(good):
            source = chosen[result["index"]]
            name = f"{k:0{width}d}_{_safe_stem(source)}.bin"
            if name != names[result["index"]]:  # close the gaps left by skipped files
                os.rename(samples_dir / names[result["index"]], samples_dir / name)
            samples.append(
                {
                    "source": resolved[result["index"]],
                    "source_sha256": result["source_sha256"],
                    "file": f"{SAMPLES_DIR}/{name}",
                    "sha256": result["sha256"],
                    "width": result["width"],
                    "height": result["height"],
                }
            )
        files = [s["file"] for s in samples]
        (tmp / LIST_FILE).write_text("".join(f"{f}\n" for f in files), encoding="utf-8")
        batch_files, padded = write_batches(tmp, files, calib.batch)
        if info:
            h, w = preprocess.size or (0, 0)
            lines = "".join(f"{i} {f} {w} {h}\n" for i, f in enumerate(files))
            (tmp / INFO_FILE).write_text(lines, encoding="utf-8")
        manifest = {
            **params,
            "count": len(samples),
            "samples_dir": SAMPLES_DIR,
            "list_file": LIST_FILE,
            "info_file": INFO_FILE if info else None,
            "batch_dir": batch_dir_name(calib.batch),
            "batch_files": batch_files,
            "padded_samples": padded,
            "params_sha256": params_sha,
            "sources": list(sources),
            "sources_resolved": resolved,
            "inputs_sha256": _inputs_sha256(resolved, [r["source_sha256"] for r in results]),
            "model": str(model) if model is not None else None,
            "samples": samples,
            "skipped": [
                {
                    "source": resolved[r["index"]],
                    "source_sha256": r["source_sha256"],
                    "reason": r["error"],
                }
                for r in results
                if r["error"]
            ],
        }
        atomic_write_json(tmp / MANIFEST, manifest)
    return CalibSet.load(out_dir), False


def image_sizes(paths: Sequence[Path]) -> list[tuple[int, int]]:
    """(height, width) of each image, read from its header (no decoding), EXIF rotation
    applied; unreadable files are skipped (suggesting gears must not fail on one bad file)."""
    sizes = []
    for path in paths:
        try:
            with Image.open(path) as image:
                width, height = image.size
                orientation = image.getexif().get(0x0112, 1)
        except (OSError, ValueError):
            continue
        sizes.append((width, height) if orientation in (5, 6, 7, 8) else (height, width))
    return sizes
