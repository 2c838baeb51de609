"""Cold and warm wall time of the example build, and where the cold time goes.

Prints JSON. Wall times come from fresh `ascend-quant build` processes (cold: empty workspace;
warm: the same command again, which must reuse every stage). The split between our own code and
the libraries (onnxsim, ONNX Runtime, onnx, Pillow, NumPy) comes from one in-process cold build
under cProfile with calibration on one worker, attributing each function's own time to the
package its file belongs to.

    python benchmarks/build_e2e.py [--model examples/sr/espcn_x2.onnx] [--soc Ascend310P3]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CATEGORIES = {
    "ascend_quant": ("/ascend_quant/",),
    "onnxruntime": ("/onnxruntime/",),
    "onnxsim": ("/onnxsim/",),
    "onnx": ("/onnx/",),
    "pillow": ("/PIL/",),
    "numpy": ("/numpy/",),
}


def _wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _category(filename: str) -> str:
    for name, needles in CATEGORIES.items():
        if any(needle in filename for needle in needles):
            return name
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins"  # C functions: attributed by their caller's package below
    return "other (stdlib, rich, jinja2, ...)"


def _profile_shares(model: Path, soc: str, workspace: Path) -> dict[str, float]:
    from ascend_quant.config import BuildConfig, merge
    from ascend_quant.pipeline import build

    config = merge(
        BuildConfig(),
        {"socs": [soc], "backend": "sim", "out": str(workspace), "calib": {"jobs": 1}},
    )
    profiler = cProfile.Profile()
    profiler.enable()
    build(model, config)
    profiler.disable()
    stats = pstats.Stats(profiler)
    totals: dict[str, float] = {}
    raw = stats.stats  # type: ignore[attr-defined]
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, callers) in raw.items():
        category = _category(filename)
        if category == "builtins":
            # A C function (e.g. InferenceSession.run) counts for the package that called it.
            caller_files = [c[0] for c in callers] or [filename]
            category = _category(caller_files[0])
            if category == "builtins":
                category = "other (stdlib, rich, jinja2, ...)"
        totals[category] = totals.get(category, 0.0) + tottime
    whole = sum(totals.values()) or 1.0
    return {k: round(v / whole, 4) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "examples/sr/espcn_x2.onnx")
    parser.add_argument("--soc", default="Ascend310P3")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "ws"
        command = [
            sys.executable, "-m", "ascend_quant", "build", str(args.model),
            "--soc", args.soc, "--backend", "sim", "--out", str(workspace), "--json",
        ]  # fmt: skip
        cold = _wall(command)
        warm = _wall(command)
        shutil.rmtree(workspace)
        shares = _profile_shares(args.model, args.soc, Path(tmp) / "profiled")

    ours = shares.get("ascend_quant", 0.0)
    print(
        json.dumps(
            {
                "model": str(
                    args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model
                ),
                "soc": args.soc,
                "cold_s": round(cold, 2),
                "warm_s": round(warm, 2),
                "warm_over_cold": round(warm / cold, 3),
                "cold_time_share_by_package": shares,
                "our_code_share": ours,
                "libraries_share": round(
                    1.0 - ours - shares.get("other (stdlib, rich, jinja2, ...)", 0.0), 4
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
