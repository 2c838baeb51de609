"""Pipeline evaluation: the user's function over precision mixes, golden = every component FP32."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tiny_models
from cli.clirun import run_cli
from typer.testing import CliRunner

from ascend_quant import mixes, report
from ascend_quant.cli.app import app
from ascend_quant.config import BuildConfig, Thresholds
from ascend_quant.errors import UsageError
from ascend_quant.mixes import (
    Choice,
    PipelineResult,
    evaluate_pipeline,
    load_function,
    load_pipeline_spec,
)
from ascend_quant.pipeline import BuildResult
from ascend_quant.report import json_safe, write_pipeline_report

FUNCTION = '''
import numpy as np

CALLS = []

def run(runners, index):
    """Two components: noise -> first (8 -> 16 px) -> second (16 -> 32 px)."""
    CALLS.append((sorted(runners), index))
    x = np.random.default_rng(index).random((1, 3, 8, 8), dtype=np.float32)
    mid = np.clip(runners["first"].infer({"input": x})["output"], 0.0, 1.0)
    out = runners["second"].infer({"input": mid})["output"]
    return {"image": out, "mid": mid}
'''


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    tiny_models.save(tiny_models.sr_net(hw=8), tmp_path / "first.onnx")
    tiny_models.save(tiny_models.sr_net(hw=16), tmp_path / "second.onnx")
    (tmp_path / "twostage.py").write_text(FUNCTION)
    toml = tmp_path / "pipeline.toml"
    toml.write_text(
        textwrap.dedent(
            f"""
            [pipeline]
            function = "twostage:run"
            samples = 2
            backend = "sim"
            gates = ["image:worst:psnr_db>=30"]
            out = "{tmp_path / "out"}"

            [pipeline.components.first]
            model = "first.onnx"
            precision = "int8"
            build = {{ bench = {{ duration_s = 0.05, min_loop = 1, warmup = 0 }} }}

            [pipeline.components.second]
            model = "second.onnx"
            precision = "fp16"
            build = {{ bench = {{ duration_s = 0.05, min_loop = 1, warmup = 0 }} }}

            [pipeline.mixes]
            "second-w8" = {{ second = "w8" }}
            "all-fp32" = {{ first = "fp32", second = "fp32" }}
            """
        )
    )
    return toml


@pytest.mark.slow
def test_two_components_two_mixes_against_the_fp32_golden(project: Path) -> None:
    spec = load_pipeline_spec(project)
    assert spec.mixes == {
        "declared": {"first": Choice("int8"), "second": Choice("fp16")},
        "second-w8": {"first": Choice("int8"), "second": Choice("w8")},
        "all-fp32": {"first": Choice("fp32"), "second": Choice("fp32")},
    }
    result, outputs = evaluate_pipeline(spec)

    import twostage  # the function's module, imported from beside the TOML

    # golden + 3 mixes, 2 samples each, every call handed both components
    assert len(twostage.CALLS) == 8 and {tuple(c[0]) for c in twostage.CALLS} == {
        ("first", "second")
    }
    assert [c[1] for c in twostage.CALLS[:2]] == [0, 1]
    by_name = {m.name: m for m in result.mixes}
    exact = by_name["all-fp32"].outputs["image"]
    assert exact["cosine"] == 1.0 and exact["rmse"] == 0.0  # same noise, same models
    declared = by_name["declared"].outputs["image"]
    assert 0.99 < declared["cosine"] < 1.0 and declared["psnr_db"] > 30
    assert len(by_name["declared"].per_sample["image"]) == 2
    assert set(by_name["second-w8"].outputs) == {"image", "mid"}
    # the w8 mix changes only the second component: its intermediate equals the declared one's
    np.testing.assert_array_equal(outputs["second-w8"][0]["mid"], outputs["declared"][0]["mid"])
    assert not np.array_equal(outputs["second-w8"][0]["image"], outputs["declared"][0]["image"])
    assert result.passed and result.verdict == "PASSED"
    assert set(result.artifacts["first"]) >= {"fp32", "fp16", "int8", "w8"}
    assert Path(result.artifacts["second"]["w8"]).is_file()

    paths = write_pipeline_report(Path(spec.out), result, outputs, title="two-stage")
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") >= 2 * (1 + 3 + 3)  # 2 image outputs
    assert "|declared − FP32|" in html and "second=w8" in html
    saved = json.loads(paths["json"].read_text())
    assert saved["verdict"] == "PASSED" and len(saved["mixes"]) == 3


@pytest.mark.slow
def test_strict_gate_fails_the_mix_and_the_cli_exits_1(project: Path) -> None:
    text = (
        project.read_text()
        .replace('"second-w8" = { second = "w8" }', "")
        .replace('"all-fp32" = { first = "fp32", second = "fp32" }', "")
    )
    text = text.replace('precision = "int8"', 'precision = "fp32"')
    project.write_text(text)
    argv = ["compare", "--pipeline", "twostage:run", "--config", str(project), "--samples", "1"]
    result = CliRunner().invoke(app, [*argv, "--gate", "image:worst:psnr_db>=200"])
    assert result.exit_code == 1, result.output
    assert "FAILED: declared image: psnr_db" in result.output
    assert "< 200 sample 0" in result.output  # the per-sample gate names the sample
    assert "pipeline.html" in result.output


def test_spec_errors_name_the_fix(project: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[pipeline.components.x]\nmodel = "first.onnx"\nprecision = "int4"\n')
    with pytest.raises(UsageError, match="precision 'int4'"):
        load_pipeline_spec(bad, "twostage:run")
    bad.write_text(project.read_text() + '\n[pipeline.mixes.extra]\nthird = "fp16"\n')
    with pytest.raises(UsageError, match="unknown component"):
        load_pipeline_spec(bad)
    spec = load_pipeline_spec(project, "nosuchmodule:run")
    with pytest.raises(UsageError, match="cannot import pipeline module"):
        evaluate_pipeline(spec)
    result = CliRunner().invoke(app, ["compare", "--pipeline", "twostage:run"])
    assert isinstance(result.exception, UsageError) and "--config" in result.exception.message


ONE_STAGE = """
import numpy as np

