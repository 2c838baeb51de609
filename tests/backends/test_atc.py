from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ascend_quant.backends.aisbench_summary import (
    latency_stats,
    parse_summary_text,
)
from ascend_quant.backends.atc import AtcBackend, parse_msame
from ascend_quant.backends.atc_log import error_codes, hint_for
from ascend_quant.backends.omfile import read_om_header
from ascend_quant.config import BenchConfig
from ascend_quant.errors import ToolchainError, UsageError

# ------------------------------------------------------------------ conversion


def test_fp16_convert(fake_cann, make_request, tmp_path: Path) -> None:
    lines: list[str] = []
    artifact = AtcBackend(status=lines.append).convert(make_request())
    out = tmp_path / "out"
    assert artifact.path == out / "conv_fp16.om"
    assert read_om_header(artifact.path)["name"] == "conv_fp16"
    assert "ATC run success, welcome to the next use." in lines
    assert (out / "work" / "conv_fp16" / "fusion_result.json").is_file()  # atc's cwd
    log = (out / "logs" / "conv_fp16.atc.log").read_text()
    assert "ATC start working now" in log and "exit code 0" in log
    manifest = json.loads(artifact.manifest_path.read_text())
    assert artifact.manifest_path == out / "conv_fp16.json"
    assert manifest["backend"] == "atc" and manifest["route"] == "fp16"
    assert manifest["soc"] == "Ascend310P3" and manifest["precision"] == "fp16"
    assert manifest["source_sha256"] == "0" * 64
    assert len(manifest["model_sha256"]) == 64 and len(manifest["om_sha256"]) == 64
    [command] = manifest["commands"]
    assert command["argv"][0].endswith("atc") and "--framework=5" in command["argv"]
    assert command["returncode"] == 0
    assert manifest["om_header"]["platform_version"] == "Ascend310P3"
    assert manifest["outputs"][0]["name"] == "output"
    assert manifest["inputs"] == [{"name": "input", "dtype": "float32", "shape": [1, 3, 16, 16]}]
    assert "total_s" in manifest["timings"] and manifest["os_arch"] is None


def test_os_arch_suffix_is_kept(fake_cann, make_request, tmp_path: Path) -> None:
    fake_cann(FAKE_ATC_OS_ARCH="linux_aarch64")
    first = AtcBackend().convert(make_request())
    assert first.path.name == "conv_fp16_linux_aarch64.om"
    assert first.manifest_path.name == "conv_fp16_linux_aarch64.json"
    assert first.manifest["os_arch"] == "linux_aarch64"
    fake_cann()  # a rebuild without the tag replaces the tagged build
    second = AtcBackend().convert(make_request())
    assert second.path.name == "conv_fp16.om"
    assert not first.path.exists() and not first.manifest_path.exists()


def test_int8_amct_route(fake_cann, make_request, tmp_path: Path) -> None:
    fake_cann(FAKE_NPU_ABSENT="1")
    artifact = AtcBackend().convert(make_request("int8"))
    manifest = artifact.manifest
    assert manifest["route"] == "amct" and artifact.path.name == "conv_int8.om"
    amct, atc = manifest["commands"]
    assert amct["tool"] == "amct_onnx" and atc["tool"] == "atc"
    deploy = tmp_path / "out" / "work" / "conv_int8" / "amct" / "conv_deploy_model.onnx"
    assert deploy.is_file()
    assert f"--model={deploy}" in atc["argv"]
    assert (tmp_path / "out" / "logs" / "conv_int8.amct.log").is_file()
    assert set(manifest["timings"]) == {"amct_onnx_s", "atc_s", "total_s"}


def test_int8_atc_route_on_npu(fake_cann, make_request) -> None:
    artifact = AtcBackend().convert(make_request("int8"))
    assert artifact.manifest["route"] == "atc"
    argv = artifact.manifest["commands"][0]["argv"]
    assert any(a.startswith("--compression_optimize_conf=") for a in argv)


