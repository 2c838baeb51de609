"""What a cold simulated build costs, in units of one FP32 inference of the same model.

A ~1 GMAC convolutional model (a 3x3-conv stack at 48 channels with a residual add) at 128x128
is built cold for one soc with the 16 bundled calibration images and the bundled evaluation
images; one bare ONNX Runtime FP32 inference of the same model is timed in the same run (median
of alternating rounds taken before and after the builds, so machine drift cancels). Then:

- build time / one inference (target <= 80);
- a cold 2-soc build / a cold 1-soc build, medians of 4 each in ABBA order (target <= 1.15);
- peak RSS of a cold 1-soc build at 256x256 / at 128x128 (target <= 2.5).

A second, heavier model is built the same way: a 2x super-resolution UNet (1.8M parameters,
5.2 GMAC at 128x128, three levels with skip concats, nearest upsampling, PixelShuffle output).
The two builds give a build's cost as `fixed_s` seconds that do not grow with the model (start-up,
imports, the bench time budget, file writing) plus `inferences` FP32 inferences' worth of work
(the straight line through both (inference, build) points): the ratio above is that line read at
one model's inference time, so on a fast model it is mostly `fixed_s`.

Every build is a fresh `ascend-quant build` process in an empty workspace; its peak RSS is the
child's own `ru_maxrss` from wait4. The tool's bytecode is compiled first, as `pip install` does
(a dev shell with PYTHONDONTWRITEBYTECODE would otherwise compile ~80 modules in every process).
Prints JSON.

    python benchmarks/build_cost.py [--hw 128] [--soc Ascend310P3 --soc2 Ascend310B1]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ascend_quant.onnx_io import save_for_ort  # noqa: E402

CHANNELS = 48
BODY_CONVS = 3


def conv_model(hw: int) -> onnx.ModelProto:
    """3 -> 48 -> (3 x 48 -> 48) -> 3 channels, 3x3 convs with ReLU and one residual add."""
    rng = np.random.default_rng(0)

    def weight(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        scale = np.sqrt(2.0 / fan_in) if len(shape) > 1 else 0.05
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype("f4"), name)

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, hw, hw])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, hw, hw])
    inits = []
    nodes = []
    previous, channels = "input", 3
    widths = [CHANNELS] * (1 + BODY_CONVS) + [3]
    for i, out_channels in enumerate(widths):
        inits += [
            weight(f"w{i}", (out_channels, channels, 3, 3)),
            weight(f"b{i}", (out_channels,)),
        ]
        last = i == len(widths) - 1
        conv_out = f"conv{i}" if not last else "residual"
        nodes.append(
            helper.make_node(
                "Conv", [previous, f"w{i}", f"b{i}"], [conv_out], name=f"conv{i}", pads=[1] * 4
            )
        )
        if not last:
            nodes.append(helper.make_node("Relu", [conv_out], [f"relu{i}"], name=f"relu{i}"))
            previous = f"relu{i}"
        channels = out_channels
    nodes.append(helper.make_node("Add", ["input", "residual"], ["output"], name="add"))
    graph = helper.make_graph(nodes, "build_cost", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def sr_unet(hw: int, base: int = 48) -> onnx.ModelProto:
    """A 2x super-resolution UNet: base, 2 base, 4 base channels at full, 1/2, 1/4 resolution,
    strided-conv downsampling, nearest upsampling with skip concats, PixelShuffle(2) output plus
    the nearest-upsampled input. He-initialised weights: the cost, not the accuracy, is measured."""
    rng = np.random.default_rng(0)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def conv(x: str, cin: int, cout: int, stride: int = 1, relu: bool = True) -> str:
        i = len(inits) // 2
        w = rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))
        inits.append(numpy_helper.from_array(w.astype("f4"), f"w{i}"))
        inits.append(numpy_helper.from_array(np.zeros(cout, "f4"), f"b{i}"))
        attrs = {"pads": [1] * 4, "strides": [stride] * 2}
        nodes.append(
            helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], f"conv{i}", **attrs)
        )
        if not relu:
            return f"c{i}"
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"))
        return f"r{i}"

    def up(x: str, name: str) -> str:
        inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], "f4"), f"{name}_scales"))
        nodes.append(helper.make_node("Resize", [x, "", f"{name}_scales"], [name], name=name))
        return name

    def concat(a: str, b: str, name: str) -> str:
        nodes.append(helper.make_node("Concat", [a, b], [name], name=name, axis=1))
        return name

    c1, c2, c3 = base, 2 * base, 4 * base
    e1 = conv(conv("input", 3, c1), c1, c1)
    e2 = conv(conv(e1, c1, c2, stride=2), c2, c2)
    m = conv(conv(conv(conv(e2, c2, c3, stride=2), c3, c3), c3, c3), c3, c3)
    d2 = conv(conv(concat(conv(up(m, "up2"), c3, c2), e2, "cat2"), 2 * c2, c2), c2, c2)
    d1 = conv(concat(conv(up(d2, "up1"), c2, c1), e1, "cat1"), 2 * c1, c1)
    shuffled = conv(d1, c1, 12, relu=False)
    nodes.append(helper.make_node("DepthToSpace", [shuffled], ["shuffled"], "ps", blocksize=2))
    nodes.append(helper.make_node("Add", [up("input", "up0"), "shuffled"], ["output"], name="add"))
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, hw, hw])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 2 * hw, 2 * hw])
    graph = helper.make_graph(nodes, "sr_unet", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def model_size(model: onnx.ModelProto) -> tuple[int, float]:
    """(parameters, GMAC) of a model of 3x3 Convs: the MACs of each Conv at its output size."""
    inferred = shape_inference.infer_shapes(model)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*inferred.graph.value_info, *inferred.graph.output]
    }
    weights = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    macs = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            _n, _c, h, w = shapes[node.output[0]]
            macs += weights[node.input[1]] * h * w
    return sum(weights.values()), macs / 1e9


def inference_ms(model: Path, rounds: int = 5, per_round: int = 10) -> list[float]:
    """Per-round medians of bare FP32 ORT inferences (default session options, all cores)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    feed = {"input": np.random.default_rng(1).random(session.get_inputs()[0].shape, "f4")}
    for _ in range(3):
        session.run(None, feed)
    medians = []
    for _ in range(rounds):
        times = []
        for _ in range(per_round):
            start = time.perf_counter()
            session.run(None, feed)
            times.append((time.perf_counter() - start) * 1000.0)
        medians.append(statistics.median(times))
    return medians


