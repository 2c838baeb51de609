"""End-to-end `build` on the simulated backend: numbers, cache, --force, lock, kill recovery."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tiny_models

from ascend_quant.config import BuildConfig, merge
from ascend_quant.errors import UsageError, WorkspaceBusyError
from ascend_quant.pipeline import PIPELINE, STAGES, build, rerun_stages
from ascend_quant.workspace import exclusive_lock


def _config(tmp_path: Path, **overrides: object) -> BuildConfig:
    base = {
        "backend": "sim",
        "out": str(tmp_path / "ws"),
        "bench": {"warmup": 1, "loop": 5},
        "calib": {"limit": 6, "jobs": 1},
    }
    return merge(BuildConfig(), {**base, **overrides})


@pytest.fixture
def sr_onnx(tmp_path: Path) -> Path:
    return tiny_models.save(tiny_models.sr_net(hw=24), tmp_path / "sr.onnx")


def test_build_produces_real_figures_and_reuses_everything(sr_onnx: Path, tmp_path: Path) -> None:
    config = _config(tmp_path)
    first = build(sr_onnx, config)

    assert first.simulated and first.backend == "sim"
    (soc,) = first.socs
    assert set(soc.artifacts) == {"fp16", "int8", "w8"}
    for path in soc.artifacts.values():
        assert Path(path).is_file() and Path(path).with_suffix(".json").is_file()
    candidates = {Path(c["model"]).name: c for c in soc.compare["candidates"]}
    int8 = candidates["sr_int8.om"]
    fp16 = candidates["sr_fp16.om"]
    assert 0.99 <= int8["cosine_min"] < 1.0  # quantized: close, but not identical
    assert fp16["cosine_min"] > int8["cosine_min"]  # FP16 is the closer of the two
    rows = {Path(r["result"]["model"]).name: r for r in soc.bench["rows"]}
    assert rows["sr_fp16.om"]["result"]["latency_ms"]["mean"] > 0
    assert rows["sr_int8.om"]["speedup"] > 0
    assert rows["sr_int8.om"]["size_ratio"] > 0  # tiny model: metadata, not weights, dominates
    assert Path(soc.reports["html"]).is_file()
    assert first.passed
    assert not any(run.reused for run in first.stages)

    second = build(sr_onnx, config)
    assert all(run.reused for run in second.stages), [r for r in second.stages if not r.reused]
    assert second.socs[0].compare == soc.compare

    forced = build(sr_onnx, config, force=True)
    assert not any(run.reused for run in forced.stages)


def test_input_shape_overriding_a_declared_size_builds_at_that_size(
    sr_onnx: Path, tmp_path: Path
) -> None:
    """A fully convolutional model exported at 24x24, built at 32x32: the golden and compare
    run the resized graph (the source declares 24x24 and cannot take the feeds)."""
    result = build(sr_onnx, _config(tmp_path, input_shape="input:1,3,32,32"))
    (soc,) = result.socs
    assert [c["passed"] for c in soc.compare["candidates"]] == [True, True, True]
    assert result.passed
    golden = json.loads((tmp_path / "ws" / "golden" / "golden.json").read_text())
    assert golden["outputs"][0]["shape"] == [1, 3, 64, 64]  # the 2x output at the new size


@pytest.mark.slow
def test_from_reruns_that_phase_and_what_reads_it(sr_onnx: Path, tmp_path: Path) -> None:
    """`--from bench` re-times: the golden and compare do not read bench, so they are reused;
    the golden is data on the eval set, re-recorded by `--from calib`, not by `--from compare`."""
    config = _config(tmp_path)
    build(sr_onnx, config)
    ran = {run.stage for run in build(sr_onnx, config, from_stage="bench").stages if not run.reused}
    assert ran == {"bench", "report"}
    ran = {
        run.stage for run in build(sr_onnx, config, from_stage="compare").stages if not run.reused
    }
    assert ran == {"compare", "report"}
    again = build(sr_onnx, config, from_stage="calib")
    assert {run.stage for run in again.stages if not run.reused} == {
        run.stage for run in again.stages if run.stage != "preflight"
    }
    assert {"calib", "eval", "golden", "bench", "compare"} <= {r.stage for r in again.stages}


# What each `--from` name re-runs; `tune` and `analyze` only with --tune / --analyze.
CONVERTS = {"convert-int8", "convert-fp16", "convert-w8"}
AFTER_CONFIG = {"config", *CONVERTS, "bench", "compare", "analyze", "report"}
RERUNS = {
    "preflight": {"preflight", "calib", "eval", "golden", "tune", *AFTER_CONFIG},
    "calib": {"calib", "eval", "golden", "tune", *AFTER_CONFIG},
    "tune": {"tune", *AFTER_CONFIG},
    "config": AFTER_CONFIG,
    "convert": AFTER_CONFIG - {"config"},
    "bench": {"bench", "report"},
    "compare": {"compare", "analyze", "report"},
    "report": {"report"},
}


def test_every_from_name_reruns_what_its_phase_feeds() -> None:
    assert set(RERUNS) == set(STAGES)
    for phase, stages in RERUNS.items():
        assert set(rerun_stages(phase)) == stages, phase


def test_unknown_from_name_is_refused_with_its_phase(sr_onnx: Path, tmp_path: Path) -> None:
    """Stage names (golden, eval, analyze, convert-int8: the summary shows them) are not phases."""
    for name, hint in (
        ("golden", "the golden stage belongs to phase calib: --from calib"),
        ("convert-int8", "--from convert"),
        ("bogus", "use one of: preflight, calib, tune, config, convert, bench, compare, report"),
    ):
        with pytest.raises(UsageError, match=f"unknown --from phase '{name}'") as raised:
            build(sr_onnx, _config(tmp_path), from_stage=name)
        assert hint in (raised.value.hint or "")
    assert not (tmp_path / "ws").exists()  # refused before the workspace is touched


def test_readme_from_table_says_what_runs() -> None:
    """The README's `--from` table names exactly the stages `rerun_stages` gives."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([a-z]+)` \| (.+) \|$", readme, re.MULTILINE))
    assert set(rows) == set(STAGES)
    order = [stage.name for stage in PIPELINE]
    for phase, cell in rows.items():
        if cell.startswith("everything"):
            said = set(order)
        else:
            said = {s for s in order if re.search(rf"\b{s.split('-')[0]}\b", cell.split("(the")[0])}
            if "every later stage" in cell:
                said |= set(order[order.index(max(said, key=order.index)) :])
        assert said == set(rerun_stages(phase)), phase


