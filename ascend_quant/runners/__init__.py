"""Things that infer, behind one contract (`base.Runner`).

`ort.OrtRunner`: ONNX Runtime on the CPU (FP32 golden, simulated .om payloads);
`aisbench.AisBenchRunner`: a real .om on an NPU through ais_bench's Python API;
`timing`: the latency loop and statistics. This floor imports nothing above `tensors.py`.
"""

from ascend_quant.runners.base import Feeds, Runner, check_feeds

__all__ = ["Feeds", "Runner", "check_feeds"]