def run(runners, index):
    x = np.random.default_rng(index).random((1, 3, 8, 8), dtype=np.float32)
    return runners["net"].infer({"input": x})["output"]
"""

BENCH = "bench = {{ duration_s = 0.05, min_loop = 1, warmup = 0 }}"


def one_component(tmp_path: Path, mixes_toml: str) -> Path:
    """A one-component pipeline (an 8 -> 16 px SR net, declared INT8) with these mixes."""
    tiny_models.save(tiny_models.sr_net(hw=8), tmp_path / "net.onnx")
    (tmp_path / "onestage.py").write_text(ONE_STAGE)
    toml = tmp_path / "pipeline.toml"
    toml.write_text(
        textwrap.dedent(
            f"""
            [pipeline]
            function = "onestage:run"
            samples = 3
            backend = "sim"
            out = "{tmp_path / "out"}"

            [pipeline.components.net]
            model = "net.onnx"
            precision = "int8"
            build = {{ {BENCH.format()} }}

            [pipeline.mixes]
            """
        )
        + textwrap.dedent(mixes_toml)
    )
    return toml


@pytest.mark.slow
def test_mix_overrides_one_build_per_effective_setting_reused_on_a_second_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = one_component(
        tmp_path,
        """
        "tuned" = { net = { precision = "int8", quant = { skip_layers = ["conv1"] } } }
        "tuned-fp16" = { net = { precision = "fp16", quant = { skip_layers = ["conv1"] } } }
        """,
    )
    spec = load_pipeline_spec(toml)
    assert spec.mixes["declared"] == {"net": Choice("int8")}
    assert spec.mixes["tuned"] == {"net": Choice("int8", {"quant": {"skip_layers": ["conv1"]}})}
    built: list[str] = []
    real_build = mixes.build

    def counting_build(model: Path, config: BuildConfig, **kwargs: Any) -> BuildResult:
        built.append(Path(str(config.out)).name)
        return real_build(model, config, **kwargs)

    monkeypatch.setattr(mixes, "build", counting_build)
    result, outputs = evaluate_pipeline(spec)

    # the plain build and ONE build for the two mixes with the same settings
    assert len(built) == 2 and built[0] == "net" and built[1].startswith("net-")
    by_name = {b.name: b for b in result.builds}
    tuned = by_name[built[1]]
    assert tuned.component == "net" and tuned.mixes == ["tuned", "tuned-fp16"]
    assert tuned.overrides == {"quant": {"skip_layers": ["conv1"]}}
    assert sorted(tuned.precisions) == ["fp16", "int8"]
    assert by_name["net"].mixes == ["declared"] and by_name["net"].overrides == {}
    assert Path(tuned.workspace) == Path(spec.out) / tuned.name
    assert Path(result.artifacts[tuned.name]["int8"]).is_file()
    # the mix runs the tuned build: conv1 in float changes the INT8 output
    assert not np.array_equal(outputs["tuned"][0]["output"], outputs["declared"][0]["output"])
    mix = {m.name: m for m in result.mixes}
    assert mix["tuned"].builds == {"net": tuned.name}
    assert mix["tuned"].overrides == {"net": {"quant": {"skip_layers": ["conv1"]}}}
    assert mix["tuned"].label == "net=int8 [quant.skip_layers=[conv1]]"
    assert mix["declared"].label == "net=int8" and mix["declared"].builds == {"net": "net"}
    assert len(mix["tuned"].per_sample["output"]) == 3
    saved = json.loads(json.dumps(json_safe(result)))
    assert saved["mixes"][1]["label"] == "net=int8 [quant.skip_layers=[conv1]]"
    assert saved["builds"][1]["mixes"] == ["tuned", "tuned-fp16"]
    html = write_pipeline_report(Path(spec.out), result, outputs, title="t")["html"].read_text()
    assert "net=int8 [quant.skip_layers=[conv1]]" in html
    assert "quant.skip_layers = conv1" in html and "tuned, tuned-fp16" in html
    assert "output: 3 of 3 sample(s)" in html

    # a second run: the same two builds, every stage taken from the cache
    built.clear()
    again, _ = evaluate_pipeline(load_pipeline_spec(toml))
    assert len(built) == 2
    for entry in again.builds:
        assert entry.ran == [] and "convert-int8" in entry.reused and "preflight" in entry.reused


@pytest.mark.parametrize(
    ("mix", "message", "hint"),
    [
        (
            '{ net = { precision = "int8", quant = { skip_layer = ["conv1"] } } }',
            "'tuned' net: unknown config key 'quant.skip_layer'",
            "did you mean 'skip_layers'?",
        ),
        ('{ net = { precison = "int8" } }', "unknown config key 'precison'", "precision"),
        ('{ net = { precision = "int4" } }', "precision 'int4'", "W8A8"),
        ('{ net = { socs = ["Ascend910B1"] } }', "socs is set by the pipeline", "[pipeline] soc"),
        ("{ net = { build = { quant = {} } } }", "beside precision", 'precision = "int8"'),
        (
            '{ net = { precision = "fp32", quant = { skip_layers = ["conv1"] } } }',
            "fp32 runs the ONNX model itself",
            "drop the settings",
        ),
        ("{ net = 8 }", "expected a precision or a table", 'unet = "w8"'),
        ('{ net = { quant = { skip_layers = "conv1" } } }', "expected a list", None),
        ("{ net = { calib = { max_samples = 0 } } }", "'tuned' net: ", None),
    ],
)
def test_bad_mix_overrides_are_usage_errors_with_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mix: str, message: str, hint: str | None
) -> None:
    toml = one_component(tmp_path, f'"tuned" = {mix}\n')
    with pytest.raises(UsageError, match=None) as caught:
        load_pipeline_spec(toml)
    assert message in caught.value.message
    if hint is not None:
        assert caught.value.hint is not None and hint in caught.value.hint
    code, _, err = run_cli(capsys, "compare", "--pipeline", "onestage:run", "--config", str(toml))
    assert code == 2 and "error:" in err and "hint:" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[pipeline]\nsamples = 'two'\n", "samples must be a whole number"),
        ("[pipeline]\nsoc = 'Ascend310P'\n", "Ascend310P"),
        ("[pipeline]\nbackend = 'npu'\n", "backend 'npu'"),
        ("[pipeline]\ngates = 'psnr_db>=30'\n", "gates must be a list"),
        ("[pipeline]\nout = 3\n", "out must be a string"),
        ("[pipeline]\nsampels = 2\n", "unknown key(s) sampels"),
        ("pipeline = 3\n", "pipeline must be a table"),
        ("[pipeline.components.net]\nmodel = 'net.onnx'\nbuild = 3\n", "build must be a table"),
        ("[pipeline.components.net]\nmodel = 'net.onnx'\nbuild = { out = 'x' }\n", "out is set"),
        ("[pipeline.components.net]\nmodel = 'missing.onnx'\n", "model not found"),
        ("[pipeline.components.net]\nmodel = 3\n", "needs model"),
        ("[pipeline.components.net]\nmodel = '.'\n", "model is a directory"),
        ("[pipeline]\nthresholds = { cosine_min = 'x' }\n", "cosine_min: expected a number"),
        ("[pipeline.components.net]\nmodel = 'net.onnx'\n[pipeline.mixes]\nx = 'fp16'\n", "'x'"),
        ("[pipeline.components.net]\nmodel = 'net.onnx'\n[pipeline.mixes.x]\nnet = 'w4'\n", "w4"),
    ],
)
def test_bad_pipeline_tomls_are_usage_errors_with_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    tiny_models.save(tiny_models.sr_net(hw=8), tmp_path / "net.onnx")
    if "components" not in text and "pipeline =" not in text:
        text += "[pipeline.components.net]\nmodel = 'net.onnx'\n"
    toml = tmp_path / "bad.toml"
    toml.write_text(text)
    with pytest.raises(UsageError) as caught:
        load_pipeline_spec(toml, "onestage:run")
    assert message in caught.value.message and caught.value.hint
    code, _, err = run_cli(capsys, "compare", "--pipeline", "m:f", "--config", str(toml))
    assert code == 2 and "error:" in err and "hint:" in err and "Traceback" not in err


def fake_pipeline(
    samples: int, hw: int = 16
) -> tuple[PipelineResult, dict[str, list[dict[str, np.ndarray]]]]:
    """A result and outputs as evaluate_pipeline returns them, without building anything:
    mix "noisy" gets more noise on sample 3 than on any other."""
    rng = np.random.default_rng(0)
    golden = [{"image": rng.random((1, 3, hw, hw), dtype=np.float32)} for _ in range(samples)]
    noise = [0.2 if i == 3 else 0.01 for i in range(samples)]
    outputs = {
        "fp32": golden,
        "exact": [dict(g) for g in golden],
        "noisy": [
            {
                "image": np.clip(g["image"] + rng.normal(0, s, g["image"].shape), 0, 1).astype(
                    np.float32
                )
            }
            for g, s in zip(golden, noise)
        ],
    }
    mix_results = []
    for name in ("exact", "noisy"):
        aggregate, per_sample, failures = mixes.compare_outputs(
            golden, outputs[name], Thresholds(), mix=name
        )
        mix_results.append(
            mixes.MixResult(
                name, {"net": "int8"}, aggregate, per_sample, failures, label=f"net=int8 [{name}]"
            )
        )
    result = mixes.PipelineResult(
        function="m:f",
        soc="Ascend310P3",
        backend="sim",
        simulated=True,
        samples=samples,
        mixes=mix_results,
        verdict="PASSED",
        failures=[],
        thresholds=Thresholds(),
        artifacts={},
    )
    return result, outputs


def test_the_report_shows_every_sample_and_each_mix_worst(tmp_path: Path) -> None:
    result, outputs = fake_pipeline(samples=5)
    html = write_pipeline_report(tmp_path, result, outputs, title="t")["html"].read_text()
    # the table: each mix's worst sample
    assert "worst psnr_db" in html and "(sample 3)" in html
    # full size: the worst sample; the grid: all 5 samples, each FP32 + 2 mixes + 2 error maps
    assert "image: sample 3, side by side" in html
    assert "image: 5 of 5 sample(s)" in html
    for i in range(5):
        assert f'alt="FP32, sample {i}"' in html and f'alt="|noisy − FP32|, sample {i}"' in html
    assert html.count('class="worst"') == 1  # noisy's sample 3 (exact has no worst: all inf)
    assert "Showing" not in html


def test_the_report_grid_is_capped_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, outputs = fake_pipeline(samples=12)
    html = write_pipeline_report(tmp_path, result, outputs, title="t")["html"].read_text()
    assert f"image: {report.MAX_GRID_SAMPLES} of 12 sample(s)" in html
    assert "Showing 8 of 12 samples: each mix's worst sample" in html
    assert 'alt="FP32, sample 3"' in html  # the worst is shown although it is not among the first
    assert 'alt="FP32, sample 11"' not in html
    # a byte budget: each row of 128 px noise is ~5 x 66 kB of PNG; 300 kB hold at most 4 rows
    result, outputs = fake_pipeline(samples=6, hw=128)
    monkeypatch.setattr(report, "GRID_BUDGET", 300_000)
    html = write_pipeline_report(tmp_path, result, outputs, title="t")["html"].read_text()
    shown = html.count('alt="FP32, sample ')
    assert 1 <= shown < 6
    assert f"image: {shown} of 6 sample(s)" in html
    assert f"{6 - shown} sample(s) left out to keep the report under 0.286 MB" in html


BAD_FUNCTIONS = """
import numpy as np