def test_changed_setting_reruns_only_what_depends_on_it(sr_onnx: Path, tmp_path: Path) -> None:
    build(sr_onnx, _config(tmp_path))
    changed = build(sr_onnx, _config(tmp_path, quant={"algorithm": "minmax"}))
    ran = {run.stage for run in changed.stages if not run.reused}
    assert "convert-int8" in ran and "preflight" not in ran
    assert "convert-fp16" not in ran and "calib" not in ran  # a quant setting: INT8 only
    assert "golden" not in ran  # the FP32 outputs on the eval set do not change


def test_edited_template_reruns_config_only_on_the_simulator(sr_onnx: Path, tmp_path: Path) -> None:
    """A template's bytes are part of the config key: an edited override is never served stale;
    the simulator's conversions do not read templates, so they are reused."""
    from ascend_quant.resources import templates_dir

    overrides = tmp_path / "templates"
    overrides.mkdir()
    bundled = (templates_dir() / "quant_config.json.j2").read_text()
    (overrides / "quant_config.json.j2").write_text(bundled)
    config = _config(tmp_path, templates=str(overrides))
    build(sr_onnx, config)
    (overrides / "quant_config.json.j2").write_text(bundled + "\n")
    again = build(sr_onnx, config)
    ran = {run.stage for run in again.stages if not run.reused}
    assert ran == {"config"}


