"""Capture calibration data from a running multi-step loop, then build FP16 and INT8 from it.

A toy "denoiser" (latents [1,4,16,16], an int64 timestep, a conditioning vector [1,8]) runs a
20-step loop on ONNX Runtime, the way a diffusion pipeline calls its UNet. Wrapping the session
in `RecordingSession` records the feeds of the middle steps (8..12 of every run) as calib sets;
one `build` then converts and measures the model on them. The held-apart evaluation data come
from a second, differently seeded run.

    python examples/arrays/capture_and_build.py [--out WORKDIR] [--backend sim]

Only numpy, onnx and onnxruntime are needed (the model is built in code).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from ascend_quant.data import Recorder, RecordingSession
from ascend_quant.onnx_io import save_for_ort, to_ort_bytes

STEPS = 20
WINDOW = (8, 12)  # the middle steps, as the Ascend Stable Diffusion recipes calibrate


def denoiser() -> onnx.ModelProto:
    """latents - 0.1 * eps(latents, timestep, cond): a conv net with a time embedding."""
    rng = np.random.default_rng(0)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), name)

    inits = [
        weight("w1", 16, 4, 3, 3),
        weight("w_t", 1, 16),
        weight("w_c", 8, 16),
        weight("w2", 4, 16, 3, 3),
        numpy_helper.from_array(np.array([1, 16, 1, 1], np.int64), "chan"),
        numpy_helper.from_array(np.array([1, 1], np.int64), "one"),
        numpy_helper.from_array(np.array(1e-3, np.float32), "t_scale"),
        numpy_helper.from_array(np.array(0.1, np.float32), "step"),
    ]
    nodes = [
        helper.make_node("Conv", ["latents", "w1"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("Cast", ["timestep"], ["t"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["t", "t_scale"], ["t_s"]),
        helper.make_node("Reshape", ["t_s", "one"], ["t_2d"]),
        helper.make_node("MatMul", ["t_2d", "w_t"], ["t_e"]),
        helper.make_node("MatMul", ["cond", "w_c"], ["c_e"]),
        helper.make_node("Add", ["t_e", "c_e"], ["tc"]),
        helper.make_node("Sin", ["tc"], ["tc_s"]),
        helper.make_node("Reshape", ["tc_s", "chan"], ["tc_c"]),
        helper.make_node("Add", ["h", "tc_c"], ["h_t"]),
        helper.make_node("Relu", ["h_t"], ["h_r"]),
        helper.make_node("Conv", ["h_r", "w2"], ["eps"], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["eps", "step"], ["delta"]),
        helper.make_node("Sub", ["latents", "delta"], ["next_latents"]),
    ]
    graph = helper.make_graph(
        nodes,
        "denoiser",
        [
            helper.make_tensor_value_info("latents", TensorProto.FLOAT, [1, 4, 16, 16]),
            helper.make_tensor_value_info("timestep", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond", TensorProto.FLOAT, [1, 8]),
        ],
        [helper.make_tensor_value_info("next_latents", TensorProto.FLOAT, [1, 4, 16, 16])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run_pipeline(session: ort.InferenceSession | RecordingSession, seed: int, runs: int) -> None:
    """The user's loop: `runs` generations of STEPS denoising steps each."""
    rng = np.random.default_rng(seed)
    for _ in range(runs):
        latents = rng.standard_normal((1, 4, 16, 16)).astype(np.float32)
        cond = rng.standard_normal((1, 8)).astype(np.float32)
        for step in range(STEPS):
            timestep = np.array(1000 - 50 * step, np.int64)
            (latents,) = session.run(None, {"latents": latents, "timestep": timestep, "cond": cond})


def capture(model_path: Path, out: Path, seed: int, runs: int) -> dict[str, Path]:
    session = ort.InferenceSession(to_ort_bytes(onnx.load(str(model_path))))
    with Recorder(out, model_path, period=STEPS, steps=WINDOW) as recorder:
        run_pipeline(RecordingSession(session, recorder), seed, runs)
    print(f"recorded {recorder.kept} of {recorder.calls} calls into {out}")
    return recorder.sets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("arrays-example"))
    parser.add_argument("--backend", default="sim", help="sim (CPU simulation) or atc")
    parser.add_argument("--runs", type=int, default=4, help="generations to record")
    args = parser.parse_args(argv)
    work: Path = args.out
    model = save_for_ort(denoiser(), work / "denoiser.onnx")
    capture(model, work / "calib", seed=1, runs=args.runs)
    capture(model, work / "eval", seed=2, runs=1)
    command = [
        sys.executable, "-m", "ascend_quant", "build", str(model),
        "--backend", args.backend, "--out", str(work / "build"),
        "--calib", str(work / "calib"), "--eval", str(work / "eval"),
        "--loop", "5", "--warmup", "1",
    ]  # fmt: skip
    print("$", " ".join(command[1:]))
    return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