def test_sample_dialect(fake_cann, make_request) -> None:
    request = make_request("int8", atc={"flag_dialect": "sample", "int8_route": "atc"})
    with pytest.raises(ToolchainError, match="exit 1"):  # gflags: unknown flag
        AtcBackend().convert(request)
    fake_cann(FAKE_ATC_DIALECT="sample")
    artifact = AtcBackend().convert(request)
    assert artifact.manifest["flag_dialect"] == "sample"
    assert "--enable_quantization=true" in artifact.manifest["commands"][0]["argv"]


@pytest.mark.parametrize(
    ("fail", "codes", "hint"),
    [
        ("E10001", ("E10001",), "flag value is invalid"),
        ("E10002", ("E10002",), "--input_shape is invalid"),
        ("E10003", ("E10003",), "om file is invalid"),
        ("E10016", ("E10016",), "not in the model"),
        ("E19999", ("E19999",), "internal error"),
        ("EE1001", ("EE1001",), "different soc"),
        ("calib_mismatch", ("E19999",), "calibration data does not match"),
        ("arq", ("E19999",), 'skip_layers = ["conv1"]'),
        ("build_graph", ("E19999",), "convert with --precision fp16 first"),
        ("507011", ("EZ9999",), "lower the calibration batch"),
    ],
)
def test_atc_failures(fake_cann, make_request, tmp_path, fail, codes, hint) -> None:
    fake_cann(FAKE_ATC_FAIL=fail)
    with pytest.raises(ToolchainError) as info:
        AtcBackend().convert(make_request())
    error = info.value
    assert error.exit_code == 3
    assert error.codes == codes
    assert hint in (error.hint or "")
    log = tmp_path / "out" / "logs" / "conv_fp16.atc.log"
    assert str(log) in error.message and error.log_path == str(log)
    assert "ATC run failed" in log.read_text()
    assert not list((tmp_path / "out").glob("*.om"))  # no partial output


def test_real_validation_error_from_atc(fake_cann, make_request) -> None:
    # a soc our registry knows but this atc does not: atc's own E10001 comes through
    with pytest.raises(ToolchainError, match=r"\[E10001\].*soc_version"):
        AtcBackend().convert(make_request(soc="Ascend910B2C"))


def test_missing_success_marker(fake_cann, make_request) -> None:
    fake_cann(FAKE_ATC_NO_MARKER="1")
    with pytest.raises(ToolchainError, match="without printing 'ATC run success'"):
        AtcBackend().convert(make_request())


def test_missing_om(fake_cann, make_request) -> None:
    fake_cann(FAKE_ATC_NO_OM="1")
    with pytest.raises(ToolchainError, match=r"wrote no conv_fp16\*\.om"):
        AtcBackend().convert(make_request())


def test_bad_om_header(fake_cann, make_request, tmp_path) -> None:
    fake_cann(FAKE_ATC_BAD_OM="1")
    with pytest.raises(ToolchainError, match="without a valid IMOD header"):
        AtcBackend().convert(make_request())
    assert not (tmp_path / "out" / "conv_fp16.om").exists()


def test_timeout_kills_atc(fake_cann, make_request, tmp_path) -> None:
    fake_cann(FAKE_ATC_SLEEP="30")
    with pytest.raises(ToolchainError, match=r"did not finish within 0\.5 s") as info:
        AtcBackend().convert(make_request(atc={"timeout_s": 0.5}))
    assert "timeout_s" in (info.value.hint or "")
    assert "stopped after" in (tmp_path / "out" / "logs" / "conv_fp16.atc.log").read_text()


def test_amct_failures(fake_cann, make_request) -> None:
    fake_cann(FAKE_NPU_ABSENT="1", FAKE_AMCT_FAIL="arq")
    with pytest.raises(ToolchainError, match="amct_onnx calibration failed") as info:
        AtcBackend().convert(make_request("int8"))
    assert "skip_layers" in (info.value.hint or "")
    fake_cann(FAKE_NPU_ABSENT="1", FAKE_AMCT_NO_DEPLOY="1")
    with pytest.raises(ToolchainError, match=r"wrote no conv_deploy_model\.onnx"):
        AtcBackend().convert(make_request("int8"))


