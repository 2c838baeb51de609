"""Throughput and memory of `make_calib_set`, against a plain single-process Pillow loop.

Prints JSON. Both sides do the same work per image (read, decode, EXIF transpose, RGB, resize to
224x224 bicubic, scale, ImageNet mean/std, NCHW float32, write a .bin) in the same run; calib
also hashes sources and outputs and writes the batch files and manifest.

Memory: a child process runs `make_calib_set` on N and on 8N images while this process samples
the peak resident set (VmHWM) of the child and every process below it (forkserver, workers).
Targets (issue 2): speed-up >= 1.7 on 2 cores; peak memory for 8N <= 1.2x that for N.

    .venv/bin/python benchmarks/calib_throughput.py [--images 160] [--mem-images 32]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ascend_quant.config import CalibConfig, PreprocessConfig
from ascend_quant.data.images import make_calib_set
from ascend_quant.resources import calib_images_dir

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
PRE = PreprocessConfig(size=(224, 224), mean=MEAN, std=STD)


def make_images(folder: Path, count: int, size: tuple[int, int] = (640, 480)) -> Path:
    """`count` distinct JPEGs: crops of the bundled photos, resized to `size`."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = sorted(calib_images_dir().glob("*.jpg"))
    rng = np.random.default_rng(0)
    for i in range(count):
        with Image.open(photos[i % len(photos)]) as image:
            image = image.convert("RGB")
            w, h = image.size
            cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            crop = image.crop((x, y, x + cw, y + ch)).resize(size, Image.Resampling.BILINEAR)
            crop.save(folder / f"img_{i:05d}.jpg", quality=90)
    return folder


def plain_loop(folder: Path, out: Path) -> int:
    """The baseline: what a hand-written calibration script does, one image at a time."""
    out.mkdir(parents=True, exist_ok=True)
    mean = np.asarray(MEAN, dtype=np.float32)
    std = np.asarray(STD, dtype=np.float32)
    files = sorted(folder.glob("*.jpg"))
    for i, path in enumerate(files):
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
            image = image.resize((224, 224), Image.Resampling.BICUBIC)
        x = np.asarray(image, dtype=np.float32) / 255.0
        x = ((x - mean) / std).transpose(2, 0, 1)[None]
        np.ascontiguousarray(x).tofile(out / f"{i:05d}.bin")
    return len(files)


def _timed_plain(folder: Path, out: Path) -> float:
    start = time.perf_counter()
    plain_loop(folder, out)
    seconds = time.perf_counter() - start
    shutil.rmtree(out)
    return seconds


def _timed_calib(folder: Path, out: Path, count: int) -> float:
    start = time.perf_counter()
    calib_set, reused = make_calib_set(out, PRE, CalibConfig(sources=(str(folder),)))
    seconds = time.perf_counter() - start
    assert len(calib_set) == count and not reused
    shutil.rmtree(out)
    return seconds


def throughput(folder: Path, work: Path, count: int, rounds: int = 5) -> dict[str, object]:
    """`rounds` rounds of plain, calib, calib, plain; the median of their ratios.

    The ABBA order cancels a machine that speeds up or slows down steadily during a round, and
    the median resists the odd disturbed round (shared VMs drift by tens of percent).
    """
    ratios, plain_rates, calib_rates = [], [], []
    for _ in range(rounds):
        plain_s = _timed_plain(folder, work / "plain")
        calib_s = _timed_calib(folder, work / "calib", count)
        calib_s += _timed_calib(folder, work / "calib", count)
        plain_s += _timed_plain(folder, work / "plain")
        ratios.append(plain_s / calib_s)
        plain_rates.append(2 * count / plain_s)
        calib_rates.append(2 * count / calib_s)
    return {
        "images": count,
        "rounds": rounds,
        "plain_images_per_s": round(float(np.median(plain_rates)), 1),
        "calib_images_per_s": round(float(np.median(calib_rates)), 1),
        "speedup": round(float(np.median(ratios)), 2),
        "speedup_per_round": [round(r, 2) for r in ratios],
    }


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                parents[int(entry)] = int(fields[1])
            except (OSError, IndexError):
                continue
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        children = [p for p, parent in parents.items() if parent == current]
        found.extend(children)
        frontier.extend(children)
    return found


def _hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_memory(folder: Path, out: Path) -> dict[str, float]:
    """Run calib in a child; sample VmHWM of it and its descendants until it exits."""
    code = (
        "import sys; from pathlib import Path\n"
        "from ascend_quant.data.images import make_calib_set\n"
        "from ascend_quant.config import CalibConfig\n"
        "sys.path.insert(0, sys.argv[3])\n"
        "from calib_throughput import PRE\n"
        "if __name__ == '__main__':\n"
        "    make_calib_set(Path(sys.argv[2]), PRE, CalibConfig(sources=(sys.argv[1],)))\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(folder), str(out), str(Path(__file__).parent)]
    )
    peaks: dict[int, int] = {}
    while child.poll() is None:
        for pid in [child.pid, *_descendants(child.pid)]:
            peaks[pid] = max(peaks.get(pid, 0), _hwm_kib(pid))
        time.sleep(0.01)
    if child.returncode != 0:
        raise SystemExit(f"calib child failed with {child.returncode}")
    main_kib = peaks.pop(child.pid, 0)
    workers = sorted(peaks.values(), reverse=True)
    return {
        "main_peak_mib": round(main_kib / 1024, 1),
        "largest_worker_peak_mib": round((workers[0] if workers else 0) / 1024, 1),
        "total_peak_mib": round((main_kib + sum(workers)) / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=160, help="images for the throughput run")
    parser.add_argument("--mem-images", type=int, default=32, help="N for the memory runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="calib-bench-") as tmp:
        work = Path(tmp)
        folder = make_images(work / "images", args.images)
        speed = throughput(folder, work, args.images)
        n, n8 = args.mem_images, 8 * args.mem_images
        small = make_images(work / "mem_n", n, (320, 240))
        large = make_images(work / "mem_8n", n8, (320, 240))
        mem_n = peak_memory(small, work / "out_n")
        mem_8n = peak_memory(large, work / "out_8n")
    result = {
        "cores": os.cpu_count(),
        "throughput": speed,
        "memory": {
            "n": n,
            "peak_n": mem_n,
            "peak_8n": mem_8n,
            "ratio_8n_over_n_total": round(mem_8n["total_peak_mib"] / mem_n["total_peak_mib"], 3),
            "ratio_8n_over_n_main": round(mem_8n["main_peak_mib"] / mem_n["main_peak_mib"], 3),
        },
        "targets": {"speedup_min": 1.7, "memory_ratio_max": 1.2},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
