"""ascend-quant: ONNX to Huawei Ascend .om in FP16 and INT8, with INT8's cost and gain measured.

The whole job is `ascend_quant.build(model, config)`; each stage is also a function of its own:

    preflight        model.preflight            inspect, repair, resolve shapes, simplify
    make_calib_set   data.images.make_calib_set images -> .bin tensors, list files, manifest
    Recorder         data.Recorder              capture a running pipeline's feeds as calib sets
    render_configs   render.render_configs      quant_config.json and the CANN .cfg files
    convert_model    jobs.convert_model         FP16 or INT8 .om with the atc or sim backend
    get_backend      backends.get_backend       run(...) / bench(...) an .om on either backend
    bench_models     bench.bench_models         latency and throughput side by side
    compare_models   compare.compare_models     FP32 golden vs candidates, msit metrics, verdict
    write_report     report.write_report        report.json and a self-contained report.html

A multi-model pipeline (e.g. a diffusion UNet, then an upscaler), one precision per component:

    load_pipeline_spec     mixes.load_pipeline_spec     a pipeline TOML -> PipelineSpec
    evaluate_pipeline      mixes.evaluate_pipeline      build, run every precision mix and the
                                                        all-FP32 golden, judge the final outputs
    write_pipeline_report  report.write_pipeline_report pipeline.json and pipeline.html

Imports are lazy so that `import ascend_quant` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ascend_quant.__about__ import __version__

if TYPE_CHECKING:
    from ascend_quant.backends import backend_for_om, get_backend
    from ascend_quant.bench import bench_models
    from ascend_quant.compare import compare_models
    from ascend_quant.config import BuildConfig, load_build_config
    from ascend_quant.data.calibset import CalibSet
    from ascend_quant.data.images import make_calib_set
    from ascend_quant.data.recorder import Recorder
    from ascend_quant.errors import AscendQuantError, ToolchainError, UsageError
    from ascend_quant.jobs import convert_model
    from ascend_quant.mixes import (
        PipelineResult,
        PipelineSpec,
        evaluate_pipeline,
        load_pipeline_spec,
    )
    from ascend_quant.model import preflight
    from ascend_quant.pipeline import BuildResult, build
    from ascend_quant.render import render_configs
    from ascend_quant.report import write_pipeline_report, write_report

_EXPORTS = {
    "build": "ascend_quant.pipeline",
    "BuildResult": "ascend_quant.pipeline",
    "BuildConfig": "ascend_quant.config",
    "load_build_config": "ascend_quant.config",
    "preflight": "ascend_quant.model",
    "make_calib_set": "ascend_quant.data.images",
    "CalibSet": "ascend_quant.data.calibset",
    "Recorder": "ascend_quant.data.recorder",
    "render_configs": "ascend_quant.render",
    "convert_model": "ascend_quant.jobs",
    "get_backend": "ascend_quant.backends",
    "backend_for_om": "ascend_quant.backends",
    "bench_models": "ascend_quant.bench",
    "compare_models": "ascend_quant.compare",
    "write_report": "ascend_quant.report",
    "load_pipeline_spec": "ascend_quant.mixes",
    "evaluate_pipeline": "ascend_quant.mixes",
    "PipelineSpec": "ascend_quant.mixes",
    "PipelineResult": "ascend_quant.mixes",
    "write_pipeline_report": "ascend_quant.report",
    "AscendQuantError": "ascend_quant.errors",
    "UsageError": "ascend_quant.errors",
    "ToolchainError": "ascend_quant.errors",
}

__all__ = [
    "AscendQuantError",
    "BuildConfig",
    "BuildResult",
    "CalibSet",
    "PipelineResult",
    "PipelineSpec",
    "Recorder",
    "ToolchainError",
    "UsageError",
    "__version__",
    "backend_for_om",
    "bench_models",
    "build",
    "compare_models",
    "convert_model",
    "evaluate_pipeline",
    "get_backend",
    "load_build_config",
    "load_pipeline_spec",
    "make_calib_set",
    "preflight",
    "render_configs",
    "write_pipeline_report",
    "write_report",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ascend_quant' has no attribute {name!r}")
