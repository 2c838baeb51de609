"""One model prepared for one soc: its conversion request, rendered configs and scripts.

`config`, `convert` and `build` all go through these functions, so the files a user deploys
with (atc_fp16.sh, atc_int8.sh, amct_int8.sh and the .cfg files they name) are exactly what the
tool itself ran or would run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ascend_quant import render
from ascend_quant.backends.base import Artifact, Backend, ConvertRequest
from ascend_quant.config import PRECISIONS, BuildConfig, Precision, merge
from ascend_quant.data.calibset import CalibSet
from ascend_quant.data.feeds import RANDOM_WARNING
from ascend_quant.data.inputs import is_random, make_sets, plan_inputs
from ascend_quant.errors import UsageError
from ascend_quant.gears import Gears, check_target
from ascend_quant.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:  # model imports onnx; the CLI imports this module at start-up
    from ascend_quant.model import PreflightResult

log = logging.getLogger("ascend_quant")

# (route, script name); route "atc" is ATC-native calibration, "amct" is amct_onnx then atc,
# "w8" is atc's weight-only INT8 (weight_compress_only).
SCRIPTS = (
    ("fp16", "atc_fp16.sh"),
    ("atc", "atc_int8.sh"),
    ("amct", "amct_int8.sh"),
    ("w8", "atc_w8.sh"),
)
_ROUTE_NEEDS = {
    "atc": render.COMPRESSION_CONFIG,
    "amct": render.AMCT_CONFIG,
    "w8": render.COMPRESSION_CONFIG_W8,
}
_ROUTE_PRECISION: dict[str, Precision] = {"fp16": "fp16", "w8": "w8"}
_ROUTE_LABEL = {"fp16": "FP16", "w8": "weight-only INT8 (weight_compress_only)"}


def make_request(
    config: BuildConfig,
    *,
    model: Path,
    source_sha256: str,
    input_shapes: dict[str, tuple[int, ...]],
    soc: str,
    precision: Precision,
    out_dir: Path,
    name: str,
    calib_dirs: dict[str, Path],
    config_dir: Path | None,
    gears: Gears | None = None,
) -> ConvertRequest:
    return ConvertRequest(
        model=model,
        source_sha256=source_sha256,
        input_shapes=input_shapes,
        soc=soc,
        precision=precision,
        out_dir=out_dir,
        name=name,
        quant=config.quant,
        atc=config.atc,
        aipp=config.aipp,
        preprocess=config.preprocess,
        calib_dirs=calib_dirs,
        config_dir=config_dir,
        gears=gears,
    )


def follow_calib_batch(config: BuildConfig, calib_dirs: dict[str, Path]) -> BuildConfig:
    """The rendered calibration shapes use the calib sets' batch N, which must be one value."""
    from ascend_quant.data.calibset import CalibSet

    batches = {CalibSet.load(d).batch for d in calib_dirs.values()}
    if not batches:
        return config
    if len(batches) > 1:
        raise UsageError(
            f"the calibration sets have different batch sizes {sorted(batches)}",
            hint="re-create them with the same --batch",
        )
    return merge(config, {"calib": {"batch": batches.pop()}})


def check_node_names(model: Path, config: BuildConfig) -> None:
    """Refuse node names the model lacks (skip_layers, override_layer_configs, tensor_quantize,
    keep_dtype) before they are written: atc and amct_onnx would skip a typo silently, and the
    simulator's convert refuses it, so `config` and the toolkit route refuse it too."""
    import onnx  # onnx is heavy: kept off the CLI's start-up, as the other imports here

    from ascend_quant.quant.fp16 import kept_nodes
    from ascend_quant.quant.layers import plan_layers

    graph = onnx.load(str(model), load_external_data=False)
    plan_layers(graph, config.quant)
    kept_nodes(graph, config.atc.keep_dtype)


