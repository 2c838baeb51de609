"""Which data each model input of a build gets, and writing its calibration and evaluation sets.

Every input is planned once from the graph, the resolved shapes and `BuildConfig`: its kind
(image, array or pinned to a constant), its batch dim (marked, never guessed from sizes), its
preprocessing and its sources. Then `make_sets` writes one calib set per input, checking all
array sources before writing any, and every input's sample count against the others.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ascend_quant.config import BuildConfig, CalibConfig, InputConfig, PreprocessConfig, merge
from ascend_quant.data import arrays, images
from ascend_quant.data.calibset import MANIFEST, CalibFeeds, CalibSet, write_samples
from ascend_quant.data.feeds import RANDOM_WARNING, random_samples
from ascend_quant.errors import UsageError
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.tensors import InputProfile, TensorSpec, graph_io
from ascend_quant.workspace import read_json, safe_name, sha256_json

log = logging.getLogger("ascend_quant")

RANDOM = "random"  # the --calib / --eval source that asks for seeded random data
RANDOM_SAMPLES = 16  # random samples when --limit does not say
IMAGE_DTYPES = ("float32", "float16", "uint8", "int8")
_ARRAY_SUFFIXES = (".npy", ".npz", ".bin")


@dataclass(frozen=True)
class InputPlan:
    """One model input of a build: what it is and where its data comes from."""

    spec: TensorSpec  # resolved (static) shape
    kind: str  # image | array
    batch_dim: int | None
    preprocess: PreprocessConfig | None  # images only
    calib: tuple[str, ...]  # sources; ("random",) for random data; () for the default
    eval: tuple[str, ...]
    value_range: tuple[float, float] | None = None

    @property
    def profile(self) -> InputProfile:
        """The input as the rest of the spine sees it (gears are the converter's business)."""
        return InputProfile(self.spec, batch_dim=self.batch_dim)


# --------------------------------------------------------------------------- planning


def check_names(
    declared: Sequence[TensorSpec], config: BuildConfig, pinned: Sequence[str] = ()
) -> None:
    """Every `[inputs.NAME]` (and NAME= of --calib/--eval) names a model input."""
    names = [s.name for s in declared] + list(pinned)
    for name in config.inputs:
        if name not in names:
            match = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
            raise UsageError(
                f"'{name}' is not an input of the model (its inputs: {', '.join(names)})",
                hint=f"did you mean '{match[0]}'?" if match else "use the model's input names",
            )


def _looks_like_arrays(sources: Sequence[str], name: str) -> bool:
    for source in sources:
        path = Path(source)
        if path.suffix.lower() in _ARRAY_SUFFIXES:
            return True
        if path.is_dir():
            if (path / MANIFEST).is_file() and read_json(path / MANIFEST).get(
                "kind", "image"
            ) != "image":
                return True
            own = path / safe_name(name)
            root = own if own.is_dir() else path
            if any(p.suffix.lower() in _ARRAY_SUFFIXES for p in root.iterdir()):
                return True
    return False


def _image_shaped(spec: TensorSpec, layout: str) -> bool:
    if spec.rank != 4 or spec.dtype not in IMAGE_DTYPES:
        return False
    channels = spec.shape[1] if layout == "NCHW" else spec.shape[3]
    return channels in (1, 3)


def _given(config: BuildConfig, which: str) -> tuple[str, ...]:
    return tuple(config.calib.sources if which == "calib" else config.eval_sources)


def _default_sources(config: BuildConfig, name: str, which: str) -> tuple[str, ...]:
    """The sources given without a name; a folder holding a subfolder per input gives its own."""
    given = _given(config, which)
    own = Path(given[0]) / safe_name(name) if len(given) == 1 else None
    if own is not None and given[0] != RANDOM and own.is_dir():
        return (str(own),)
    return given


def _serves_every_input(source: str) -> bool:
    """`random`, and .npz files (every input by name), feed each input its own data."""
    path = Path(source)
    if source == RANDOM or path.suffix.lower() == ".npz":
        return True
    return path.is_dir() and any(p.suffix.lower() == ".npz" for p in path.iterdir())


def _refuse_shared(config: BuildConfig, plans: Sequence[InputPlan], which: str) -> None:
    """Sources without a name and without a sub-folder per input would give several inputs the
    same files: a text model's token ids read again as its attention mask, silently (the
    dtypes and shapes agree). Refused unless the sources hold every input by name."""
    given = _given(config, which)
    sharing = [p.spec.name for p in plans if (p.calib if which == "calib" else p.eval) == given]
    if len(sharing) < 2 or not given or all(_serves_every_input(s) for s in given):
        return
    flag = f"--{which}"
    raise UsageError(
        f"{flag} {' '.join(given)} would feed the same files to {len(sharing)} inputs "
        f"({', '.join(sharing)}): it has no sub-folder per input",
        hint=f"name each input's data ({flag} {sharing[0]}=DIR {flag} {sharing[1]}=DIR ...), "
        f"or pass a folder with a sub-folder per input ({given[0]}/{safe_name(sharing[0])}/, "
        "...), or .npz files holding every input by name",
    )


def plan_inputs(
    declared: Sequence[TensorSpec],
    shapes: Mapping[str, tuple[int, ...]],
    config: BuildConfig,
    pinned: Sequence[str] = (),
) -> list[InputPlan]:
    """Plan every input that is not pinned. `declared`: the graph's inputs as exported (their
    dynamic dims say where the batch is); `shapes`: the resolved static shapes; `pinned`: the
    inputs already folded into the model."""
    check_names(declared, config, pinned)
    plans = []
    for spec in declared:
        settings = config.inputs.get(spec.name, InputConfig())
        if settings.value is not None or spec.name not in shapes:
            continue
        resolved = spec.with_shape(tuple(shapes[spec.name]))
        calib = settings.calib or _default_sources(config, spec.name, "calib")
        evals = settings.eval or _default_sources(config, spec.name, "eval")
        kind = settings.kind
        if kind == "auto":
            real = [s for s in calib if s != RANDOM]
            if real and _looks_like_arrays(real, spec.name):
                kind = "array"
            else:
                kind = "image" if _image_shaped(resolved, config.preprocess.layout) else "array"
        preprocess = None
        if kind == "image":
            base = (
                merge(config.preprocess, settings.preprocess)
                if settings.preprocess
                else config.preprocess
            )
            preprocess = image_preprocess(resolved, base)
        plans.append(
            InputPlan(
                spec=resolved,
                kind=kind,
                batch_dim=_batch_dim(spec, resolved, settings, kind),
                preprocess=preprocess,
                calib=calib,
                eval=evals,
                value_range=settings.range,
            )
        )
    if not plans:
        raise UsageError("every model input is pinned to a value: there is nothing to calibrate")
    _refuse_shared(config, plans, "calib")
    _refuse_shared(config, plans, "eval")
    return plans


def _batch_dim(
    declared: TensorSpec, resolved: TensorSpec, settings: InputConfig, kind: str
) -> int | None:
    if settings.batch_dim == "none":
        return None
    if isinstance(settings.batch_dim, int):
        if not 0 <= settings.batch_dim < resolved.rank:
            raise UsageError(
                f"[inputs.{resolved.name}] batch_dim = {settings.batch_dim} is outside its "
                f"{resolved.rank} dims {list(resolved.shape)}",
                hint='give a dim index, or "none" for an input without a batch dim',
            )
        return settings.batch_dim
    if kind == "image":
        return 0
    if declared.rank and not isinstance(declared.shape[0], int):
        return 0
    return None


def image_preprocess(spec: TensorSpec, base: PreprocessConfig) -> PreprocessConfig:
    """Fit the user's preprocessing to one image input: size, layout, channels and dtype."""
    name, shape = spec.name, tuple(int(d) for d in spec.shape)
    if len(shape) != 4:
        raise UsageError(
            f"input '{name}' has shape {list(shape)}, not an image (4-D)",
            hint=f"give it arrays: --calib {name}=DIR of .npy files, or "
            f'[inputs.{name}] kind = "array"',
        )
    if base.layout == "NCHW":
        channels, height, width = shape[1], shape[2], shape[3]
    else:
        height, width, channels = shape[1], shape[2], shape[3]
    if channels not in (1, 3):
        raise UsageError(
            f"input '{name}' has {channels} channels in {base.layout} layout; images give 1 or 3",
            hint=f"set --layout NHWC if the model takes channels last; for other data (e.g. "
            f"latents) pass arrays: --calib {name}=DIR of .npy files",
        )
    if base.size is not None and base.size != (height, width):
        raise UsageError(
            f"--size {base.size[0]}x{base.size[1]} does not match input '{name}' "
            f"({height}x{width})",
            hint="drop --size, or resolve the input with --input-shape",
        )
    color = "gray" if channels == 1 else ("rgb" if base.color == "gray" else base.color)
    sample_dtype = spec.dtype if spec.dtype in IMAGE_DTYPES else "float32"
    return replace(base, size=(height, width), color=color, dtype=sample_dtype)  # type: ignore[arg-type]


def is_random(plans: Sequence[InputPlan]) -> bool:
    return any(p.calib == (RANDOM,) for p in plans)


# --------------------------------------------------------------------------- writing


def make_sets(
    plans: Sequence[InputPlan],
    which: str,
    out_root: Path,
    config: BuildConfig,
    *,
    force: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> tuple[dict[str, CalibSet], bool]:
    """Write `<out_root>/<input>/` for `which` ("calib" or "eval"); returns (sets, all reused).

    Array sources are all checked before anything is written; afterwards every input must give
    the same number of feeds.
    """
    calib_mode = which == "calib"
    batch = config.calib.batch if calib_mode else 1
    array_plans: dict[str, arrays.ArrayPlan] = {}
    for plan in plans:
        sources = plan.calib if calib_mode else plan.eval
        if plan.kind != "array" or sources == (RANDOM,):
            continue
        if not sources and not calib_mode and is_random(plans):
            continue  # a data-free trial evaluates on (other) random data too
        if not sources:
            raise _needs_data(plan, which)
        array_plans[plan.spec.name] = arrays.plan_source(sources, plan.spec, plan.batch_dim)
    if len(array_plans) > 1:
        arrays.check_counts(
            list(array_plans.values()), "calibration" if calib_mode else "evaluation"
        )

    sets: dict[str, CalibSet] = {}
    reused_all = True
    for plan in plans:
        out = Path(out_root) / safe_name(plan.spec.name)  # the manifest keeps the real name
        name = plan.spec.name
        sources = plan.calib if calib_mode else plan.eval
        random_mode = sources == (RANDOM,) or (
            not sources and not calib_mode and plan.kind == "array" and is_random(plans)
        )
        if random_mode:
            count = config.calib.limit or RANDOM_SAMPLES
            seed = config.calib.seed + (0 if calib_mode else 1)
            calib_set, reused = _random_set(out, plan, count, seed, batch, force)
        elif plan.kind == "array":
            limit = config.calib.limit if calib_mode else None
            calib_set, reused = arrays.make_array_set(
                out,
                array_plans[name],
                batch,
                limit,
                force=force,
            )
        else:
            assert plan.preprocess is not None
            image_config = (
                replace(config.calib, sources=sources)
                if calib_mode
                else CalibConfig(
                    sources=sources or (str(_holdout()),),
                    batch=1,
                    skip_bad=config.calib.skip_bad,
                    jobs=config.calib.jobs,
                )
            )
            calib_set, reused = images.make_calib_set(
                out, plan.preprocess, image_config, input_name=name, progress=progress, force=force
            )
        sets[name] = calib_set
        reused_all = reused_all and reused
    try:  # every input must give the same number of feeds
        CalibFeeds([p.spec for p in plans], sets)
    except UsageError as exc:
        what = "calibration" if calib_mode else "evaluation"
        raise UsageError(
            f"{what} data: {exc.message}",
            hint="samples are paired by position across inputs; give every input the same "
            "count (the bundled held-apart photos are 4)",
        ) from None
    return sets, reused_all


def _holdout() -> Path:
    from ascend_quant.resources import holdout_images_dir

    return holdout_images_dir()


def _needs_data(plan: InputPlan, which: str) -> UsageError:
    flag = "--calib" if which == "calib" else "--eval"
    what = "calibration" if which == "calib" else "evaluation"
    spec = plan.spec
    extra = (
        ""
        if which == "calib"
        else "; evaluation never falls back to the calibration data (that would flatter INT8)"
    )
    return UsageError(
        f"input '{spec.name}' ({spec.dtype} {list(spec.shape)}) needs {what} data: "
        f"there is no default for array inputs",
        hint=f"pass {flag} {spec.name}=DIR (a folder of .npy/.bin files or .npz per sample)"
        + (", or --calib random for a data-free trial" if which == "calib" else "")
        + extra,
    )


def _random_set(
    out: Path, plan: InputPlan, count: int, seed: int, batch: int, force: bool
) -> tuple[CalibSet, bool]:
    spec = plan.spec
    shape = arrays.sample_shape(spec, plan.batch_dim)
    params = {
        "random": True,
        "shape": list(shape),
        "dtype": spec.dtype,
        "count": count,
        "seed": seed,
        "range": list(plan.value_range) if plan.value_range else None,
        "batch": batch,
        "batch_dim": plan.batch_dim,
    }
    params_sha = sha256_json(params)
    if not force and (out / MANIFEST).is_file():
        try:
            if read_json(out / MANIFEST).get("params_sha256") == params_sha:
                return CalibSet.load(out), True
        except (OSError, ValueError, UsageError):
            pass
    samples = random_samples(spec.name, shape, spec.dtype, count, seed, plan.value_range)
    calib_set = write_samples(
        out,
        spec.name,
        samples,
        sample_shape=shape,
        dtype=spec.dtype,
        batch=batch,
        batch_dim=plan.batch_dim,
        kind="random",
        extra={"params_sha256": params_sha, "random": params, "warning": RANDOM_WARNING},
    )
    return calib_set, False


def describe(plans: Sequence[InputPlan]) -> list[dict[str, Any]]:
    """The plan as JSON, for the build record and report."""
    return [
        {
            "name": p.spec.name,
            "dtype": p.spec.dtype,
            "shape": list(p.spec.shape),
            "kind": p.kind,
            "batch_dim": p.batch_dim,
            "calib": list(p.calib),
            "eval": list(p.eval),
        }
        for p in plans
    ]


def at_gear(plan: InputPlan, shape: tuple[int, ...], label: str) -> InputPlan:
    """`plan` for one gear of a gear model: its concrete shape, images resized to it, and array
    sources given per gear (`{gear}` in a path becomes the label; a folder with a sub-folder
    named like the gear uses that sub-folder)."""
    spec = plan.spec.with_shape(tuple(shape))
    preprocess = plan.preprocess
    if plan.kind == "image" and preprocess is not None:
        preprocess = image_preprocess(spec, replace(preprocess, size=None))
    sources = plan.eval
    if plan.kind == "array":
        sources = tuple(_gear_source(source, label) for source in plan.eval)
    return replace(plan, spec=spec, preprocess=preprocess, eval=sources)


def _gear_source(source: str, label: str) -> str:
    if "{gear}" in source:
        return source.replace("{gear}", label)
    folder = Path(source) / label
    return str(folder) if folder.is_dir() else source


def model_data_sets(
    model: Path,
    config: BuildConfig,
    which: str,
    out: Path,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    progress: Progress = NULL_PROGRESS,
) -> dict[str, CalibSet]:
    """`which` ("calib" or "eval") sets for every input of an ONNX file at `out/<input>/`, from
    the sources in `config`; for `calib` and `compare`, which have no preflight."""
    import onnx  # heavy: only these commands need the graph here

    try:
        proto = onnx.load(str(model), load_external_data=False)
    except Exception as exc:
        raise UsageError(f"{model}: not a loadable ONNX model ({exc})") from None
    declared = graph_io(proto)[0]
    resolved = dict(shapes or {})
    for spec in declared:
        if spec.name in resolved:
            continue
        if not spec.is_static:
            raise UsageError(
                f"input '{spec.name}' has dynamic dims {list(spec.shape)}",
                hint=f'give its shape: --input-shape "{spec.name}:..."',
            )
        resolved[spec.name] = tuple(int(d) for d in spec.shape)
    plans = plan_inputs(declared, resolved, config)
    sets, _ = make_sets(plans, which, out, config, progress=progress)
    return sets