def cold_build(
    model: Path, socs: list[str], workspace: Path
) -> tuple[float, float, dict[str, float]]:
    """(wall seconds, peak RSS MB, seconds per stage) of one `ascend-quant build` process in an
    empty workspace; the time outside the stages (start-up, imports, summary) is "outside"."""
    command = [sys.executable, "-m", "ascend_quant", "build", str(model), "--backend", "sim"]
    for soc in socs:
        command += ["--soc", soc]
    command += ["--out", str(workspace), "--json"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        _pid, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) not in (0, 1):
            err.seek(0)
            raise SystemExit(f"build failed:\n{err.read().decode()}")
        out.seek(0)
        result = json.loads(out.read().decode())
    stages: dict[str, float] = {}
    for run in result["stages"]:
        name = run["stage"] + (f"[{run['soc']}]" if run["soc"] else "")
        stages[name] = round(run["seconds"], 2)
    stages["outside"] = round(seconds - sum(stages.values()), 2)
    return seconds, usage.ru_maxrss / 1024.0, stages


def import_seconds(code: str, baseline: str = "pass") -> float:
    """Wall time of running `code` in a fresh interpreter (minus running `baseline`)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def run(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
        return time.perf_counter() - start

    return max(run(code) - run(baseline), 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hw", type=int, default=128)
    parser.add_argument("--soc", default="Ascend310P3")
    parser.add_argument("--soc2", default="Ascend310B1")
    args = parser.parse_args()

    compileall.compile_dir(ROOT / "ascend_quant", quiet=1)
    with tempfile.TemporaryDirectory(prefix="build_cost_") as tmp:
        root = Path(tmp)
        models = {"conv stack": conv_model(args.hw), "SR UNet": sr_unet(args.hw)}
        small = save_for_ort(models["conv stack"], root / f"conv{args.hw}.onnx")
        large = save_for_ort(conv_model(2 * args.hw), root / f"conv{2 * args.hw}.onnx")
        heavy = save_for_ort(models["SR UNet"], root / f"sr_unet{args.hw}.onnx")
        before = [inference_ms(small), inference_ms(heavy)]
        two = [args.soc, args.soc2]
        seconds: dict[int, list[float]] = {1: [], 2: []}
        for i, socs in enumerate([[args.soc], two, two, [args.soc]] * 2):  # ABBA: drift cancels
            took, rss, build_stages = cold_build(small, socs, root / f"ws{i}")
            seconds[len(socs)].append(took)
            if len(socs) == 1:
                rss_small, stages = rss, build_stages
        one_soc, two_soc = statistics.median(seconds[1]), statistics.median(seconds[2])
        _, rss_large, _ = cold_build(large, [args.soc], root / "ws_large")
        heavy_s, _, heavy_stages = cold_build(heavy, [args.soc], root / "ws_heavy")
        after = [inference_ms(small), inference_ms(heavy)]
    startup_s = import_seconds("import ascend_quant.cli.app")  # every command pays it
    infer_ms = statistics.median(before[0] + after[0])
    heavy_ms = statistics.median(before[1] + after[1])
    # the line through (infer_ms, one_soc) and (heavy_ms, heavy_s)
    inferences = (heavy_s - one_soc) * 1000.0 / (heavy_ms - infer_ms)
    fixed_s = one_soc - inferences * infer_ms / 1000.0

    def describe(kind: str) -> str:
        params, gmac = model_size(models[kind])
        return f"{kind}, {params:,} parameters, {gmac:.2f} GMAC, {args.hw}x{args.hw}"

    print(
        json.dumps(
            {
                "model": describe("conv stack"),
                "calibration_images": 16,
                "fp32_inference_ms": round(infer_ms, 2),
                "fp32_inference_round_medians_ms": [round(v, 2) for v in before[0] + after[0]],
                "build_1soc_s": round(one_soc, 2),
                "build_1soc_rounds_s": [round(v, 2) for v in seconds[1]],
                "build_over_inference": round(one_soc * 1000.0 / infer_ms, 1),
                "build_1soc_stages_s": stages,
                "heavy_model": describe("SR UNet"),
                "heavy_fp32_inference_ms": round(heavy_ms, 2),
                "heavy_build_1soc_s": round(heavy_s, 2),
                "heavy_build_over_inference": round(heavy_s * 1000.0 / heavy_ms, 1),
                "heavy_build_1soc_stages_s": heavy_stages,
                "build_cost_fit": {"fixed_s": round(fixed_s, 2), "inferences": round(inferences)},
                "load_average": [round(v, 2) for v in os.getloadavg()],
                # interpreter start-up is in both sides of import_seconds: this is the imports
                "cli_import_s": round(startup_s, 2),
                "build_2soc_s": round(two_soc, 2),
                "build_2soc_rounds_s": [round(v, 2) for v in seconds[2]],
                "two_soc_over_one": round(two_soc / one_soc, 3),
                f"peak_rss_{args.hw}_mb": round(rss_small, 1),
                f"peak_rss_{2 * args.hw}_mb": round(rss_large, 1),
                "rss_ratio": round(rss_large / rss_small, 2),
                "targets": {"build_over_inference": 80, "two_soc_over_one": 1.15, "rss_ratio": 2.5},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
