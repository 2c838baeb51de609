"""Gears: parsing, validation against the model's inputs and the target, and what they derive
(atc's flag and -1 shapes, ais_bench's per-gear flags, concrete shapes, the manifest record)."""

from __future__ import annotations

import pytest

from ascend_quant.errors import UsageError
from ascend_quant.gears import (
    Gears,
    check_target,
    chosen_kind,
    fill,
    make_gears,
    parse_gear_list,
)

IMAGE = {"image": (1, 1, 32, "W")}


def test_parse_each_kind() -> None:
    assert parse_gear_list("1,4,8", "batch") == ((1,), (4,), (8,))
    assert parse_gear_list("32,128;32,256", "image_size") == ((32, 128), (32, 256))
    assert parse_gear_list("16,4;32,8", "dims") == ((16, 4), (32, 8))
    assert parse_gear_list("16;32", "dims") == ((16,), (32,))
    assert parse_gear_list(None, "batch") is None


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [("1,x", "batch", "atc's syntax"), ("32;32,64", "image_size", "is not H,W")],
)
def test_parse_errors(text: str, kind, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_gear_list(text, kind)


def test_batch_gears() -> None:
    gears = make_gears("batch", ((1,), (4,), (8,)), {"a": ("N", 3, 8, 8), "b": ("N", 4)}, {})
    assert gears.template == {"a": (-1, 3, 8, 8), "b": (-1, 4)}
    assert gears.atc_input_shape() == "a:-1,3,8,8;b:-1,4"
    assert gears.atc_flag() == "--dynamic_batch_size=1,4,8"
    assert gears.shapes(1) == {"a": (4, 3, 8, 8), "b": (4, 4)}
    assert gears.aisbench_args(2) == ["--dymBatch", "8"]
    assert gears.labels == ["bs1", "bs4", "bs8"]
    assert gears.calib_index == 2  # the largest by default


def test_image_size_gears_nchw_and_nhwc() -> None:
    gears = make_gears("image_size", ((32, 128), (32, 256)), IMAGE, {}, calib="32,128")
    assert gears.atc_input_shape() == "image:1,1,-1,-1"
    assert gears.atc_flag() == "--dynamic_image_size=32,128;32,256"
    assert gears.shapes(1) == {"image": (1, 1, 32, 256)}
    assert gears.aisbench_args(0) == ["--dymHW", "32,128"]
    assert gears.calib_index == 0 and gears.label(0) == "32x128"
    nhwc = make_gears(
        "image_size", ((8, 8), (16, 16)), {"x": (1, "H", "W", 3)}, {}, input_format="NHWC"
    )
    assert nhwc.template == {"x": (1, -1, -1, 3)}


def test_image_size_leaves_other_inputs_static() -> None:
    gears = make_gears(
        "image_size", ((8, 8), (16, 16)), {"img": (1, 3, "H", "W"), "scale": (1, 2)}, {}
    )
    assert gears.shapes(0) == {"img": (1, 3, 8, 8), "scale": (1, 2)}


def test_dims_gears_from_input_shape_and_symbolic_dims() -> None:
    declared = {"tokens": (1, "seq", 4), "mask": (1, "seq")}
    gears = make_gears("dims", ((16, 16), (32, 32)), declared, {}, input_format="ND")
    assert gears.atc_input_shape() == "tokens:1,-1,4;mask:1,-1"
    assert gears.atc_flag() == "--dynamic_dims=16,16;32,32"
    assert gears.aisbench_args(1) == ["--dymDims", "tokens:1,32,4;mask:1,32"]
    given = {"tokens": (1, -1, 4), "mask": (1, 7)}
    gears = make_gears("dims", ((16,), (32,)), declared, given, input_format="ND")
    assert gears.shapes(0) == {"tokens": (1, 16, 4), "mask": (1, 7)}


def test_fill_dims_runs_across_inputs() -> None:
    assert fill({"a": (-1, 2), "b": (-1,)}, "dims", (5, 6)) == {"a": (5, 2), "b": (6,)}


@pytest.mark.parametrize(
    ("kind", "values", "declared", "given", "fmt", "message"),
    [
        ("batch", ((4,),), {"x": ("N", 3)}, {}, "NCHW", r"needs 2 to 100 \(E10001"),
        ("batch", tuple((i,) for i in range(1, 102)), {"x": ("N", 3)}, {}, "NCHW", "2 to 100"),
        ("batch", ((1,), (1,)), {"x": ("N", 3)}, {}, "NCHW", "twice"),
        ("batch", ((1,), (0,)), {"x": ("N", 3)}, {}, "NCHW", "E10011"),
        ("batch", ((1,), (2,)), {"x": (1, "S")}, {"x": (1, -1)}, "NCHW", "E10018"),
        ("batch", ((1,), (2,)), {"x": ()}, {}, "NCHW", "scalar"),
        ("batch", ((1,), (2,)), {"x": ("N", "S")}, {}, "NCHW", "does not cover it"),
        ("image_size", ((8, 8), (9, 9)), IMAGE, {}, "ND", "NCHW or NHWC"),
        ("image_size", ((8, 8), (9, 9)), {"x": (1, "S")}, {}, "NCHW", "no 4-D input"),
        ("image_size", ((8, 8), (9, 9)), {"x": ("N", 1, 8, 8)}, {"x": (-1, 1, -1, -1)}, "NCHW",
         "E10019"),
        ("dims", ((4,), (8,)), {"x": (1, "S")}, {}, "NCHW", "needs --input-format ND"),
        ("dims", ((4,), (8,)), {"x": (1, 5)}, {}, "ND", "no dim is -1"),
        ("dims", ((4, 4), (8, 8)), {"x": (1, "S")}, {}, "ND", "2 value"),
        ("dims", ((4, 4), (8,)), {"x": (1, "S")}, {}, "ND", "different numbers"),
        ("batch", ((1,), (2,)), {"x": ("N", 3)}, {"y": (1, 3)}, "NCHW", "E10016"),
    ],
)  # fmt: skip
def test_validation_errors(kind, values, declared, given, fmt: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        make_gears(kind, values, declared, given, input_format=fmt)
    assert info.value.hint


def test_mutually_exclusive_e10009() -> None:
    with pytest.raises(UsageError, match="E10009"):
        chosen_kind(batch=(1, 2), image_size=((8, 8), (16, 16)))
    with pytest.raises(UsageError, match="E10009"):
        chosen_kind(batch=(1, 2), extra_args=("--input_shape_range=x:[1~4,3]",))
    assert chosen_kind(dims=((1,), (2,))) == ("dims", ((1,), (2,)))
    assert chosen_kind() == (None, ())


def test_calib_gear_must_be_a_gear() -> None:
    with pytest.raises(UsageError, match="--calib-gear 32,999"):
        make_gears("image_size", ((32, 128), (32, 256)), IMAGE, {}, calib="32,999")


def test_index_and_round_trip() -> None:
    gears = make_gears("image_size", ((32, 128), (32, 256)), IMAGE, {})
    assert gears.index("32x256") == 1 and gears.index("32,128") == 0
    assert gears.index_of({"image": [1, 1, 32, 256]}) == 1
    assert gears.index_of({"image": [1, 1, 32, 100]}) is None
    with pytest.raises(UsageError, match="not one of this model's image_size gears"):
        gears.index("32,100")
    assert Gears.from_record(gears.record()) == gears
    assert Gears.from_record(None) is None


def _target(gears: Gears | None, **over) -> None:
    settings = dict(
        soc="Ascend310P3",
        shape_ranges=True,
        aipp_enabled=False,
        aipp_crop=False,
        aipp_src_size=None,
    )
    settings.update(over)
    check_target(gears, **settings)  # type: ignore[arg-type]


def test_target_rules() -> None:
    dims = make_gears("dims", ((4,), (8,)), {"x": (1, "S")}, {}, input_format="ND")
    image = make_gears("image_size", ((32, 128), (32, 256)), IMAGE, {})
    _target(dims)
    _target(image, aipp_enabled=True)  # static AIPP without crop/padding is fine
    with pytest.raises(UsageError, match=r"AIPP.*dynamic_dims"):
        _target(dims, aipp_enabled=True)
    with pytest.raises(UsageError, match="neither crop nor padding"):
        _target(image, aipp_enabled=True, aipp_crop=True)
    with pytest.raises(UsageError, match="Ascend310B1 does not support shape ranges"):
        _target(
            None,
            soc="Ascend310B1",
            shape_ranges=False,
            extra_args=("--input_shape_range=x:[1~4,3]",),
        )


# ------------------------------------------------------------------ preflight and scripts


def test_preflight_keeps_gear_dims_symbolic_and_runs_every_gear(tmp_path) -> None:
    import onnx
    import tiny_models

    from ascend_quant.config import GearsConfig
    from ascend_quant.model import preflight

    model = tiny_models.save(tiny_models.text_recognizer(height=32), tmp_path / "ocr.onnx")
    config = GearsConfig(image_size=((32, 64), (32, 128)), calib_gear="32x64")
    result = preflight(model, tmp_path / "out", gears_config=config)
    assert result.gears is not None and result.gears.labels == ["32x64", "32x128"]
    assert result.input_shapes == {"image": (1, 1, 32, 64)}  # the calibration gear
    assert result.output_shapes == {"logits": (1, 64, 12)}
    [value] = onnx.load(str(result.model_path)).graph.input
    dims = value.type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == [1, 1, "gear_h", "gear_w"]


def test_preflight_refuses_a_gear_the_graph_cannot_run(tmp_path) -> None:
    import numpy as np
    import tiny_models
    from onnx import TensorProto, helper, numpy_helper

    from ascend_quant.config import GearsConfig
    from ascend_quant.model import preflight

    # Reshape to a constant [1, -1] bakes batch 1 into the graph: batch 4 cannot run
    base = tiny_models.conv_net(batch="N")
    shape = numpy_helper.from_array(np.array([1, 4, 16, 16], dtype=np.int64), "fixed")
    base.graph.initializer.append(shape)
    base.graph.node[-1].output[0] = "pre"
    base.graph.node.append(helper.make_node("Reshape", ["pre", "fixed"], ["output"]))
    del base.graph.output[:]
    base.graph.output.append(
        helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 16, 16])
    )
    path = tiny_models.save(base, tmp_path / "fixed.onnx")
    with pytest.raises(UsageError, match="does not run at gear bs4") as info:
        preflight(path, tmp_path / "out", gears_config=GearsConfig(batch=(1, 4)))
    assert "re-export" in (info.value.hint or "")


