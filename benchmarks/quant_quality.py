"""INT8 accuracy of the simulator (each calibration algorithm) against ONNX Runtime's defaults.

For each model: calibrate on the bundled calib/images, evaluate on the held-apart
calib/holdout photographs (four resize modes each), and report cosine similarity and PSNR of the
INT8 output against the FP32 output. The baseline is `onnxruntime.quantization.quantize_static`
with its defaults (QDQ, MinMax, QInt8 activations and weights, per_channel=False) on the same
calibration samples. Prints JSON; `--models` picks a subset.

    .venv/bin/python benchmarks/quant_quality.py
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ascend_quant.backends.base import ConvertRequest
from ascend_quant.backends.sim import SimBackend, open_runner
from ascend_quant.config import CalibConfig, PreprocessConfig, QuantConfig
from ascend_quant.data.calibset import CalibSet
from ascend_quant.data.images import make_calib_set
from ascend_quant.onnx_io import save_for_ort
from ascend_quant.resources import calib_images_dir
from ascend_quant.runners.ort import OrtRunner

ROOT = Path(__file__).resolve().parents[1]
ALGORITHMS = ("ifmr", "hfmg", "minmax", "percentile", "entropy")


# --------------------------------------------------------------------------- models


def _he(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    fan_in = int(np.prod(shape[1:]))
    return rng.normal(0, math.sqrt(2.0 / fan_in), shape).astype(np.float32)


def _folded_conv(rng: np.random.Generator, cout: int, cin: int, k: int = 3):
    """Conv weights and bias with a BatchNorm folded in (per-channel gains spread 0.1..3)."""
    w = _he(rng, (cout, cin, k, k))
    gamma = rng.uniform(0.1, 3.0, cout).astype(np.float32)
    var = rng.uniform(0.5, 2.0, cout).astype(np.float32)
    mean = rng.normal(0, 0.2, cout).astype(np.float32)
    beta = rng.normal(0, 0.2, cout).astype(np.float32)
    gain = gamma / np.sqrt(var + 1e-5)
    return (w * gain[:, None, None, None]).astype(np.float32), (beta - mean * gain).astype(
        np.float32
    )


def _model(nodes, x, y, inits) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "bench", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def deep_conv_bn(hw: int = 32) -> onnx.ModelProto:
    """Six 3x3 convs with folded BN and ReLU; a dense (regression) output."""
    rng = np.random.default_rng(10)
    chans = [3, 16, 32, 32, 64, 64, 8]
    nodes, inits, prev = [], [], "input"
    for i in range(6):
        w, b = _folded_conv(rng, chans[i + 1], chans[i])
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        out = f"c{i}" if i < 5 else "output"
        nodes.append(
            helper.make_node(
                "Conv", [prev, f"w{i}", f"b{i}"], [out], name=f"conv{i}", pads=[1, 1, 1, 1]
            )
        )
        if i < 5:
            nodes.append(helper.make_node("Relu", [out], [f"r{i}"], name=f"relu{i}"))
            prev = f"r{i}"
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, hw, hw])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8, hw, hw])
    return _model(nodes, x, y, inits)


def resnet_blocks(hw: int = 32, classes: int = 10) -> onnx.ModelProto:
    """Stem conv, two residual blocks (conv-relu-conv + Add + relu), GAP, Gemm classifier."""
    rng = np.random.default_rng(11)
    nodes, inits = [], []

    def conv(name, src, cout, cin, stride=1, relu=True):
        w, b = _folded_conv(rng, cout, cin)
        inits.extend(
            [numpy_helper.from_array(w, f"{name}_w"), numpy_helper.from_array(b, f"{name}_b")]
        )
        nodes.append(
            helper.make_node(
                "Conv",
                [src, f"{name}_w", f"{name}_b"],
                [f"{name}_c"],
                name=name,
                pads=[1, 1, 1, 1],
                strides=[stride, stride],
            )
        )
        if not relu:
            return f"{name}_c"
        nodes.append(helper.make_node("Relu", [f"{name}_c"], [f"{name}_r"], name=f"{name}_relu"))
        return f"{name}_r"

    h = conv("stem", "input", 32, 3, stride=2)
    for block in range(2):
        a = conv(f"b{block}a", h, 32, 32)
        c = conv(f"b{block}b", a, 32, 32, relu=False)
        nodes.append(helper.make_node("Add", [c, h], [f"b{block}_sum"], name=f"b{block}_add"))
        nodes.append(
            helper.make_node("Relu", [f"b{block}_sum"], [f"b{block}_out"], name=f"b{block}_relu")
        )
        h = f"b{block}_out"
    nodes.append(helper.make_node("GlobalAveragePool", [h], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"))
    inits += [
        numpy_helper.from_array(_he(rng, (classes, 32)), "fc_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, classes).astype(np.float32), "fc_b"),
    ]
    nodes.append(
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["output"], name="fc", transB=1)
    )
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, hw, hw])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, classes])
    return _model(nodes, x, y, inits)


def mlp_gelu(hw: int = 16) -> onnx.ModelProto:
    """Flatten -> 3 x (MatMul + bias) with GELU; a few hidden channels carry 20x outliers."""
    rng = np.random.default_rng(12)
    dims = [3 * hw * hw, 256, 256, 10]
    nodes = [helper.make_node("Flatten", ["input"], ["h0"], name="flatten")]
    inits = [
        numpy_helper.from_array(np.array(math.sqrt(2.0), np.float32), "sqrt2"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
    ]
    prev = "h0"
    for i in range(3):
        w = _he(rng, (dims[i + 1], dims[i])).T.copy()
        if i == 0:
            w[:, :4] *= 20.0  # outlier channels, as in transformer MLPs
        b = rng.normal(0, 0.05, dims[i + 1]).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [
            helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"], name=f"fc{i}"),
            helper.make_node(
                "Add", [f"m{i}", f"b{i}"], [f"a{i}"] if i < 2 else ["output"], name=f"bias{i}"
            ),
        ]
        if i < 2:  # exact GELU: 0.5 x (1 + erf(x / sqrt 2))
            nodes += [
                helper.make_node("Div", [f"a{i}", "sqrt2"], [f"d{i}"], name=f"gelu{i}_div"),
                helper.make_node("Erf", [f"d{i}"], [f"e{i}"], name=f"gelu{i}_erf"),
                helper.make_node("Add", [f"e{i}", "one"], [f"p{i}"], name=f"gelu{i}_add"),
                helper.make_node("Mul", [f"a{i}", f"p{i}"], [f"q{i}"], name=f"gelu{i}_mul"),
                helper.make_node("Mul", [f"q{i}", "half"], [f"g{i}"], name=f"gelu{i}_half"),
            ]
            prev = f"g{i}"
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, hw, hw])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])
    return _model(nodes, x, y, inits)


def sr_tiny(hw: int = 32) -> onnx.ModelProto:
    """ESPCN-shaped x2 super-resolution with folded-BN-like weights (untrained)."""
    rng = np.random.default_rng(13)
    w1, b1 = _folded_conv(rng, 32, 3, 5)
    w2, b2 = _folded_conv(rng, 16, 32)
    w3 = (_he(rng, (12, 16, 3, 3)) * 0.3).astype(np.float32)
    inits = [
        numpy_helper.from_array(a, n)
        for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"), (w3, "w3"))
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[2, 2, 2, 2]),
        helper.make_node("Tanh", ["c1"], ["t1"], name="tanh1"),
        helper.make_node("Conv", ["t1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Tanh", ["c2"], ["t2"], name="tanh2"),
        helper.make_node("Conv", ["t2", "w3"], ["c3"], name="conv3", pads=[1, 1, 1, 1]),
        helper.make_node("DepthToSpace", ["c3"], ["output"], name="d2s", blocksize=2, mode="CRD"),
    ]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, hw, hw])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 2 * hw, 2 * hw])
    return _model(nodes, x, y, inits)


# --------------------------------------------------------------------------- measuring


def _input_hw(path: Path) -> tuple[str, int, int]:
    model = onnx.load(str(path))
    inp = model.graph.input[0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    return inp.name, dims[2] or 64, dims[3] or 64


def _sets(work: Path, name: str, hw: tuple[int, int]) -> tuple[CalibSet, list[np.ndarray]]:
    pre = PreprocessConfig(size=hw)
    calib, _ = make_calib_set(work / f"{name}_calib", pre, CalibConfig(jobs=1), input_name=name)
    holdout = calib_images_dir().parent / "holdout"
    evals: list[np.ndarray] = []
    for mode in ("stretch", "center-crop", "letterbox", "shorter-side"):
        out = work / f"{name}_eval_{mode}"
        es, _ = make_calib_set(
            out,
            PreprocessConfig(size=hw, resize=mode),  # type: ignore[arg-type]
            CalibConfig(sources=(str(holdout),), jobs=1),
            input_name=name,
        )
        evals.extend(es.iter_samples())
    return calib, evals


def _scores(golden: list[np.ndarray], mine: list[np.ndarray]) -> dict[str, float]:
    g = np.concatenate([a.ravel() for a in golden]).astype(np.float64)
    m = np.concatenate([a.ravel() for a in mine]).astype(np.float64)
    cosine = float(g @ m / (np.linalg.norm(g) * np.linalg.norm(m)))
    mse = float(np.mean((g - m) ** 2))
    peak = float(g.max() - g.min())
    psnr = 10 * math.log10(peak**2 / mse) if mse > 0 else math.inf
    per_sample = [
        float(a.ravel() @ b.ravel() / (np.linalg.norm(a) * np.linalg.norm(b)))
        for a, b in zip(golden, mine)
    ]
    return {
        "cosine": round(cosine, 6),
        "min_sample_cosine": round(min(per_sample), 6),
        "psnr_db": round(psnr, 2),
    }


def _outputs(runner, name: str, evals: list[np.ndarray]) -> list[np.ndarray]:
    out = runner.output_specs()[0].name
    return [runner.infer({name: x})[out] for x in evals]


def ort_default(model_path: Path, out: Path, name: str, calib: CalibSet) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calib.iter_samples())

        def get_next(self):  # type: ignore[no-untyped-def]
            sample = next(self._it, None)
            return None if sample is None else {name: sample}

    quantize_static(str(model_path), str(out), Reader())
    save_for_ort(onnx.load(str(out)), out)
    return out


def measure(model_path: Path, label: str, work: Path) -> dict[str, object]:
    name, h, w = _input_hw(model_path)
    calib, evals = _sets(work, name, (h, w))
    golden = _outputs(OrtRunner(model_path), name, evals)
    result: dict[str, object] = {
        "model": label,
        "calibration_samples": len(calib),
        "evaluation_samples": len(evals),
    }
    backend = SimBackend()
    for precision, algorithms in (("fp16", (None,)), ("int8", ALGORITHMS)):
        for algorithm in algorithms:
            quant = QuantConfig(algorithm=algorithm) if algorithm else QuantConfig()
            request = ConvertRequest(
                model=model_path,
                source_sha256="-",
                input_shapes={name: (1, 3, h, w)},
                soc="Ascend310P3",
                precision=precision,  # type: ignore[arg-type]
                out_dir=work / label,
                name=f"{label}_{algorithm or 'fp16'}",
                quant=quant,
                calib_dirs={name: calib.root} if precision == "int8" else {},
            )
            started = time.perf_counter()
            artifact = backend.convert(request)
            key = f"ours_int8_{algorithm}" if algorithm else "ours_fp16"
            result[key] = {
                **_scores(golden, _outputs(open_runner(artifact.path), name, evals)),
                "convert_s": round(time.perf_counter() - started, 2),
            }
    started = time.perf_counter()
    ort_path = ort_default(model_path, work / f"{label}_ort.onnx", name, calib)
    result["ort_default_int8"] = {
        **_scores(golden, _outputs(OrtRunner(ort_path), name, evals)),
        "convert_s": round(time.perf_counter() - started, 2),
    }
    ours, theirs = result["ours_int8_ifmr"], result["ort_default_int8"]
    assert isinstance(ours, dict) and isinstance(theirs, dict)
    result["default_vs_ort"] = {
        "cosine_gain": round(ours["cosine"] - theirs["cosine"], 6),
        "psnr_gain_db": round(ours["psnr_db"] - theirs["psnr_db"], 2),
        "at_least_as_accurate": ours["cosine"] >= theirs["cosine"]
        and ours["psnr_db"] >= theirs["psnr_db"],
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="all", help="comma-separated subset")
    args = parser.parse_args(argv)
    builders = {
        "deep_conv_bn": deep_conv_bn,
        "resnet_blocks": resnet_blocks,
        "mlp_gelu": mlp_gelu,
        "sr_tiny": sr_tiny,
    }
    wanted = None if args.models == "all" else set(args.models.split(","))
    results = []
    with tempfile.TemporaryDirectory(prefix="aq-quality-") as tmp:
        work = Path(tmp)
        paths = {
            label: save_for_ort(build(), work / f"{label}.onnx")
            for label, build in builders.items()
        }
        espcn = ROOT / "examples" / "sr" / "espcn_x2.onnx"
        if espcn.is_file():
            paths["espcn_x2"] = espcn
        for label, path in paths.items():
            if wanted is None or label in wanted:
                results.append(measure(path, label, work))
    summary = {
        "models": [r["model"] for r in results],
        "default_at_least_as_accurate_on_all": all(
            r["default_vs_ort"]["at_least_as_accurate"]
            for r in results  # type: ignore[index]
        ),
        "default_better_on": [
            r["model"] for r in results if r["default_vs_ort"]["cosine_gain"] > 0
        ],  # type: ignore[index]
    }
    json.dump(
        {"benchmark": "quant_quality", "summary": summary, "results": results}, sys.stdout, indent=2
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
