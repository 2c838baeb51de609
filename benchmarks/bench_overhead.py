"""What our latency measurement costs over a bare ONNX Runtime `session.run` loop.

Prints JSON. In one process, on one model, rounds alternate between:

* `bare`: `for _ in range(n): session.run(None, feeds)` (the baseline; wall time only);
* `time_loop`: `ascend_quant.bench.time_loop` around the same `session.run` on the same session;
* `sim_bench`: the simulator's measuring path, `time_loop(lambda: runner.infer(feeds))` on an
  `OrtRunner` (what `SimBackend.bench` runs); all three use that runner's one session.

Ratios are wall time per inference over the bare loop's, medians over the rounds (alternating
cancels drift such as CPU frequency changes); their quartiles show how noisy the machine is.
Because a busy machine's noise can exceed the effect, the loop's own cost is also measured
directly (time_loop around a no-op vs a bare no-op loop) and expressed as a ratio to the bare
inference time. Target: within 3% (ratio <= 1.03).
`reported_vs_wall` checks that the latencies we report add up to the wall time we spent.

    python benchmarks/bench_overhead.py [--hw 64] [--rounds 30] [--loop 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import tiny_models  # noqa: E402

from ascend_quant.bench import time_loop  # noqa: E402
from ascend_quant.model import random_feeds  # noqa: E402
from ascend_quant.runners.ort import OrtRunner  # noqa: E402

TARGET = 1.03


def _noop() -> None:
    return None


def _quartiles(values: list[float]) -> list[float]:
    q = statistics.quantiles(values, n=4)
    return [q[0], q[2]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hw", type=int, default=64, help="sr_net input size (H = W)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--loop", type=int, default=100, help="inferences per round and method")
    args = parser.parse_args()

    model = tiny_models.sr_net(hw=args.hw)
    runner = OrtRunner(model)
    # One ORT session for all three methods: two sessions of the same model differ by more than
    # the overhead being measured (thread pools, memory placement).
    session = runner._session
    feeds = random_feeds(runner.input_specs())
    clock = time.perf_counter

    def bare() -> tuple[float, float]:
        start = clock()
        for _ in range(args.loop):
            session.run(None, feeds)
        wall = clock() - start
        return wall, wall

    def ours_session() -> tuple[float, float]:
        start = clock()
        samples = time_loop(lambda: session.run(None, feeds), 0, args.loop)
        return clock() - start, sum(samples) / 1000.0

    def ours_sim() -> tuple[float, float]:
        start = clock()
        samples = time_loop(lambda: runner.infer(feeds), 0, args.loop)
        return clock() - start, sum(samples) / 1000.0

    methods = {"bare": bare, "time_loop": ours_session, "sim_bench": ours_sim}
    for method in methods.values():  # warm-up every path once
        method()
    walls: dict[str, list[float]] = {name: [] for name in methods}
    reported: dict[str, list[float]] = {name: [] for name in methods}
    order = list(methods)
    for round_index in range(args.rounds):
        rotated = order[round_index % len(order) :] + order[: round_index % len(order)]
        for name in rotated:
            wall, measured = methods[name]()
            walls[name].append(wall)
            reported[name].append(measured)

    per_inference_us = {n: statistics.median(w) / args.loop * 1e6 for n, w in walls.items()}
    # The loop's own cost, free of inference noise: time_loop around a no-op vs a bare no-op loop.
    noop_n = 200_000
    start = clock()
    for _ in range(noop_n):
        _noop()
    bare_noop = clock() - start
    start = clock()
    time_loop(_noop, 0, noop_n)
    loop_cost_us = max(0.0, (clock() - start - bare_noop) / noop_n * 1e6)
    ratios = {
        n: statistics.median(w / b for w, b in zip(walls[n], walls["bare"]))
        for n in ("time_loop", "sim_bench")
    }
    result = {
        "benchmark": "bench_overhead",
        "model": f"sr_net {args.hw}x{args.hw} (tests/tiny_models.py)",
        "rounds": args.rounds,
        "loop": args.loop,
        "per_inference_us": {k: round(v, 2) for k, v in per_inference_us.items()},
        "ratio_vs_bare": {k: round(v, 4) for k, v in ratios.items()},
        "reported_vs_wall": {
            n: round(statistics.median(r / w for r, w in zip(reported[n], walls[n])), 4)
            for n in ("time_loop", "sim_bench")
        },
        "ratio_spread_p25_p75": {
            n: [round(q, 4) for q in _quartiles([w / b for w, b in zip(walls[n], walls["bare"])])]
            for n in ("time_loop", "sim_bench")
        },
        "time_loop_cost_us_per_inference": round(loop_cost_us, 3),
        "time_loop_cost_ratio": round(1 + loop_cost_us / per_inference_us["bare"], 5),
        "target": TARGET,
        "measured_within_target": all(v <= TARGET for v in ratios.values()),
        "loop_cost_within_target": 1 + loop_cost_us / per_inference_us["bare"] <= TARGET,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