def test_changed_tool_code_reruns_everything(
    sr_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ascend_quant import pipeline
    from ascend_quant.data import images as calib

    build(sr_onnx, _config(tmp_path))
    for module in (calib, pipeline):
        monkeypatch.setattr(module, "tool_fingerprint", lambda: "0.1.0+edited")
    again = build(sr_onnx, _config(tmp_path))
    assert not any(run.reused for run in again.stages)


def test_several_socs_share_the_soc_independent_stages(sr_onnx: Path, tmp_path: Path) -> None:
    result = build(sr_onnx, _config(tmp_path, socs=["Ascend310P3", "Ascend910B3"]))
    assert [s.soc for s in result.socs] == ["Ascend310P3", "Ascend910B3"]
    assert sum(1 for run in result.stages if run.stage == "preflight") == 1
    shared = {run.stage for run in result.stages if run.shared_with == "Ascend310P3"}
    assert shared == {"convert-fp16", "convert-int8", "convert-w8", "bench", "compare"}
    assert all(run.soc == "Ascend910B3" for run in result.stages if run.shared_with)
    first, second = result.socs
    for precision, path in second.artifacts.items():
        manifest = json.loads(Path(path).with_suffix(".json").read_text())
        assert manifest["soc"] == "Ascend910B3" and str(second.directory) in path
        assert Path(path).read_bytes() != Path(first.artifacts[precision]).read_bytes()
    assert second.compare["candidates"][0]["model"].startswith(str(second.directory))
    assert [c["cosine_min"] for c in second.compare["candidates"]] == [
        c["cosine_min"] for c in first.compare["candidates"]
    ]
    assert {r["result"]["soc"] for r in second.bench["rows"]} == {"Ascend910B3"}
    assert Path(second.reports["html"]).is_file()


def test_a_soc_added_later_adopts_the_recorded_conversion(sr_onnx: Path, tmp_path: Path) -> None:
    build(sr_onnx, _config(tmp_path, socs=["Ascend310P3"]))
    both = build(sr_onnx, _config(tmp_path, socs=["Ascend310P3", "Ascend310B1"]))
    added = {run.stage: run for run in both.stages if run.soc == "Ascend310B1"}
    assert added["convert-int8"].shared_with == "Ascend310P3"
    # 310B has no weight-only INT8: no w8 build. Its two models were timed in 310P3's rounds
    # and compared on the same data, so its bench and compare are 310P3's without W8.
    assert "convert-w8" not in added and "w8" not in both.socs[1].artifacts
    assert added["bench"].shared_with == "Ascend310P3"
    first, second = both.socs
    rows = second.bench["rows"]
    assert [r["result"]["precision"] for r in rows] == ["fp16", "int8"]
    assert {r["result"]["soc"] for r in rows} == {"Ascend310B1"}
    assert all(r["result"]["model"].startswith(str(second.directory)) for r in rows)
    assert rows[1]["speedup"] == first.bench["rows"][1]["speedup"]
    assert second.bench["timed"] == 3  # the budget was split three ways
    assert added["compare"].shared_with == "Ascend310P3"  # its candidates' rows, its verdict
    assert [c["precision"] for c in second.compare["candidates"]] == ["fp16", "int8"]
    assert [c["cosine_min"] for c in second.compare["candidates"]] == [
        c["cosine_min"] for c in first.compare["candidates"][:2]
    ]
    assert second.compare["verdict"] == "PASSED" and second.passed
    for sample in second.compare["image_samples"]:
        assert set(sample["candidates"]) == {"sr_fp16", "sr_int8"}
    assert added["report"].shared_with is None and not added["report"].reused


def test_second_build_on_a_locked_workspace_is_refused(sr_onnx: Path, tmp_path: Path) -> None:
    config = _config(tmp_path)
    lock = exclusive_lock(Path(config.out or "") / ".lock", "test")
    with lock, pytest.raises(WorkspaceBusyError, match="in use"):
        build(sr_onnx, config)


def test_missing_model_and_unknown_soc_are_usage_errors(tmp_path: Path, sr_onnx: Path) -> None:
    with pytest.raises(UsageError, match="model not found"):
        build(tmp_path / "nope.onnx", _config(tmp_path))
    with pytest.raises(UsageError):
        build(sr_onnx, _config(tmp_path, socs=["Ascend310p3"]))


def test_a_build_killed_mid_stage_is_completed_by_the_next_run(
    sr_onnx: Path, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    command = [
        sys.executable, "-m", "ascend_quant", "build", str(sr_onnx), "--backend", "sim",
        "--out", str(workspace), "--limit", "6", "--loop", "5", "--json",
    ]  # fmt: skip
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    marker = workspace / "Ascend310P3" / ".state" / "config.json"
    while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if child.poll() is None:
        os.kill(child.pid, signal.SIGKILL)
    child.wait()

    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    assert finished.returncode == 0, finished.stderr
    result = json.loads(finished.stdout)
    assert result["passed"] is True
    for om in result["socs"][0]["artifacts"].values():
        assert Path(om).is_file()


def test_cli_exit_code_1_when_the_accuracy_gate_fails(sr_onnx: Path, tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "ascend_quant", "build", str(sr_onnx), "--backend", "sim",
         "--out", str(tmp_path / "ws"), "--limit", "4", "--loop", "3",
         "--cosine-min", "0.9999999"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert completed.returncode == 1, completed.stderr
    last = completed.stdout.strip().splitlines()[-1]
    assert last.startswith("FAILED: sr_int8 output cosine 0.99"), last
    assert " < 0.9999999" in last
    assert "task: output = image (guessed from shape [1, 3, 48, 48])" in completed.stdout


def test_cli_bad_model_exit_2_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    completed = subprocess.run(
        [sys.executable, "-m", "ascend_quant", "build", str(bad), "--backend", "sim",
         "--out", str(tmp_path / "ws")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    # piped: plain progress lines ("[   0.0s] preflight bad.onnx ...") come first
    messages = [line for line in completed.stderr.splitlines() if not line.startswith("[")]
    assert messages[0].startswith("error:")


def test_build_on_the_atc_backend_drives_the_toolkit(
    sr_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the CANN stand-ins: atc/amct_onnx convert, ais_bench benchmarks and runs."""
    from fakes.cann import use_fakes_on_path

    from ascend_quant.backends.omfile import is_real_om

    use_fakes_on_path(monkeypatch, tmp_path)
    result = build(sr_onnx, _config(tmp_path, backend="auto"))

    assert result.backend == "atc" and not result.simulated
    (soc,) = result.socs
    for precision, om in soc.artifacts.items():
        assert is_real_om(Path(om)), precision
        manifest = json.loads(Path(om).with_suffix(".json").read_text())
        assert manifest["backend"] == "atc" and manifest["soc"] == "Ascend310P3"
    assert json.loads(Path(soc.artifacts["int8"]).with_suffix(".json").read_text())["route"] in (
        "atc",
        "amct",
    )
    rows = soc.bench["rows"]
    assert all(row["result"]["device"].startswith("npu") for row in rows)
    # The stand-in ais_bench writes bytes that are not the model's outputs: an honest FAILED.
    assert soc.compare["candidates"] and not result.passed
    configs = Path(soc.directory) / "configs"
    assert (configs / "atc_fp16.sh").is_file() and (configs / "amct_int8.sh").is_file()


def test_summary_survives_nan_and_names_the_first_failure() -> None:
    """A NaN cosine (an FP16 overflow) is a failed gate in the summary, not a crash."""
    from ascend_quant.cli.build_cmd import summary_rows
    from ascend_quant.pipeline import SocResult, build_verdict

    failure = {"candidate": "m_fp16", "output": "out", "metric": "cosine", "value": "nan",
               "op": ">=", "threshold": 0.99, "scope": "aggregate", "sample": None,
               "reason": "candidate output has 3 NaN/Inf values"}  # fmt: skip
    compare = {
        "passed": False,
        "verdict": "FAILED: ...",
        "gate_failures": [failure],
        "candidates": [
            {"model": "m_fp16.om", "cosine_min": "nan", "passed": False,
             "outputs": [{"metrics": {"psnr_db": "nan"}}]}
        ],
    }  # fmt: skip
    rows = summary_rows({"rows": []}, compare, {"fp16": "om/m_fp16.om"})
    assert rows[0][4] == "nan" and rows[0][-1] == "FAILED"
    soc = SocResult("Ascend310P3", Path("."), {}, {}, compare, {}, False)
    expected = (
        "FAILED: m_fp16 out cosine NaN (needs >= 0.99) (candidate output has 3 NaN/Inf values)"
    )
    assert build_verdict([soc]) == expected
    two = build_verdict([soc, SocResult("Ascend310B1", Path("."), {}, {}, compare, {}, False)])
    assert two.startswith("FAILED: Ascend310P3/m_fp16 out cosine NaN") and two.endswith(
        "(+1 other failed gate)"
    )


def test_summary_latency_is_the_median_the_speedup_is_made_of() -> None:
    """A text classifier on a shared machine: one 20 ms stall pulled FP16's mean to 0.67 ms
    (median 0.24) and the table read "fp16 0.67 ms, int8 0.35 ms, speedup 0.74x"."""
    from ascend_quant.cli.build_cmd import SUMMARY_COLUMNS, summary_rows

    def row(model: str, mean: float, median: float, speedup: float | None) -> dict:
        latency = {"mean": mean, "median": median}
        return {"result": {"model": model, "file_size_bytes": 1000, "latency_ms": latency},
                "speedup": speedup}  # fmt: skip

    bench = {"rows": [row("m_fp16.om", 0.67, 0.24, None), row("m_int8.om", 0.35, 0.32, 0.74)]}
    artifacts = {"fp16": "om/m_fp16.om", "int8": "om/m_int8.om"}
    rows = summary_rows(bench, {"candidates": []}, artifacts)
    column = SUMMARY_COLUMNS.index("median ms")
    assert [r[column] for r in rows] == ["0.24", "0.32"]
    assert rows[1][column + 1] == "0.74x"


def test_fp32_statistics_are_gathered_once_per_build(
    sr_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """INT8 calibration records FP32 max |x|; the FP16 overflow check reads it (no extra pass),
    and in-range tensors need no FP16 pass at all."""
    from ascend_quant.quant import calibrate, fp16

    passes: list[str] = []
    real_collect, real_find = calibrate.collect_pass, fp16.find_overflow

    def collect(*args: object, **kwargs: object) -> calibrate.Collected:
        passes.append(str(kwargs.get("label", "calibrating")))
        return real_collect(*args, **kwargs)  # type: ignore[arg-type]

    def find(*args: object, **kwargs: object) -> list[str]:
        passes.append("fp16")
        return real_find(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(calibrate, "collect_pass", collect)
    monkeypatch.setattr(fp16, "find_overflow", find)
    result = build(sr_onnx, _config(tmp_path))
    assert passes == ["calibrating"]
    for om in result.socs[0].artifacts.values():
        assert json.loads(Path(om).with_suffix(".json").read_text())["fp16_overflow"] == []


def test_a_narrowed_comparison_is_judged_on_its_own_candidates() -> None:
    from types import SimpleNamespace

    from ascend_quant.pipeline import _compare_narrow

    failure = {"candidate": "m_w8", "output": "y", "metric": "cosine", "value": 0.5, "op": ">=",
               "threshold": 0.99}  # fmt: skip
    donor = {
        "candidates": [
            {"name": f"m_{p}", "precision": p, "passed": p != "w8"} for p in ("fp16", "int8", "w8")
        ],
        "passed": False,
        "verdict": "FAILED: m_w8 y cosine 0.5 >= 0.99",
        "failures": ["m_w8 y cosine 0.5 >= 0.99"],
        "gate_failures": [failure],
        "image_samples": [{"candidates": {"m_fp16": "a", "m_int8": "b", "m_w8": "c"}}],
        "gears": [],
    }
    ctx = SimpleNamespace(soc=SimpleNamespace(runs_sha256={"fp16": "1", "int8": "2"}))
    narrowed = _compare_narrow(ctx, donor)  # type: ignore[arg-type]
    assert narrowed is not None
    assert [c["name"] for c in narrowed["candidates"]] == ["m_fp16", "m_int8"]
    assert narrowed["passed"] and narrowed["verdict"] == "PASSED"
    assert narrowed["failures"] == [] and narrowed["gate_failures"] == []
    assert narrowed["image_samples"][0]["candidates"] == {"m_fp16": "a", "m_int8": "b"}
    ctx.soc.runs_sha256 = {"fp16": "1", "int8": "2", "w8": "3", "x": "4"}
    assert _compare_narrow(ctx, donor) is None  # a model the donor did not compare
