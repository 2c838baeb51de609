"""Finding the CANN toolkit: its tools, the environment `set_env.sh` sets, its version, the NPU.

Search order (reference §1.1): the tools already on PATH; else the roots named by
`ASCEND_TOOLKIT_HOME` / `ASCEND_HOME_PATH`; else the standard install roots (old layout
`/usr/local/Ascend/ascend-toolkit/latest`, new layout `/usr/local/Ascend/cann`), which
`ASCEND_QUANT_CANN_ROOTS` (os.pathsep-separated) replaces, for tests and unusual installs.
When a root has a `set_env.sh` and atc is not already on PATH, the script is sourced in a
`bash` subprocess and the environment it leaves is captured: never guessed.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("ascend_quant")

ROOTS_ENV = "ASCEND_QUANT_CANN_ROOTS"
STANDARD_ROOTS = ("/usr/local/Ascend/ascend-toolkit/latest", "/usr/local/Ascend/cann")
NPU_SMI_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/local/Ascend/driver/tools")
# Where atc lives below a root: current old layout, very old layout, new layout (8.5+).
ATC_SUBPATHS = ("compiler/bin/atc", "atc/bin/atc", "bin/atc")
AMCT_SUBPATHS = ("bin/amct_onnx", "tools/amct/bin/amct_onnx", "compiler/bin/amct_onnx")
MSAME_SUBPATHS = ("tools/msame/out/msame", "bin/msame", "tools/msame/msame")
VERSION_FILES = ("version.cfg", "version.info", "compiler/version.info", "runtime/version.info")
_ENV_KEYS = (
    "PATH",
    "PYTHONPATH",
    "ASCEND_TOOLKIT_HOME",
    "ASCEND_HOME_PATH",
    ROOTS_ENV,
    "HOME",
)
_SUBPROCESS_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Toolkit:
    """What was found. Tool paths are absolute; `ais_bench` is an argv prefix."""

    root: Path | None = None
    version: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # run every tool with this environment
    atc: Path | None = None
    amct_onnx: Path | None = None
    ais_bench: list[str] | None = None  # e.g. ["/usr/bin/python3", "-m", "ais_bench"]
    msame: Path | None = None
    npu_smi: Path | None = None
    npu_visible: bool = False
    npu_soc: str | None = None  # e.g. "Ascend310P3", from `npu-smi info`
    set_env: Path | None = None  # the set_env.sh that was sourced, if any

    @property
    def found(self) -> bool:
        return self.atc is not None

    def as_dict(self) -> dict[str, object]:
        """What `doctor --json` shows (the captured environment is left out: it is large)."""

        def text(value: object) -> str | None:
            return None if value is None else str(value)

        return {
            "found": self.found,
            "root": text(self.root),
            "version": self.version,
            "set_env": text(self.set_env),
            "tools": {
                "atc": text(self.atc),
                "amct_onnx": text(self.amct_onnx),
                "ais_bench": " ".join(self.ais_bench) if self.ais_bench else None,
                "msame": text(self.msame),
                "npu-smi": text(self.npu_smi),
            },
            "npu_visible": self.npu_visible,
            "npu_soc": self.npu_soc,
        }


def discover() -> Toolkit:
    """The toolkit for the current environment, cached per environment (`discover.cache_clear`)."""
    key = tuple((name, os.environ.get(name)) for name in _ENV_KEYS)
    return _discover_cached(key)


@functools.lru_cache(maxsize=8)
def _discover_cached(key: tuple[tuple[str, str | None], ...]) -> Toolkit:
    return discover_uncached(dict(os.environ))


discover.cache_clear = _discover_cached.cache_clear  # type: ignore[attr-defined]


def candidate_roots(environ: dict[str, str]) -> list[Path]:
    """Roots to search, in order: env vars first, then the standard (or overridden) roots."""
    roots: list[Path] = []
    for name in ("ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH"):
        if environ.get(name):
            roots.append(Path(environ[name]))
    override = environ.get(ROOTS_ENV)
    standard = override.split(os.pathsep) if override is not None else STANDARD_ROOTS
    roots.extend(Path(p) for p in standard if p)
    unique: list[Path] = []
    for root in roots:
        if root not in unique:
            unique.append(root)
    return unique


def find_set_env(root: Path) -> Path | None:
    """`<root>/set_env.sh` (new layout) or `<root>/../set_env.sh` (old layout, root = latest)."""
    for candidate in (root / "set_env.sh", root.parent / "set_env.sh", root / "bin/setenv.bash"):
        if candidate.is_file():
            return candidate
    return None


def source_env(script: Path, base: dict[str, str]) -> dict[str, str]:
    """Run `source script` in bash and return the environment it leaves behind."""
    bash = shutil.which("bash", path=base.get("PATH")) or shutil.which("bash")
    if bash is None:
        log.warning("bash not found: cannot source %s", script)
        return dict(base)
    try:
        proc = subprocess.run(
            [bash, "-c", 'source "$1" >/dev/null 2>&1 && env -0', "bash", str(script)],
            env=base,
            capture_output=True,
            timeout=_SUBPROCESS_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("sourcing %s failed: %s", script, exc)
        return dict(base)
    if proc.returncode != 0:
        log.warning("sourcing %s failed (exit %d)", script, proc.returncode)
        return dict(base)
    env: dict[str, str] = {}
    for entry in proc.stdout.split(b"\0"):
        name, sep, value = entry.decode(errors="replace").partition("=")
        if sep and name:
            env[name] = value
    return env


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _find_tool(
    name: str, env: dict[str, str], root: Path | None, subpaths: tuple[str, ...]
) -> Path | None:
    found = shutil.which(name, path=env.get("PATH", ""))
    if found:
        return Path(found)
    if root is not None:
        for sub in subpaths:
            if _executable(root / sub):
                return root / sub
    return None


def _root_of(atc: Path) -> Path:
    """The toolkit root above an atc binary (…/compiler/bin/atc, …/atc/bin/atc, …/bin/atc)."""
    resolved = atc.resolve()
    for sub in ATC_SUBPATHS:
        depth = sub.count("/") + 1
        parts = resolved.parts
        if "/".join(parts[-depth:]) == sub:
            return Path(*parts[:-depth])
    return resolved.parent.parent


def _python_of(env: dict[str, str]) -> str:
    return shutil.which("python3", path=env.get("PATH", "")) or sys.executable


def find_ais_bench(env: dict[str, str]) -> list[str] | None:
    """`python3 -m ais_bench` when the toolkit's python has the module, else an executable."""
    python = _python_of(env)
    probe = "import importlib.util,sys; sys.exit(0 if importlib.util.find_spec('ais_bench') else 1)"
    try:
        proc = subprocess.run(
            [python, "-c", probe],
            env=env,
            capture_output=True,
            timeout=_SUBPROCESS_TIMEOUT_S,
            check=False,
        )
        if proc.returncode == 0:
            return [python, "-m", "ais_bench"]
    except (OSError, subprocess.TimeoutExpired):
        pass
    exe = shutil.which("ais_bench", path=env.get("PATH", ""))
    return [exe] if exe else None


