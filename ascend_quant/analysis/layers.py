"""Per-layer error of FP16 and INT8 candidates against the FP32 golden, ranked, with the fix.

For every layer: the accumulated error (its output in the full candidate vs the golden: what it
inherits plus what it adds) and the isolated error (only that layer as the candidate computes
it, fed the golden's inputs; see `isolate.py`), as cosine, SQNR, relative Euclidean distance,
max |error| and FP16 overflow counts; for INT8 layers the calibrated activation range against
the range seen on the evaluation data (clip fraction). One pass over the evaluation feeds with
two sessions per candidate plus one golden session holding every replica; only accumulators
are kept (memory flat in the number of samples). `LayerAnalysis.ranking()` orders INT8 layers
by isolated error, worst first: the typed API the tuning search ranks with.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import onnx

from ascend_quant.analysis.isolate import graft_replicas
from ascend_quant.analysis.tune import Candidate
from ascend_quant.comparator import ErrorAccumulator, compare_runs
from ascend_quant.errors import UsageError
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.quant.ops import QUANTIZABLE_TYPES
from ascend_quant.runners.base import Feeds
from ascend_quant.runners.ort import OrtRunner, tensor_types

# msit compare's "normal" thresholds (accuracy-tools.md 1.9) and ours for advice.
COSINE_OK = 0.99
CLIP_WARN = 0.01  # share of activation values outside the calibrated range
SQNR_GAP_DB = 6.0  # a layer this much worse than the median isolated SQNR is called out
SQNR_LOW_DB = 20.0  # ... or below this outright
MAX_ADVISED = 3
SQNR_CAP_DB = 200.0  # an exact layer (infinite SQNR) ranks last, not out of the table
OVERFLOW_SENSITIVITY = 1e9  # an FP16 overflow outranks any finite error


@dataclass(frozen=True)
class CandidateModel:
    """A converted model to analyse: its ONNX payload and what its conversion recorded."""

    precision: str  # "fp16" | "int8"
    model: onnx.ModelProto
    quantized_layers: tuple[str, ...] = ()  # node names (int8)
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # activation ranges


@dataclass
class RangeSeen:
    """Golden values of one activation against its calibrated range."""

    lo: float
    hi: float
    count: int = 0
    outside: int = 0
    seen_min: float = math.inf
    seen_max: float = -math.inf

    def update(self, values: np.ndarray) -> None:
        v = np.asarray(values, dtype=np.float32).reshape(-1)
        v = v[np.isfinite(v)]
        if not v.size:
            return
        self.count += int(v.size)
        # Within half an int8 step (255 of them span the range) beyond an end, a value rounds
        # to the end level anyway: clipping adds no error there (an IFMR range ends a hair
        # below the max it saw, so a Clip/ReLU6 ceiling would otherwise count as clipped).
        half_step = (self.hi - self.lo) / 510.0
        beyond = (v < self.lo - half_step) | (v > self.hi + half_step)
        self.outside += int(np.count_nonzero(beyond))
        self.seen_min = min(self.seen_min, float(v.min()))
        self.seen_max = max(self.seen_max, float(v.max()))

    @property
    def fraction(self) -> float:
        return self.outside / self.count if self.count else 0.0


@dataclass(frozen=True)
class LayerError:
    """One layer of one candidate: accumulated and isolated error, and its activation range."""

    name: str  # node name in the preflighted model
    op_type: str
    precision: str
    index: int  # position in graph order
    output: str  # the golden tensor compared
    quantized: bool  # INT8: the layer runs in INT8
    accumulated: dict[str, Any]
    isolated: dict[str, Any] | None
    activation: str | None = None
    range_used: tuple[float, float] | None = None
    range_seen: tuple[float, float] | None = None
    clip_fraction: float | None = None
    macs: int = 0

    @property
    def isolated_sqnr(self) -> float:
        """Isolated SQNR in dB (inf: exact; None counts as exact)."""
        value = (self.isolated or {}).get("sqnr_db")
        return math.inf if value is None else float(value)

    @property
    def overflows(self) -> bool:
        """FP16 overflow: inf/NaN in the isolated output, or golden beyond +-65504. Its SQNR
        skips the non-finite values and may read as exact, so it must not be ranked by it."""
        return bool(
            (self.isolated or {}).get("nonfinite")
            or (self.precision == "fp16" and self.accumulated.get("golden_over_fp16"))
        )

    @property
    def accumulated_sqnr(self) -> float:
        value = self.accumulated.get("sqnr_db")
        return math.inf if value is None else float(value)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["isolated_sqnr_db"] = _finite(self.isolated_sqnr)
        data["accumulated_sqnr_db"] = _finite(self.accumulated_sqnr)
        return data


@dataclass
class LayerAnalysis:
    """Every analysed layer per candidate, the model outputs' error, and the advice."""

    samples: int
    layers: dict[str, list[LayerError]]  # precision -> layers in graph order
    outputs: dict[str, dict[str, dict[str, Any]]]  # precision -> output -> metrics
    advice: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float | None = None

    def ranking(self, precision: str = "int8") -> list[LayerError]:
        """Layers of `precision` (INT8: the quantized ones): overflowing first, then worst
        isolated SQNR first."""
        layers = [
            layer
            for layer in self.layers.get(precision, [])
            if layer.isolated is not None and (layer.quantized or precision != "int8")
        ]
        return sorted(layers, key=lambda x: (not x.overflows, x.isolated_sqnr, x.index))

    def candidates(self, precision: str = "int8") -> list[Candidate]:
        """The ranking as `analysis.tune` takes it (sensitivity −SQNR, cost the MAC share)."""
        ranked = self.ranking(precision)
        total = sum(layer.macs for layer in ranked) or 1
        return [
            Candidate(
                name=layer.name,
                sensitivity=OVERFLOW_SENSITIVITY
                if layer.overflows
                else -min(layer.isolated_sqnr, SQNR_CAP_DB),
                cost=layer.macs / total,
                clip_fraction=layer.clip_fraction or 0.0,
            )
            for layer in ranked
        ]

    def flagged(self) -> list[str]:
        """INT8 layers whose own error stands out: isolated SQNR below SQNR_LOW_DB, or
        SQNR_GAP_DB below the median layer's (worst first, at most MAX_ADVISED)."""
        ranked = self.ranking("int8")
        finite = [x.isolated_sqnr for x in ranked if math.isfinite(x.isolated_sqnr)]
        median = float(np.median(finite)) if finite else math.inf
        return [
            x.name
            for x in ranked
            if x.isolated_sqnr < SQNR_LOW_DB or x.isolated_sqnr < median - SQNR_GAP_DB
        ][:MAX_ADVISED]

    def suggested_skips(self) -> list[str]:
        """The skip_layers to try: the flagged layers, else the single worst-ranked one."""
        ranked = self.ranking("int8")
        return self.flagged() or [x.name for x in ranked[:1]]

    def overflowing(self) -> list[LayerError]:
        """FP16 layers whose output overflows (inf/NaN in the candidate, or golden > 65504)."""
        return [x for x in self.layers.get("fp16", []) if x.overflows]

    def skip_layers_toml(self) -> str:
        names = ", ".join(f'"{n}"' for n in self.suggested_skips())
        return f"[quant]\nskip_layers = [{names}]\n"

    def skip_layers_cfg(self) -> str:
        """The simple_config.cfg lines (AMCT's protobuf text: one `skip_layers` per layer)."""
        return "".join(f'skip_layers: "{n}"\n' for n in self.suggested_skips())

    def keep_dtype_cfg(self) -> str:
        """atc --keep_dtype file: one op name per line, the FP16-overflowing layers."""
        return "".join(f"{x.name}\n" for x in self.overflowing())

    def to_json(self) -> dict[str, Any]:
        """JSON-able (inf/NaN become None: SQNR of an exact layer is reported as null)."""
        return _clean(
            {
                "samples": self.samples,
                "layers": {p: [x.to_json() for x in ls] for p, ls in self.layers.items()},
                "ranking": {p: [x.name for x in self.ranking(p)] for p in self.layers},
                "outputs": self.outputs,
                "advice": self.advice,
                "notes": self.notes,
                "seconds": self.seconds,
                "skip_layers": self.suggested_skips(),
                "skip_layers_toml": self.skip_layers_toml(),
                "skip_layers_cfg": self.skip_layers_cfg(),
                "keep_dtype_cfg": self.keep_dtype_cfg(),
            }
        )


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _float_tensors(model: onnx.ModelProto) -> dict[str, tuple[int, onnx.NodeProto]]:
    """Float outputs of main-graph nodes, in graph order: tensor -> (node index, node)."""
    types = tensor_types(model)
    found: dict[str, tuple[int, onnx.NodeProto]] = {}
    for index, node in enumerate(model.graph.node):
        if node.op_type in ("Constant", "Shape", "Size"):
            continue
        for out in node.output:
            if out and types.get(out) == onnx.TensorProto.FLOAT:
                found[out] = (index, node)
                break  # a node's first float output stands for it
    return found


