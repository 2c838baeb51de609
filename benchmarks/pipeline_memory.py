"""Peak memory of `compare --pipeline` for N vs 8N samples (target: ratio within 1.1x).

`evaluate_pipeline` writes the golden's final outputs to files, then runs every mix sample by
sample into accumulators and keeps only the samples the report shows (the first 8 and each
mix's worst), so its memory must not grow with the number of samples. The pipeline is built in
code: two components (a 3x3 conv at 64x64, then a conv + DepthToSpace upscaling x2 to 128x128,
like the SR example) and two mixes (both FP16; the upscaler W8), simulated. The components are
built once (cached stages); each evaluation, and its report, runs in a fresh subprocess that
reports its wall time and RSS high-water mark (`ru_maxrss`). Prints JSON.

    .venv/bin/python benchmarks/pipeline_memory.py [--n 16] [--hw 64]
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from _measure import n_and_8n, print_report, rss_verdict, run_child

FUNCTION = '''
import numpy as np

def run(runners, index):
    """Noise -> first (denoise-like conv) -> second (x2 upscaler)."""
    x = np.random.default_rng(index).random((1, 3, {hw}, {hw}), dtype=np.float32)
    mid = np.clip(runners["first"].infer({{"input": x}})["output"], 0.0, 1.0)
    return {{"image": runners["second"].infer({{"input": mid}})["output"], "mid": mid}}
'''

CHILD = """
import resource, sys, time
from pathlib import Path
from ascend_quant.mixes import evaluate_pipeline, load_pipeline_spec
from ascend_quant.report import write_pipeline_report
toml, samples, out = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
started = time.perf_counter()
spec = load_pipeline_spec(toml, overrides={"samples": samples})
result, outputs = evaluate_pipeline(spec)
write_pipeline_report(out, result, outputs, title="pipeline memory")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - started,
      result.samples, sum(len(o) for o in outputs.values()))
"""


def conv_model(path: Path, hw: int, upscale: bool, seed: int) -> None:
    """A float32 [1, 3, hw, hw] model: a 3x3 conv, or a conv to 12 channels + DepthToSpace x2."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ascend_quant.onnx_io import save_for_ort

    rng = np.random.default_rng(seed)
    channels = 12 if upscale else 3
    weight = (rng.normal(0, 0.2, (channels, 3, 3, 3)) + 0).astype(np.float32)
    weight[:, :, 1, 1] += 1.0 / 3.0
    nodes = [helper.make_node("Conv", ["input", "w"], ["conv"], pads=[1, 1, 1, 1])]
    side = hw
    if upscale:
        nodes.append(helper.make_node("DepthToSpace", ["conv"], ["output"], blocksize=2))
        side = 2 * hw
    else:
        nodes.append(helper.make_node("Identity", ["conv"], ["output"]))
    graph = helper.make_graph(
        nodes,
        "up" if upscale else "first",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, hw, hw])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, side, side])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    save_for_ort(model, path)


def _evaluate(toml: Path, samples: int, out: Path) -> dict[str, float]:
    run = run_child(CHILD, toml, samples, out, fields=2)
    count, held = run.fields
    return {
        "samples": int(count),
        "samples_held_for_the_report": int(held),  # summed over "fp32" and the mixes
        "peak_rss_mb": run.peak_rss_mb,
        "evaluate_s": run.seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=16, help="N (the large run uses 8N)")
    parser.add_argument("--hw", type=int, default=64, help="input size of the first component")
    args = parser.parse_args(argv)
    from ascend_quant.mixes import evaluate_pipeline, load_pipeline_spec

    with tempfile.TemporaryDirectory(prefix="aq-pipeline-") as tmp:
        work = Path(tmp)
        conv_model(work / "first.onnx", args.hw, upscale=False, seed=0)
        conv_model(work / "second.onnx", args.hw, upscale=True, seed=1)
        (work / "membench.py").write_text(FUNCTION.format(hw=args.hw))
        bench = "build = { bench = { duration_s = 0.05, min_loop = 1, warmup = 0 } }"
        toml = work / "pipeline.toml"
        toml.write_text(
            textwrap.dedent(
                f"""
                [pipeline]
                function = "membench:run"
                samples = 1
                backend = "sim"
                out = "{work / "out"}"

                [pipeline.components.first]
                model = "first.onnx"
                precision = "fp16"
                {bench}

                [pipeline.components.second]
                model = "second.onnx"
                precision = "fp16"
                {bench}

                [pipeline.mixes]
                "second-w8" = {{ second = "w8" }}
                """
            )
        )
        evaluate_pipeline(load_pipeline_spec(toml))  # builds every component once (cached)
        started = time.perf_counter()
        runs = {
            label: _evaluate(toml, count, work / f"report_{label}")
            for label, count in n_and_8n(args.n)
        }
        total_s = time.perf_counter() - started
    print_report(
        {
            "benchmark": "pipeline_memory",
            "pipeline": f"conv {args.hw}x{args.hw} -> conv + DepthToSpace x2, 2 mixes (sim)",
            "n": runs["n"],
            "8n": runs["8n"],
            "total_s": round(total_s, 1),
            **rss_verdict(runs, 1.1),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
