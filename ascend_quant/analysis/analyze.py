"""`analyze`: per-layer error of a build's converted models on its evaluation data, written out.

Reads the preflighted model (the golden, in the names every backend uses), the .om files and
the evaluation sets; writes `analysis.json`, the `skip_layers` snippets and `keep_dtype.cfg`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import onnx

from ascend_quant.analysis.candidates import load_candidates
from ascend_quant.analysis.layers import LayerAnalysis, analyze_layers
from ascend_quant.data.calibset import CalibFeeds, CalibSet
from ascend_quant.errors import UsageError
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.tensors import graph_io
from ascend_quant.workspace import atomic_write_json, atomic_write_text

ANALYSIS_JSON = "analysis.json"
KEEP_DTYPE_CFG = "keep_dtype.cfg"
SKIP_LAYERS_TOML = "skip_layers.toml"
SKIP_LAYERS_CFG = "skip_layers.cfg"


def analyze_models(
    golden_path: Path,
    oms: Mapping[str, Path],
    eval_dirs: Mapping[str, Path],
    keep_dtype: tuple[str, ...] = (),
    limit: int | None = None,
    progress: Progress = NULL_PROGRESS,
) -> LayerAnalysis:
    """Per-layer analysis of {precision: .om} against the golden ONNX model on the eval sets."""
    try:
        golden = onnx.load(str(golden_path))
    except Exception as exc:
        raise UsageError(f"{golden_path}: not a loadable ONNX model ({exc})") from None
    candidates, notes = load_candidates(golden, oms, keep_dtype)
    if not candidates:
        raise UsageError(
            "nothing to analyse: " + " ".join(notes), hint="analyse simulated or AMCT-built models"
        )
    specs = graph_io(candidates[0].model)[0]  # the converted models' static input shapes
    feeds = CalibFeeds(specs, {n: CalibSet.load(Path(d)) for n, d in eval_dirs.items()}, limit)
    started = time.perf_counter()
    analysis = analyze_layers(golden, candidates, iter(feeds), len(feeds), progress)
    analysis.notes = notes + analysis.notes
    analysis.seconds = round(time.perf_counter() - started, 3)
    return analysis


def write_analysis(analysis: LayerAnalysis, out_dir: Path) -> dict[str, Path]:
    """analysis.json plus the ready-to-use files; returns them by name."""
    out_dir = Path(out_dir)
    paths = {
        ANALYSIS_JSON: atomic_write_json(out_dir / ANALYSIS_JSON, analysis.to_json()),
        SKIP_LAYERS_TOML: atomic_write_text(
            out_dir / SKIP_LAYERS_TOML, analysis.skip_layers_toml()
        ),
        SKIP_LAYERS_CFG: atomic_write_text(out_dir / SKIP_LAYERS_CFG, analysis.skip_layers_cfg()),
    }
    keep = analysis.keep_dtype_cfg()
    target = out_dir / KEEP_DTYPE_CFG
    if keep:
        paths[KEEP_DTYPE_CFG] = atomic_write_text(target, keep)
    else:
        target.unlink(missing_ok=True)
    return paths
