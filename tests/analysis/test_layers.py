"""Per-layer analysis on models built in code with one deliberately sensitive layer."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ascend_quant.analysis.analyze import analyze_models, write_analysis
from ascend_quant.analysis.candidates import load_candidates
from ascend_quant.analysis.layers import RangeSeen, analyze_layers
from ascend_quant.backends.base import ConvertRequest
from ascend_quant.backends.sim import SimBackend
from ascend_quant.comparator import compare_runs
from ascend_quant.config import QuantConfig
from ascend_quant.data.calibset import write_samples
from ascend_quant.onnx_io import save_for_ort
from ascend_quant.runners.ort import OrtRunner

SHAPE = (1, 3, 16, 16)


def _w(shape: tuple[int, ...], seed: int, scale: float = 0.3) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def sensitive_net() -> onnx.ModelProto:
    """4 convs; conv1 makes one channel 300x larger (an outlier channel) that conv2 barely uses.

    Quantizing conv2's input per tensor spends the whole INT8 range on that channel and crushes
    the others: conv2 is the sensitive layer, and conv3/conv4 inherit its error.
    """
    w1 = _w((8, 3, 3, 3), 1)
    w1[0] *= 300.0
    w2 = _w((8, 8, 3, 3), 2)
    w2[:, 0] /= 300.0
    inits = [
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(_w((8,), 11, 0.1), "b1"),
        numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(_w((8,), 12, 0.1), "b2"),
        numpy_helper.from_array(_w((8, 8, 3, 3), 3), "w3"),
        numpy_helper.from_array(_w((8,), 13, 0.1), "b3"),
        numpy_helper.from_array(_w((4, 8, 3, 3), 4), "w4"),
        numpy_helper.from_array(_w((4,), 14, 0.1), "b4"),
    ]
    pads = {"pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", **pads),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", **pads),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], name="conv3", **pads),
        helper.make_node("Relu", ["c3"], ["r3"], name="relu3"),
        helper.make_node("Conv", ["r3", "w4", "b4"], ["output"], name="conv4", **pads),
    ]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(SHAPE))
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 16, 16])
    model = helper.make_model(
        helper.make_graph(nodes, "sensitive", [x], [y], inits),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    return model


def overflow_net() -> onnx.ModelProto:
    """conv -> Mul(1e-4): the conv's output reaches ~1e5 (inf in FP16), the model's does not."""
    inits = [
        numpy_helper.from_array(_w((4, 3, 3, 3), 5) * 3e5, "w"),
        numpy_helper.from_array(np.array(1e-4, np.float32), "s"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], name="big_conv", pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["c", "s"], ["output"], name="scale"),
    ]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(SHAPE))
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 16, 16])
    model = helper.make_model(
        helper.make_graph(nodes, "overflow", [x], [y], inits),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    return model


def _set(root: Path, count: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    samples = [rng.random(SHAPE, dtype=np.float32) for _ in range(count)]
    write_samples(root, "input", iter(samples), sample_shape=SHAPE, dtype="float32", batch_dim=0)
    return root


def _convert(model: Path, calib: Path, out: Path, precision: str, skip: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    request = ConvertRequest(
        model=model,
        source_sha256="0" * 64,
        input_shapes={"input": SHAPE},
        soc="Ascend310P3",
        precision=precision,
        out_dir=out,
        name="m",
        calib_dirs={"input": calib},
        quant=QuantConfig(skip_layers=skip),
    )
    return SimBackend().convert(request).path


@pytest.fixture(scope="module")
def built(tmp_path_factory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("sensitive")
    model = save_for_ort(sensitive_net(), root / "sensitive.onnx")
    calib, evals = _set(root / "calib", 8, 1), _set(root / "eval", 4, 2)
    oms = {p: _convert(model, calib, root / "om", p) for p in ("fp16", "int8")}
    analysis = analyze_models(model, oms, {"input": evals})
    return model, calib, evals, oms, analysis


def test_the_sensitive_layer_ranks_first_by_isolated_error(built) -> None:
    *_, analysis = built
    ranking = analysis.ranking("int8")
    assert ranking[0].name == "conv2"
    assert {x.name for x in ranking} == {"conv1", "conv2", "conv3", "conv4"}
    assert ranking[0].isolated_sqnr < ranking[1].isolated_sqnr - 20
    assert analysis.suggested_skips()[0] == "conv2"
    assert any(line.startswith("conv2 alone: SQNR") for line in analysis.advice)
    assert analysis.flagged() == ["conv2"]
    assert any(
        line.startswith("INT8 accumulated error starts at conv2") for line in analysis.advice
    )


def test_a_downstream_layer_inherits_error_it_does_not_cause(built) -> None:
    *_, analysis = built
    conv3 = next(x for x in analysis.layers["int8"] if x.name == "conv3")
    assert conv3.accumulated_sqnr < 10  # high accumulated error ...
    assert conv3.isolated_sqnr > 30  # ... but low isolated error
    conv1 = next(x for x in analysis.layers["int8"] if x.name == "conv1")
    assert conv1.accumulated_sqnr == pytest.approx(conv1.isolated_sqnr)  # nothing upstream


def test_skipping_the_ranked_first_layer_helps_most(built, tmp_path) -> None:
    model, calib, evals, _oms, analysis = built
    feeds = [{"input": s} for s in _samples(evals)]
    cosines = {}
    with OrtRunner(model) as golden:
        for layer in ("conv1", "conv2", "conv3", "conv4"):
            om = _convert(model, calib, tmp_path / layer, "int8", (layer,))
            with SimBackend().open(om) as runner:
                result = compare_runs(golden, {"int8": runner}, feeds)
            cosines[layer] = result.result("int8", "output")["cosine"]
    best = max(cosines, key=lambda k: cosines[k])
    assert best == analysis.ranking("int8")[0].name == "conv2", cosines


def _samples(root: Path) -> list[np.ndarray]:
    from ascend_quant.data.calibset import CalibSet

    return list(CalibSet.load(root).iter_samples())


def test_outputs_per_precision_and_fp16_is_benign(built) -> None:
    *_, analysis = built
    assert analysis.samples == 4
    assert analysis.outputs["fp16"]["output"]["cosine"] > 0.9999
    assert analysis.outputs["int8"]["output"]["cosine"] < 0.95
    assert not analysis.overflowing() and analysis.keep_dtype_cfg() == ""
    fp16 = analysis.layers["fp16"]
    assert [x.name for x in fp16] == [n.name for n in sensitive_net().graph.node]
    assert all(x.isolated_sqnr > 50 for x in fp16)


def test_ranking_feeds_the_tuning_search(built) -> None:
    *_, analysis = built
    candidates = analysis.candidates("int8")
    assert candidates[0].name == "conv2"
    assert sum(c.cost for c in candidates) == pytest.approx(1.0)
    assert candidates[0].sensitivity > candidates[-1].sensitivity
    conv1 = next(x for x in analysis.layers["int8"] if x.name == "conv1")
    assert conv1.macs == 16 * 16 * 8 * 3 * 3 * 3
    assert conv1.range_used is not None and conv1.clip_fraction is not None


def test_written_outputs_are_ready_to_use(built, tmp_path) -> None:
    *_, analysis = built
    paths = write_analysis(analysis, tmp_path)
    data = json.loads(paths["analysis.json"].read_text())
    assert data["ranking"]["int8"][0] == "conv2" and data["skip_layers"][0] == "conv2"
    assert 'skip_layers = ["conv2"' in paths["skip_layers.toml"].read_text()
    assert paths["skip_layers.cfg"].read_text().startswith('skip_layers: "conv2"')
    assert "keep_dtype.cfg" not in paths


def test_fp16_overflow_gets_a_keep_dtype_line(tmp_path) -> None:
    model = save_for_ort(overflow_net(), tmp_path / "overflow.onnx")
    calib = _set(tmp_path / "calib", 2, 1)
    om = _convert(model, calib, tmp_path / "om", "fp16")
    analysis = analyze_models(model, {"fp16": om}, {"input": calib})
    assert [x.name for x in analysis.overflowing()] == ["big_conv"]
    assert analysis.keep_dtype_cfg() == "big_conv\n"
    assert analysis.advice[0].startswith("FP16 overflow at big_conv")
    paths = write_analysis(analysis, tmp_path / "out")
    assert paths["keep_dtype.cfg"].read_text() == "big_conv\n"
    big = analysis.layers["fp16"][0]
    assert big.accumulated["golden_over_fp16"] > 0 and big.isolated["nonfinite"] > 0


def test_real_oms_say_what_cannot_be_compared(built, tmp_path) -> None:
    model, *_ = built
    real = tmp_path / "m_int8.om"
    head = bytearray(256)
    head[0:4] = b"IMOD"
    struct.pack_into("<I", head, 4, 256)
    real.write_bytes(bytes(head))
    golden = onnx.load(str(model))
    candidates, notes = load_candidates(golden, {"int8": real})
    assert candidates == [] and "no AMCT fake-quant model" in notes[0]
    fake = tmp_path / "work" / "m_int8" / "amct" / "m_fake_quant_model.onnx"
    fake.parent.mkdir(parents=True)
    fake.write_bytes(model.read_bytes())
    fp16 = tmp_path / "m_fp16.om"
    fp16.write_bytes(real.read_bytes())
    candidates, notes = load_candidates(golden, {"int8": real, "fp16": fp16})
    assert [c.precision for c in candidates] == ["int8", "fp16"]
    assert "fake-quant" in notes[0] and "FP16 rounding" in notes[1]


def test_memory_is_streamed_from_an_iterator(built) -> None:
    model, _calib, evals, oms, _analysis = built
    golden = onnx.load(str(model))
    candidates, _ = load_candidates(golden, oms)
    consumed = []

    def feeds():  # type: ignore[no-untyped-def]
        for sample in _samples(evals):
            consumed.append(1)
            yield {"input": sample}

    analysis = analyze_layers(golden, candidates, feeds())
    assert analysis.samples == len(consumed) == 4


def _layer(name: str, index: int, isolated: dict, accumulated: dict | None = None):
    from ascend_quant.analysis.layers import LayerError

    return LayerError(
        name, "Conv", "fp16", index, f"{name}_out", False, accumulated or {}, isolated, macs=1
    )


def test_overflowing_layer_ranks_first_although_its_sqnr_reads_exact() -> None:
    from ascend_quant.analysis.layers import LayerAnalysis

    fine = _layer("fine", 0, {"sqnr_db": 30.0})
    inf_out = _layer("inf_out", 1, {"sqnr_db": None, "nonfinite": 3})
    big = _layer("big", 2, {"sqnr_db": None}, {"golden_over_fp16": 1})
    analysis = LayerAnalysis(samples=1, layers={"fp16": [fine, inf_out, big]}, outputs={})
    assert [x.name for x in analysis.ranking("fp16")] == ["inf_out", "big", "fine"]
    cands = analysis.candidates("fp16")
    assert [c.name for c in cands] == ["inf_out", "big", "fine"]
    assert cands[0].sensitivity > cands[2].sensitivity and cands[1].sensitivity > 0


def test_clip_fraction_counts_values_beyond_half_a_step() -> None:
    """A value within half an int8 step past the range rounds to the end level: not clipped."""
    seen = RangeSeen(0.0, 0.999999)  # an IFMR range ends a hair below the max it saw
    seen.update(np.array([0.0, 0.5, 1.0, 1.0, 1.01, -0.01], np.float32))
    assert seen.outside == 2 and seen.fraction == pytest.approx(2 / 6)
    assert (seen.seen_min, seen.seen_max) == (pytest.approx(-0.01), pytest.approx(1.01))
