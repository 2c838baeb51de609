"""atc's dynamic gears: one model, 2-100 fixed shapes chosen per inference.

A `Gears` holds one kind of gear (`batch`, `image_size` or `dims`), its values, and the
`--input_shape` template with `-1` on the gear dims; every gear fills those `-1`s, in input order,
with its values. That one rule covers the three atc flags (reference §1.2, accuracy-tools §1.7):
`--dynamic_batch_size` (N of every input), `--dynamic_image_size` (H and W of the image inputs)
and `--dynamic_dims` (every `-1` the user placed, `--input_format=ND`). From the same object come
atc's flag, ais_bench's per-gear flag (`--dymBatch`/`--dymHW`/`--dymDims`), the concrete shapes
each gear runs at, and the manifest record, so conversion and benchmark cannot disagree.

Ground floor: imports only `errors`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ascend_quant.errors import UsageError

GearKind = Literal["batch", "image_size", "dims"]
KINDS: tuple[GearKind, ...] = ("batch", "image_size", "dims")
MIN_GEARS = 2
MAX_GEARS = 100  # 310P/310B/A2/A3; Ascend950 allows 256 but has no documented soc string yet
ATC_FLAGS: dict[GearKind, str] = {
    "batch": "dynamic_batch_size",
    "image_size": "dynamic_image_size",
    "dims": "dynamic_dims",
}
CLI_FLAGS: dict[GearKind, str] = {
    "batch": "--dynamic-batch",
    "image_size": "--dynamic-image-size",
    "dims": "--dynamic-dims",
}
AISBENCH_FLAGS: dict[GearKind, str] = {
    "batch": "--dymBatch",
    "image_size": "--dymHW",
    "dims": "--dymDims",
}
EXAMPLES: dict[GearKind, str] = {
    "batch": "--dynamic-batch 1,4,8",
    "image_size": '--dynamic-image-size "32,128;32,256;32,512"',
    "dims": '--dynamic-dims "16;32;64" --input-shape "tokens:1,-1" --input-format ND',
}
# Dynamic options atc refuses to combine (E10009), as they appear in extra_args.
EXCLUSIVE_ATC_FLAGS = (
    "dynamic_batch_size",
    "dynamic_image_size",
    "input_shape_range",
    "dynamic_dims",
)

Shapes = dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class Gears:
    """One model's gears: kind, values, and the `--input_shape` template with `-1` dims."""

    kind: GearKind
    values: tuple[tuple[int, ...], ...]  # batch: (n,); image_size: (h, w); dims: one per -1
    template: dict[str, tuple[int, ...]] = field(default_factory=dict)  # every input, -1 = gear
    calib_index: int = 0  # the gear INT8 calibrates at (and preflight resolves to)

    def __len__(self) -> int:
        return len(self.values)

    def label(self, index: int) -> str:
        """How a gear is named in tables and errors: bs4, 32x320, 16,4 (dims)."""
        value = self.values[index]
        if self.kind == "batch":
            return f"bs{value[0]}"
        if self.kind == "image_size":
            return f"{value[0]}x{value[1]}"
        return ",".join(map(str, value))

    def dir_name(self, index: int) -> str:
        """A directory name for gear `index` (no commas: ais_bench splits --input on them)."""
        return "gear_" + self.label(index).replace(",", "_")

    @property
    def labels(self) -> list[str]:
        return [self.label(i) for i in range(len(self))]

    def shapes(self, index: int) -> Shapes:
        """Every input's concrete shape at gear `index` (the template's -1s filled in order)."""
        return fill(self.template, self.kind, self.values[index])

    @property
    def calib_shapes(self) -> Shapes:
        return self.shapes(self.calib_index)

    def atc_flag(self) -> str:
        """`--dynamic_batch_size=1,4,8`, `--dynamic_image_size=32,128;32,256`, ... (no quotes:
        argv is never a shell line)."""
        text = ";".join(",".join(map(str, v)) for v in self.values)
        if self.kind == "batch":
            text = ",".join(str(v[0]) for v in self.values)
        return f"--{ATC_FLAGS[self.kind]}={text}"

    def atc_input_shape(self) -> str:
        return ";".join(f"{n}:{','.join(map(str, d))}" for n, d in self.template.items())

    def aisbench_args(self, index: int) -> list[str]:
        """ais_bench's flags for running gear `index` (reference §7.1)."""
        value = self.values[index]
        if self.kind == "batch":
            return ["--dymBatch", str(value[0])]
        if self.kind == "image_size":
            return ["--dymHW", f"{value[0]},{value[1]}"]
        shapes = self.shapes(index)
        return ["--dymDims", ";".join(f"{n}:{','.join(map(str, d))}" for n, d in shapes.items())]

    def index(self, text: str) -> int:
        """The gear named by `text` (`4`, `bs4`, `32,320`, `32x320`, `16,4`), else UsageError."""
        wanted = _parse_gear_text(text)
        for i, value in enumerate(self.values):
            if wanted == value:
                return i
        raise UsageError(
            f"gear '{text}' is not one of this model's {self.kind} gears "
            f"({', '.join(self.labels)})",
            hint="pick a gear the model was converted with (its manifest lists them), or "
            "re-convert with that gear added",
        )

    def index_of(self, shapes: Mapping[str, Sequence[int]]) -> int | None:
        """The gear whose concrete shapes are `shapes`, or None."""
        wanted = {k: tuple(int(d) for d in v) for k, v in shapes.items()}
        for i in range(len(self)):
            if self.shapes(i) == wanted:
                return i
        return None

    def record(self) -> dict[str, Any]:
        """The manifest form (read back by `from_record`)."""
        return {
            "kind": self.kind,
            "values": [list(v) for v in self.values],
            "labels": self.labels,
            "input_shape": self.atc_input_shape(),
            "template": {k: list(v) for k, v in self.template.items()},
            "calib_gear": self.label(self.calib_index),
            "calib_index": self.calib_index,
            "atc_flag": self.atc_flag(),
        }

    @classmethod
    def from_record(cls, data: Mapping[str, Any] | None) -> Gears | None:
        if not data:
            return None
        try:
            return cls(
                kind=data["kind"],
                values=tuple(tuple(int(x) for x in v) for v in data["values"]),
                template={k: tuple(int(d) for d in v) for k, v in data["template"].items()},
                calib_index=int(data.get("calib_index", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"the manifest's gears record is unreadable ({exc})") from None


def fill(template: Mapping[str, tuple[int, ...]], kind: GearKind, value: tuple[int, ...]) -> Shapes:
    """Fill the -1 dims of `template`: batch and image_size per input, dims across all inputs."""
    result: Shapes = {}
    position = 0
    for name, dims in template.items():
        filled = []
        per_input = 0
        for d in dims:
            if d != -1:
                filled.append(d)
            elif kind == "dims":
                filled.append(value[position])
                position += 1
            else:
                filled.append(value[per_input])
                per_input += 1
        result[name] = tuple(filled)
    return result


# ---------------------------------------------------------------- parsing


def _parse_gear_text(text: str) -> tuple[int, ...]:
    cleaned = text.strip().lower().removeprefix("bs").removeprefix("dims").replace("x", ",")
    try:
        return tuple(int(v) for v in cleaned.split(",") if v.strip())
    except ValueError:
        raise UsageError(
            f"gear '{text}' is not a gear (e.g. 4, 32,320 or 32x320)",
            hint="name a gear by its values, as the manifest's labels show them",
        ) from None


def parse_gear_list(text: str | None, kind: GearKind) -> tuple[tuple[int, ...], ...] | None:
    """CLI text in atc's syntax -> gear values: '1,4,8' (batch), '32,128;32,256' (image size),
    '16,4;32,8' or '16;32' (dims). None when the flag was not given."""
    if text is None:
        return None
    flag = CLI_FLAGS[kind]
    if kind == "batch":
        parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
        groups = [[p] for p in parts]
    else:
        groups = [[v for v in p.split(",")] for p in text.split(";") if p.strip()]
    values = []
    for group in groups:
        try:
            values.append(tuple(int(v) for v in group))
        except ValueError:
            raise UsageError(
                f"{flag}: '{text}' is not in atc's syntax", hint=f"e.g. {EXAMPLES[kind]}"
            ) from None
        if kind == "image_size" and len(values[-1]) != 2:
            raise UsageError(
                f"{flag}: '{','.join(group)}' is not H,W", hint=f"e.g. {EXAMPLES[kind]}"
            )
    return tuple(values)


# ---------------------------------------------------------------- validation


def _check_values(kind: GearKind, values: Sequence[tuple[int, ...]], max_gears: int) -> None:
    flag = CLI_FLAGS[kind]
    atc_flag = ATC_FLAGS[kind]
    if not MIN_GEARS <= len(values) <= max_gears:
        raise UsageError(
            f"{flag} gives {len(values)} gear(s); atc's --{atc_flag} needs {MIN_GEARS} to "
            f"{max_gears} (E10001: the gear count must be in (1,{max_gears}])",
            hint="one fixed shape needs no gears: pass it with --input-shape instead"
            if len(values) < MIN_GEARS
            else "keep the gears your data needs (the docs suggest a few, e.g. 3-8)",
        )
    width = {"batch": 1, "image_size": 2}.get(kind)
    for value in values:
        if width is not None and len(value) != width:
            raise UsageError(
                f"{flag}: gear {','.join(map(str, value))} has {len(value)} value(s), not {width}",
                hint=f"e.g. {EXAMPLES[kind]}",
            )
        if any(v <= 0 for v in value):
            raise UsageError(
                f"{flag}: gear {','.join(map(str, value))} is not positive "
                "(E10011: shape values must be positive)",
                hint=f"e.g. {EXAMPLES[kind]}",
            )
    if kind == "dims" and len({len(v) for v in values}) > 1:
        raise UsageError(
            f"{flag}: the gears give different numbers of values "
            f"({', '.join(','.join(map(str, v)) for v in values)})",
            hint="every gear lists one value per -1 in --input-shape, in order",
        )
    seen = set()
    for value in values:
        if value in seen:
            raise UsageError(
                f"{flag} lists gear {','.join(map(str, value))} twice",
                hint="list each gear once",
            )
        seen.add(value)


def chosen_kind(
    batch: Sequence[int] = (),
    image_size: Sequence[Sequence[int]] = (),
    dims: Sequence[Sequence[int]] = (),
    extra_args: Sequence[str] = (),
) -> tuple[GearKind | None, tuple[tuple[int, ...], ...]]:
    """The one gear kind set, or E10009 when several dynamic options are (incl. extra_args)."""
    given: list[tuple[GearKind, tuple[tuple[int, ...], ...]]] = []
    if batch:
        given.append(("batch", tuple((int(b),) for b in batch)))
    if image_size:
        given.append(("image_size", tuple(tuple(int(v) for v in p) for p in image_size)))
    if dims:
        given.append(("dims", tuple(tuple(int(v) for v in p) for p in dims)))
    names = [CLI_FLAGS[k] for k, _ in given]
    for arg in extra_args:
        flag = arg.lstrip("-").split("=", 1)[0]
        if flag in EXCLUSIVE_ATC_FLAGS:
            names.append(f"extra argument --{flag}")
    if len(names) > 1:
        raise UsageError(
            "atc rejects " + " with ".join(names) + " (E10009: dynamic_batch_size, "
            "dynamic_image_size, input_shape_range and dynamic_dims are mutually exclusive)",
            hint="keep one kind of gear",
        )
    if not given:
        return None, ()
    return given[0]


def _pick_calib(kind: GearKind, values: tuple[tuple[int, ...], ...], calib: str | None) -> int:
    """The calibration gear: the one named, else the largest (most pixels/elements)."""
    if calib is None:
        return max(range(len(values)), key=lambda i: (math.prod(values[i]), values[i]))
    probe = Gears(kind, values)
    try:
        return probe.index(calib)
    except UsageError as exc:
        raise UsageError(
            f"--calib-gear {calib}: not one of the gears ({', '.join(probe.labels)})",
            hint=exc.hint,
        ) from None


def make_gears(
    kind: GearKind,
    values: tuple[tuple[int, ...], ...],
    declared: Mapping[str, Sequence[int | str]],
    given: Mapping[str, Sequence[int]],
    *,
    input_format: str = "NCHW",
    image_inputs: Sequence[str] = (),
    calib: str | None = None,
    max_gears: int = MAX_GEARS,
) -> Gears:
    """Validate gears against the model's inputs and build the `-1` template.

    `declared`: the model's input shapes (str = symbolic dim); `given`: `--input-shape` values
    (may hold -1, required for dims gears unless the symbolic dims are exactly the gear dims).
    Every error names atc's code where atc has one, so the same mistake reads the same here.
    """
    _check_values(kind, values, max_gears)
    flag = CLI_FLAGS[kind]
    names = list(declared)
    for name in list(given) + list(image_inputs):
        if name not in declared:
            match = difflib.get_close_matches(name, names, n=1)
            raise UsageError(
                f"the model has no input named '{name}' (inputs: {', '.join(names)}; E10016)",
                hint=f"did you mean '{match[0]}'?" if match else "use the model's input names",
            )
    base: dict[str, list[int | str]] = {}
    for name, dims in declared.items():
        wanted = list(given.get(name, dims))
        if len(wanted) != len(dims):
            raise UsageError(
                f"--input-shape gives {name} {len(wanted)} dims, the model declares {len(dims)}"
            )
        base[name] = wanted
    template: dict[str, tuple[int, ...]] = {}
    if kind == "batch":
        for name, dims in base.items():
            if not dims:
                raise UsageError(
                    f"{flag}: input '{name}' is a scalar and has no batch dim",
                    hint="batch gears need N first on every input; use --dynamic-dims instead",
                )
            late = [i for i, d in enumerate(dims) if d == -1 and i != 0]
            if late:
                raise UsageError(
                    f"{flag}: input '{name}' has -1 at dim {late[0]}; batch gears are N, the "
                    "first dim of every input (E10018)",
                    hint="if the gear dim is not first, use --dynamic-dims with --input-format ND",
                )
            template[name] = (-1, *(_static(name, d, i, flag) for i, d in enumerate(dims[1:], 1)))
    elif kind == "image_size":
        if input_format not in ("NCHW", "NHWC"):
            raise UsageError(
                f"{flag} needs --input-format NCHW or NHWC, not {input_format} (atc: "
                "--dynamic_image_size requires NCHW/NHWC)",
                hint="set --input-format NCHW (or NHWC for channels-last inputs)",
            )
        h, w = (1, 2) if input_format == "NHWC" else (2, 3)
        chosen = list(image_inputs) or [n for n, d in base.items() if len(d) == 4]
        if not chosen:
            raise UsageError(
                f"{flag}: the model has no 4-D input for H and W gears "
                f"({', '.join(f'{n} {list(d)}' for n, d in declared.items())})",
                hint="use --dynamic-dims for other ranks (with --input-format ND)",
            )
        for name, dims in base.items():
            if name in chosen:
                if len(dims) != 4:
                    raise UsageError(
                        f"{flag}: input '{name}' has shape {list(dims)}, not 4-D "
                        f"{input_format} (E10019)",
                        hint="image-size gears apply to 4-D image inputs; list them in "
                        "gears.inputs",
                    )
                bad = [i for i, d in enumerate(dims) if d == -1 and i not in (h, w)]
                if bad:
                    raise UsageError(
                        f"{flag}: input '{name}' has -1 at dim {bad[0]}; image-size gears are "
                        f"H and W (dims {h} and {w} in {input_format}; E10019)",
                        hint="give the other dims a value in --input-shape",
                    )
                template[name] = tuple(
                    -1 if i in (h, w) else _static(name, d, i, flag) for i, d in enumerate(dims)
                )
            else:
                template[name] = tuple(_static(name, d, i, flag) for i, d in enumerate(dims))
    else:
        if input_format != "ND":
            raise UsageError(
                f"{flag} needs --input-format ND, not {input_format} (atc: --dynamic_dims "
                "requires ND)",
                hint="add --input-format ND",
            )
        count = 0
        for name, dims in base.items():
            # the user's -1s; with no --input-shape for an input, its symbolic dims
            new = tuple(-1 if (d == -1 or isinstance(d, str)) else int(d) for d in dims)
            count += new.count(-1)
            template[name] = new
        if count == 0:
            raise UsageError(
                f"{flag}: no dim is -1 in --input-shape and the model declares none dynamic",
                hint='mark the gear dims with -1, e.g. --input-shape "tokens:1,-1"',
            )
        width = len(values[0])
        if width != count:
            raise UsageError(
                f"{flag}: each gear gives {width} value(s) but --input-shape has {count} -1 "
                f"dim(s) ({'; '.join(f'{n}:{list(d)}' for n, d in template.items())})",
                hint="every gear lists one value per -1, in input order (atc --dynamic_dims)",
            )
    if kind != "dims":
        for name, dims in template.items():
            for i, d in enumerate(dims):
                if d == 0:
                    raise UsageError(f"input '{name}' dim {i} is 0 (E10011)")
    return Gears(kind, values, template, _pick_calib(kind, values, calib))


def _static(name: str, dim: int | str, index: int, flag: str) -> int:
    """A dim that must be static with these gears."""
    if isinstance(dim, str) or dim == -1:
        raise UsageError(
            f"input '{name}' dim {index} is dynamic ('{dim}') but {flag} does not cover it",
            hint="give it a value with --input-shape (atc allows -1 only on the gear dims)",
        )
    return int(dim)


def check_target(
    gears: Gears | None,
    *,
    soc: str,
    shape_ranges: bool,
    aipp_enabled: bool,
    aipp_crop: bool,
    aipp_src_size: tuple[int, int] | None,
    extra_args: Sequence[str] = (),
    input_shape: str | None = None,
) -> None:
    """Checks that depend on the target: soc support for ranges, AIPP with gears."""
    ranged = "~" in (input_shape or "") or any(
        a.lstrip("-").split("=", 1)[0] == "input_shape_range" or "~" in a
        for a in extra_args
        if a.lstrip("-").split("=", 1)[0] in ("input_shape_range", "input_shape")
    )
    if ranged and not shape_ranges:
        raise UsageError(
            f"{soc} does not support shape ranges (1~10 in --input_shape, or --input_shape_range)",
            hint="use gears instead (--dynamic-batch, --dynamic-image-size or --dynamic-dims)",
        )
    if gears is None or not aipp_enabled:
        return
    if gears.kind == "dims":
        raise UsageError(
            "AIPP (--insert_op_conf) cannot be combined with --dynamic_dims",
            hint="drop --aipp, or use --dynamic-batch / --dynamic-image-size",
        )
    if gears.kind == "image_size" and (aipp_crop or aipp_src_size is not None):
        raise UsageError(
            "static AIPP with --dynamic-image-size allows neither crop nor padding, and "
            "src_image_size must be 0",
            hint="set aipp.crop = false and leave aipp.src_image_size unset",
        )


# ---------------------------------------------------------------- suggesting gears from data


def round_up(value: int, multiple: int) -> int:
    return max(multiple, -(-int(value) // multiple) * multiple)


def histogram(values: Sequence[int], multiple: int) -> dict[int, int]:
    """How many values fall in each gear-sized bucket (each value rounded up to `multiple`)."""
    counts: dict[int, int] = {}
    for value in values:
        bucket = round_up(value, multiple)
        counts[bucket] = counts.get(bucket, 0) + 1
    return dict(sorted(counts.items()))


def suggest(values: Sequence[int], multiple: int = 32, count: int = 4) -> list[int]:
    """Up to `count` gear values covering `values`: the quantiles (1/count ... 1) of the values
    rounded up to `multiple`, so every value fits a gear at most one step of padding away and
    the largest value is always covered. (The ATC docs suggest multiples of 16 or 32 for OCR.)"""
    if not values:
        return []
    rounded = sorted(round_up(v, multiple) for v in values)
    picks = [rounded[min(len(rounded) - 1, math.ceil(len(rounded) * (i + 1) / count) - 1)]
             for i in range(count)]  # fmt: skip
    return sorted(set(picks))


@dataclass(frozen=True)
class Proposal:
    """Gears suggested for one input from its data, and the histogram behind them."""

    input: str
    kind: GearKind
    values: tuple[tuple[int, ...], ...]
    measured: str  # what the histogram counts, e.g. "width at height 32"
    histogram: dict[int, int]  # bucket (rounded up to the multiple) -> samples

    def flag(self) -> str:
        text = ";".join(",".join(map(str, v)) for v in self.values)
        if self.kind == "batch":
            text = ",".join(str(v[0]) for v in self.values)
        return f'{CLI_FLAGS[self.kind]} "{text}"'


def propose_image_gears(
    name: str,
    declared: Sequence[int | str],
    sizes: Sequence[tuple[int, int]],
    layout: str = "NCHW",
    multiple: int = 32,
    count: int = 4,
) -> Proposal | None:
    """Image-size gears for a 4-D input whose H and/or W the graph leaves dynamic, from the
    images' (height, width): a fixed height keeps each image's aspect ratio (a text line of
    height 32 and width w*32/h), the dynamic side is rounded up to `multiple`."""
    if len(declared) != 4 or not sizes:
        return None
    h_axis, w_axis = (1, 2) if layout == "NHWC" else (2, 3)
    dim_h, dim_w = declared[h_axis], declared[w_axis]
    fixed_h = dim_h if isinstance(dim_h, int) else None
    fixed_w = dim_w if isinstance(dim_w, int) else None
    if fixed_h is not None and fixed_w is None:
        widths = [max(1, round(w * fixed_h / h)) for h, w in sizes if h > 0]
        picks = suggest(widths, multiple, count)
        values = tuple((int(fixed_h), w) for w in picks)
        measured, hist = f"width at height {fixed_h}", histogram(widths, multiple)
    elif fixed_w is not None and fixed_h is None:
        heights = [max(1, round(h * fixed_w / w)) for h, w in sizes if w > 0]
        picks = suggest(heights, multiple, count)
        values = tuple((h, int(fixed_w)) for h in picks)
        measured, hist = f"height at width {fixed_w}", histogram(heights, multiple)
    elif fixed_h is None and fixed_w is None:
        pairs = sorted(
            ((round_up(h, multiple), round_up(w, multiple)) for h, w in sizes),
            key=lambda p: (p[0] * p[1], p),
        )
        picks_hw = [pairs[min(len(pairs) - 1, math.ceil(len(pairs) * (i + 1) / count) - 1)]
                    for i in range(count)]  # fmt: skip
        values = tuple(dict.fromkeys(picks_hw))
        measured, hist = "pixels (H*W)", histogram([h * w for h, w in pairs], multiple * multiple)
    else:
        return None
    if len(values) < MIN_GEARS:
        return None  # the data has one size: a static shape fits it
    return Proposal(name, "image_size", values, measured, hist)


def propose_dims_gears(
    name: str,
    declared: Sequence[int | str],
    shapes: Sequence[Sequence[int]],
    multiple: int = 16,
    count: int = 4,
) -> Proposal | None:
    """Dims gears for an input with one dynamic dim (besides a dynamic batch dim 0), from
    the lengths of that dim in the data (e.g. token or frame counts), rounded up to `multiple`."""
    dynamic = [i for i, d in enumerate(declared) if not isinstance(d, int) and i != 0]
    if len(dynamic) != 1 or not shapes:
        return None
    axis = dynamic[0]
    lengths = [int(s[axis]) for s in shapes if len(s) == len(declared)]
    values = tuple((v,) for v in suggest(lengths, multiple, count))
    if len(values) < MIN_GEARS:
        return None
    return Proposal(name, "dims", values, f"dim {axis} length", histogram(lengths, multiple))