def render_job(
    config: BuildConfig,
    soc: str,
    *,
    model: Path,
    source_sha256: str,
    input_shapes: dict[str, tuple[int, ...]],
    calib_dirs: dict[str, Path],
    config_dir: Path,
    om_dir: Path,
    name: str,
    int8_refused: str | None = None,
    gears: Gears | None = None,
) -> dict[str, Path]:
    """Render the .cfg files and the runnable scripts for one soc into `config_dir`."""
    from ascend_quant.backends.atc import commands_for
    from ascend_quant.backends.atc_argv import work_dir
    from ascend_quant.data.calibset import CalibSet

    check_node_names(model, config)
    sets = {n: CalibSet.load(d) for n, d in calib_dirs.items()}
    files = render.render_configs(
        config,
        soc,
        input_shapes,
        {n: calib_set.batch_files[0] for n, calib_set in sets.items()},
        config_dir,
        model_path=model,
        data_types={n: calib_set.dtype for n, calib_set in sets.items()},
        batch_dims={n: calib_set.batch_dim for n, calib_set in sets.items()},
        calib_sample_files={n: calib_set.sample_files[0] for n, calib_set in sets.items()},
    )
    for route, script in SCRIPTS:
        needs = _ROUTE_NEEDS.get(route)
        if needs is not None and (int8_refused or needs not in files):
            log.info(f"{script} not written: {int8_refused or needs + ' was not rendered'}")
            continue
        request = make_request(
            config,
            model=model,
            source_sha256=source_sha256,
            input_shapes=input_shapes,
            soc=soc,
            precision=_ROUTE_PRECISION.get(route, "int8"),
            out_dir=om_dir,
            name=name,
            calib_dirs=calib_dirs,
            config_dir=config_dir,
            gears=gears,
        )
        try:
            commands = commands_for(request, route)
        except UsageError as exc:
            log.warning(f"{script} not written: {exc.message}")
            continue
        label = _ROUTE_LABEL.get(route, f"INT8, route {route}")
        if gears is not None:
            label += f", {gears.kind} gears {' '.join(gears.labels)}"
            if route != "fp16":
                label += f", calibrated at {gears.label(gears.calib_index)}"
        files[script] = render.render_script(
            commands,
            config_dir / script,
            config.templates,
            f"{name} for {soc}: {label}",
            workdir=work_dir(request),
        )
    return files


def make_calib_dirs(
    pre: PreflightResult, config: BuildConfig, out: Path, progress: Progress = NULL_PROGRESS
) -> dict[str, Path]:
    """Calib sets at `out/<input>/` from the sources in `config` (`--calib NAME=SOURCE`)."""
    plans = plan_inputs(pre.declared_inputs, pre.input_shapes, config, list(pre.pinned))
    if is_random(plans):
        log.warning(RANDOM_WARNING)
    sets, _ = make_sets(plans, "calib", out, config, progress=progress)
    return {name: calib_set.root for name, calib_set in sets.items()}


def calib_dirs_by_input(items: list[str] | None) -> dict[str, Path]:
    """Calib set dirs (`ascend-quant calib --out DIR`, comma-separated or repeated) ->
    {input name: dir}; each set names its input."""
    result: dict[str, Path] = {}
    for item in items or []:
        for part in filter(None, (p.strip() for p in item.split(","))):
            calib = CalibSet.load(Path(part))
            if calib.input_name in result:
                raise UsageError(f"two calibration sets for input '{calib.input_name}'")
            result[calib.input_name] = Path(part)
    return result


def preflight_for(
    model: Path,
    config: BuildConfig,
    out: Path,
    simplify: bool = True,
    progress: Progress = NULL_PROGRESS,
) -> PreflightResult:
    """Preflight `model` into `out/model/` with the config's shapes, pinned inputs and gears."""
    from ascend_quant.model import preflight

    return preflight(
        model,
        out / "model",
        config.input_shape,
        simplify=simplify,
        progress=progress,
        pinned={n: s.value for n, s in config.inputs.items() if s.value is not None},
        gears_config=config.gears,
        input_format=config.atc.input_format,
        extra_args=config.atc.extra_args,
    )


def calib_sets_for(
    pre: PreflightResult,
    config: BuildConfig,
    calib_dirs: dict[str, Path],
    out: Path,
    progress: Progress = NULL_PROGRESS,
) -> tuple[dict[str, Path], BuildConfig]:
    """The calib sets given, or those made from the config's sources under `out/calib/`, and
    the config with their batch size."""
    if not calib_dirs and (config.calib.sources or any(s.calib for s in config.inputs.values())):
        calib_dirs = make_calib_dirs(pre, config, out / "calib", progress)
    return calib_dirs, follow_calib_batch(config, calib_dirs)


