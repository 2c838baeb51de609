"""A transformer text classifier (int64 token ids + attention mask, -inf mask bias), as a new
user brings one: the model's own -inf is no FP16 overflow, its all-masked check feed (NaN in
the original too) does not fail onnxsim's verification, and token ids beyond the vocabulary
are bad input (exit 2), not an internal error."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import tiny_models

from ascend_quant import model as M
from ascend_quant.data.feeds import check_feeds
from ascend_quant.errors import UsageError
from ascend_quant.metrics import finalize, sample_stats
from ascend_quant.quant.fp16 import find_overflow, simulate_fp16
from ascend_quant.runners.ort import data_rejected, run_once
from ascend_quant.tensors import graph_io

sys.path.insert(0, str(Path(__file__).parent / "cli"))
from clirun import run_cli

TOKENS = 6


def _feeds(seed: int, vocab: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    length = int(rng.integers(2, TOKENS))
    return {
        "input_ids": rng.integers(1, vocab, (1, TOKENS)).astype(np.int64),
        "attention_mask": (np.arange(TOKENS) < length).astype(np.int64)[None],
    }


def _data(root: Path, count: int, seed: int, vocab: int = 10) -> Path:
    for k in range(count):
        for name, array in _feeds(seed + k, vocab).items():
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            np.save(folder / f"{k}.npy", array)
    return root


def test_the_models_own_inf_is_no_fp16_overflow() -> None:
    model = tiny_models.masked_text_encoder()
    sim = simulate_fp16(model)
    feeds = [_feeds(0), _feeds(1)]
    assert {"bias", "masked"} <= set(find_overflow(sim, feeds))  # without the FP32 reference
    assert find_overflow(sim, feeds, reference=model) == []


def test_per_layer_error_counts_only_the_candidates_own_inf() -> None:
    golden = np.array([0.5, -np.inf, 1.0, np.nan], np.float32)
    same = finalize(sample_stats(golden, golden.copy(), "error"), "error")
    assert same["nonfinite"] == 0 and same["golden_nonfinite"] == 2
    mine = np.array([np.inf, -np.inf, 1.0, np.nan], np.float32)
    assert finalize(sample_stats(golden, mine, "error"), "error")["nonfinite"] == 1


def test_analyze_advises_no_keep_dtype_for_an_attention_mask(tmp_path: Path, capsys) -> None:
    path = tiny_models.save(tiny_models.masked_text_encoder(), tmp_path / "enc.onnx")
    calib, evals = _data(tmp_path / "calib", 4, 0), _data(tmp_path / "eval", 3, 100)
    code, out, err = run_cli(
        capsys, "analyze", str(path), "--backend", "sim", "--soc", "Ascend310P3",
        "--calib", str(calib), "--eval", str(evals), "--out", str(tmp_path / "ws"),
    )  # fmt: skip
    assert code == 0, err
    assert "warning: FP16 overflow" not in err and "advice: FP16 overflow" not in out
    assert not (tmp_path / "ws" / "Ascend310P3" / "reports" / "keep_dtype.cfg").exists()


def test_all_masked_check_feed_still_verifies_the_simplified_model() -> None:
    model = tiny_models.masked_text_encoder()
    feeds = check_feeds(graph_io(model)[0])
    assert not feeds["attention_mask"].any()  # the check feed masks every token
    want = run_once(model, feeds)
    assert np.isnan(want["logits"]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "atol: nan" RuntimeWarning
        ok, why = M.outputs_match(want, {k: v.copy() for k, v in want.items()})
    assert ok, why
    assert not M.outputs_match(want, {"logits": np.zeros_like(want["logits"])})[0]
    finite = {"logits": np.array([[1.0, np.nan]], np.float32)}
    assert not M.outputs_match(finite, {"logits": np.array([[np.nan, np.nan]], np.float32)})[0]


def test_preflight_keeps_the_simplified_text_model(tmp_path: Path) -> None:
    path = tiny_models.save(tiny_models.masked_text_encoder(), tmp_path / "enc.onnx")
    result = M.preflight(path, tmp_path / "model")
    assert not [w for w in result.warnings if "differs" in w], result.warnings


def test_token_ids_beyond_the_vocabulary_are_bad_input() -> None:
    model = tiny_models.masked_text_encoder(vocab=10)
    feeds = _feeds(0)
    feeds["input_ids"][0, 1] = 5000
    rejected = r"fails on sample 3: node gather \(Gather\): indices"
    with pytest.raises(UsageError, match=rejected), data_rejected("sample 3"):
        run_once(model, feeds)
    # anything not ONNX Runtime's stays a bug
    with pytest.raises(ZeroDivisionError), data_rejected("sample 3"):
        raise ZeroDivisionError


@pytest.mark.parametrize("bad", ["calib", "eval"])
def test_build_with_out_of_vocabulary_ids_exits_2(tmp_path: Path, capsys, bad: str) -> None:
    path = tiny_models.save(tiny_models.masked_text_encoder(vocab=10), tmp_path / "enc.onnx")
    calib = _data(tmp_path / "calib", 4, 0, vocab=10 if bad == "eval" else 5000)
    evals = _data(tmp_path / "eval", 2, 100, vocab=10 if bad == "calib" else 5000)
    code, _out, err = run_cli(
        capsys, "build", str(path), "--backend", "sim", "--soc", "Ascend310P3",
        "--calib", str(calib), "--eval", str(evals), "--out", str(tmp_path / "ws"),
    )  # fmt: skip
    assert code == 2, err
    what = "calibration batch 1" if bad == "calib" else "evaluation sample"
    assert f"error: the FP32 model fails on {what}" in err and "node gather (Gather)" in err
    assert "hint: " in err and "internal error" not in err and "Traceback" not in err
    assert "[E:onnxruntime" not in err  # ORT's own log line would be a second error line
