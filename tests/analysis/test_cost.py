"""The cost model's candidates: only layers the toolkit would quantize."""

from __future__ import annotations

import tune_models

from ascend_quant.analysis.cost import quantizable_costs


def test_activation_by_activation_matmuls_are_not_tuning_candidates() -> None:
    # q @ kᵀ and softmax @ v are never INT8; counted, tuning ranked them first and kept them
    # "in float" (a no-op) out of the max_float budget.
    names = [c.name for c in quantizable_costs(tune_models.attention())]
    assert names == ["proj_q", "proj_k", "proj_v", "proj_o"]
