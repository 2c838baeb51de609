"""Task metrics with hand-computed answers, and the tasks through `compare_models`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tiny_models
from fake_backend import Perturb, install, make_om, remember

from ascend_quant import tasks
from ascend_quant.compare import compare_models
from ascend_quant.config import AccuracyConfig, Thresholds
from ascend_quant.errors import UsageError
from ascend_quant.metrics import Undefined
from ascend_quant.tasks import TaskAccumulator, TaskOptions

SEG = TaskOptions(task="segmentation")


def test_guess_task_only_where_safe() -> None:
    assert tasks.guess_task((1, 3, 64, 64))[0] == "image"
    assert tasks.guess_task((1, 64, 64, 1))[0] == "image"
    assert tasks.guess_task((4, 1000))[0] == "classification"
    assert tasks.guess_task((1, 100, 6))[0] == "generic"  # boxes? steps? it does not say
    assert tasks.guess_task((1, 21, 64, 64))[0] == "generic"


def test_binary_mask_iou_and_dice_hand_computed() -> None:
    golden = np.array([[[0.9, 0.8], [0.1, 0.2]]])  # mask: 2 pixels
    mine = np.array([[[0.7, 0.3], [0.6, 0.1]]])  # mask: (0,0) and (1,0)
    values = tasks.sample_values(tasks.segmentation_metrics(SEG, golden, mine))
    assert values["iou"] == pytest.approx(1 / 3)  # ∩ = 1, ∪ = 3
    assert values["dice"] == pytest.approx(0.5)  # 2·1 / (2 + 2)
    # a different threshold gives a different mask: at 0.25 the candidate marks 3 pixels
    low = TaskOptions(task="segmentation", mask_threshold=0.25)
    values = tasks.sample_values(tasks.segmentation_metrics(low, golden, mine))
    assert values["iou"] == pytest.approx(2 / 3)  # golden {00,01}; mine {00,01,10}


def test_empty_golden_masks_are_reported_not_averaged() -> None:
    acc = TaskAccumulator(SEG)
    full = np.array([[[1.0, 1.0], [0.0, 0.0]]])
    acc.update(full, full)  # IoU 1
    half = np.array([[[1.0, 0.0], [0.0, 0.0]]])
    acc.update(full, half)  # IoU 1/2
    empty = np.zeros((1, 2, 2))
    one = acc.update(empty, half)  # golden empty: no IoU, the candidate marks 1 pixel
    assert isinstance(one["iou"], Undefined) and "golden mask empty" in one["iou"].reason
    assert "marks 1 pixels" in one["iou"].reason
    result = acc.result()
    assert result["iou"] == pytest.approx(0.75)  # mean of 1 and 1/2, the empty one left out
    assert result["empty_golden"] == pytest.approx(1 / 3)
    assert result["empty_golden_pixels"] == 1.0


def test_multiclass_mean_iou_hand_computed() -> None:
    # 2 classes on 4 pixels: golden classes [0, 0, 1, 1], candidate [0, 1, 1, 1]
    golden = np.zeros((1, 2, 1, 4))
    golden[0, 0, 0, :2] = 1
    golden[0, 1, 0, 2:] = 1
    mine = np.zeros((1, 2, 1, 4))
    mine[0, 0, 0, 0] = 1
    mine[0, 1, 0, 1:] = 1
    values = tasks.sample_values(tasks.segmentation_metrics(SEG, golden, mine))
    # class 0: ∩ 1, ∪ 2 -> 1/2; class 1: ∩ 2, ∪ 3 -> 2/3
    assert values["iou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert values["dice"] == pytest.approx((2 / 3 + 4 / 5) / 2)


def _one_hot(classes: list[int], c: int = 4) -> np.ndarray:
    out = np.full((len(classes), c), 0.01)
    out[np.arange(len(classes)), classes] = 0.97
    return out


def test_ctc_decoding_and_sequence_agreement_hand_computed() -> None:
    ctc = TaskOptions(task="sequence")
    assert tasks.decode(ctc, [0, 1, 1, 0, 1, 2, 2, 0]) == [1, 1, 2]
    assert tasks.decode(TaskOptions(decode="steps"), [0, 1, 1]) == [0, 1, 1]
    assert tasks.edit_distance([1, 2, 3], [1, 3]) == 1
    assert tasks.edit_distance([], [4, 4]) == 2
    # two sequences [N=2, T=5, C=4]: the first differs in one repeated step only (same string),
    # the second decodes to a different string
    golden = np.stack([_one_hot([1, 1, 0, 2, 2]), _one_hot([3, 0, 3, 0, 1])])
    mine = np.stack([_one_hot([1, 0, 0, 2, 2]), _one_hot([3, 0, 2, 0, 1])])
    values = tasks.sample_values(tasks.sequence_metrics(ctc, golden, mine))
    assert values["step_agreement"] == pytest.approx(8 / 10)
    assert values["sequence_agreement"] == pytest.approx(1 / 2)  # "12" == "12"; "331" != "321"
    assert values["char_error_rate"] == pytest.approx(1 / 5)  # 1 substitution / (2 + 3) chars
    # the same data as [T, N, C]
    tnc = TaskOptions(task="sequence", sequence_layout="TNC")
    swapped = tasks.sample_values(
        tasks.sequence_metrics(tnc, golden.transpose(1, 0, 2), mine.transpose(1, 0, 2))
    )
    assert swapped == values


def test_box_matching_hand_computed() -> None:
    det = TaskOptions(task="detection", score_threshold=0.3, iou_threshold=0.5)
    golden = np.array(
        [
            [0, 0, 10, 10, 0.9, 1],  # found by the candidate, shifted by 2: IoU 64/136
            [20, 20, 30, 30, 0.8, 2],  # missed (the candidate's box has another class)
            [50, 50, 60, 60, 0.1, 1],  # below the score threshold: padding
        ]
    )
    mine = np.array(
        [
            [2, 2, 12, 12, 0.85, 1],
            [20, 20, 30, 30, 0.7, 3],
            [70, 70, 80, 80, 0.6, 1],  # an extra box
        ]
    )
    assert tasks.box_iou(golden[:1, :4], mine[:1, :4])[0, 0] == pytest.approx(64 / 136)
    values = tasks.sample_values(tasks.detection_metrics(det, golden, mine))
    assert values["recall"] == pytest.approx(0.0)  # 64/136 = 0.47 < 0.5: no match
    loose = TaskOptions(task="detection", iou_threshold=0.45)
    values = tasks.sample_values(tasks.detection_metrics(loose, golden, mine))
    assert values["recall"] == pytest.approx(1 / 2)  # 1 of 2 golden boxes
    assert values["precision"] == pytest.approx(1 / 3)  # 1 of 3 candidate boxes
    assert values["matched_iou"] == pytest.approx(64 / 136)
    # greedy by score: the higher-scoring candidate takes the better golden box
    pair = tasks.match_boxes(
        np.array([[0, 0, 10, 10, 0.9], [0, 0, 9, 9, 0.9]]),
        np.array([[0, 0, 10, 10, 0.5], [0, 0, 9, 9, 0.95]]),
        0.5,
    )
    assert sorted(pair) == [(0, 0, 1.0), (1, 1, 1.0)]


def test_ratios_pool_over_samples() -> None:
    acc = TaskAccumulator(TaskOptions(task="detection"))
    acc.add({"recall": tasks.Ratio(1, 1, "")})
    acc.add({"recall": tasks.Ratio(0, 3, "")})
    acc.add({"recall": tasks.Ratio(0, 0, "none")})
    assert acc.result()["recall"] == pytest.approx(1 / 4)


def test_shape_checks_name_the_output() -> None:
    assert tasks.check_shape(TaskOptions(task="detection"), (1, 100, 85), "o") is not None
    assert tasks.check_shape(TaskOptions(task="detection"), (1, 100, 6), "o") is None
    assert "image" in (tasks.check_shape(TaskOptions(task="image"), (4, 10), "o") or "")
    with pytest.raises(UsageError, match="low end"):
        TaskOptions(output_range=(1.0, 0.0))


# --- through compare_models --------------------------------------------------------------


def _write(directory: Path, arrays: list[np.ndarray]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        a.astype(np.float32).tofile(directory / f"sample_{i}.bin")
    return remember(directory)


def test_segmentation_task_through_compare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probability map [1, 1, 8, 8] (looks like an image: the task is set) with one sample
    whose golden is all zero: reported as empty and as degenerate, not averaged."""
    model = tiny_models.save(tiny_models.passthrough([1, 1, 8, 8]), tmp_path / "seg.onnx")
    rng = np.random.default_rng(0)
    maps = [(rng.random((1, 1, 8, 8)) > 0.5).astype(np.float32) * 0.9 for _ in range(3)]
    maps.append(np.zeros((1, 1, 8, 8), dtype=np.float32))
    inputs = _write(tmp_path / "eval", maps)
    om = make_om(tmp_path / "seg_int8.om")
    install(monkeypatch, model, {"seg_int8.om": Perturb(noise=0.0)})
    accuracy = AccuracyConfig(task="segmentation")
    result = compare_models(model, [om], [inputs], tmp_path / "out", accuracy=accuracy)
    out = result.candidates[0].outputs[0]
    assert out.task == "segmentation" and out.task_source == "--task"
    assert out.metrics["iou"] == 1.0 and out.metrics["dice"] == 1.0
    assert out.metrics["empty_golden"] == pytest.approx(1 / 4)
    assert any(
        n.startswith("iou not defined on 1 of 4 samples") and "golden mask empty" in n
        for n in out.notes
    )
    assert out.metrics["kl"] is None  # a probability map is not a distribution over its last axis
    assert any("all zero on 1 of 4 samples (e.g. sample_3)" in w for w in result.warnings)
    with pytest.raises(UsageError, match=r"nearly constant .* \(\+1 more\)"):
        compare_models(
            model, [om], [inputs], tmp_path / "o2",
            accuracy=AccuracyConfig(task="segmentation", strict=True),
        )  # fmt: skip


