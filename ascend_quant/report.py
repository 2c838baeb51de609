"""report.json and a self-contained report.html (no network: inline CSS, SVG and PNG data URIs).

The report reads bench and compare results either as the dataclasses (`BenchTable`,
`CompareResult`) or as their JSON mappings (what the build caches), so one code path renders both.
JSON is strict: non-finite floats (PSNR of identical outputs is +inf) are written as the strings
"inf", "-inf" and "nan".
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
import math
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ascend_quant import metrics, tasks
from ascend_quant.config import to_mapping
from ascend_quant.gates import Extremes, limits_by_metric
from ascend_quant.render import render_template
from ascend_quant.workspace import atomic_write_text

REPORT_TEMPLATE = "report.html.j2"
LATENCY_KEYS = ("min", "mean", "median", "p90", "p95", "p99", "max")
CROP = 96  # output pixels per side of the side-by-side crops
PIPELINE_TEMPLATE = "pipeline_report.html.j2"
DISPLAY = 224  # displayed size of each crop (nearest-neighbour magnification)
MAX_GRID_SAMPLES = 8  # sample rows of the pipeline report's grid; beyond, the worst are chosen
THUMB = 128  # longest displayed side of a grid image; larger images are reduced to it
# One pipeline output's samples: a list of every sample's, or sample index -> outputs.
SampleOutputs = Sequence[Mapping[str, np.ndarray]] | Mapping[int, Mapping[str, np.ndarray]]
GRID_BUDGET = 4 << 20  # bytes of images per output (full-size panel + grid); past it, left out

# Anchors of a perceptually ordered black-purple-orange-yellow colour map (inferno-like).
_COLORMAP = np.array(
    [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21],
     [250, 193, 39], [252, 255, 164]],
    dtype=np.float64,
)  # fmt: skip


# --- JSON --------------------------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """Plain JSON data: dataclasses to dicts, paths to strings, non-finite floats to strings."""
    value = to_mapping(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value


def save_json(path: Path, value: Any) -> Path:
    """Atomically write `value` as strict JSON (see `json_safe`)."""
    text = json.dumps(json_safe(value), indent=2, allow_nan=False) + "\n"
    return atomic_write_text(Path(path), text)


def environment_info() -> dict[str, Any]:
    """Versions and host facts worth recording beside any measured figure."""
    from ascend_quant.__about__ import __version__

    info: dict[str, Any] = {
        "ascend_quant": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "numpy": np.__version__,
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover
        info["onnxruntime"] = None
    return info


# --- images ------------------------------------------------------------------------------------


def _png_uri(pixels: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    # zlib's default level: `optimize=True` (level 9) took 7x as long for 1 % smaller tiles
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _hwc(array: np.ndarray, layout: str | None) -> np.ndarray:
    """First image of a 4-D array as float64 [H, W, C]."""
    a = np.asarray(array, dtype=np.float64)
    return a[0].transpose(1, 2, 0) if layout != "NHWC" else a[0]


def _to_pixels(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scaled = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    pixels = np.clip(np.nan_to_num(scaled) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def colormap(values: np.ndarray) -> np.ndarray:
    """[0, 1] values -> uint8 RGB through the report's colour map."""
    v = np.clip(np.nan_to_num(values, nan=1.0), 0.0, 1.0)
    stops = np.linspace(0.0, 1.0, len(_COLORMAP))
    rgb = np.stack([np.interp(v, stops, _COLORMAP[:, c]) for c in range(3)], axis=-1)
    return (rgb + 0.5).astype(np.uint8)


