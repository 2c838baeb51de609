"""Stand-in for `python -m ais_bench` (reference §7.1): flags, input file rules, output names,
the exact `[INFO]` Performance Summary lines and `<output>/<prefix>_summary.json`.

It "infers" deterministically: latencies come from a seeded generator around FAKE_AISBENCH_MS
(default 2.0 ms); outputs are filled with a byte pattern of the right size. It refuses oms without
the IMOD header and oms built for another soc than the fake NPU (EE1001), like the runtime.
"""

import argparse
import json
import math
import os
import random
import re
import statistics
import sys
import time

import fakecann
from fakecann import emit


def natural_key(name):
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def percentile(values, q):
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def stat_block(values):
    return {
        "min": min(values),
        "max": max(values),
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "percentile(99%)": percentile(values, 99),
        "count": len(values),
    }


def line(name, block):
    return (
        f"[INFO] {name} (ms): min = {block['min']}, max = {block['max']}, mean = "
        f"{block['mean']}, median = {block['median']}, percentile(99%) = "
        f"{block['percentile(99%)']}"
    )


GIVEN = {"dynamic_batch_size": "dymBatch", "dynamic_image_size": "dymHW", "dynamic_dims": "dymDims"}


def gear_shapes(args, info):
    """({input: shape at the chosen gear}, error). A gear model needs its gear flag and one of
    its gears; a static model refuses gear flags (AISBench #422)."""
    flag = info.get("gear_flag")
    gears = info.get("gears") or []
    chosen = {
        "dymBatch": [args.dymBatch] if args.dymBatch else None,
        "dymHW": [int(v) for v in args.dymHW.split(",")] if args.dymHW else None,
        "dymDims": args.dymDims,
    }
    given = [k for k, v in chosen.items() if v]
    for name in given:
        if flag is None or GIVEN[flag] != name:
            wanted = {v: k for k, v in GIVEN.items()}[name]
            return {}, f"the {wanted} parameter is not specified for model conversion"
    if flag is None:
        return {}, None
    if not given:
        return {}, (
            f"the model was converted with --{flag}; pass --{GIVEN[flag]} with one of its "
            f"gears {gears}"
        )
    templates = {i["name"]: i["shape"] for i in info["inputs"]}
    if flag == "dynamic_dims":
        shapes = {}
        for part in args.dymDims.split(";"):
            name, _, dims = part.rpartition(":")
            shapes[name] = [int(d) for d in dims.split(",")]
        for name, template in templates.items():
            got = shapes.get(name)
            if (
                got is None
                or len(got) != len(template)
                or any(t != -1 and t != g for t, g in zip(template, got))
            ):
                return {}, f"dymDims {args.dymDims} does not fit the model's inputs {templates}"
        values = [g for name in templates for t, g in zip(templates[name], shapes[name]) if t == -1]
        if values not in gears:
            return {}, f"dymDims {args.dymDims} is not one of the model's gears {gears}"
        return shapes, None
    value = chosen[GIVEN[flag]]
    if value not in gears:
        return {}, f"{GIVEN[flag]} {value} is not one of the model's gears {gears}"
    shapes = {}
    for name, template in templates.items():
        filled, k = [], 0
        for d in template:
            if d == -1:
                filled.append(value[k])
                k += 1
            else:
                filled.append(d)
        shapes[name] = filled
    return shapes, None


def fail(text):
    emit(f"[ERROR] {text}")
    return 1