def _macs(node: onnx.NodeProto, values: Feeds, weights: Mapping[str, onnx.TensorProto]) -> int:
    """Multiply-accumulates of a quantizable layer on one sample, from real tensor shapes."""
    out = values.get(node.output[0])
    if out is None:
        return 0
    out_size = int(np.prod(out.shape))
    weight = weights.get(node.input[1]) if len(node.input) > 1 else None
    if node.op_type == "Conv" and weight is not None:
        return out_size * int(np.prod(weight.dims[1:]))
    if node.op_type == "ConvTranspose" and weight is not None:
        x = values.get(node.input[0])
        return int(np.prod(x.shape)) * int(np.prod(weight.dims[1:])) if x is not None else 0
    if node.op_type in ("MatMul", "Gemm"):
        x = values.get(node.input[0])
        k = int(x.shape[-1]) if x is not None and x.ndim else 1
        return out_size * k
    return out_size


def analyze_layers(
    golden: onnx.ModelProto,
    candidates: Sequence[CandidateModel],
    feeds: Iterable[Feeds],
    total: int | None = None,
    progress: Progress = NULL_PROGRESS,
) -> LayerAnalysis:
    """Accumulated and isolated per-layer error of each candidate on `feeds` (one pass)."""
    if not candidates:
        raise UsageError("nothing to analyse", hint="give an FP16 and/or INT8 model")
    tensors = _float_tensors(golden)
    weights = {i.name: i for i in golden.graph.initializer}
    by_name = {n.name: n for n in golden.graph.node}
    layer_tensors: dict[str, list[str]] = {}
    for cand in candidates:
        if cand.precision == "int8":
            layer_tensors[cand.precision] = [
                by_name[n].output[0]
                for n in cand.quantized_layers
                if n in by_name and by_name[n].output[0] in tensors
            ]
        else:
            layer_tensors[cand.precision] = list(tensors)
    replicas = graft_replicas(golden, {c.precision: c.model for c in candidates}, layer_tensors)

    # activation ranges (INT8) to check against the golden values
    watched: dict[str, RangeSeen] = {}
    activation_of: dict[str, str] = {}
    for cand in candidates:
        for name in cand.quantized_layers:
            node = by_name.get(name)
            if node is None or node.input[0] not in cand.ranges:
                continue
            lo, hi = cand.ranges[node.input[0]]
            activation_of[name] = node.input[0]
            watched.setdefault(node.input[0], RangeSeen(float(lo), float(hi)))
    macs: dict[str, int] = {}

    def on_sample(index: int, _feeds: Feeds, gold: Feeds, _seen: dict[str, Feeds]) -> None:
        for tensor, seen in watched.items():
            value = gold.get(tensor, _feeds.get(tensor))
            if value is not None:
                seen.update(value)
        if index == 0:
            values = {**_feeds, **gold}
            for layers in layer_tensors.values():
                for tensor in layers:
                    node = tensors[tensor][1]
                    if node.op_type in QUANTIZABLE_TYPES:
                        macs[node.name] = _macs(node, values, weights)

    compared = list(tensors) + [t for t in watched if t not in tensors]
    runners: dict[str, OrtRunner] = {}
    maps: dict[str, dict[str, str]] = {}
    with OrtRunner(replicas.model, name="golden+isolated") as host:
        try:
            for cand in candidates:
                runners[cand.precision] = OrtRunner(cand.model, name=cand.precision)
                maps[cand.precision] = {t: t for t in tensors}
                iso = f"{cand.precision}/isolated"
                runners[iso] = host
                maps[iso] = {t: replicas.outputs[cand.precision].get(t, "") for t in compared}
            result = compare_runs(
                host,
                runners,
                feeds,
                tensor_map=maps,
                tensors=compared,
                accumulator=lambda _c, _t: ErrorAccumulator(),
                on_sample=on_sample,
                progress=progress,
                total=total,
            )
        finally:
            for runner in runners.values():
                if runner is not host:
                    runner.close()

    graph_outputs = [o.name for o in golden.graph.output]
    layers: dict[str, list[LayerError]] = {}
    outputs: dict[str, dict[str, dict[str, Any]]] = {}
    for cand in candidates:
        p = cand.precision
        acc_table = result.tensors.get(p, {})
        iso_table = result.tensors.get(f"{p}/isolated", {})
        quantized = set(cand.quantized_layers)
        rows = []
        for tensor in layer_tensors[p]:
            index, node = tensors[tensor]
            if tensor not in acc_table:
                continue
            activation = activation_of.get(node.name) if p == "int8" else None
            seen = watched.get(activation) if activation else None
            rows.append(
                LayerError(
                    name=node.name,
                    op_type=node.op_type,
                    precision=p,
                    index=index,
                    output=tensor,
                    quantized=node.name in quantized,
                    accumulated=acc_table[tensor].result(),
                    isolated=iso_table[tensor].result() if tensor in iso_table else None,
                    activation=activation,
                    range_used=(seen.lo, seen.hi) if seen else None,
                    range_seen=(seen.seen_min, seen.seen_max) if seen and seen.count else None,
                    clip_fraction=seen.fraction if seen else None,
                    macs=macs.get(node.name, 0),
                )
            )
        layers[p] = rows
        outputs[p] = {o: acc_table[o].result() for o in graph_outputs if o in acc_table}
    analysis = LayerAnalysis(result.samples, layers, outputs)
    for tag, missing in replicas.skipped.items():
        analysis.notes.append(
            f"{tag}: {len(missing)} layer output(s) not found in the converted model "
            f"(fused or renamed): {', '.join(missing[:5])}"
        )
    analysis.advice = advise(analysis)
    return analysis


