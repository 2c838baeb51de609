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

from ascend_quant import metrics
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


def test_a_golden_tie_counts_as_top1_agreement() -> None:
    """The trained text classifier's FP16 and INT8 builds failed top-1 on one row of 32 whose
    FP32 logits were 2.2502 and 2.2520: FP16 rounding alone reorders those."""
    golden = np.array([[-1.40, -4.26, 2.2502, 2.2520], [0.1, 3.0, 2.0, -1.0]], np.float32)
    tied = np.array([[-1.40, -4.26, 2.2515, 2.2510], [0.1, 3.0, 2.0, -1.0]], np.float32)
    assert metrics.top1_agreement(golden, tied) == 1.0
    result = finalize(sample_stats(golden, tied, "classes"), "classes")
    assert result["top1_agreement"] == 1.0
    assert any("1 row(s) count as agreeing" in note for note in result["notes"])
    flipped = np.array([[3.0, -4.26, 2.2502, 2.2520], [0.1, 2.0, 3.0, -1.0]], np.float32)
    assert metrics.top1_agreement(golden, flipped) == 0.0  # 3.65 and 1.0 apart: no ties
    result = finalize(sample_stats(golden, flipped, "classes"), "classes")
    assert result["top1_agreement"] == 0.0 and not result["notes"]


@pytest.mark.parametrize("which", ["calib", "eval"])
def test_one_unnamed_array_folder_for_two_inputs_is_refused(
    tmp_path: Path, capsys, which: str
) -> None:
    """`--calib data/input_ids` on a two-input model once calibrated the attention mask with
    the token ids (same dtype and shape, so nothing noticed)."""
    path = tiny_models.save(tiny_models.masked_text_encoder(), tmp_path / "enc.onnx")
    data = {"calib": _data(tmp_path / "calib", 4, 0), "eval": _data(tmp_path / "eval", 2, 100)}
    data[which] = data[which] / "input_ids"
    code, _out, err = run_cli(
        capsys, "build", str(path), "--backend", "sim", "--soc", "Ascend310P3",
        "--calib", str(data["calib"]), "--eval", str(data["eval"]), "--out", str(tmp_path / "ws"),
    )  # fmt: skip
    assert code == 2, err
    assert f"error: --{which} {data[which]} would feed the same files to 2 inputs" in err
    assert "hint: name each input's data" in err
    assert not (tmp_path / "ws" / which).exists()


def test_npz_files_and_per_input_folders_still_feed_every_input(tmp_path: Path) -> None:
    from ascend_quant.config import BuildConfig, merge
    from ascend_quant.data.inputs import plan_inputs

    model = tiny_models.masked_text_encoder()
    specs = graph_io(model)[0]
    shapes = {s.name: tuple(int(d) for d in s.shape) for s in specs}
    npz = tmp_path / "npz"
    npz.mkdir()
    for k in range(3):
        np.savez(npz / f"{k}.npz", **_feeds(k))
    per_input = _data(tmp_path / "per_input", 3, 0)
    for source in (npz, per_input):
        config = merge(BuildConfig(), {"calib": {"sources": [str(source)]}})
        plans = plan_inputs(specs, shapes, config)
        assert [p.spec.name for p in plans] == ["input_ids", "attention_mask"]


def test_calib_of_images_on_a_text_model_points_to_named_arrays(tmp_path: Path, capsys) -> None:
    """`ascend-quant calib DIR --model text.onnx --out X` once answered "no input named 'input'"
    with the hint "choose one with --input NAME", although neither input takes images."""
    path = tiny_models.save(tiny_models.masked_text_encoder(), tmp_path / "enc.onnx")
    data = _data(tmp_path / "calib", 2, 0)
    code, _out, err = run_cli(
        capsys, "calib", str(data), "--model", str(path), "--out", str(tmp_path / "set")
    )
    assert code == 2 and "no input named 'input'" in err
    assert "--calib NAME=SOURCE" in err
    assert not (tmp_path / "set").exists()


def test_build_prints_each_preflight_warning_once(tmp_path: Path, capsys) -> None:
    """Preflight logged its warnings and `build` logged them again on loading its record."""
    model = tiny_models.conv_net(hw=8)
    model.opset_import[0].version = 19  # beyond the opsets ATC documents: a preflight warning
    path = tiny_models.save(model, tmp_path / "conv.onnx")
    data = tmp_path / "data"
    data.mkdir()
    for k in range(3):
        np.save(data / f"{k}.npy", np.random.default_rng(k).random((1, 3, 8, 8), np.float32))
    args = ["build", str(path), "--backend", "sim", "--soc", "Ascend310P3", "--calib",
            str(data), "--eval", str(data), "--out", str(tmp_path / "ws")]  # fmt: skip
    for _run in ("fresh", "reused"):
        code, _out, err = run_cli(capsys, *args)
        assert code in (0, 1), err
        assert err.count("warning: opset 19 is outside") == 1, err
