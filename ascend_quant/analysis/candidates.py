"""The converted models per-layer analysis can look inside, and what it cannot.

A simulated .om carries its ONNX payload (FP16 rounding or INT8 fake-quant) and the layers and
activation ranges its conversion used: it is analysed as is. A real .om is compiled: its
intermediate tensors cannot be read in-process (that needs a dump). For INT8 the AMCT fake-quant
model (`*_fake_quant_model.onnx`, which amct_onnx writes beside the deploy model when the `amct`
route ran) computes the same quantization on the CPU and is analysed instead; for FP16 the
simulator's FP16 rounding of the preflighted model stands in. Each substitution is a note.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import onnx

from ascend_quant.analysis.layers import CandidateModel
from ascend_quant.backends.omfile import is_real_om
from ascend_quant.backends.simfile import is_sim_om, read_sim_om
from ascend_quant.errors import UsageError
from ascend_quant.quant.fp16 import simulate_fp16
from ascend_quant.quant.ops import QUANTIZABLE_TYPES


def _sim_candidate(precision: str, om: Path) -> CandidateModel:
    metadata, payload = read_sim_om(om)
    model = onnx.ModelProto()
    model.ParseFromString(payload)
    layers = tuple(
        str(layer["name"]) for layer in metadata.get("layers") or [] if layer.get("quantized")
    )
    ranges = {str(k): (float(v[0]), float(v[1])) for k, v in (metadata.get("ranges") or {}).items()}
    return CandidateModel(precision, model, layers, ranges)


def fake_quant_model(om: Path) -> Path | None:
    """AMCT's fake-quant model for a real INT8 .om built by the `amct` route, if it is there."""
    stem = om.stem.split("_int8")[0]
    found = sorted(om.parent.glob(f"work/{stem}_int8*/amct/*_fake_quant_model.onnx"))
    return found[0] if found else None


def _quantized_in(golden: onnx.ModelProto, fake: onnx.ModelProto) -> tuple[str, ...]:
    """Quantizable layers whose activation input the fake-quant model rewired (quant inserted)."""
    golden_inputs = {n.name: n.input[0] for n in golden.graph.node if n.input}
    return tuple(
        n.name
        for n in fake.graph.node
        if n.op_type in QUANTIZABLE_TYPES and n.input and golden_inputs.get(n.name) != n.input[0]
    )


def load_candidates(
    golden: onnx.ModelProto, oms: Mapping[str, Path], keep_dtype: tuple[str, ...] = ()
) -> tuple[list[CandidateModel], list[str]]:
    """CandidateModels for {precision: .om} and notes on what stands in for what."""
    candidates: list[CandidateModel] = []
    notes: list[str] = []
    for precision, om in oms.items():
        om = Path(om)
        if not om.is_file():
            raise UsageError(f"model not found: {om}")
        if is_sim_om(om):
            candidates.append(_sim_candidate(precision, om))
            continue
        if not is_real_om(om):
            raise UsageError(f"{om} is not an .om file", hint="analyse the models `build` wrote")
        if precision == "int8":
            fake = fake_quant_model(om)
            if fake is None:
                notes.append(
                    f"{om.name}: a compiled INT8 .om cannot expose its layers and no AMCT "
                    "fake-quant model was found (it is written only when amct_onnx ran: install "
                    "AMCT and rebuild); INT8 per-layer error is not analysed"
                )
                continue
            model = onnx.load(str(fake))
            candidates.append(CandidateModel("int8", model, _quantized_in(golden, model)))
            notes.append(
                f"INT8 layers are analysed on AMCT's fake-quant model {fake.name} on the CPU "
                "(the same quantization parameters; not the NPU's own kernels)"
            )
        else:
            candidates.append(CandidateModel(precision, simulate_fp16(golden, keep_dtype)))
            notes.append(
                f"{om.name}: a compiled FP16 .om cannot expose its layers; FP16 per-layer "
                "error is the simulator's FP16 rounding of the same model"
            )
    return candidates, notes