CALLS = []


def x(index):
    return np.random.default_rng(index).random((1, 3, 8, 8), dtype=np.float32)


def raises(runners, index):
    return runners["missing"].infer({"input": x(index)})


def none(runners, index):
    return None


def empty(runners, index):
    return {}


def text(runners, index):
    return {"image": "not an image"}


def shape_changes(runners, index):
    CALLS.append(index)
    out = runners["net"].infer({"input": x(index)})["output"]
    return out if (len(CALLS) - 1) // 2 % 2 == 0 else out[:, :1]  # golden full, the mix not


def generate(runners, index):
    return runners["net"].infer({"input": x(index)})["output"]
"""


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("raises", "the pipeline function raised KeyError: 'missing' (mix 'fp32', sample 0)"),
        ("none", "returned NoneType for mix 'fp32', sample 0"),
        ("empty", "returned an empty mapping"),
        ("text", "output 'image' for mix 'fp32', sample 0 is str, not a numeric array"),
        ("shape_changes", "mix 'declared', sample 0: output 'output' has shape (1, 1, 16, 16)"),
        ("genrate", "has no function 'genrate'"),
        ("broken_module:run", "importing pipeline module 'broken_module' raised ZeroDivisionError"),
    ],
)
def test_a_bad_pipeline_function_is_a_usage_error_naming_the_mix_and_sample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], function: str, message: str
) -> None:
    """Every component in FP32: nothing is built, the function's mistakes are the subject."""
    tiny_models.save(tiny_models.sr_net(hw=8), tmp_path / "net.onnx")
    module = f"badfunctions_{function.partition(':')[0]}"  # a fresh module per case
    (tmp_path / f"{module}.py").write_text(BAD_FUNCTIONS)
    (tmp_path / "broken_module.py").write_text("1 / 0\n")
    toml = tmp_path / "pipeline.toml"
    toml.write_text(
        '[pipeline]\nsamples = 2\n[pipeline.components.net]\nmodel = "net.onnx"\n'
        'precision = "fp32"\n'
    )
    reference = function if ":" in function else f"{module}:{function}"
    spec = load_pipeline_spec(toml, reference)
    with pytest.raises(UsageError) as caught:
        evaluate_pipeline(spec)
    assert message in caught.value.message and caught.value.hint
    if function == "genrate":
        assert caught.value.hint == "did you mean 'generate'?"
    code, _, err = run_cli(capsys, "compare", "--pipeline", reference, "--config", str(toml))
    assert code == 2 and "error:" in err and "hint:" in err, err