def _magnify(pixels: np.ndarray, size: int = DISPLAY) -> np.ndarray:
    from PIL import Image

    h, w = pixels.shape[:2]
    factor = max(1, size // max(h, w))
    return np.asarray(
        Image.fromarray(pixels).resize((w * factor, h * factor), Image.Resampling.NEAREST)
    )


def _worst_window(error: np.ndarray, ch: int, cw: int) -> tuple[int, int]:
    """Top-left corner of the ch x cw window with the largest summed error (integral image)."""
    h, w = error.shape
    if ch >= h and cw >= w:
        return 0, 0
    integral = np.pad(np.nan_to_num(error, nan=0.0).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = integral[ch:, cw:] - integral[:-ch, cw:] - integral[ch:, :-cw] + integral[:-ch, :-cw]
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y), int(x)


def output_geometry(out_len: int, in_len: int) -> tuple[float, float]:
    """(scale, border): output pixel o comes from input position o / scale + border.

    Covers outputs that are not an exact multiple of the input: valid convolutions trim a
    border before an integer upscale (out = s·(in − 2b), e.g. 2·(H − 14): s = 2, b = 7) or at
    the same scale (out = in − 2b); integer downscales (in = k·out); else plain proportion.
    """
    if out_len <= 0 or in_len <= 0:
        return 1.0, 0.0
    if in_len >= 2 * out_len and in_len % out_len == 0:
        return out_len / in_len, 0.0  # an integer downscale
    scale = max(1, round(out_len / in_len))
    if out_len % scale == 0 and in_len >= out_len // scale:
        trimmed = in_len - out_len // scale
        if trimmed % 2 == 0 and trimmed <= in_len // 2:
            return float(scale), trimmed / 2.0
    return out_len / in_len, 0.0


def input_span(start: int, length: int, out_len: int, in_len: int) -> tuple[int, int]:
    """The input rows (or columns) [a, b) that produced output rows [start, start + length)."""
    scale, border = output_geometry(out_len, in_len)
    a = int(start / scale + border)
    b = int(np.ceil((start + length) / scale + border))
    a = min(max(a, 0), in_len - 1)
    return a, min(max(b, a + 1), in_len)


def image_panels(sample: dict[str, Any], labels: dict[str, str]) -> dict[str, Any] | None:
    """Crops of input, FP32 and each candidate, plus |candidate − FP32| heatmaps, as data URIs.

    The crop is the CROP x CROP output window where the candidates' error is largest; the
    input crop is the same region scaled to the input's size. Outputs share one display scale
    (the golden's [0, 1] or its min..max), heatmaps share one colour scale (0 .. largest error).
    """
    try:
        golden = _hwc(np.load(sample["golden"]), sample["layout"])
        cands = {n: _hwc(np.load(p), sample["layout"]) for n, p in sample["candidates"].items()}
        source = (
            _hwc(np.load(sample["input"]), sample.get("input_layout"))
            if sample.get("input")
            else None
        )
    except (OSError, ValueError, KeyError):
        return None
    h, w = golden.shape[:2]
    ch, cw = min(CROP, h), min(CROP, w)
    errors = {n: np.abs(c.reshape(golden.shape) - golden).mean(axis=2) for n, c in cands.items()}
    total = sum(errors.values()) if errors else np.zeros((h, w))
    y, x = _worst_window(np.asarray(total), ch, cw)
    window = (slice(y, y + ch), slice(x, x + cw))
    g_lo, g_hi = float(np.nanmin(golden)), float(np.nanmax(golden))
    lo, hi = (0.0, 1.0) if g_lo >= 0.0 and g_hi <= 1.0 else (g_lo, g_hi)
    tiles = []
    if source is not None:
        (sy, sy_end), (sx, sx_end) = (
            input_span(y, ch, h, source.shape[0]),
            input_span(x, cw, w, source.shape[1]),
        )
        crop = source[sy:sy_end, sx:sx_end]
        tiles.append(
            {
                "label": "input",
                "uri": _png_uri(_magnify(_to_pixels(crop, float(crop.min()), float(crop.max())))),
            }
        )
    tiles.append(
        {
            "label": "FP32 (ONNX Runtime)",
            "uri": _png_uri(_magnify(_to_pixels(golden[window], lo, hi))),
        }
    )
    for name, cand in cands.items():
        tiles.append(
            {
                "label": labels.get(name, name),
                "uri": _png_uri(_magnify(_to_pixels(cand.reshape(golden.shape)[window], lo, hi))),
            }
        )
    scale = max((float(np.nanmax(e[window])) for e in errors.values()), default=0.0)
    heatmaps = []
    for name, error in errors.items():
        norm = error[window] / scale if scale > 0 else np.zeros_like(error[window])
        heatmaps.append(
            {
                "label": f"|{labels.get(name, name)} − FP32|",
                "uri": _png_uri(_magnify(colormap(norm))),
            }
        )
    bar = colormap(np.tile(np.linspace(0.0, 1.0, 256), (12, 1)))
    return {
        "output": sample["output"],
        "crop": {"y": y, "x": x, "height": ch, "width": cw, "image_height": h, "image_width": w},
        "tiles": tiles,
        "heatmaps": heatmaps,
        "error_scale": scale,
        "colorbar": _png_uri(bar),
    }


def pipeline_panels(
    golden: Mapping[str, np.ndarray],
    mixes: Mapping[str, Mapping[str, np.ndarray]],
    budget: int | None = None,
) -> list[dict[str, Any]]:
    """Whole final images side by side (FP32, then each mix) and |mix − FP32| error maps.

    One panel per image-shaped output (4-D, 1 or 3 channels); the first image of the batch.
    Images share one display scale, error maps one colour scale (0 .. largest error). Each
    panel holds at most `budget` bytes of images (default GRID_BUDGET, the report's cap per
    output; always FP32 and the first mix): the mixes past it are left out and listed in
    `dropped`, and `used` is what the panel spent (the grid gets the rest).
    """
    budget = GRID_BUDGET if budget is None else budget
    panels = []
    for name, array in golden.items():
        layout = metrics.image_layout(tuple(array.shape))
        if layout is None:
            continue
        g = _hwc(array, layout)
        cands = {m: _hwc(outs[name], layout).reshape(g.shape) for m, outs in mixes.items()}
        lo, hi = _display_range([g])
        size = max(DISPLAY, max(g.shape[:2]))
        tiles = [
            {
                "label": "FP32 (all components)",
                "uri": _png_uri(_magnify(_to_pixels(g, lo, hi), size)),
            }
        ]
        errors = {m: np.abs(c - g).mean(axis=2) for m, c in cands.items()}
        scale = max((float(np.nanmax(e)) for e in errors.values()), default=0.0)
        heatmaps: list[dict[str, str]] = []
        used = len(tiles[0]["uri"])
        dropped: list[str] = []
        for m, c in cands.items():
            if dropped:  # once one is left out, the later ones are too (the order stays)
                dropped.append(m)
                continue
            tile = {"label": m, "uri": _png_uri(_magnify(_to_pixels(c, lo, hi), size))}
            error = errors[m] / scale if scale > 0 else np.zeros_like(errors[m])
            heatmap = {"label": f"|{m} − FP32|", "uri": _png_uri(_magnify(colormap(error), size))}
            cost = len(tile["uri"]) + len(heatmap["uri"])
            if heatmaps and used + cost > budget:
                dropped.append(m)
                continue
            used += cost
            tiles.append(tile)
            heatmaps.append(heatmap)
        panels.append(
            {
                "output": name,
                "tiles": tiles,
                "heatmaps": heatmaps,
                "error_scale": scale,
                "colorbar": _colorbar(),
                "dropped": dropped,
                "used": used,
                "budget_mb": budget / (1 << 20),
            }
        )
    return panels


def _display_range(images: list[np.ndarray]) -> tuple[float, float]:
    """[0, 1] when the goldens lie in it, else their own min .. max."""
    g_lo = min(float(np.nanmin(g)) for g in images)
    g_hi = max(float(np.nanmax(g)) for g in images)
    return (0.0, 1.0) if g_lo >= 0.0 and g_hi <= 1.0 else (g_lo, g_hi)


def _colorbar() -> str:
    return _png_uri(colormap(np.tile(np.linspace(0.0, 1.0, 256), (12, 1))))


def worst_sample(per_sample: list[dict[str, Any]], metric: str) -> tuple[float, int] | None:
    """The worst per-sample value of `metric` (a NaN first) and its sample; None if absent."""
    extremes = Extremes()
    for index, values in enumerate(per_sample):
        value = values.get(metric)
        if value is not None and not isinstance(value, (list, dict)):
            extremes.update({metric: _num(value)}, str(index))
    if metric in extremes.nan_at:
        return math.nan, int(extremes.nan_at[metric])
    if metrics.HIGHER_IS_BETTER.get(metric, False):
        found, at = extremes.low, extremes.low_at
    else:
        found, at = extremes.high, extremes.high_at
    return (found[metric], int(at[metric])) if metric in found else None


def _worst_text(per_sample: list[dict[str, Any]], metric: str) -> str:
    worst = worst_sample(per_sample, metric)
    if worst is None:
        return "n/a"
    return f"{_show(worst[0])} (sample {worst[1]})"


def grid_samples(count: int, worst: list[int], cap: int = MAX_GRID_SAMPLES) -> list[int]:
    """Which samples the grid shows: all of them up to `cap`, else each mix's worst sample and
    then the first ones, in index order."""
    if count <= cap:
        return list(range(count))
    chosen = list(dict.fromkeys(worst))[:cap]
    chosen += [i for i in range(count) if i not in chosen][: cap - len(chosen)]
    return sorted(chosen)


def _reduce(image: np.ndarray, side: int, how: str = "mean") -> np.ndarray:
    """[H, W, ...] reduced by a whole factor until its longest side is at most `side`:
    block mean for pictures, block maximum for error maps (a hot pixel stays visible)."""
    factor = -(-max(image.shape[:2]) // side)
    if factor <= 1:
        return image
    h, w = image.shape[0] // factor * factor, image.shape[1] // factor * factor
    blocks = image[:h, :w].reshape(h // factor, factor, w // factor, factor, *image.shape[2:])
    return blocks.max(axis=(1, 3)) if how == "max" else blocks.mean(axis=(1, 3))


def _thumb(pixels: np.ndarray, label: str, note: str = "", worst: bool = False) -> dict[str, Any]:
    """A grid image, displayed with its longest side THUMB px (small images magnified)."""
    h, w = pixels.shape[:2]
    zoom = THUMB / max(h, w)
    return {
        "label": label,
        "note": note,
        "worst": worst,
        "uri": _png_uri(pixels),
        "width": max(1, round(w * zoom)),
        "height": max(1, round(h * zoom)),
    }


def pipeline_grid(
    outputs: Mapping[str, SampleOutputs],
    mixes: list[dict[str, Any]],
    samples: int | None = None,
    spent: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Every sample's final image per image output: FP32, each mix, each |mix − FP32| map.

    At most MAX_GRID_SAMPLES rows (beyond that each mix's worst sample, then the first ones) and
    GRID_BUDGET bytes of images per output; the grid says what it left out. Images larger than
    THUMB are reduced (block mean; error maps block maximum). One display range and one error
    colour scale per output over every sample shown; the first image of a batch.
    `outputs` needs only the samples shown (e.g. `mixes.SampleKeeper`'s); `samples` is how
    many there are (default: as many as the golden has); `spent`: output -> bytes of images
    its full-size panel took from the budget.
    """
    golden = outputs["fp32"]
    count = len(golden) if samples is None else samples
    grids = []
    for output, first in golden[0].items():
        layout = metrics.image_layout(tuple(first.shape))
        if layout is None:
            continue
        per_mix = {m["name"]: m["per_sample"].get(output, []) for m in mixes}
        worst = {name: worst_sample(values, "psnr_db") for name, values in per_mix.items()}
        shown = grid_samples(count, [w[1] for w in worst.values() if w is not None])
        g = {i: _hwc(golden[i][output], layout) for i in shown}
        cands = {
            (i, m): _hwc(outputs[m][i][output], layout).reshape(g[i].shape)
            for i in shown
            for m in per_mix
        }
        errors = {key: np.abs(c - g[key[0]]).mean(axis=2) for key, c in cands.items()}
        scale = max((float(np.nanmax(e)) for e in errors.values()), default=0.0)
        lo, hi = _display_range(list(g.values()))
        rows: list[dict[str, Any]] = []
        used, dropped = 0, 0
        for i in shown:
            images = [_thumb(_to_pixels(_reduce(g[i], THUMB), lo, hi), "FP32")]
            maps = []
            for m, values in per_mix.items():
                sample = values[i] if i < len(values) else {}
                note = "PSNR " + _show(sample.get("psnr_db")) + " dB"
                mark = worst[m]  # not for a mix identical to FP32 on every sample (PSNR inf)
                is_worst = mark is not None and mark[1] == i and mark[0] != math.inf
                is_worst = is_worst and count > 1
                pixels = _to_pixels(_reduce(cands[(i, m)], THUMB), lo, hi)
                images.append(_thumb(pixels, m, note, is_worst))
                error = errors[(i, m)] / scale if scale > 0 else np.zeros_like(errors[(i, m)])
                maps.append(_thumb(colormap(_reduce(error, THUMB, "max")), f"|{m} − FP32|"))
            size = sum(len(t["uri"]) for t in images + maps)
            if rows and used + size > GRID_BUDGET - (spent or {}).get(output, 0):
                dropped = len(shown) - len(rows)
                break
            used += size
            rows.append({"sample": i, "images": images, "maps": maps})
        grids.append(
            {
                "output": output,
                "rows": rows,
                "samples": count,
                "capped": len(shown) < count,
                "dropped": dropped,
                "budget_mb": GRID_BUDGET / (1 << 20),
                "error_scale": scale,
                "colorbar": _colorbar(),
                "batch": int(first.shape[0]),
            }
        )
    return grids


def featured_sample(mixes: list[dict[str, Any]], output: str | None) -> int:
    """The sample shown full size: the worst PSNR of any mix on `output`, else sample 0."""
    found = [worst_sample(m["per_sample"].get(output, []), "psnr_db") for m in mixes if output]
    candidates = [w for w in found if w is not None]
    if not candidates:
        return 0
    return min(candidates, key=lambda w: (not math.isnan(w[0]), w[0]))[1]


def write_pipeline_report(
    out_dir: str | Path,
    result: Any,
    outputs: Mapping[str, SampleOutputs],
    *,
    title: str,
    templates: Path | None = None,
) -> dict[str, Path]:
    """`pipeline.json` and a self-contained `pipeline.html`: every mix against the all-FP32
    golden on the final outputs (metric table with each mix's worst sample, verdict), the worst
    sample's final images full size with error maps, and a grid of every sample (capped).
    `outputs`: mix name (and "fp32") -> per sample {output: array}, a list of every sample or
    a mapping index -> outputs of (at least) the samples shown (`evaluate_pipeline`'s). The
    full-size panel and the grid of one output share GRID_BUDGET bytes of images."""
    out_dir = Path(out_dir)
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    data = json_safe(result)
    image_outputs = [
        name
        for name, array in outputs["fp32"][0].items()
        if metrics.image_layout(tuple(array.shape)) is not None
    ]
    featured = featured_sample(data["mixes"], image_outputs[0] if image_outputs else None)
    golden = outputs["fp32"][featured]
    panels = pipeline_panels(golden, {m: o[featured] for m, o in outputs.items() if m != "fp32"})
    spent = {panel["output"]: panel["used"] for panel in panels}
    keys = ["cosine", "psnr_db", "ssim", "rel_euclidean", "rmse", "max_abs_error"]
    worst_keys = ["cosine", "psnr_db"]
    rows = [
        {
            "mix": mix["name"],
            "precisions": mix.get("label")
            or ", ".join(f"{c}={p}" for c, p in mix["precisions"].items()),
            "output": output,
            "cells": [_show(values.get(k)) for k in keys],
            "worst": [_worst_text(mix["per_sample"].get(output, []), k) for k in worst_keys],
            "failures": mix["failures"],
        }
        for mix in data["mixes"]
        for output, values in mix["outputs"].items()
    ]
    context = {
        "title": title,
        "generated": generated,
        "result": data,
        "keys": keys,
        "worst_keys": worst_keys,
        "rows": rows,
        "panels": panels,
        "featured": featured,
        "grids": pipeline_grid(outputs, data["mixes"], int(data["samples"]), spent),
        "builds": [
            {**b, "settings": _flatten(b.get("overrides") or {})} for b in data.get("builds", [])
        ],
        "environment": _flatten(environment_info()),
    }
    html = render_template(PIPELINE_TEMPLATE, context, templates, autoescape=True)
    json_path = save_json(out_dir / "pipeline.json", {"generated": generated, **data})
    html_path = atomic_write_text(out_dir / "pipeline.html", html)
    return {"json": json_path, "html": html_path}


# --- latency plot ------------------------------------------------------------------------------


def latency_plot(bench: dict[str, Any]) -> dict[str, Any]:
    """Geometry of a horizontal latency plot: bar = mean, whisker = min..p99, tick = median."""
    rows = bench.get("rows", [])
    label_w, plot_w, row_h, top = 220, 480, 34, 24
    top_value = max((_num(r["result"]["latency_ms"]["p99"]) for r in rows), default=0.0)
    top_value = max(
        top_value, max((_num(r["result"]["latency_ms"]["mean"]) for r in rows), default=0.0)
    )
    top_value = top_value * 1.1 or 1.0

    def x(value: Any) -> float:
        return round(label_w + plot_w * min(_num(value), top_value) / top_value, 2)

    bars = []
    for i, row in enumerate(rows):
        lat = row["result"]["latency_ms"]
        y = top + i * row_h
        bars.append(
            {
                "label": Path(str(row["result"]["model"])).name
                + (f" @ {row['result']['gear']}" if row["result"].get("gear") else ""),
                "y": y,
                "mid": y + row_h / 2 - 4,
                "x0": label_w,
                "mean_x": x(lat["mean"]),
                "min_x": x(lat["min"]),
                "p99_x": x(lat["p99"]),
                "median_x": x(lat["median"]),
                "mean": _num(lat["mean"]),
            }
        )
    ticks = [{"x": x(top_value * f / 4), "value": top_value * f / 4} for f in range(5)]
    return {
        "width": label_w + plot_w + 80,
        "height": top + row_h * len(rows) + 30,
        "axis_y": top + row_h * len(rows),
        "bars": bars,
        "ticks": ticks,
        "bar_h": row_h - 12,
    }


SQNR_CAP_DB = 60.0  # bars stop here; an exact layer (SQNR inf) is drawn at the cap


def analysis_view(analysis: dict[str, Any]) -> dict[str, Any]:
    """The per-layer section: isolated SQNR bars of the INT8 layers in graph order (worst ones
    highlighted), the ranked table, the advice and the ready-to-use snippets."""
    layers = [
        x for x in analysis.get("layers", {}).get("int8", []) if x.get("quantized")
    ] or analysis.get("layers", {}).get("fp16", [])
    worst = set(analysis.get("skip_layers", []))
    label_h, plot_h, bar_w, gap, left = 90, 160, 18, 6, 40
    bars = []
    for i, layer in enumerate(layers):
        value = layer.get("isolated_sqnr_db")
        shown = SQNR_CAP_DB if value is None else max(0.0, min(float(value), SQNR_CAP_DB))
        height = round(plot_h * shown / SQNR_CAP_DB, 2)
        x = left + i * (bar_w + gap)
        bars.append(
            {
                "x": x,
                "y": 20 + plot_h - height,
                "height": height,
                "label": layer["name"],
                "value": "exact" if value is None else f"{float(value):.1f}",
                "worst": layer["name"] in worst,
                "label_x": x + bar_w / 2,
            }
        )
    ticks = [{"y": 20 + plot_h - plot_h * f / 4, "value": SQNR_CAP_DB * f / 4} for f in range(5)]
    ranked_names = analysis.get("ranking", {}).get("int8") or analysis.get("ranking", {}).get(
        "fp16", []
    )
    by_name = {x["name"]: x for x in layers}
    rows = []
    for name in ranked_names[:10]:
        layer = by_name.get(name)
        if layer is None:
            continue
        iso, acc = layer.get("isolated") or {}, layer.get("accumulated") or {}
        rows.append(
            {
                "name": name,
                "op_type": layer.get("op_type"),
                "isolated": _db(layer.get("isolated_sqnr_db")),
                "accumulated": _db(layer.get("accumulated_sqnr_db")),
                "iso_cosine": _fixed(iso.get("cosine")),
                "acc_cosine": _fixed(acc.get("cosine")),
                "clip": ""
                if layer.get("clip_fraction") is None
                else f"{100 * float(layer['clip_fraction']):.2f}%",
                "worst": name in worst,
            }
        )
    return {
        "plot": {
            "width": left + len(bars) * (bar_w + gap) + 20,
            "height": 20 + plot_h + label_h,
            "axis_y": 20 + plot_h,
            "bar_w": bar_w,
            "left": left,
            "bars": bars,
            "ticks": ticks,
        }
        if bars
        else None,
        "precision": "INT8" if analysis.get("layers", {}).get("int8") else "FP16",
        "rows": rows,
        "advice": analysis.get("advice", []),
        "notes": analysis.get("notes", []),
        "skip_layers_toml": analysis.get("skip_layers_toml", ""),
        "keep_dtype_cfg": analysis.get("keep_dtype_cfg", ""),
        "samples": analysis.get("samples"),
    }


def _db(value: Any) -> str:
    return "exact" if value is None else f"{float(value):.1f} dB"


def _fixed(value: Any) -> str:
    return "" if value is None else f"{float(value):.6f}"


def _num(value: Any) -> float:
    if isinstance(value, str):
        return float(value)
    return float(value) if value is not None else math.nan


# --- tuning ------------------------------------------------------------------------------------


def _tune_metric(trials: list[dict[str, Any]]) -> str:
    """Cosine when every trial has it (what users read), else the worst gate margin."""
    has = all((t.get("metrics") or {}).get("cosine") is not None for t in trials)
    return "cosine" if has and trials else "margin"


def _tune_value(trial: dict[str, Any], metric: str) -> float:
    value = trial.get("margin") if metric == "margin" else (trial.get("metrics") or {})[metric]
    return _num(value)


def tune_plot(path: list[dict[str, Any]], chosen: int | None, threshold: float | None) -> Any:
    """Geometry of the accuracy-cost path: one point per trial, joined in search order."""
    metric = _tune_metric(path)
    values = [_tune_value(t, metric) for t in path]
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    left, right, top, bottom = 70, 620, 26, 246
    lo, hi = min(finite), max(finite)
    if threshold is not None and math.isfinite(threshold):
        lo, hi = min(lo, threshold), max(hi, threshold)
    span = (hi - lo) or 1.0
    lo, hi = lo - 0.05 * span, hi + 0.05 * span
    cost_top = max([float(t["cost"]) for t in path] + [0.01]) * 1.1

    def x(cost: float) -> float:
        return round(left + (right - left) * cost / cost_top, 2)

    def y(value: float) -> float:
        value = value if math.isfinite(value) else lo
        return round(bottom - (bottom - top) * (value - lo) / (hi - lo), 2)

    points = [
        {
            "x": x(float(t["cost"])),
            "y": y(v),
            "passed": bool(t["passed"]),
            "index": t["index"],
            "chosen": t["index"] == chosen,
        }
        for t, v in zip(path, values)
    ]
    return {
        "width": right + 30,
        "height": bottom + 26,
        "left": left,
        "right": right,
        "bottom": bottom,
        "metric": metric,
        "path": " ".join(f"{p['x']},{p['y']}" for p in points),
        "points": points,
        "xticks": [
            {"x": x(cost_top * f / 4), "label": f"{100 * cost_top * f / 4:.0f}%"} for f in range(5)
        ],
        "yticks": [
            {"y": y(lo + (hi - lo) * f / 4), "label": f"{lo + (hi - lo) * f / 4:.4g}"}
            for f in range(5)
        ],
        "threshold_y": y(threshold)
        if threshold is not None and metric == "cosine"
        else (y(0.0) if metric == "margin" else None),
        "threshold_label": f"{threshold:g}"
        if threshold is not None and metric == "cosine"
        else "margin 0",
    }


def tune_sections(tune: dict[str, Any] | None, config: dict[str, Any]) -> list[dict[str, Any]]:
    """One section per tuned precision of `tune.json`: the chosen config, its cost, the path."""
    if not tune:
        return []
    threshold = (config.get("thresholds") or {}).get("cosine_min")
    sections = []
    for precision, found in tune.get("precisions", {}).items():
        path = found.get("path", [])
        best = found.get("best") or {}
        metric = _tune_metric(path)
        delta = found.get("delta", {})
        sections.append(
            {
                "precision": precision,
                "passed": found["passed"],
                "message": found["message"],
                "stop": found["stop"],
                "floats": delta.get("floats", []),
                "overrides": [
                    f"{k}: {v}" for k, v in delta.get("override_layer_configs", {}).items()
                ],
                "cost": float(found.get("cost", 0.0)),
                "params": found.get("params"),
                "trials": found.get("trials", len(path)),
                "evaluated": found.get("evaluated", len(path)),
                "metric": metric,
                "plot": tune_plot(path, best.get("index"), threshold) if len(path) > 1 else None,
                "rows": [
                    {
                        "index": t["index"],
                        "phase": t["phase"],
                        "floats": ", ".join(t["delta"]["floats"]),
                        "overrides": ", ".join(t["delta"]["override_layer_configs"]),
                        "cost": f"{100 * float(t['cost']):.1f}%",
                        "metric": _show(_tune_value(t, metric)),
                        "passed": t["passed"],
                        "verdict": t.get("verdict") or ("PASSED" if t["passed"] else "FAILED"),
                        "cached": t["cached"],
                    }
                    for t in path
                ],
            }
        )
    return sections


# --- the report --------------------------------------------------------------------------------


def _accuracy_tables(compare: dict[str, Any]) -> list[dict[str, Any]]:
    """One table per model output: rows = metrics, columns = candidates (aggregate, worst)."""
    candidates = compare.get("candidates", [])
    outputs: dict[str, dict[str, Any]] = {}
    for cand in candidates:
        for out in cand["outputs"]:
            limits = limits_by_metric(out.get("gates", []))
            # a gate judges the aggregate or the worst sample: mark the cell it judged
            gated = {(g["metric"], g.get("scope", "aggregate")) for g in out.get("gates", [])}
            failed = {
                (f["metric"], f.get("scope", "aggregate")) for f in out.get("gate_failures", [])
            }
            table = outputs.setdefault(
                out["output"],
                {"output": out["output"], "kind": out["kind"], "shape": out["shape"],
                 "task": out.get("task", out["kind"]), "task_source": out.get("task_source", ""),
                 "range_source": out.get("range_source"), "value_range": out.get("value_range"),
                 "columns": [], "rows": {}},
            )  # fmt: skip
            table["columns"].append(
                {"name": cand["name"] + (f" @ {cand['gear']}" if cand.get("gear") else ""),
                 "passed": out["passed"], "notes": out["notes"], "failures": out["failures"]}
            )  # fmt: skip
            for key, value in out["metrics"].items():
                row = table["rows"].setdefault(
                    key,
                    {"key": key, "label": _label(key), "cells": [],
                     "threshold": limits.get(key, "")},
                )  # fmt: skip
                worst = out["worst"].get(key)
                row["cells"].append(
                    {"value": metrics.format_value(key, value),
                     "worst": metrics.format_value(key, worst),
                     "checked": (key, "aggregate") in gated and value is not None,
                     "failed": (key, "aggregate") in failed,
                     "worst_checked": (key, "worst") in gated and worst is not None,
                     "worst_failed": (key, "worst") in failed}
                )  # fmt: skip
    ordered = []
    for table in outputs.values():
        labels = {**metrics.METRIC_LABELS, **tasks.TASK_METRIC_LABELS}
        keys = [k for k in labels if k in table["rows"]]
        keys += [k for k in table["rows"] if k not in keys]
        table["rows"] = [table["rows"][k] for k in keys]
        ordered.append(table)
    return ordered


def _label(key: str) -> str:
    return metrics.METRIC_LABELS.get(key) or tasks.TASK_METRIC_LABELS.get(key) or key


def _show(value: Any) -> str:
    if value is None:
        return "n/a"
    number = _num(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "∞" if number > 0 else "−∞"
    return f"{number:.6g}"


def _memory(value: Any) -> str:
    return "unknown" if value is None else _size(int(value))


def _bench_rows(bench: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for row in bench.get("rows", []):
        r = row["result"]
        lat = r["latency_ms"]
        rows.append(
            {
                "model": Path(str(r["model"])).name,
                "precision": r.get("precision") or "",
                "device": r["device"],
                "simulated": r["simulated"],
                "batch": r["batch_size"],
                "latency": {k: _show(lat[k]) for k in LATENCY_KEYS},
                "count": lat["count"],
                "throughput": _show(r["throughput"]),
                "size": _size(int(r["file_size_bytes"])),
                "memory": _memory(r.get("peak_memory_bytes")),
                "memory_source": r.get("memory_source") or "unknown",
                "speedup": _times(row.get("speedup"), "1× (baseline)"),
                "size_ratio": _times(row.get("size_ratio"), "1×"),
                "throughput_ratio": _times(row.get("throughput_ratio"), "1×"),
            }
        )  # fmt: skip
    return rows


def _times(value: Any, baseline: str) -> str:
    return baseline if value is None else f"{_num(value):.2f}×"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)  # pragma: no cover


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested config as (dotted key, value) pairs for a two-column table."""
    if isinstance(data, dict) and data:
        pairs: list[tuple[str, str]] = []
        for key, value in data.items():
            pairs += _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return pairs
    if isinstance(data, list):
        return [(prefix, ", ".join(map(str, data)) if data else "[]")]
    return [(prefix, "" if data is None else str(data))]


def render_html(
    *,
    environment: dict[str, Any],
    config: dict[str, Any],
    bench: Any,
    compare: Any,
    title: str,
    generated: str,
    templates: Path | None = None,
    analysis: dict[str, Any] | None = None,
    tune: dict[str, Any] | None = None,
) -> str:
    """The report page as a string (see `write_report`)."""
    bench_map = json_safe(bench) if bench is not None else None
    compare_map = json_safe(compare) if compare is not None else None
    labels: dict[str, str] = {}
    panels = []
    if compare_map:
        for cand in compare_map.get("candidates", []):
            precision = (cand.get("precision") or "").upper()
            labels[cand["name"]] = f"{precision} ({cand['name']})" if precision else cand["name"]
        for sample in compare_map.get("image_samples", []):
            panel = image_panels(sample, labels)
            if panel is not None:
                panels.append(panel)
    context = {
        "title": title,
        "generated": generated,
        "environment": _flatten(environment),
        "config": _flatten(config),
        "bench": bench_map,
        "bench_rows": _bench_rows(bench_map) if bench_map else [],
        "simulated": any(r["result"]["simulated"] for r in bench_map["rows"])
        if bench_map
        else False,
        "plot": latency_plot(bench_map) if bench_map and bench_map.get("rows") else None,
        "compare": compare_map,
        "accuracy": _accuracy_tables(compare_map) if compare_map else [],
        "panels": panels,
        "analysis": analysis_view(json_safe(analysis)) if analysis else None,
        "tune": tune_sections(tune, config),
    }
    # The same immutable sandbox and plain values as the toolkit configs, HTML-escaped.
    return render_template(REPORT_TEMPLATE, context, templates, autoescape=True)


def write_report(
    out_dir: Path,
    *,
    environment: dict[str, Any],
    config: dict[str, Any],
    bench: Any | None,
    compare: Any | None,
    title: str,
    templates: Path | None = None,
    analysis: dict[str, Any] | None = None,
    tune: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write `report.json` and a self-contained `report.html` into `out_dir`, atomically.

    `bench` and `compare` may be a `BenchTable` / `CompareResult` or their JSON mappings.
    `templates`: a folder searched for `report.html.j2` before the bundled one.
    """
    out_dir = Path(out_dir)
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    data = {
        "title": title,
        "generated": generated,
        "environment": environment,
        "config": config,
        "bench": bench,
        "compare": compare,
    }
    if analysis:
        data["analysis"] = analysis
    if tune:
        data["tune"] = tune
    html = render_html(
        environment=environment,
        config=config,
        bench=bench,
        compare=compare,
        title=title,
        generated=generated,
        templates=templates,
        analysis=analysis,
        tune=tune,
    )
    json_path = save_json(out_dir / "report.json", data)
    html_path = atomic_write_text(out_dir / "report.html", html)
    return {"json": json_path, "html": html_path}
