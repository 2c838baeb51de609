from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

import numpy as np
import pytest
import tiny_models
from runners.sessions import spins

from ascend_quant.backends import sim
from ascend_quant.backends.base import ConvertRequest
from ascend_quant.backends.sim import SimBackend, open_runner
from ascend_quant.backends.simfile import is_sim_om
from ascend_quant.config import BenchConfig, CalibConfig, PreprocessConfig, QuantConfig
from ascend_quant.data.calibset import CalibSet
from ascend_quant.data.images import make_calib_set
from ascend_quant.errors import UsageError
from ascend_quant.runners.ort import OrtRunner


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("calib") / "input"
    make_calib_set(out, PreprocessConfig(size=(16, 16)), CalibConfig(batch=1, jobs=1))
    return out


def _request(model: Path, out: Path, precision: str, calib: Path | None, **kw) -> ConvertRequest:
    return ConvertRequest(
        model=model,
        source_sha256="0" * 64,
        input_shapes=kw.pop("input_shapes", {"input": (1, 3, 16, 16)}),
        soc="Ascend310P3",
        precision=precision,  # type: ignore[arg-type]
        out_dir=out,
        name="sr",
        calib_dirs={"input": calib} if calib else {},
        **kw,
    )


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _samples(calib_dir: Path) -> list[np.ndarray]:
    from ascend_quant.data.calibset import CalibSet

    return list(CalibSet.load(calib_dir).iter_samples())


def test_convert_fp16(sr_model, tmp_path, calib_dir):
    artifact = SimBackend().convert(_request(sr_model, tmp_path, "fp16", calib_dir))
    assert artifact.path == tmp_path / "sr_fp16.om" and is_sim_om(artifact.path)
    manifest = json.loads(artifact.manifest_path.read_text())
    assert manifest["backend"] == "sim" and manifest["simulated"] is True
    assert manifest["precision"] == "fp16" and manifest["soc"] == "Ascend310P3"
    assert manifest["route"] == "sim" and manifest["fp16_overflow"] == []
    assert manifest["source_sha256"] == "0" * 64
    runner, golden = open_runner(artifact.path), OrtRunner(sr_model)
    x = _samples(calib_dir)[0]
    a, b = runner.infer({"input": x})["output"], golden.infer({"input": x})["output"]
    assert not np.array_equal(a, b) and _cosine(a, b) > 0.99999
    assert runner.last_latency_ms > 0
    assert runner.metadata["precision"] == "fp16"


def test_convert_int8_accuracy_and_metadata(sr_model, tmp_path, calib_dir):
    artifact = SimBackend().convert(_request(sr_model, tmp_path, "int8", calib_dir))
    assert artifact.path.name == "sr_int8.om"
    manifest = artifact.manifest
    assert manifest["quantized_layers"] == 2 and manifest["algorithm"] == "ifmr"
    assert manifest["algorithm_params"]["ifmr"]["search_step"] == 0.01
    assert set(manifest["calib_manifest_sha256"]) == {"input"}
    assert manifest["qdq_counts"] == {"QuantizeLinear": 2, "DequantizeLinear": 6}
    runner, golden = open_runner(artifact.path), OrtRunner(sr_model)
    assert "input" in runner.metadata["tensors"] and "r1" in runner.metadata["tensors"]
    cosines = [
        _cosine(runner.infer({"input": x})["output"], golden.infer({"input": x})["output"])
        for x in _samples(calib_dir)
    ]
    assert min(cosines) > 0.999 and max(cosines) < 1.0


def test_int8_each_algorithm_converts(sr_model, tmp_path, calib_dir):
    for algorithm in ("hfmg", "minmax", "percentile", "entropy"):
        quant = QuantConfig(algorithm=algorithm, activation_offset=False)  # type: ignore[arg-type]
        artifact = SimBackend().convert(
            _request(sr_model, tmp_path / algorithm, "int8", calib_dir, quant=quant)
        )
        assert artifact.manifest["algorithm"] == algorithm
        assert runner_zero_points(artifact.path) == {0}


def test_int8_names_the_settings_it_does_not_model(sr_model, tmp_path, calib_dir, caplog):
    quant = QuantConfig(joint_quant=True, do_fusion=False)
    logger = logging.getLogger("ascend_quant")  # the CLI may have stopped its propagation
    logger.addHandler(caplog.handler)
    try:
        request = _request(sr_model, tmp_path, "int8", calib_dir, quant=quant)
        artifact = SimBackend().convert(request)
    finally:
        logger.removeHandler(caplog.handler)
    assert artifact.manifest["not_simulated"] == ["joint_quant", "do_fusion = false"]
    assert any("does not model joint_quant, do_fusion = false" in r.message for r in caplog.records)
    plain = SimBackend().convert(_request(sr_model, tmp_path / "plain", "int8", calib_dir))
    assert plain.manifest["not_simulated"] == []


def runner_zero_points(path: Path) -> set[int]:
    tensors = open_runner(path).metadata["tensors"]
    return {z for name in ("input", "r1") for z in tensors[name]["zero_point"]}