def _fmt_db(value: float) -> str:
    return "exact" if not math.isfinite(value) else f"{value:.1f} dB"


def advise(analysis: LayerAnalysis) -> list[str]:
    """msit-style advice lines, most actionable first."""
    lines: list[str] = []
    for layer in analysis.overflowing()[:MAX_ADVISED]:
        lines.append(
            f"FP16 overflow at {layer.name} ({layer.op_type}): keep it in FP32 "
            f"(keep_dtype.cfg line: {layer.name})"
        )
    int8 = analysis.layers.get("int8", [])
    start = next(
        (
            x
            for x in int8
            if x.accumulated.get("cosine") is not None and x.accumulated["cosine"] < COSINE_OK
        ),
        None,
    )
    if start is not None:
        lines.append(
            f"INT8 accumulated error starts at {start.name} "
            f"(cosine {start.accumulated['cosine']:.4f} < {COSINE_OK})"
        )
    ranking = analysis.ranking("int8")
    finite = [x.isolated_sqnr for x in ranking if math.isfinite(x.isolated_sqnr)]
    median = float(np.median(finite)) if finite else math.inf
    ranked = {x.name: x for x in ranking}
    for name in analysis.flagged():
        layer = ranked[name]
        lines.append(
            f"{name} alone: SQNR {_fmt_db(layer.isolated_sqnr)} with only it in INT8 (ranked "
            f"{list(ranked).index(name) + 1} of {len(ranked)}; median layer {_fmt_db(median)}): "
            f'try skip_layers = ["{name}"]'
        )
    for layer in sorted(int8, key=lambda x: -(x.clip_fraction or 0)):
        if (layer.clip_fraction or 0) <= CLIP_WARN or len(lines) > 8:
            break
        lo, hi = layer.range_used or (0.0, 0.0)
        smin, smax = layer.range_seen or (0.0, 0.0)
        lines.append(
            f"clip fraction {100 * (layer.clip_fraction or 0):.1f}% at {layer.name}: range "
            f"used [{lo:.4g}, {hi:.4g}], seen [{smin:.4g}, {smax:.4g}]; keep more of its range "
            "(override_layer_configs: IFMR max_percentile = 1.0 for this layer) or add "
            "calibration data like the failing inputs"
        )
    if not lines:
        lines.append(
            "every layer is within thresholds (cosine >= 0.99): the error is spread evenly; "
            "check the post-processing and the evaluation data"
        )
    return lines