def test_missing_toolkit(no_cann, make_request) -> None:
    with pytest.raises(ToolchainError, match="atc\\) was not found") as info:
        AtcBackend().convert(make_request())
    assert info.value.exit_code == 3 and "set_env.sh" in (info.value.hint or "")


def test_precheck_runs_before_atc(fake_cann, make_request, tmp_path) -> None:
    with pytest.raises(UsageError, match="cannot be used together"):
        AtcBackend().convert(
            make_request(atc={"precision_mode": "force_fp16", "precision_mode_v2": "fp16"})
        )
    assert not (tmp_path / "out" / "logs").exists()


# ------------------------------------------------------------------ log parsing


def test_error_codes_and_hints() -> None:
    text = "E10001: bad\nEZ9999: x\nE10001: again\n[ERROR] EE1001 ModelCheckCompatibility failed"
    assert error_codes(text) == ("E10001", "EZ9999", "EE1001")
    assert "different soc" in (hint_for(text, error_codes(text)) or "")
    assert hint_for("nothing", ()) is None


# ------------------------------------------------------------------ run / bench on the (fake) NPU

SUMMARY_TEXT = """\
[INFO] -----------------Performance Summary------------------
[INFO] H2D_latency (ms): min = 0.05, max = 0.2, mean = 0.07, median = 0.06, percentile(99%) = 0.19
[INFO] NPU_compute_time (ms): min = 1.25, max = 2.5, mean = 1.5, median = 1.4, \
percentile(99%) = 2.45
[INFO] D2H_latency (ms): min = 0.01, max = 0.03, mean = 0.02, median = 0.02, percentile(99%) = 0.03
[INFO] throughput 1000*batchsize.mean(4)/NPU_compute_time.mean(1.5): 2666.6666666666665
[INFO] ------------------------------------------------------
"""


def test_parse_summary_text() -> None:
    data = parse_summary_text(SUMMARY_TEXT)
    assert data["NPU_compute_time"] == {
        "min": 1.25,
        "max": 2.5,
        "mean": 1.5,
        "median": 1.4,
        "percentile(99%)": 2.45,
    }
    assert data["H2D_latency"]["mean"] == 0.07
    assert data["batchsize"] == 4.0 and math.isclose(data["throughput"], 2666.6666666666665)
    stats, missing = latency_stats(data)
    assert stats.mean == 1.5 and stats.p99 == 2.45 and missing == ["p90", "p95"]
    assert math.isnan(stats.p90)


def test_summary_json_schema() -> None:
    summary = {
        "filesinfo": {"0": {"infiles": ["a.bin"], "outfiles": ["o/a_0.bin"]}},
        "args": ["ais_bench"],
        "NPU_compute_time": {
            "min": 1.0,
            "max": 10.0,
            "mean": 5.5,
            "median": 5.5,
            "percentile(99%)": 9.91,
            "count": 10,
        },
        "throughput": 181.8,
        "npu_compute_time_list": [float(i) for i in range(1, 11)],
        "pid": 1,
    }
    stats, missing = latency_stats(summary)
    assert missing == [] and stats.count == 10
    assert math.isclose(stats.p90, 9.1) and math.isclose(stats.p95, 9.55)
    newer = dict(
        summary,
        NPU_compute_time={"min": 1, "max": 2, "mean": 1.5, "median": 1.5, "P99": 1.99, "count": 2},
        npu_compute_time_list=[[0.0, 1.0], [1.0, 3.0]],
    )
    stats, _ = latency_stats(newer)
    assert stats.p99 == 1.99 and math.isclose(stats.p90, 1.9)


def test_no_compute_time_is_an_error() -> None:
    with pytest.raises(ToolchainError):
        latency_stats({})


def test_parse_msame() -> None:
    text = (
        "Inference time: 1.5ms\nInference time: 2.5ms\nInference average time : 2.0 ms\n"
        "Inference average time without first time: 2.5 ms\n"
    )
    assert parse_msame(text) == [1.5, 2.5]