_VERSION_RE = re.compile(
    r"^\s*(?:version|Version|toolkit_installed_version|runtime_running_version)\s*[=:]\s*"
    r"\[?([0-9][0-9A-Za-z.\-]*)"
)
_DIR_VERSION_RE = re.compile(r"(?:^|-)(\d+\.\d+(?:\.[0-9A-Za-z]+)*)$")


def read_version(root: Path) -> str | None:
    """CANN version from the files the installer writes; else from the versioned root dir name.

    `*_install.info` and `version.info` hold `version=8.0.RC1`; `version.cfg` holds
    `toolkit_installed_version=[8.0.RC1...:8.0.RC1]`-style lines. A bracketed `[a:b]` pair
    yields `b`, the user-facing version.
    """
    files = [root / name for name in VERSION_FILES]
    files += sorted(root.glob("*_install.info")) + sorted(root.glob("*-linux/*_install.info"))
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            bracket = re.search(r"\[[^\]:]*:([^\]]+)\]", line)
            if bracket and "version" in line.lower():
                return bracket.group(1).strip()
            match = _VERSION_RE.match(line)
            if match:
                return match.group(1)
    match = _DIR_VERSION_RE.search(root.resolve().name)
    return match.group(1) if match else None


_NPU_ROW = re.compile(r"^\|\s*(\d+)\s+([A-Za-z0-9][A-Za-z0-9_\-]*)\s*\|")