def test_int8_batch_regrouped_from_samples(tmp_path, calib_dir):
    model = tiny_models.save(tiny_models.sr_net(batch="N"), tmp_path / "srb.onnx")
    request = _request(model, tmp_path, "int8", calib_dir, input_shapes={"input": (4, 3, 16, 16)})
    artifact = SimBackend().convert(request)
    samples = len(CalibSet.load(calib_dir))
    assert artifact.manifest["calibration_batches"] == -(-samples // 4)  # groups of 4, last padded
    assert open_runner(artifact.path).input_specs()[0].shape == (4, 3, 16, 16)


def test_int8_needs_calibration_data(sr_model, tmp_path):
    with pytest.raises(UsageError, match="no calibration data for input"):
        SimBackend().convert(_request(sr_model, tmp_path, "int8", None))
    assert not list(tmp_path.glob("*.om"))


def test_int8_calib_shape_mismatch(tmp_path, calib_dir):
    model = tiny_models.save(tiny_models.sr_net(hw=8), tmp_path / "sr8.onnx")
    with pytest.raises(UsageError, match="but input 'input' is float32"):
        SimBackend().convert(
            _request(model, tmp_path, "int8", calib_dir, input_shapes={"input": (1, 3, 8, 8)})
        )


def _built(sr_model: Path, tmp_path: Path, calib_dir: Path, precision: str = "fp16") -> Path:
    return SimBackend().convert(_request(sr_model, tmp_path, precision, calib_dir)).path


def test_run_names_outputs_like_ais_bench(sr_model, tmp_path, calib_dir):
    om = _built(sr_model, tmp_path, calib_dir)
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for name in ("img_10", "img_2", "img_1"):
        rng.random((1, 3, 16, 16), dtype=np.float32).tofile(inputs / f"{name}.bin")
    result = SimBackend().run(om, [inputs], tmp_path / "out", "BIN")
    assert [p[0].name for p in result.outputs] == ["img_1_0.bin", "img_2_0.bin", "img_10_0.bin"]
    assert result.output_names == ["output"] and len(result.latencies_ms) == 3
    out = np.fromfile(result.outputs[0][0], dtype=np.float32).reshape(1, 3, 32, 32)
    x = np.fromfile(inputs / "img_1.bin", dtype=np.float32).reshape(1, 3, 16, 16)
    np.testing.assert_array_equal(out, open_runner(om).infer({"input": x})["output"])
    npy = SimBackend().run(om, [inputs], tmp_path / "npy", "NPY")
    assert npy.outputs[0][0].name == "img_1_0.npy"
    np.testing.assert_array_equal(np.load(npy.outputs[0][0]), out)


def test_run_and_bench_refuse_real_om(tmp_path):
    head = bytearray(256)
    head[0:4] = b"IMOD"
    struct.pack_into("<I", head, 4, 256)
    real = tmp_path / "real.om"
    real.write_bytes(bytes(head))
    with pytest.raises(UsageError, match=r"real Ascend \.om"):
        SimBackend().run(real, [tmp_path], tmp_path / "out")
    with pytest.raises(UsageError, match=r"real Ascend \.om"):
        SimBackend().bench(real, BenchConfig())


def test_bench_schema(sr_model, tmp_path, calib_dir):
    om = _built(sr_model, tmp_path, calib_dir)
    result = SimBackend().bench(om, BenchConfig(warmup=1, loop=5))
    assert result.simulated is True and result.device == "cpu (simulated)"
    assert result.backend == "sim" and result.precision == "fp16" and result.soc == "Ascend310P3"
    assert result.latency_ms.count == 5 and result.batch_size == 1
    assert result.throughput == pytest.approx(1000.0 / result.latency_ms.mean)
    # like for like with a real .om: the model payload, not the simulator's metadata
    from ascend_quant.backends.simfile import read_sim_om

    _meta, payload = read_sim_om(om)
    assert result.file_size_bytes == len(payload) < om.stat().st_size
    assert result.extra["container_bytes"] == om.stat().st_size


def test_int8_payload_is_smaller_than_fp16(sr_model, tmp_path, calib_dir):
    """Sizes compare like for like: the metadata (INT8 carries every scale) does not count."""
    from ascend_quant.backends.simfile import payload_size

    fp16 = _built(sr_model, tmp_path / "a", calib_dir)
    int8 = _built(sr_model, tmp_path / "b", calib_dir, precision="int8")
    assert payload_size(int8) < payload_size(fp16)


def test_bench_times_spinning_sessions_and_open_does_not(
    sr_model, tmp_path, calib_dir, monkeypatch
):
    """A latency benchmark measures ORT's default (spinning threads, back-to-back runs); the
    runner `open` gives compare and analysis sleeps between runs."""
    om = _built(sr_model, tmp_path, calib_dir)
    with SimBackend().open(om) as runner:
        assert not spins(runner)
    opened = []
    real_open = sim.open_runner

    def recording(path, spin=False):
        runner = real_open(path, spin=spin)
        opened.append(spins(runner))
        return runner

    monkeypatch.setattr(sim, "open_runner", recording)
    SimBackend().bench(om, BenchConfig(warmup=1, loop=2, min_loop=1))
    assert opened == [True]
