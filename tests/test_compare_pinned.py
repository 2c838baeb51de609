"""compare's metric values pinned on models built in code: how candidates are run (in-process
runners, or the files `run` writes) and how metrics are accumulated must not change the figures.

The values were recorded before compare moved onto `Backend.open` + `comparator.compare_runs`
(reading ais_bench output files, with its own accumulator); they must stay equal to float
precision, NaN and undefined (None) included, and so must the worst samples and the notes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import tiny_models
from fake_backend import Perturb, install, make_om, write_inputs

from ascend_quant.compare import compare_models
from ascend_quant.config import Thresholds

NAN = math.nan
FILES_NOTE = "ran through output files"

SCENARIOS = {
    "sr": (
        tiny_models.sr_net,
        {
            "sr_fp16.om": Perturb(noise=0.002, dtype="float16"),
            "sr_int8.om": Perturb(noise=0.05, bad_sample="sample_2", bad_noise=0.4),
        },
    ),
    "cls": (tiny_models.classifier, {"cls_int8.om": Perturb(noise=0.2, bias=0.01)}),
    "conv": (tiny_models.conv_net, {"conv_fp16.om": Perturb(noise=0.01, nan_sample="sample_1")}),
}

PINNED: dict[str, dict[str, Any]] = {
    "sr_fp16/output": {
        "metrics": {
            "cosine": 0.9999980277,
            "max_abs_error": 0.00944972038269043,
            "mae": 0.0018979572252040575,
            "msit_max_abs_error": 0.00944972038269043,
            "msit_mean_abs_error": 0.0018979572252040575,
            "rmse": 0.002387255023169532,
            "rel_euclidean": 0.001986155444075975,
            "max_rel_error": 5.522964363377404,
            "mean_rel_error": 0.008797298856450841,
            "kl": None,
            "psnr_db": 68.66641442022654,
            "ssim": 0.9999927273911272,
        },
        "worst": {
            "cosine": 0.9999979186,
            "max_abs_error": 0.00944972038269043,
            "mae": 0.002004137037753632,
            "msit_max_abs_error": 0.00944972038269043,
            "msit_mean_abs_error": 0.002004137037753632,
            "rmse": 0.002512790093768628,
            "rel_euclidean": 0.002040981274182882,
            "max_rel_error": 5.522964363377404,
            "mean_rel_error": 0.010680847211379933,
            "psnr_db": 68.22126651172246,
            "ssim": 0.9999919555859246,
        },
        "worst_sample": {
            "cosine": "sample_3",
            "max_abs_error": "sample_1",
            "mae": "sample_3",
            "msit_max_abs_error": "sample_1",
            "msit_mean_abs_error": "sample_3",
            "rmse": "sample_3",
            "rel_euclidean": "sample_3",
            "max_rel_error": "sample_4",
            "mean_rel_error": "sample_4",
            "psnr_db": "sample_3",
            "ssim": "sample_0",
        },
        "notes": ["KL not applicable: the output is not a distribution over its last axis"],
    },
    "sr_int8/output": {
        "metrics": {
            "cosine": 0.9839817235,
            "max_abs_error": 1.8194698095321655,
            "mae": 0.11260749496405917,
            "msit_max_abs_error": 1.8194698095321655,
            "msit_mean_abs_error": 0.11260749496405917,
            "rmse": 0.21736200452670626,
            "rel_euclidean": 0.18084147878461745,
            "max_rel_error": 344.3292103548368,
            "mean_rel_error": 0.5026881422059531,
            "kl": None,
            "psnr_db": 29.480718126600568,
            "ssim": 0.9566632727023876,
        },
        "worst": {
            "cosine": 0.9316270084,
            "max_abs_error": 1.8194698095321655,
            "mae": 0.37380964901276076,
            "msit_max_abs_error": 1.8194698095321655,
            "msit_mean_abs_error": 0.37380964901276076,
            "rmse": 0.4712735909131212,
            "rel_euclidean": 0.3869701350984393,
            "max_rel_error": 344.3292103548368,
            "mean_rel_error": 1.6165291100688275,
            "psnr_db": 22.758928665437445,
            "ssim": 0.8008823748312885,
        },
        "worst_sample": {
            "cosine": "sample_2",
            "max_abs_error": "sample_2",
            "mae": "sample_2",
            "msit_max_abs_error": "sample_2",
            "msit_mean_abs_error": "sample_2",
            "rmse": "sample_2",
            "rel_euclidean": "sample_2",
            "max_rel_error": "sample_2",
            "mean_rel_error": "sample_2",
            "psnr_db": "sample_2",
            "ssim": "sample_2",
        },
        "notes": ["KL not applicable: the output is not a distribution over its last axis"],
    },
    "cls_int8/logits": {
        "metrics": {
            "cosine": 0.9854208648,
            "max_abs_error": 0.15533888339996338,
            "mae": 0.04559217609465122,
            "msit_max_abs_error": 0.15533888339996338,
            "msit_mean_abs_error": 0.04559217609465122,
            "rmse": 0.05877166574978482,
            "rel_euclidean": 0.1701344155878101,
            "max_rel_error": 0.9571173368223392,
            "mean_rel_error": 0.18890022271641457,
            "kl": 0.001496065172319231,
            "top1_agreement": 1.0,
            "top5_overlap": 0.96,
        },
        "worst": {
            "cosine": 0.9791087528,
            "max_abs_error": 0.15533888339996338,
            "mae": 0.05604916028678417,
            "msit_max_abs_error": 0.15533888339996338,
            "msit_mean_abs_error": 0.05604916028678417,
            "rmse": 0.06983284776528013,
            "rel_euclidean": 0.20388523086291194,
            "max_rel_error": 0.9571173368223392,
            "mean_rel_error": 0.24712447853549513,
            "kl": 0.002041192959206699,
            "top1_agreement": 1.0,
            "top5_overlap": 0.8,
        },
        "worst_sample": {
            "cosine": "sample_4",
            "max_abs_error": "sample_2",
            "mae": "sample_4",
            "msit_max_abs_error": "sample_2",
            "msit_mean_abs_error": "sample_4",
            "rmse": "sample_4",
            "rel_euclidean": "sample_4",
            "max_rel_error": "sample_4",
            "mean_rel_error": "sample_4",
            "kl": "sample_4",
            "top1_agreement": "sample_0",
            "top5_overlap": "sample_1",
        },
        "notes": [],
    },
    "conv_fp16/output": {
        "metrics": {
            "cosine": NAN,
            "max_abs_error": NAN,
            "mae": NAN,
            "msit_max_abs_error": NAN,
            "msit_mean_abs_error": NAN,
            "rmse": NAN,
            "rel_euclidean": NAN,
            "max_rel_error": NAN,
            "mean_rel_error": NAN,
            "kl": None,
        },
        "worst": {
            "cosine": NAN,
            "max_abs_error": NAN,
            "mae": NAN,
            "msit_max_abs_error": NAN,
            "msit_mean_abs_error": NAN,
            "rmse": NAN,
            "rel_euclidean": NAN,
            "max_rel_error": NAN,
            "mean_rel_error": NAN,
        },
        "worst_sample": {
            "cosine": "sample_1",
            "max_abs_error": "sample_1",
            "mae": "sample_1",
            "msit_max_abs_error": "sample_1",
            "msit_mean_abs_error": "sample_1",
            "rmse": "sample_1",
            "rel_euclidean": "sample_1",
            "max_rel_error": "sample_1",
            "mean_rel_error": "sample_1",
        },
        "notes": [
            "KL not applicable: the output is not a distribution over its last axis",
            "candidate output has 1 NaN/Inf values (FP16 overflow?)",
        ],
    },
}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)
    return bool(a == b)


def _measure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files_only: bool
) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for key, (make, perturbs) in SCENARIOS.items():
        model = tiny_models.save(make(), tmp_path / f"{key}.onnx")
        inputs = write_inputs(tmp_path / f"eval_{key}", (1, 3, 16, 16), 5, seed=3)
        oms = [make_om(tmp_path / name) for name in perturbs]
        install(monkeypatch, model, perturbs, files_only=files_only)
        out = tmp_path / f"out_{key}"
        result = compare_models(model, oms, [inputs], out, Thresholds())
        # candidate output files exist only where the model could not be opened in-process
        written = {p.name for p in (out / "outputs").iterdir()} - {"samples"}
        by_files = {Path(n).stem for n in perturbs} if files_only else set()
        assert written == {"golden"} | by_files
        for c in result.candidates:
            assert any(n.startswith(FILES_NOTE) for n in c.outputs[0].notes) is files_only
            for o in c.outputs:
                found[f"{c.name}/{o.output}"] = {
                    "metrics": o.metrics,
                    "worst": o.worst,
                    "worst_sample": o.worst_sample,
                    "notes": [n for n in o.notes if not n.startswith(FILES_NOTE)],
                }
    return found


@pytest.mark.parametrize("files_only", [False, True], ids=["in-process", "through-files"])
def test_compare_figures_are_pinned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files_only: bool
) -> None:
    """In-process runners and the files fallback (no ais_bench Python API) agree with the pins."""
    found = _measure(tmp_path, monkeypatch, files_only)
    assert list(found) == list(PINNED)
    for name, pinned in PINNED.items():
        for part in ("metrics", "worst", "worst_sample"):
            assert list(found[name][part]) == list(pinned[part]), (name, part)
            for metric, value in pinned[part].items():
                got = found[name][part][metric]
                assert _same(got, value), (name, part, metric, got, value)
        assert found[name]["notes"] == pinned["notes"], name
