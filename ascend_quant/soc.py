"""The `--soc_version` registry: every documented string, its product family and capabilities.

Source: ascend-toolchain reference §2 (6.3.RC2 ATC doc and GE's SOC_VER_CONVERT tables), §3
(which products ATC-native calibration supports) and §3.1 (first-layer quantization);
accuracy-tools reference §1.1/§1.5 for weight-only INT8 ([GE] quantization_layers_constraints.md:
"Atlas inference series" (310P) and A2 only).
soc_version strings are case-sensitive in atc, so a mis-cased name is an error with a suggestion,
never silently corrected.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, replace

from ascend_quant.errors import UsageError

log = logging.getLogger("ascend_quant")

# How the chip name is read on a device (reference §2).
QUERY_NAME = "npu-smi info: 'Ascend' + Name column"
QUERY_CHIP_NPU = "npu-smi info -t board -i <id> -c <chip_id>: <Chip Name>_<NPU Name>"


@dataclass(frozen=True)
class SocInfo:
    """One `--soc_version` value and what the toolkit can do for it."""

    name: str
    family: str  # e.g. "Ascend 310P"
    products: str  # e.g. "Atlas inference series"
    atc_calibration: bool  # ATC-native INT8 via --compression_optimize_conf (needs an NPU)
    first_layer_quantization: bool  # enable_first_layer_quantization (AIPP + first Conv2D)
    dynamic_shape_range: bool  # ranges such as 1~10 in --input_shape
    weight_compress_only: bool = False  # weight-only INT8 (--precision w8)
    supported: bool = True  # False: listed in the source as reserved, not yet supported
    max_gears: int = 100  # gears per dynamic option: (1,100] (Ascend950: (1,256], not listed)
    query: str = QUERY_NAME
    warning: str | None = None  # logged whenever this name is selected

    @property
    def int8_routes(self) -> tuple[str, ...]:
        """INT8 routes the toolkit offers: amct_onnx (CPU) always, ATC-native where supported."""
        return ("atc", "amct") if self.atc_calibration else ("amct",)

    @property
    def w8_refusal(self) -> str | None:
        """Why `--precision w8` cannot target this soc, or None when it can."""
        if self.weight_compress_only:
            return None
        return (
            f"{self.name} ({self.family}) does not support weight-only INT8: the toolkit's "
            "weight_compress_only runs only on the Atlas inference series (Ascend310P*) and "
            "Atlas A2 (Ascend910B1..B4)"
        )


def _family(
    names: tuple[str, ...],
    family: str,
    products: str,
    *,
    atc_calibration: bool = True,
    first_layer: bool = False,
    dynamic_range: bool = True,
    weight_only: bool = False,
    supported: bool = True,
    query: str = QUERY_NAME,
) -> list[SocInfo]:
    return [
        SocInfo(
            name=name,
            family=family,
            products=products,
            atc_calibration=atc_calibration,
            first_layer_quantization=first_layer,
            dynamic_shape_range=dynamic_range,
            weight_compress_only=weight_only,
            supported=supported,
            query=query,
        )
        for name in names
    ]


_TRAINING_910 = "Atlas training series (first-generation Ascend 910)"
_A2 = "Atlas A2 training/inference series"
_A3 = "Atlas A3 training/inference series"

_SOCS: list[SocInfo] = [
    *_family(("Ascend310",), "Ascend 310", "Atlas 200/300/500 inference products"),
    *_family(
        ("Ascend310P1", "Ascend310P3", "Ascend310P5", "Ascend310P7"),
        "Ascend 310P",
        "Atlas inference series",
        first_layer=True,
        weight_only=True,
    ),
    *_family(
        ("Ascend310B1",),
        "Ascend 310B",
        "Atlas 200I/500 A2 inference products",
        first_layer=True,
        dynamic_range=False,
    ),
    *_family(
        (
            "Ascend910",
            "Ascend910A",
            "Ascend910B",
            "Ascend910ProA",
            "Ascend910ProB",
            "Ascend910PremiumA",
        ),
        "Ascend 910",
        _TRAINING_910,
    ),
    *_family(
        (
            "Ascend910B1",
            "Ascend910B2",
            "Ascend910B3",
            "Ascend910B4",
            "Ascend910B2C",
            "Ascend910B4-1",
        ),
        "Ascend 910B (A2)",
        _A2,
        weight_only=True,
    ),
    *_family(
        ("Ascend910_9391", "Ascend910_9381", "Ascend910_9372", "Ascend910_9362"),
        "Ascend 910C (A3)",
        _A3,
        query=QUERY_CHIP_NPU,
    ),
    *_family(
        ("Ascend910_9392", "Ascend910_9382"),
        "Ascend 910C (A3)",
        _A3,
        supported=False,
        query=QUERY_CHIP_NPU,
    ),
    *_family(
        ("Ascend035", "Ascend035A", "Ascend035B"),
        "IPV350",
        "IPV350 (Ascend 035)",
        atc_calibration=False,
        dynamic_range=False,
    ),
]

_WARNINGS = {
    "Ascend910B": (
        "Ascend910B (no digit) is the first-generation Atlas training chip, not the Atlas A2 "
        "910B family; for an A2 device use Ascend910B1..Ascend910B4 as npu-smi shows it"
    ),
    "Ascend910B2C": (
        "npu-smi shows 910B2C on an Atlas 200T A2 Box16, but the ATC docs say to convert "
        "with --soc_version=Ascend910B2"
    ),
    "Ascend910_9392": "Ascend910_9392 is reserved in the toolkit source, not yet supported",
    "Ascend910_9382": "Ascend910_9382 is reserved in the toolkit source, not yet supported",
}

REGISTRY: dict[str, SocInfo] = {
    soc.name: replace(soc, warning=_WARNINGS.get(soc.name)) for soc in _SOCS
}


def all_socs() -> list[SocInfo]:
    """Every known soc_version, in the reference's order."""
    return list(REGISTRY.values())


def _suggestion(name: str) -> str | None:
    folded = {key.lower(): key for key in REGISTRY}
    for candidate in (name, f"ascend{name}"):
        if candidate.lower() in folded:
            return folded[candidate.lower()]
    match = difflib.get_close_matches(name, list(REGISTRY), n=1, cutoff=0.6)
    return match[0] if match else None


def get_soc(name: str) -> SocInfo:
    """Look up a soc_version exactly as atc spells it; warn for the known traps."""
    info = REGISTRY.get(name)
    if info is None:
        suggestion = _suggestion(name)
        family = [key for key in REGISTRY if key.lower().startswith(name.lower())]
        if name.lower().startswith("ascend950"):
            hint = (
                "the exact Ascend950 soc_version strings are not documented; read "
                "<Chip Name>_<NPU Name> from `npu-smi info -t board -i <id> -c <chip_id>`"
            )
        elif len(family) > 1 and len(name) >= len("Ascend3"):  # a family name: not one guess
            hint = f"name the chip: {', '.join(family)} (`npu-smi info` shows which)"
        elif suggestion is not None and suggestion.lower() == name.lower():
            hint = f"did you mean '{suggestion}'? (soc_version is case-sensitive)"
        elif suggestion is not None:
            hint = f"did you mean '{suggestion}'?"
        else:
            hint = "run `ascend-quant socs` for the list; on the device, `npu-smi info` shows it"
        raise UsageError(f"unknown soc_version '{name}'", hint=hint)
    if info.warning:
        log.warning(info.warning)
    return info
