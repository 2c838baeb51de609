"""What `build --tune` costs in trials and time, against a full linear scan.

The baseline is what a user does by hand (and what a per-layer sensitivity script does): build
once with each quantizable layer alone kept in float, N trials, then keep the layers that helped.
Tune needs the baseline trial, one trial with the largest allowed prefix of the ranking in
float, and about log2(N) trials per layer that must stay in float: O(k log N).

1. The search alone (analysis/tune.py) with a fake evaluator that passes when k given layers
   are in float, and a noisy ranking (the needed layers somewhere in the top quarter): trials for
   N in 16..1024 and k in 1..4, against N + 1 for the scan.
2. The real thing on the simulator: `outlier_chain(N, k)` models (tests/tune_models.py: N 3x3
   convolutions, k of them fed an outlier channel so INT8 fails until they are in float), built
   with `--tune`; the tune stage's trials and seconds against a linear scan of N real trials
   (convert + compare, the same evaluator the tune stage uses) in the same run.

Prints JSON.    python benchmarks/tune_cost.py [--real-n 8 16 32] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tune_models: the models the tests tune

import tune_models  # noqa: E402

from ascend_quant.analysis.trials import TrialEvaluator  # noqa: E402
from ascend_quant.analysis.tune import Candidate, Delta, Limits, Trial, tune  # noqa: E402
from ascend_quant.backends import get_backend  # noqa: E402
from ascend_quant.config import BuildConfig, merge  # noqa: E402
from ascend_quant.golden import GoldenSet  # noqa: E402
from ascend_quant.pipeline import build  # noqa: E402


def synthetic(n: int, k: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    names = [f"L{i}" for i in range(n)]
    needed = set(rng.sample(names, k))
    quarter = max(k, n // 4)
    top = rng.sample(range(quarter), k)  # where the needed layers land in the ranking
    order = [name for name in names if name not in needed]
    rng.shuffle(order)
    for position, name in sorted(zip(top, sorted(needed))):
        order.insert(position, name)
    ranking = [Candidate(name, float(n - i), 1.0 / n) for i, name in enumerate(order)]

    def evaluate(delta: Delta) -> Trial:
        missing = len(needed - set(delta.floats))
        return Trial(missing == 0, -0.01 * missing)

    result = tune(ranking, evaluate, limits=Limits(max_float=1.0))
    assert result.best is not None and set(result.best.delta.floats) == needed
    return {
        "n": n,
        "k": k,
        "tune_trials": len(result.trials),
        "linear_scan_trials": n + 1,
        "k_log2_n": round(k * math.log2(n), 1),
    }


def _config(out: Path, tune_on: bool) -> BuildConfig:
    return merge(
        BuildConfig(),
        {
            "backend": "sim",
            "out": str(out),
            "bench": {"warmup": 1, "loop": 2},
            "calib": {"limit": 8, "jobs": 1},
            "tune": {"enabled": tune_on, "max_float": 1.0},
        },
    )


def real(n: int, sensitive: tuple[int, ...], work: Path) -> dict[str, object]:
    path = tune_models.save(tune_models.outlier_chain(n, sensitive, hw=16), work / f"m{n}.onnx")
    ws = work / f"ws{n}_{len(sensitive)}"
    result = build(path, _config(ws, True))
    soc = result.socs[0]
    stage = next(r for r in result.stages if r.stage == "tune")
    int8 = soc.tune["int8"]
    found = sorted(int8["delta"]["floats"])
    # The linear scan: each quantizable layer alone in float, with the tune stage's evaluator.
    model = next((ws / "model").glob("*.sim.onnx"))
    evaluator = TrialEvaluator(
        config=_config(ws, False),
        precision="int8",
        backend=get_backend("sim"),
        source=path,
        model=model,
        source_sha256="",
        input_shapes={"input": (1, 3, 16, 16)},
        soc=soc.soc,
        calib_dirs={"input": ws / "calib" / "input"},
        eval_dirs={"input": ws / "eval" / "input"},
        work_dir=work / "scan",
        golden=GoldenSet.load(ws / "golden"),
    )
    started = time.perf_counter()
    singles = {}
    for i in range(n):
        singles[f"conv{i}"] = evaluator(Delta.of(floats=[f"conv{i}"])).passed
    scan_s = time.perf_counter() - started
    return {
        "n": n,
        "sensitive": [f"conv{i}" for i in sensitive],
        "found": found,
        "passed": int8["passed"],
        "tune_trials": int8["trials"],
        "tune_stage_s": round(stage.seconds, 2),
        "linear_scan_trials": n,
        "linear_scan_s": round(scan_s, 2),
        "time_ratio": round(stage.seconds / scan_s, 3),
        "single_layer_passes": sorted(k for k, v in singles.items() if v),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--real-n", type=int, nargs="*", default=[8, 16, 32])
    parser.add_argument("--quick", action="store_true", help="the search alone, no real builds")
    args = parser.parse_args()
    report: dict[str, object] = {
        "synthetic": [
            synthetic(n, k, seed=n * 10 + k) for n in (16, 64, 256, 1024) for k in (1, 2, 4)
        ]
    }
    if not args.quick:
        with tempfile.TemporaryDirectory() as tmp:
            rows = []
            for n in args.real_n:
                rows.append(real(n, (n // 2,), Path(tmp)))
                rows.append(real(n, (2, n - 2), Path(tmp)))
            report["real"] = rows
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