# ------------------------------------------------------------------ suggesting gears


def test_suggest_rounds_up_and_covers_the_largest() -> None:
    from ascend_quant.gears import histogram, suggest

    widths = [90, 100, 150, 200, 200, 250]
    assert histogram(widths, 32) == {96: 1, 128: 1, 160: 1, 224: 2, 256: 1}
    assert suggest(widths, 32, 4) == [128, 160, 224, 256]
    assert suggest(widths, 16, 2) == [160, 256]
    assert suggest([], 32) == []


def test_propose_text_line_widths() -> None:
    from ascend_quant.gears import propose_dims_gears, propose_image_gears

    sizes = [(32, 100), (32, 150), (64, 400), (32, 250), (32, 90), (48, 300)]
    proposal = propose_image_gears("image", (1, 1, 32, "W"), sizes)
    assert proposal is not None and proposal.kind == "image_size"
    assert proposal.values == ((32, 128), (32, 160), (32, 224), (32, 256))
    assert proposal.flag() == '--dynamic-image-size "32,128;32,160;32,224;32,256"'
    assert proposal.measured == "width at height 32"
    assert propose_image_gears("image", (1, 1, 32, 100), sizes) is None  # nothing dynamic
    assert propose_image_gears("image", (1, 1, 32, "W"), [(32, 100)] * 3) is None  # one size
    dims = propose_dims_gears("tokens", (1, "seq", 4), [(1, n, 4) for n in (5, 12, 20, 31)])
    assert dims is not None and dims.values == ((16,), (32,)) and dims.kind == "dims"