def main():
    p = argparse.ArgumentParser(prog="ais_bench")
    p.add_argument("--model", "--om", required=True)
    p.add_argument("--input", default=None)
    p.add_argument("--output", default=None)
    p.add_argument("--output_dirname", default=None)
    p.add_argument("--outfmt", default="BIN", choices=["BIN", "NPY", "TXT"])
    p.add_argument("--loop", type=int, default=1)
    p.add_argument("--warmup_count", type=int, default=1)
    p.add_argument("--device", default="0")
    p.add_argument("--debug", type=int, default=0)
    p.add_argument("--display_all_summary", type=int, default=0)
    p.add_argument("--batchsize", type=float, default=None)
    p.add_argument("--dymBatch", type=int, default=0)
    p.add_argument("--dymHW", default=None)
    p.add_argument("--dymDims", default=None)
    p.add_argument("--pure_data_type", default="zero", choices=["zero", "random"])
    args = p.parse_args()
    if args.loop < 1:
        return fail("loop must be >= 1")
    paths = {"model": args.model, "input": args.input or "", "output": args.output or ""}
    for flag, path in fakecann.relative_paths(paths):
        return fail(f"--{flag} {path}: no such file or directory (relative to the working dir)")
    soc = fakecann.npu_soc()
    if soc is None:
        return fail("acl init failed: no device (check npu-smi info)")
    with open(args.model, "rb") as handle:
        magic = handle.read(4)
    info = fakecann.read_om(args.model) if magic == b"IMOD" else None
    if info is None:
        emit(
            "E10003: Value [" + args.model + "] for parameter [--model] is invalid. "
            "Reason: invalid om file."
        )
        return fail("load model from file failed, model file is " + args.model)
    if info["soc"] != soc:
        emit(
            f"EE1001: [PID: {os.getpid()}] {fakecann.stamp()} The argument is invalid.Reason: "
            f"ModelCheckCompatibility failed, supported socVersion={soc}, but the model "
            f"socVersion={info['soc']}"
        )
        return fail("load model from file failed")
    shapes, error = gear_shapes(args, info)
    if error:
        emit(f"[ERROR] {error}")
        return fail("ACL: invalid parameter")
    inputs, outputs = info["inputs"], info["outputs"]
    for spec in inputs:
        spec["shape"] = shapes.get(spec["name"], spec["shape"])
    first = inputs[0]["shape"][:1] or [1]
    batch = first[0] if isinstance(first[0], int) and first[0] > 0 else 1
    samples = []  # list of (stem, infiles)
    if args.input:
        paths = args.input.split(",")
        if len(paths) != len(inputs):
            return fail(f"input count {len(paths)} does not match the model's {len(inputs)}")
        lists = []
        for path, spec in zip(paths, inputs):
            if os.path.isdir(path):
                files = sorted(
                    (
                        os.path.join(path, f)
                        for f in os.listdir(path)
                        if f.lower().endswith((".bin", ".npy"))
                    ),
                    key=lambda f: natural_key(os.path.basename(f)),
                )
            else:
                files = [path]
            if not files:
                return fail(f"no input file in {path}")
            tensor = (
                math.prod(max(int(d), 1) for d in spec["shape"]) * fakecann.ITEMSIZE[spec["dtype"]]
            )
            size = os.path.getsize(files[0])
            if size == 0 or tensor % size:
                emit(f"[ERROR] arg0 tensorsize: {tensor} filesize: {size} not match")
                return fail("create input tensors failed")
            per = tensor // size
            lists.append([files[i : i + per] for i in range(0, len(files), per)])
        for i in range(len(lists[0])):
            group = [chunk for lst in lists for chunk in lst[i]] if i < min(map(len, lists)) else []
            if group:
                samples.append((os.path.splitext(os.path.basename(lists[0][i][0]))[0], group))
    else:
        samples = [("pure_infer_data", [])]
    base = float(os.environ.get("FAKE_AISBENCH_MS", "2.0"))
    rng = random.Random(1234)
    times = [round(base * (0.9 + 0.2 * rng.random()), 4) for _ in samples for _ in range(args.loop)]
    prefix = None
    out_dir = None
    if args.output:
        name = args.output_dirname or time.strftime("%Y_%m_%d-%H_%M_%S")
        out_dir = os.path.join(args.output, name)
        os.makedirs(out_dir, exist_ok=True)
        prefix = os.path.join(args.output, name)
    filesinfo = {}
    for index, (stem, infiles) in enumerate(samples):
        outfiles = []
        if out_dir is not None:
            for k, spec in enumerate(outputs):
                dims = [max(int(d), 1) if isinstance(d, int) else 1 for d in spec["shape"]]
                if args.dymBatch and spec["shape"] and not isinstance(spec["shape"][0], int):
                    dims[0] = args.dymBatch
                count = math.prod(dims)
                path = os.path.join(out_dir, f"{stem}_{k}.{args.outfmt.lower()}")
                with open(path, "wb") as handle:
                    handle.write(
                        bytes((index + k + j) % 251 for j in range(count))
                        * fakecann.ITEMSIZE.get(spec["dtype"], 4)
                    )
                outfiles.append(path)
        filesinfo[index] = {"infiles": infiles, "outfiles": outfiles}
    npu = stat_block(times)
    batchsize = args.batchsize if args.batchsize is not None else float(batch)
    throughput = 1000 * batchsize / npu["mean"]
    emit("[INFO] -----------------Performance Summary------------------")
    if args.display_all_summary:
        emit(line("H2D_latency", stat_block([t / 10 for t in times])))
    emit(line("NPU_compute_time", npu))
    if args.display_all_summary:
        emit(line("D2H_latency", stat_block([t / 20 for t in times])))
    emit(
        f"[INFO] throughput 1000*batchsize.mean({batchsize})/NPU_compute_time.mean("
        f"{npu['mean']}): {throughput}"
    )
    emit("[INFO] ------------------------------------------------------")
    if prefix is not None and os.environ.get("FAKE_AISBENCH_NO_JSON") != "1":
        summary = {
            "filesinfo": filesinfo,
            "args": sys.argv,
            "NPU_compute_time": npu,
            "H2D_latency": stat_block([t / 10 for t in times]),
            "D2H_latency": stat_block([t / 20 for t in times]),
            "throughput": throughput,
            "npu_compute_time_list": times,
            "pid": os.getpid(),
        }
        with open(prefix + "_summary.json", "w") as handle:
            json.dump(summary, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