def _converted(make_request, **env):
    return AtcBackend().convert(make_request())


def test_bench(fake_cann, make_request) -> None:
    artifact = AtcBackend().convert(make_request())
    result = AtcBackend().bench(artifact.path, BenchConfig(warmup=1, loop=20, batch_size=4))
    assert result.backend == "atc" and not result.simulated and result.device == "npu:0"
    assert result.latency_ms.count == 20
    assert 1.5 < result.latency_ms.mean < 2.5  # the stand-in's 2.0 ms +- 10 %
    assert result.latency_ms.min <= result.latency_ms.p90 <= result.latency_ms.p95
    assert math.isclose(result.throughput, 4000 / result.latency_ms.mean)
    assert result.batch_size == 4 and result.soc == "Ascend310P3" and result.precision == "fp16"
    assert "--batchsize" in result.extra["argv"] and "missing" not in result.extra


def test_bench_without_summary_json(fake_cann, make_request) -> None:
    artifact = AtcBackend().convert(make_request())
    fake_cann(FAKE_AISBENCH_NO_JSON="1")
    result = AtcBackend().bench(artifact.path, BenchConfig(loop=5))
    assert result.extra["missing"] == ["p90", "p95"] and result.batch_size == 1


def test_soc_mismatch_is_caught_before_running(fake_cann, make_request) -> None:
    artifact = AtcBackend().convert(make_request())
    fake_cann(FAKE_NPU_NAME="910B3")
    with pytest.raises(
        ToolchainError, match="built for Ascend310P3 but the visible NPU is Ascend910B3"
    ) as info:
        AtcBackend().bench(artifact.path, BenchConfig())
    assert info.value.codes == ("EE1001",) and "--soc Ascend910B3" in (info.value.hint or "")


def test_runtime_soc_mismatch_without_manifest(fake_cann, make_request) -> None:
    artifact = AtcBackend().convert(make_request())
    artifact.manifest_path.unlink()
    fake_cann(FAKE_NPU_NAME="910B3")
    with pytest.raises(ToolchainError, match="EE1001"):  # caught from the om header
        AtcBackend().bench(artifact.path, BenchConfig())


def test_no_npu(fake_cann, make_request) -> None:
    artifact = AtcBackend().convert(make_request())
    fake_cann(FAKE_NPU_ABSENT="1")
    with pytest.raises(ToolchainError, match="no NPU is visible"):
        AtcBackend().bench(artifact.path, BenchConfig())


def test_run(fake_cann, make_request, tmp_path: Path) -> None:
    from fakes.cann import make_calib_set

    artifact = AtcBackend().convert(make_request())
    calib = make_calib_set(tmp_path / "inputs", samples=3)
    result = AtcBackend().run(artifact.path, [calib / "samples"], tmp_path / "run" / "outs")
    assert result.output_names == ["output"]
    assert [[p.name for p in g] for g in result.outputs] == [
        ["00000_img0_0.bin"],
        ["00001_img1_0.bin"],
        ["00002_img2_0.bin"],
    ]
    assert all(p.stat().st_size == 4 * 16 * 16 * 4 for g in result.outputs for p in g)
    assert len(result.latencies_ms) == 3
    assert (tmp_path / "run" / "outs" / "outs_summary.json").is_file()


def test_run_rejects_simulated_or_missing(fake_cann, tmp_path: Path) -> None:
    fake = tmp_path / "x.om"
    fake.write_bytes(b"ASQSIM" + bytes(300))
    with pytest.raises(UsageError, match=r"not a real Ascend \.om"):
        AtcBackend().run(fake, [], tmp_path / "o")
    with pytest.raises(UsageError, match="model not found"):
        AtcBackend().bench(tmp_path / "none.om", BenchConfig())


def test_run_failure_reports_ais_bench_error(fake_cann, make_request, tmp_path: Path) -> None:
    artifact = AtcBackend().convert(make_request())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.bin").write_bytes(b"\0" * 7)
    with pytest.raises(ToolchainError, match="ais_bench failed"):
        AtcBackend().run(artifact.path, [bad], tmp_path / "o")
