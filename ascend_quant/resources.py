"""Where the bundled templates and calibration images live.

In a wheel they are inside the package (`ascend_quant/_data/`); in a source checkout or an
editable install they are the top-level `templates/` and `calib/` folders.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"bundled '{name}' folder not found beside {_PACKAGE_DIR}")


def templates_dir() -> Path:
    return _data_dir("templates")


def calib_images_dir() -> Path:
    """The bundled calibration photographs (CC0 / public domain, see calib/SOURCES.md)."""
    return _data_dir("calib") / "images"


def holdout_images_dir() -> Path:
    """Bundled photographs kept apart from calibration, used as evaluation inputs."""
    return _data_dir("calib") / "holdout"
