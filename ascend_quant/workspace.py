"""File-system side effects in one place: atomic writes, directory swaps, hashing and locking.

Every output the tool writes goes through here so that an interrupted run never leaves a
half-written file under its final name.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ascend_quant.__about__ import __version__
from ascend_quant.errors import UsageError, WorkspaceBusyError

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(value: Any) -> str:
    """Content hash of a JSON-able value, independent of key order."""
    return sha256_bytes(json.dumps(value, sort_keys=True, default=str).encode())


def tree_sha256(roots: Iterable[Path], pattern: str = "*") -> str:
    """One hash over the relative names and bytes of the files matching `pattern` under `roots`."""
    digest = hashlib.sha256()
    for root in roots:
        for path in sorted(Path(root).rglob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.relative_to(root).as_posix().encode() + b"\0")
                digest.update(sha256_file(path).encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def tool_fingerprint() -> str:
    """The version plus a hash of the package's code: a changed tool never reuses old results."""
    return f"{__version__}+{tree_sha256([Path(__file__).parent], '*.py')[:16]}"


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, value: Any) -> Path:
    return atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


# What atomic_write_bytes / atomic_directory / the simulator leave behind when killed mid-write.
_STALE = re.compile(r"^\..+(\.tmp|\.tmp\.[A-Za-z0-9]+|\.old)$")


def remove_stale_temps(root: Path) -> list[Path]:
    """Remove the temporary files and directories a killed run left under `root`.

    Call it only while holding the workspace lock: then no live writer owns them.
    """
    removed: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            if not _STALE.match(name):
                continue
            path = Path(dirpath) / name
            if name in dirnames:
                dirnames.remove(name)
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            removed.append(path)
    return removed


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str) -> str:
    """A single, portable directory name for a tensor name, so that `<dir>/<name>` never leaves
    `<dir>` (`../../x`, `/abs`, `a/b`), is never hidden or empty, and stays distinct: a name that
    had to change gets a short hash of the original (the manifest keeps the original)."""
    safe = _UNSAFE_NAME.sub("_", name).lstrip(".")[:80]
    if safe == name:
        return name
    return (
        f"{safe or 'input'}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    )


def read_user_file(path: Path, what: str, max_bytes: int, hint: str) -> bytes:
    """The bytes of a file the user named: refused by type (directory, FIFO, device, socket)
    before it is opened, and by size before it is read whole."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UsageError(f"{what} not found: {path}", hint=hint) from None
    except OSError as exc:
        raise UsageError(f"{what} {path}: {exc.strerror}", hint=hint) from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise UsageError(f"{what} {path} is {kind}", hint=hint)
    if info.st_size > max_bytes:
        raise UsageError(
            f"{what} {path} has {info.st_size} bytes, more than the {max_bytes} a {what} can have",
            hint=hint,
        )
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UsageError(f"{what} {path} grew past {max_bytes} bytes while read", hint=hint)
    return data


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `final`; on success it replaces `final` whole.

    On any exception the temporary directory is removed and `final` is left untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def exclusive_lock(lock_path: Path, what: str) -> Iterator[None]:
    """Hold an advisory lock on `lock_path`; a second holder gets WorkspaceBusyError at once.

    flock is released by the kernel when the process dies, so a killed build never leaves a
    stale lock behind.
    """
    import fcntl

    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path, "a+")  # noqa: SIM115 (held for the whole context)
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise WorkspaceBusyError(
                f"{what} is in use by {holder}",
                hint="wait for the other build to finish, or use a different --out directory",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()
