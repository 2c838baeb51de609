"""`build --tune` end to end on the simulator, on models with deliberately sensitive layers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tune_models
from cli.clirun import run_cli

from ascend_quant import render
from ascend_quant.config import BuildConfig, load_build_config, load_project_file, merge
from ascend_quant.pipeline import build

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, **tune: object) -> BuildConfig:
    return merge(
        BuildConfig(),
        {
            "backend": "sim",
            "out": str(tmp_path / "ws"),
            "bench": {"warmup": 1, "loop": 2},
            "calib": {"limit": 6, "jobs": 1},
            "tune": {"enabled": True, **tune},
        },
    )


@pytest.fixture
def one_sensitive(tmp_path: Path) -> Path:
    return tune_models.save(tune_models.outlier_chain(6, (3,), hw=12), tmp_path / "m.onnx")


@pytest.fixture
def two_sensitive(tmp_path: Path) -> Path:
    return tune_models.save(tune_models.outlier_chain(8, (2, 6), hw=12), tmp_path / "m2.onnx")


def test_finds_the_sensitive_layer_and_writes_it_everywhere(one_sensitive: Path, tmp_path: Path):
    result = build(one_sensitive, _config(tmp_path))
    assert result.passed
    soc = result.socs[0]
    int8 = soc.tune["int8"]
    assert int8["passed"] and int8["stop"] == "passed"
    assert int8["delta"]["floats"] == ["conv3"]
    assert soc.tune["fp16"]["stop"] == "already-passed"
    configs = soc.directory / "configs"
    for name in ("simple_config.cfg", "amct_config.cfg"):
        parsed = render.validate_rendered(name, (configs / name).read_text())
        assert parsed["skip_layers"] == ["conv3"], name
    quant_config = json.loads((configs / "quant_config.json").read_text())
    assert quant_config["quantize_info"]["skip_layers"] == ["conv3"]
    assert soc.reports["tune"] == str(soc.directory / "tune" / "tune.json")  # in --json too
    records = json.loads((soc.directory / "tune" / "tune.json").read_text())["precisions"]
    path = records["int8"]["path"]
    assert path[0]["phase"] == "baseline" and not path[0]["passed"]
    assert path[-1]["delta"]["floats"] or records["int8"]["best"]["passed"]
    assert all({"delta", "cost", "metrics", "verdict", "cached"} <= set(t) for t in path)
    ranking = json.loads((soc.directory / "tune" / "tune_ranking.json").read_text())
    assert ranking["int8"][0]["name"] == "conv3"  # the isolated error ranks it first
    assert {c["name"] for c in ranking["int8"]} == {f"conv{i}" for i in range(6)}
    assert 0 < records["int8"]["cost"] < 0.5

    again = build(one_sensitive, _config(tmp_path))
    assert all(run.reused for run in again.stages)
    forced = build(one_sensitive, _config(tmp_path), from_stage="tune")
    resumed = json.loads((soc.directory / "tune" / "tune.json").read_text())["precisions"]
    assert forced.passed
    assert all(t["cached"] for t in resumed["int8"]["path"])  # every trial from the cache


def test_simulator_trial_cache_is_shared_by_every_soc(one_sensitive: Path, tmp_path: Path):
    """docs/tune.md: on the simulator the cache is shared by every soc (it computes the same)."""
    first = build(one_sensitive, merge(_config(tmp_path), {"socs": ["Ascend310P3"]}))
    assert first.socs[0].tune["int8"]["passed"]
    other = build(one_sensitive, merge(_config(tmp_path), {"socs": ["Ascend310B1"]}))
    path = json.loads((other.socs[0].directory / "tune" / "tune.json").read_text())
    trials = path["precisions"]["int8"]["path"]
    assert trials and all(t["cached"] for t in trials)  # not one trial evaluated again


def test_two_sensitive_layers_and_not_others(two_sensitive: Path, tmp_path: Path):
    result = build(two_sensitive, _config(tmp_path))
    int8 = result.socs[0].tune["int8"]
    assert result.passed
    assert sorted(int8["delta"]["floats"]) == ["conv2", "conv6"]
    assert int8["evaluated"] < 2 * 8  # far below a scan of every layer and pair


def test_max_float_stops_with_exit_1_and_writes_the_best_so_far(
    one_sensitive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    code, _, err = run_cli(
        capsys,
        "tune",
        str(one_sensitive),
        "--soc",  # a list option: `tune` once parsed every option as a plain string
        "Ascend310P3",
        "--backend",
        "sim",
        "--out",
        str(tmp_path / "ws"),
        "--limit",
        "6",
        "--loop",
        "2",
        "--max-float",
        "0.01",
    )
    assert code == 1
    assert "max_float" in err and "not passed" in err
    configs = tmp_path / "ws" / "Ascend310P3" / "configs"
    record = json.loads((tmp_path / "ws" / "Ascend310P3" / "tune" / "tune.json").read_text())
    best = record["precisions"]["int8"]["delta"]
    written = json.loads((configs / "quant_config.json").read_text())["quantize_info"]
    assert sorted(written["override_layer_configs"]) == sorted(best["override_layer_configs"])
    assert written["skip_layers"] == best["floats"]


def test_trial_budget_stops_with_a_message(one_sensitive: Path, tmp_path: Path, capsys):
    code, _, err = run_cli(
        capsys,
        "build",
        str(one_sensitive),
        "--backend",
        "sim",
        "--out",
        str(tmp_path / "ws"),
        "--limit",
        "6",
        "--loop",
        "2",
        "--tune",
        "--tune-budget",
        "1",
    )
    assert code == 1
    assert "trial budget (1 trial) before any passed" in err


def test_write_config_makes_the_next_build_a_plain_cached_one(
    one_sensitive: Path, tmp_path: Path, capsys
):
    project = tmp_path / "ascend-quant.toml"
    project.write_text("[thresholds]\ncosine_min = 0.99\n")
    args = ["--backend", "sim", "--out", str(tmp_path / "ws"), "--limit", "6", "--loop", "2"]
    code, _, err = run_cli(
        capsys,
        "tune",
        str(one_sensitive),
        *args,
        "--config",
        str(project),
        "--write-config",
        str(project),
    )
    assert code == 0, err
    data = load_project_file(project)
    assert data["quant"]["skip_layers"] == ["conv3"]
    assert data["thresholds"]["cosine_min"] == 0.99  # the user's own settings are kept
    assert load_build_config(project).quant.skip_layers == ("conv3",)
    code, _, err = run_cli(capsys, "build", str(one_sensitive), *args, "--config", str(project))
    assert code == 0, err
    reused = next(line for line in err.splitlines() if line.startswith("reused:"))
    assert "convert-int8[Ascend310P3]" in reused and "compare[Ascend310P3]" in reused


def test_the_atc_stand_in_receives_the_tuned_simple_config(
    one_sensitive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Tune on the simulator, write the result back, build for the real toolkit: the simple
    config atc reads through --compression_optimize_conf is the tuned one, byte for byte."""
    from fakes.cann import use_fakes_on_path
    from fakes.pylib import fakecann

    from ascend_quant.config import write_project_settings

    tuned = build(one_sensitive, _config(tmp_path))
    project = write_project_settings(tmp_path / "ascend-quant.toml", tuned.socs[0].settings)
    tuned_cfg = (tuned.socs[0].directory / "configs" / "simple_config.cfg").read_text()

    use_fakes_on_path(monkeypatch, tmp_path)
    config = merge(
        load_build_config(project),
        {
            "backend": "atc",
            "out": str(tmp_path / "real"),
            "calib": {"limit": 6, "jobs": 1},
            "bench": {"warmup": 1, "loop": 2},
            "atc": {"int8_route": "atc"},
        },
    )
    real = build(one_sensitive, config)
    info = fakecann.read_om(real.socs[0].artifacts["int8"])
    assert info is not None
    received = info["received"]["config_file"]
    assert received == tuned_cfg
    assert 'skip_layers : "conv3"' in received