def test_detection_task_names_the_sample_that_lost_boxes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny_models.save(tiny_models.passthrough([1, 4, 6]), tmp_path / "det.onnx")
    rng = np.random.default_rng(1)
    samples = []
    for _ in range(6):
        xy = rng.uniform(0, 100, (1, 4, 2))
        boxes = np.concatenate(
            [xy, xy + 20, rng.uniform(0.5, 1, (1, 4, 1)), rng.integers(0, 3, (1, 4, 1))], axis=2
        )
        samples.append(boxes)
    inputs = _write(tmp_path / "eval", samples)
    om = make_om(tmp_path / "det_int8.om")
    perturb = Perturb(noise=0.001, bad_sample="sample_4", bad_noise=0.5)
    install(monkeypatch, model, {"det_int8.om": perturb})
    accuracy = AccuracyConfig(outputs={"output": TaskOptions(task="detection")})
    loose = Thresholds(cosine_min=0.0, rel_euclidean_max=10, rmse_max=100, mean_rel_error_max=100)
    result = compare_models(model, [om], [inputs], tmp_path / "out", loose, accuracy=accuracy)
    out = result.candidates[0].outputs[0]
    assert out.task_source == "accuracy.outputs.output.task"
    assert out.worst_sample["recall"] == "sample_4"
    assert out.worst["recall"] < 0.8  # type: ignore[operator]
    assert result.verdict.startswith("FAILED: det_int8 output recall ")
    worst = [f for f in result.gate_failures if f.scope == "worst"]
    assert [(f.metric, f.sample) for f in worst] == [("recall", "sample_4")]
    assert worst[0].text() == "det_int8 output recall 0 < 0.8 sample sample_4"


def test_sequence_task_kl_per_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A softmax over classes per step: KL applies per step, sequence metrics are reported."""
    model = tiny_models.save(
        tiny_models.passthrough([1, 12, 5], "Softmax", axis=-1), tmp_path / "ocr.onnx"
    )
    rng = np.random.default_rng(2)
    inputs = _write(tmp_path / "eval", [rng.normal(0, 3, (1, 12, 5)) for _ in range(4)])
    om = make_om(tmp_path / "ocr_int8.om")
    install(monkeypatch, model, {"ocr_int8.om": Perturb(noise=0.0)})
    result = compare_models(
        model, [om], [inputs], tmp_path / "out", accuracy=AccuracyConfig(task="sequence")
    )
    out = result.candidates[0].outputs[0]
    assert out.metrics["kl"] == pytest.approx(0.0, abs=1e-6)
    assert out.metrics["step_agreement"] == 1.0 and out.metrics["sequence_agreement"] == 1.0
    assert result.passed, result.verdict