def render_configs(
    model: Path,
    config: BuildConfig,
    out: Path,
    calib_dirs: dict[str, Path],
    simplify: bool = True,
    progress: Progress = NULL_PROGRESS,
) -> dict[str, dict[str, Path]]:
    """Preflight `model` and render configs and scripts for every soc; {soc: {file: path}}.

    Calibration data comes from `calib_dirs` (calib sets by input) or, when none are given,
    from the sources in `config`, made into sets under `out/calib/` as `convert` does. One soc
    writes into `out`, several into `out/<soc>/`.
    """
    from ascend_quant.model import refuse_int8_reason
    from ascend_quant.soc import get_soc

    if not config.socs:
        raise UsageError("no soc given", hint="pass --soc, e.g. --soc Ascend310P3")
    for soc in config.socs:
        get_soc(soc)
    pre = preflight_for(model, config, out, simplify, progress)
    unknown = [name for name in calib_dirs if name not in pre.input_shapes]
    if unknown:
        raise UsageError(
            f"--calib: the calib set's input '{unknown[0]}' is not an input of the model "
            f"(its inputs: {', '.join(pre.input_shapes)})",
            hint="make the set for one of the model's inputs (`ascend-quant calib --input`)",
        )
    for soc in config.socs:
        check_gear_target(config, soc, pre.gears)
    calib_dirs, config = calib_sets_for(pre, config, calib_dirs, out, progress)
    refused = refuse_int8_reason(pre.summary)
    written: dict[str, dict[str, Path]] = {}
    for soc in config.socs:
        soc_out = out if len(config.socs) == 1 else out / soc
        written[soc] = render_job(
            config,
            soc,
            model=pre.model_path,
            source_sha256=pre.source_sha256,
            input_shapes=pre.input_shapes,
            calib_dirs=calib_dirs,
            config_dir=soc_out,
            om_dir=soc_out / "om",
            name=Path(model).stem,
            int8_refused=refused,
            gears=pre.gears,
        )
    return written


def convert_model(
    model: Path,
    config: BuildConfig,
    soc: str,
    precision: str,
    out: Path,
    calib_dirs: dict[str, Path],
    backend: Backend,
    progress: Progress = NULL_PROGRESS,
) -> Artifact:
    """preflight -> (atc backend: render configs) -> backend.convert, for one soc and precision.

    Writes `out/model/`, `out/<soc>/configs/` and `out/<soc>/om/`.
    """
    from ascend_quant.model import refuse_int8_reason
    from ascend_quant.soc import get_soc

    if precision not in PRECISIONS:
        raise UsageError(f"--precision: '{precision}' is not fp16, int8 or w8")
    info = get_soc(soc)
    if precision == "w8" and info.w8_refusal:
        raise UsageError(info.w8_refusal, hint="use --precision int8 (W8A8) or fp16 for this soc")
    pre = preflight_for(model, config, out, progress=progress)
    check_gear_target(config, soc, pre.gears)
    calib_dirs, config = calib_sets_for(pre, config, calib_dirs, out, progress)
    if precision != "fp16":
        reason = refuse_int8_reason(pre.summary)
        if reason:
            raise UsageError(reason, hint="convert the float model, or use --precision fp16")
    if precision == "w8" and backend.name == "atc" and not calib_dirs:
        raise UsageError(
            "--precision w8 on the atc backend needs calibration data: atc's compression "
            "step reads input_data_dir even when only weights are quantized",
            hint="create a set with `ascend-quant calib` and pass --calib DIR",
        )
    if precision == "int8" and not calib_dirs:
        raise UsageError(
            "--precision int8 needs calibration data",
            hint="create a set with `ascend-quant calib` and pass --calib DIR",
        )
    config_dir: Path | None = None
    if backend.name == "atc" and (
        precision != "fp16" or config.aipp.enabled or config.atc.keep_dtype
    ):
        config_dir = out / soc / "configs"
        render_job(
            config,
            soc,
            model=pre.model_path,
            source_sha256=pre.source_sha256,
            input_shapes=pre.input_shapes,
            calib_dirs=calib_dirs,
            config_dir=config_dir,
            om_dir=out / soc / "om",
            name=Path(model).stem,
            gears=pre.gears,
        )
    request = make_request(
        config,
        model=pre.model_path,
        source_sha256=pre.source_sha256,
        input_shapes=pre.input_shapes,
        soc=soc,
        precision=precision,
        out_dir=out / soc / "om",
        name=Path(model).stem,
        calib_dirs=calib_dirs,
        config_dir=config_dir,
        gears=pre.gears,
    )
    if pre.gears is not None and precision == "int8":
        log.info(
            f"INT8 calibrates at gear {pre.gears.label(pre.gears.calib_index)} "
            f"(of {', '.join(pre.gears.labels)}); gears.calib_gear chooses another"
        )
    return backend.convert(request, progress)


def check_gear_target(config: BuildConfig, soc: str, gears: Gears | None) -> None:
    """The soc- and AIPP-dependent gear rules, before any tool runs."""
    from ascend_quant.soc import get_soc

    info = get_soc(soc)
    if gears is not None and len(gears) > info.max_gears:
        raise UsageError(
            f"{len(gears)} gears; atc allows at most {info.max_gears} for {soc} (E10001)",
            hint="keep fewer gears",
        )
    check_target(
        gears,
        soc=soc,
        shape_ranges=info.dynamic_shape_range,
        aipp_enabled=config.aipp.enabled,
        aipp_crop=config.aipp.crop,
        aipp_src_size=config.aipp.src_image_size,
        extra_args=config.atc.extra_args,
        input_shape=config.input_shape,
    )