def test_fp16_overflow_finds_the_ops_to_keep_in_fp32(tmp_path: Path):
    model = tune_models.save(tune_models.overflow_chain(), tmp_path / "of.onnx")
    result = build(model, _config(tmp_path))
    soc = result.socs[0]
    fp16 = soc.tune["fp16"]
    assert fp16["passed"], fp16["message"]
    assert sorted(fp16["delta"]["floats"]) == ["amplify", "clamp", "conv1"]
    configs = soc.directory / "configs"
    kept = (configs / "keep_dtype.cfg").read_text().splitlines()
    assert sorted(kept) == ["amplify", "clamp", "conv1"]
    assert "--keep_dtype=" in (configs / "atc_fp16.sh").read_text()
    fp16_result = next(c for c in soc.compare["candidates"] if c["precision"] == "fp16")
    assert fp16_result["passed"]


def test_calibration_override_unclips_the_spiky_input_on_the_simulator(tmp_path: Path) -> None:
    """A real search, real figures: IFMR clips the input's rare spikes (one value in ~200k of
    the calibration set), the evaluation set spikes on 1% of its pixels, and the output carries
    them. The calibration strategy gives conv0 IFMR from the true max and the build passes;
    conv1, which reads the input clamped to [0, 1], clips nothing and is left alone."""
    model = tune_models.save(tune_models.spiky_input(), tmp_path / "spiky.onnx")
    calib = tune_models.spiky_samples(16, 0, seed=1)
    calib[0][0, 0, 5, 5] = tune_models.SPIKE
    sources = {"calib": calib, "eval": tune_models.spiky_samples(4, 64 * 64 // 100, seed=2)}
    for kind, samples in sources.items():
        (tmp_path / kind).mkdir()
        for index, sample in enumerate(samples):
            np.save(tmp_path / kind / f"{index:02d}.npy", sample)
    config = merge(
        _config(tmp_path, precisions=["int8"]),
        {
            "calib": {"sources": [str(tmp_path / "calib")], "limit": None},
            "eval_sources": [str(tmp_path / "eval")],
            "accuracy": {"task": "generic"},
        },
    )

    result = build(model, config)

    assert result.passed
    soc = result.socs[0]
    int8 = json.loads((soc.directory / "tune" / "tune.json").read_text())["precisions"]["int8"]
    baseline, found = int8["path"]  # one trial found it: the override on the one clipped layer
    assert not baseline["passed"] and baseline["phase"] == "baseline"
    assert baseline["metrics"]["rel_euclidean"] > 0.1  # the gate is 0.05
    assert "rel_euclidean" in baseline["verdict"]
    assert found["passed"] and found["phase"] == "calibration"
    assert found["delta"] == {"override_layer_configs": {"conv0": "ifmr-full"}, "floats": []}
    assert found["metrics"]["rel_euclidean"] < 0.02 and found["cost"] == 0
    assert int8["stop"] == "passed" and int8["delta"] == found["delta"]
    ranking = json.loads((soc.directory / "tune" / "tune_ranking.json").read_text())["int8"]
    clipped = {c["name"]: c["clip_fraction"] for c in ranking}
    assert clipped["conv0"] == pytest.approx(40 / 4096)  # the spiky pixels of the eval set
    assert clipped["conv1"] == 0.0  # its input ends at 1.0, within half a step of its range
    # the build's own compare of the tuned INT8 model agrees with the trial
    (int8_row,) = [c for c in soc.compare["candidates"] if c["model"].endswith("_int8.om")]
    assert int8_row["passed"]
    quant_config = json.loads((soc.directory / "configs" / "quant_config.json").read_text())
    override = quant_config["quantize_info"]["override_layer_configs"]["conv0"]
    assert override["ifmr"]["max_percentile"] == 1.0
