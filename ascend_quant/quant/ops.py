"""The one table of what Ascend quantizes, per ONNX op type (reference §1.2, §3.2).

Imports nothing: preflight's summary, the layer planner, FP16 simulation, the renderers and
per-layer analysis all read these names from here.
"""

from __future__ import annotations

# ONNX op type -> the Ascend IR type ATC quantizes it as (Conv is Conv3D for 5-D weights).
# skip_layer_types and override_layer_types accept either spelling.
QUANTIZABLE_TYPES: dict[str, str] = {
    "Conv": "Conv2D",
    "Gemm": "MatMulV2",
    "MatMul": "BatchMatMulV2",
    "ConvTranspose": "Conv2DTranspose",
    "AveragePool": "AvgPoolV2",
}
# The quantizable types whose second input is a weight (int8 with ARQ).
WEIGHTED_TYPES: tuple[str, ...] = ("Conv", "Gemm", "MatMul", "ConvTranspose")
# Quantized only when named in tensor_quantize (their inputs are fake-quantized).
TENSOR_QUANTIZE_TYPES: dict[str, str] = {"MaxPool": "MaxPool", "Add": "Add"}
# Ascend types whose quantization ATC switches off when the model input or weights are FP16.
FP16_OFF_TYPES: tuple[str, ...] = ("AvgPoolV2", "BatchMatMulV2")


def ir_type(op_type: str, weight_rank: int | None = None) -> str:
    """The Ascend IR type of an ONNX op (its own name when Ascend does not quantize it)."""
    if op_type == "Conv" and weight_rank == 5:
        return "Conv3D"
    return QUANTIZABLE_TYPES.get(op_type, op_type)