def test_the_keeper_holds_only_what_the_report_shows(tmp_path: Path) -> None:
    """Streaming keeps the first samples and each mix's worst: the report made from them is the
    one made from every sample, and what is held does not grow with the samples."""
    result, outputs = fake_pipeline(samples=20)
    keeper = mixes.SampleKeeper(report.MAX_GRID_SAMPLES, ["image"])
    held = 0
    for i in range(20):
        arrays = {m: outputs[m][i] for m in outputs}
        keeper.offer(i, arrays, {m.name: {"image": m.per_sample["image"][i]} for m in result.mixes})
        held = max(held, len(keeper.kept))
    assert held <= report.MAX_GRID_SAMPLES + 2 and set(keeper.kept) == {*range(8), 3}
    full = write_pipeline_report(tmp_path / "all", result, outputs, title="t")
    kept = write_pipeline_report(tmp_path / "kept", result, keeper.by_mix(), title="t")
    strip = [p["html"].read_text().split("generated", 1)[1][40:] for p in (full, kept)]
    assert strip[0] == strip[1] and 'alt="FP32, sample 3"' in strip[1]


def test_the_full_size_panel_is_under_the_image_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, outputs = fake_pipeline(samples=4, hw=128)
    html = write_pipeline_report(tmp_path, result, outputs, title="t")["html"].read_text()
    assert 'alt="|noisy − FP32|"' in html and "left out here" not in html
    monkeypatch.setattr(report, "GRID_BUDGET", 100_000)  # FP32 + the first mix, ~70 kB each
    html = write_pipeline_report(tmp_path, result, outputs, title="t")["html"].read_text()
    assert "1 mix(es) left out here to keep the report under 0.0954 MB" in html
    assert 'alt="|noisy − FP32|"' not in html and 'alt="|exact − FP32|"' in html
    assert 'alt="|noisy − FP32|, sample 0"' in html  # the grid still has it (one row)


def test_a_missing_pipeline_function_lists_only_the_modules_own_functions(tmp_path: Path) -> None:
    """`pipeline:nosuch` once hinted "its functions: Mapping, Path, Any, ..." (its imports)."""
    (tmp_path / "ownfunctions.py").write_text(
        "from pathlib import Path\nfrom typing import Any\nfrom os.path import join\n\n\n"
        "def helper(x):\n    return x\n\n\ndef run(runners, index):\n    return {}\n"
    )
    with pytest.raises(UsageError) as caught:
        load_function("ownfunctions:zzz", tmp_path)
    assert caught.value.hint == "its functions: helper, run"
