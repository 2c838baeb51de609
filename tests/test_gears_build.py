"""Gears end to end on the simulator: calibration at one gear, a bench row and a compare row per
gear, eval data per gear, the verdict over every gear, and shapes outside the gears refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tiny_models

from ascend_quant.backends.base import ConvertRequest
from ascend_quant.backends.sim import SimBackend, open_runner
from ascend_quant.bench import bench_gears, bench_models
from ascend_quant.compare import CandidateResult, CompareResult, merge_gears
from ascend_quant.config import BenchConfig, BuildConfig, Thresholds, merge
from ascend_quant.errors import UsageError
from ascend_quant.gates import GateFailure, verdict_line
from ascend_quant.pipeline import build


def _config(tmp_path: Path, **overrides: object) -> BuildConfig:
    base = {
        "backend": "sim",
        "out": str(tmp_path / "ws"),
        "bench": {"warmup": 0, "loop": 2, "duration_s": None, "min_loop": 1},
        "calib": {"limit": 4, "jobs": 1},
    }
    return merge(BuildConfig(), {**base, **overrides})


@pytest.fixture(scope="module")
def ocr_build(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("ocr")
    model = tiny_models.save(tiny_models.text_recognizer(height=16), tmp / "ocr.onnx")
    config = _config(
        tmp,
        gears={"image_size": [[16, 32], [16, 64]], "calib_gear": "16x32"},
        eval_sources=[],
    )
    return build(model, config), tmp


@pytest.mark.slow
def test_image_size_gears_build(ocr_build) -> None:
    result, tmp = ocr_build
    (soc,) = result.socs
    assert soc.compare["gears"] == ["16x32", "16x64"]
    rows = {(Path(c["model"]).name, c["gear"]): c for c in soc.compare["candidates"]}
    precisions = ("fp16", "int8", "w8")  # Ascend310P3 has weight-only INT8
    assert set(rows) == {(f"ocr_{p}.om", g) for p in precisions for g in ("16x32", "16x64")}
    # eval images were resized per gear: the outputs have one column per pixel of width
    assert rows[("ocr_int8.om", "16x64")]["outputs"][0]["shape"] == [1, 64, 12]
    assert rows[("ocr_int8.om", "16x32")]["outputs"][0]["shape"] == [1, 32, 12]
    assert all(0.99 < c["cosine_min"] <= 1.0 for c in rows.values())
    bench = {(Path(r["result"]["model"]).name, r["result"]["gear"]) for r in soc.bench["rows"]}
    assert bench == set(rows)
    manifest = json.loads(Path(soc.artifacts["int8"]).with_suffix(".json").read_text())
    assert manifest["gears"]["labels"] == ["16x32", "16x64"]
    assert manifest["gears"]["calib_gear"] == "16x32"
    eval_dirs = sorted(p.name for p in (tmp / "ws" / "eval").iterdir())
    assert eval_dirs == ["gear_16x32", "gear_16x64"]
    assert result.passed


@pytest.mark.slow
def test_sim_om_refuses_other_shapes_and_needs_a_gear(ocr_build) -> None:
    result, _ = ocr_build
    om = Path(result.socs[0].artifacts["int8"])
    with open_runner(om) as runner:
        ok = runner.infer({"image": np.zeros((1, 1, 16, 64), np.float32)})
        assert ok["logits"].shape == (1, 64, 12)
        with pytest.raises(UsageError, match="not one of its image_size gears"):
            runner.infer({"image": np.zeros((1, 1, 16, 48), np.float32)})
    with pytest.raises(UsageError, match="say which to run"):
        SimBackend().bench(om, BenchConfig(loop=1, duration_s=None, min_loop=1))
    with pytest.raises(UsageError, match="not one of this model's image_size gears"):
        SimBackend().bench(om, BenchConfig(loop=1), gear="16x48")
    table = bench_models([om], BenchConfig(loop=1, warmup=0, min_loop=1, gears=("16x64",)))
    assert [r.result.gear for r in table.rows] == ["16x64"]
    assert table.rows[0].result.batch_size == 1


@pytest.mark.slow
def test_bench_gears_must_match(ocr_build, tmp_path: Path) -> None:
    result, _ = ocr_build
    om = Path(result.socs[0].artifacts["int8"])
    static = tiny_models.save(tiny_models.conv_net(), tmp_path / "conv.onnx")
    artifact = SimBackend().convert(
        ConvertRequest(
            model=static,
            source_sha256="0" * 64,
            input_shapes={"input": (1, 3, 16, 16)},
            soc="Ascend310P3",
            precision="fp16",
            out_dir=tmp_path / "om",
            name="conv",
        )
    )
    with pytest.raises(UsageError, match="needs the same gears in every model"):
        bench_gears([om, artifact.path])
    assert bench_gears([artifact.path]) == [None]
    with pytest.raises(UsageError, match="have no gears"):
        bench_gears([artifact.path], ("4",))


@pytest.mark.slow
def test_batch_gears_build(tmp_path: Path) -> None:
    model = tiny_models.save(tiny_models.conv_net(batch="N"), tmp_path / "conv.onnx")
    result = build(model, _config(tmp_path, gears={"batch": [1, 2]}))
    (soc,) = result.socs
    assert soc.compare["gears"] == ["bs1", "bs2"]
    batches = {r["result"]["gear"]: r["result"]["batch_size"] for r in soc.bench["rows"]}
    assert batches == {"bs1": 1, "bs2": 2}
    assert result.passed


@pytest.mark.slow
def test_dims_gears_build_on_random_data(tmp_path: Path) -> None:
    model = tiny_models.save(tiny_models.token_net(), tmp_path / "tok.onnx")
    config = _config(
        tmp_path,
        gears={"dims": [[8], [16]]},
        atc={"input_format": "ND"},
        calib={"sources": ["random"], "limit": 4, "jobs": 1},
    )
    result = build(model, config)
    (soc,) = result.socs
    rows = {
        (c["precision"], c["gear"]): c["outputs"][0]["shape"] for c in soc.compare["candidates"]
    }
    assert rows[("int8", "8")] == [1, 8, 4] and rows[("int8", "16")] == [1, 16, 4]


def _candidate(gear: str, passed: bool) -> CandidateResult:
    return CandidateResult(
        name="m_int8",
        model="m_int8.om",
        backend="sim",
        precision="int8",
        outputs=[],
        passed=passed,
        cosine_min=0.999 if passed else 0.9,
        gear=gear,
    )


def _result(gear: str, passed: bool) -> CompareResult:
    failures = (
        [] if passed else [GateFailure(f"m_int8 at {gear}", "logits", "cosine", 0.9, ">=", 0.99)]
    )
    return CompareResult(
        model="m.onnx", model_sha256="0", inputs=[], samples=2,
        candidates=[_candidate(gear, passed)], passed=passed, verdict=verdict_line(failures),
        failures=[f.text() for f in failures], warnings=[], thresholds=Thresholds(),
        gate_failures=failures, gears=[gear],
    )  # fmt: skip


def test_verdict_holds_only_if_every_gear_passes() -> None:
    merged = merge_gears([_result("32x128", True), _result("32x512", False)])
    assert not merged.passed and merged.gears == ["32x128", "32x512"]
    assert merged.verdict == "FAILED: m_int8 at 32x512 logits cosine 0.9 < 0.99"
    assert merge_gears([_result("32x128", True), _result("32x512", True)]).passed


@pytest.mark.slow
def test_run_picks_or_takes_the_gear(ocr_build, tmp_path: Path) -> None:
    from ascend_quant.cli.run_cmd import run_model

    result, _ = ocr_build
    om = Path(result.socs[0].artifacts["int8"])
    inputs = tmp_path / "in"
    inputs.mkdir()
    np.zeros((1, 1, 16, 64), np.float32).tofile(inputs / "a.bin")
    run = run_model(om, [inputs], tmp_path / "out")
    assert np.fromfile(run.outputs[0][0], np.float32).size == 64 * 12  # the 16x64 gear
    with pytest.raises(UsageError, match="not a multiple of file size"):  # 16x32: half
        run_model(om, [inputs], tmp_path / "out2", gear="16x32")
    np.zeros((1, 1, 16, 40), np.float32).tofile(inputs / "a.bin")
    with pytest.raises(UsageError, match="fit none of the model's image_size gears"):
        run_model(om, [inputs], tmp_path / "out3")
