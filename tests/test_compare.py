from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import tiny_models
from fake_backend import Perturb, install, make_om, write_inputs

from ascend_quant.compare import check_thresholds, compare_models, overlap_warning
from ascend_quant.config import Thresholds, to_mapping
from ascend_quant.errors import UsageError


@pytest.fixture
def conv_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    model = tiny_models.save(tiny_models.conv_net(), tmp_path / "conv.onnx")
    inputs = write_inputs(tmp_path / "eval", (1, 3, 16, 16), 4)
    good = make_om(tmp_path / "conv_fp16.om")
    bad = make_om(tmp_path / "conv_int8.om")
    install(
        monkeypatch,
        model,
        {"conv_fp16.om": Perturb(noise=0.001, dtype="float16"), "conv_int8.om": Perturb(noise=0.3)},
    )
    return model, inputs, good, bad


def test_identical_inputs_good_candidate_passes(conv_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, inputs, good, _ = conv_setup
    result = compare_models(model, [good], [inputs], tmp_path / "out", Thresholds())
    assert result.passed and result.verdict == "PASSED"
    out = result.candidates[0].outputs[0]
    assert out.output == "output" and out.samples == 4 and out.shape == [1, 4, 16, 16]
    assert out.metrics["cosine"] > 0.9999
    assert out.worst["cosine"] <= out.metrics["cosine"] + 1e-9
    assert out.worst_sample["cosine"].startswith("sample_")
    # golden outputs written with ais_bench names; the candidate's float16 files were read right
    golden_files = sorted(p.name for p in (tmp_path / "out/outputs/golden").iterdir())
    assert golden_files[:2] == ["golden.json", "sample_0_0.bin"]
    assert result.candidates[0].precision == "fp16"
    json.dumps(to_mapping(result))  # JSON-able


def test_noisy_candidate_fails_naming_every_failed_metric(conv_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, inputs, good, bad = conv_setup
    result = compare_models(model, [good, bad], [inputs], tmp_path / "out", Thresholds())
    assert not result.passed
    fp16, int8 = result.candidates
    assert fp16.passed and not int8.passed
    failed = int8.outputs[0].failures
    assert any(f.startswith("cosine ") and "< 0.99" in f for f in failed)
    assert any(f.startswith("rel_euclidean ") for f in failed)
    assert result.verdict.startswith("FAILED: conv_int8 output cosine ")
    assert result.verdict.endswith("(+2 other failed gates)")
    assert "conv_fp16" not in result.verdict


def test_per_output_override_and_unknown_output(conv_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, inputs, _, bad = conv_setup
    loose = Thresholds(cosine_min=0.5, rel_euclidean_max=1.0, kl_max=1.0, mean_rel_error_max=100)
    result = compare_models(
        model, [bad], [inputs], tmp_path / "out", Thresholds(), output_thresholds={"output": loose}
    )
    assert result.passed, result.verdict
    assert result.candidates[0].outputs[0].thresholds == loose
    with pytest.raises(UsageError, match="unknown output 'outptu'") as info:
        compare_models(
            model,
            [bad],
            [inputs],
            tmp_path / "o2",
            Thresholds(),
            output_thresholds={"outptu": loose},
        )
    assert "did you mean 'output'" in (info.value.hint or "")


def test_same_inputs_as_calibration_warns(conv_setup, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    model, inputs, good, _ = conv_setup
    with caplog.at_level(logging.WARNING, logger="ascend_quant"):
        result = compare_models(
            model, [good], [inputs], tmp_path / "out", Thresholds(), calib_sources=[inputs]
        )
    assert result.warnings and "optimistic" in result.warnings[0]
    assert "4 of 4 evaluation samples" in result.warnings[0]
    assert "optimistic" in caplog.text
    other = write_inputs(tmp_path / "calib", (1, 3, 16, 16), 3, seed=99)
    result = compare_models(
        model, [good], [inputs], tmp_path / "out", Thresholds(), calib_sources=[other]
    )
    assert result.warnings == []


def test_overlap_detected_through_calib_manifests(tmp_path: Path) -> None:
    sha = "ab" * 32
    for name, content in (("calib", b"x"), ("eval", b"y")):
        d = tmp_path / name / "samples"
        d.mkdir(parents=True)
        (d / "0.bin").write_bytes(content)
        manifest = {"inputs_sha256": "cd" * 32, "samples": [{"source_sha256": sha}]}
        (tmp_path / name / "manifest.json").write_text(json.dumps(manifest))
    warning = overlap_warning([tmp_path / "eval" / "samples"], [tmp_path / "calib" / "samples"])
    assert warning is not None and "1 of 1" in warning
    (tmp_path / "eval" / "manifest.json").write_text(
        json.dumps({"samples": [{"sha256": "0" * 64}]})
    )
    assert (
        overlap_warning([tmp_path / "eval" / "samples"], [tmp_path / "calib" / "samples"]) is None
    )


def test_classifier_gets_top_k_and_image_model_keeps_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cls = tiny_models.save(tiny_models.classifier(), tmp_path / "cls.onnx")
    inputs = write_inputs(tmp_path / "eval", (1, 3, 16, 16), 3)
    om = make_om(tmp_path / "cls_int8.om")
    install(monkeypatch, cls, {"cls_int8.om": Perturb(noise=0.0)})
    result = compare_models(cls, [om], [inputs], tmp_path / "out", Thresholds())
    metrics = result.candidates[0].outputs[0].metrics
    assert result.candidates[0].outputs[0].kind == "classes"
    assert metrics["top1_agreement"] == 1.0 and metrics["top5_overlap"] == 1.0
    assert result.image_samples == []

    sr = tiny_models.save(tiny_models.sr_net(), tmp_path / "sr.onnx")
    om = make_om(tmp_path / "sr_int8.om")
    install(monkeypatch, sr, {"sr_int8.om": Perturb(noise=0.05)})
    result = compare_models(sr, [om], [inputs], tmp_path / "out_sr", Thresholds())
    out = result.candidates[0].outputs[0]
    assert out.kind == "image" and out.metrics["psnr_db"] is not None
    (sample,) = result.image_samples
    assert np.load(sample.golden).shape == (1, 3, 32, 32)
    assert np.load(sample.input).shape == (1, 3, 16, 16)  # type: ignore[arg-type]
    assert set(sample.candidates) == {"sr_int8"}


def test_batch_mismatch_is_a_usage_error(conv_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _model, inputs, good, _ = conv_setup
    dyn = tiny_models.save(tiny_models.conv_net(batch="N"), tmp_path / "dyn.onnx")
    # a dynamic batch resolves from the file size (1 sample per file) and matches the fake
    result = compare_models(dyn, [good], [inputs], tmp_path / "out", Thresholds())
    assert result.samples == 4
    with pytest.raises(UsageError, match="inference"):
        compare_models(
            dyn,
            [good],
            [inputs],
            tmp_path / "o2",
            Thresholds(),
            input_shapes={"input": (2, 3, 16, 16)},
        )


def test_check_thresholds() -> None:
    t = Thresholds()
    assert check_thresholds({"cosine": 0.995, "kl": 0.001, "rmse": 0.5}, t) == []
    assert check_thresholds({"cosine": 0.98}, t) == ["cosine 0.98 < 0.99"]
    assert check_thresholds({"cosine": None, "kl": float("nan")}, t) == ["kl is NaN"]
    assert check_thresholds({"mean_rel_error": 1.5, "rmse": 2.0}, t) == [
        "rmse 2 > 1",
        "mean_rel_error 1.5 > 1",
    ]


def test_missing_model_and_no_candidates(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="model not found"):
        compare_models(tmp_path / "nope.onnx", [tmp_path / "a.om"], [tmp_path], tmp_path, None)
    model = tiny_models.save(tiny_models.conv_net(), tmp_path / "conv.onnx")
    with pytest.raises(UsageError, match=r"no \.om candidates"):
        compare_models(model, [], [tmp_path], tmp_path / "out", None)


def _calib_and_eval(tmp_path: Path, model: Path, hw: int):  # type: ignore[no-untyped-def]
    from ascend_quant.config import CalibConfig, PreprocessConfig
    from ascend_quant.data.images import make_calib_set
    from ascend_quant.resources import holdout_images_dir

    pre = PreprocessConfig(size=(hw, hw))
    make_calib_set(tmp_path / "calib", pre, CalibConfig(limit=6, jobs=1), model=model)
    make_calib_set(
        tmp_path / "eval",
        pre,
        CalibConfig(sources=(str(holdout_images_dir()),), jobs=1),
        model=model,
    )
    return pre, tmp_path / "calib", tmp_path / "eval"


def test_simulated_fp16_and_int8_sr_net(tmp_path: Path) -> None:
    """Integration: the real simulator converts sr_net; FP16 is closer to FP32 than INT8."""
    from ascend_quant.backends.base import ConvertRequest
    from ascend_quant.backends.sim import SimBackend
    from ascend_quant.workspace import sha256_file

    model = tiny_models.save(tiny_models.sr_net(hw=32), tmp_path / "sr.onnx")
    pre, calib, ev = _calib_and_eval(tmp_path, model, 32)
    oms = []
    for precision in ("fp16", "int8"):
        request = ConvertRequest(
            model=model,
            source_sha256=sha256_file(model),
            input_shapes={"input": (1, 3, 32, 32)},
            soc="Ascend310P3",
            precision=precision,  # type: ignore[arg-type]
            out_dir=tmp_path / "om",
            name="sr",
            preprocess=pre,
            calib_dirs={"input": calib},
        )
        oms.append(SimBackend().convert(request).path)
    result = compare_models(
        model,
        oms,
        [ev / "samples"],
        tmp_path / "cmp",
        Thresholds(),
        calib_sources=[calib / "samples"],
    )
    fp16, int8 = (c.outputs[0].metrics for c in result.candidates)
    assert [c.precision for c in result.candidates] == ["fp16", "int8"]
    assert result.samples == 4 and result.warnings == []
    assert 1.0 > fp16["cosine"] > int8["cosine"] > 0.99  # type: ignore[operator]
    assert fp16["psnr_db"] > int8["psnr_db"] > 30  # type: ignore[operator]
    assert int8["rmse"] > 0  # type: ignore[operator]
    assert result.passed, result.verdict
    # evaluating on the calibration images themselves is flagged
    again = compare_models(
        model, oms[1:], [calib / "samples"], tmp_path / "cmp2", Thresholds(),
        calib_sources=[calib / "samples"],
    )  # fmt: skip
    assert again.warnings and "6 of 6" in again.warnings[0]


def test_one_bad_sample_among_good_ones_fails_the_worst_sample_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The aggregate hides one broken image; the image task's per-sample PSNR gate names it."""
    sr = tiny_models.save(tiny_models.sr_net(), tmp_path / "sr.onnx")
    inputs = write_inputs(tmp_path / "eval", (1, 3, 16, 16), 16)
    om = make_om(tmp_path / "sr_int8.om")
    perturb = Perturb(noise=0.001, bad_sample="sample_5", bad_noise=0.5)
    install(monkeypatch, sr, {"sr_int8.om": perturb})
    loose = Thresholds(cosine_min=0.99, rel_euclidean_max=0.5)
    result = compare_models(sr, [om], [inputs], tmp_path / "out", loose)
    out = result.candidates[0].outputs[0]
    assert out.task == "image" and out.task_source.startswith("guessed from shape")
    assert out.metrics["cosine"] > 0.99 and out.metrics["psnr_db"] > 30  # aggregate looks fine
    assert not result.passed
    assert result.verdict.startswith("FAILED: sr_int8 output psnr_db ")
    assert " < 30 sample sample_5" in result.verdict
    assert out.worst_sample["psnr_db"] == "sample_5"


def test_nan_output_is_a_failed_gate_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny_models.save(tiny_models.conv_net(), tmp_path / "conv.onnx")
    inputs = write_inputs(tmp_path / "eval", (1, 3, 16, 16), 3)
    om = make_om(tmp_path / "conv_fp16.om")
    install(monkeypatch, model, {"conv_fp16.om": Perturb(noise=0.0, nan_sample="sample_1")})
    result = compare_models(model, [om], [inputs], tmp_path / "out", Thresholds())
    assert not result.passed
    assert result.verdict.startswith("FAILED: conv_fp16 output cosine NaN (needs >= 0.99)")
    assert "NaN/Inf" in result.verdict
    json.dumps(to_mapping(result), default=str)


def test_nominal_output_range_is_used_and_stated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ascend_quant.config import AccuracyConfig

    sr = tiny_models.save(tiny_models.sr_net(), tmp_path / "sr.onnx")
    inputs = write_inputs(tmp_path / "eval", (1, 3, 16, 16), 2)
    om = make_om(tmp_path / "sr_int8.om")
    install(monkeypatch, sr, {"sr_int8.om": Perturb(noise=0.01)})
    golden_range = compare_models(sr, [om], [inputs], tmp_path / "a", Thresholds())
    nominal = compare_models(
        sr, [om], [inputs], tmp_path / "b", Thresholds(),
        accuracy=AccuracyConfig(output_range=(0.0, 10.0)),
    )  # fmt: skip
    g = golden_range.candidates[0].outputs[0]
    n = nominal.candidates[0].outputs[0]
    assert n.value_range == 10.0 and n.range_source == "nominal 0..10 (--output-range)"
    assert g.range_source is not None and g.range_source.startswith("golden")
    # PSNR = 10·log10(L²/MSE): the same MSE, so the difference is 20·log10(10 / L_golden)
    expected = 20 * math.log10(10.0 / g.value_range)  # type: ignore[operator]
    assert n.metrics["psnr_db"] - g.metrics["psnr_db"] == pytest.approx(expected, rel=1e-9)  # type: ignore[operator]


def test_paddle_mean_std_without_scale_is_flagged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--mean 127.5 --std 127.5 with the default --scale 1/255 gives inputs in -1 … -0.992."""
    from ascend_quant.config import AccuracyConfig, CalibConfig, PreprocessConfig
    from ascend_quant.data.images import make_calib_set
    from ascend_quant.resources import holdout_images_dir

    model = tiny_models.save(tiny_models.conv_net(), tmp_path / "conv.onnx")
    mistake = PreprocessConfig(size=(16, 16), mean=(127.5,) * 3, std=(127.5,) * 3)
    make_calib_set(
        tmp_path / "eval",
        mistake,
        CalibConfig(sources=(str(holdout_images_dir()),), limit=3, jobs=1),
        model=model,
    )
    samples = tmp_path / "eval" / "samples"
    first = np.fromfile(sorted(samples.iterdir())[0], dtype=np.float32)
    assert first.min() >= -1.0 and first.max() <= -0.99  # the mistake, reproduced
    om = make_om(tmp_path / "conv_int8.om")
    install(monkeypatch, model, {"conv_int8.om": Perturb(noise=0.0)})
    result = compare_models(model, [om], [samples], tmp_path / "out", Thresholds())
    assert result.passed  # every model agrees on a constant input ...
    (warning,) = [w for w in result.warnings if "nearly constant" in w]
    assert warning.startswith("input 'input' is nearly constant on 3 of 3 samples")  # ... flagged
    assert "--scale 1" in warning
    with pytest.raises(UsageError, match="nearly constant"):
        compare_models(
            model, [om], [samples], tmp_path / "o2", Thresholds(),
            accuracy=AccuracyConfig(strict=True),
        )  # fmt: skip
    # properly scaled inputs are not flagged
    proper = PreprocessConfig(size=(16, 16), scale=1.0, mean=(127.5,) * 3, std=(127.5,) * 3)
    make_calib_set(
        tmp_path / "ok",
        proper,
        CalibConfig(sources=(str(holdout_images_dir()),), limit=3, jobs=1),
        model=model,
    )
    fine = compare_models(model, [om], [tmp_path / "ok" / "samples"], tmp_path / "o3", Thresholds())
    assert not [w for w in fine.warnings if "nearly constant" in w]