def parse_npu_smi(text: str) -> list[str]:
    """Chip names (e.g. `310P3`) from the `| <id> <Name> | <Health> |` rows of `npu-smi info`.

    Only rows below the first `+===` rule count; chip rows (`| 0  0 |`) and process rows start
    with digits in both cells and never match.
    """
    names: list[str] = []
    in_table = False
    for line in text.splitlines():
        if line.startswith("+="):
            in_table = True
            continue
        match = _NPU_ROW.match(line) if in_table else None
        if match and not match.group(2).isdigit():
            names.append(match.group(2))
    return names


def soc_from_chip_name(name: str) -> str:
    return name if name.startswith("Ascend") else f"Ascend{name}"


def probe_npu(npu_smi: Path | None, env: dict[str, str]) -> tuple[bool, str | None]:
    """(visible, soc) from `npu-smi info`; not visible when it is missing or fails."""
    if npu_smi is None:
        return False, None
    try:
        proc = subprocess.run(
            [str(npu_smi), "info"],
            env=env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_SUBPROCESS_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("npu-smi info failed: %s", exc)
        return False, None
    if proc.returncode != 0:
        return False, None
    names = parse_npu_smi(proc.stdout)
    if not names:
        return False, None
    return True, soc_from_chip_name(names[0])


def discover_uncached(environ: dict[str, str]) -> Toolkit:
    """Search PATH, the env-var roots and the standard roots; see the module docstring."""
    env = dict(environ)
    set_env: Path | None = None
    root: Path | None = None
    atc_on_path = shutil.which("atc", path=env.get("PATH", ""))
    if atc_on_path:
        root = _root_of(Path(atc_on_path))
        for name in ("ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH"):
            if env.get(name) and Path(env[name]).is_dir():
                root = Path(env[name])
                break
    else:
        for candidate in candidate_roots(env):
            if not candidate.is_dir():
                continue
            script = find_set_env(candidate)
            has_atc = any(_executable(candidate / sub) for sub in ATC_SUBPATHS)
            if script is None and not has_atc:
                continue
            root = candidate
            if script is not None:
                set_env = script
                env = source_env(script, env)
                home = env.get("ASCEND_TOOLKIT_HOME") or env.get("ASCEND_HOME_PATH")
                if home and Path(home).is_dir():
                    root = Path(home)
            break
    atc = _find_tool("atc", env, root, ATC_SUBPATHS)
    if atc is not None and root is not None and set_env is None and not atc_on_path:
        # atc found below a root without a set_env.sh: make it and its siblings runnable.
        env["PATH"] = os.pathsep.join([str(atc.parent), env.get("PATH", "")])
    amct = _find_tool("amct_onnx", env, root, AMCT_SUBPATHS)
    msame = _find_tool("msame", env, root, MSAME_SUBPATHS)
    npu_smi = _find_tool("npu-smi", env, None, ())
    if npu_smi is None:
        npu_smi = next(
            (Path(d) / "npu-smi" for d in NPU_SMI_DIRS if _executable(Path(d) / "npu-smi")), None
        )
    visible, soc = probe_npu(npu_smi, env)
    return Toolkit(
        root=root,
        version=read_version(root) if root is not None else None,
        env=env,
        atc=atc,
        amct_onnx=amct,
        ais_bench=find_ais_bench(env),
        msame=msame,
        npu_smi=npu_smi,
        npu_visible=visible,
        npu_soc=soc,
        set_env=set_env,
    )
