"""`build` with data of any kind for any input, in ONE command, FP16 and INT8, simulated."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import tiny_models
from onnx import TensorProto

from ascend_quant.config import BuildConfig, merge
from ascend_quant.errors import UsageError
from ascend_quant.pipeline import build

sys.path.insert(0, str(Path(__file__).parent / "cli"))
from clirun import run_cli

N = 6


def _npys(folder: Path, shape: tuple[int, ...], dtype: str, count: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        value = rng.integers(0, 1000, shape) if dtype == "int64" else rng.standard_normal(shape)
        np.save(folder / f"{i}.npy", value.astype(dtype))
    return folder


def _config(tmp_path: Path, **overrides: object) -> BuildConfig:
    base = {
        "backend": "sim",
        "out": str(tmp_path / "ws"),
        "bench": {"warmup": 1, "loop": 3},
        "calib": {"jobs": 1},
    }
    return merge(BuildConfig(), {**base, **overrides})


def _check_int8(ws: Path, stem: str, inputs: list[tuple[str, str]]) -> str:
    """INT8 really quantized; compression_optimize.cfg lists one .bin per input in input order
    with N; amct_int8.sh passes --data_dir/--data_types per input."""
    manifest = json.loads((ws / "Ascend310P3" / "om" / f"{stem}_int8.json").read_text())
    assert manifest["quantized_layers"] > 0, manifest.get("layers")
    configs = ws / "Ascend310P3" / "configs"
    cfg = (configs / "compression_optimize.cfg").read_text()
    data_dir = re.search(r'^\s*input_data_dir\s*:\s*"?([^"\n]*)"?', cfg, re.M)
    assert data_dir is not None
    files = data_dir.group(1).strip().split(",")
    assert [Path(f).parts[-3] for f in files] == [name for name, _ in inputs]
    assert all(Path(f).is_file() for f in files)
    shapes = re.search(r'^\s*input_shape\s*:\s*"?([^"\n]*)"?', cfg, re.M)
    assert shapes is not None
    parts = shapes.group(1).strip().split(";")
    assert [part.split(":")[0] for part in parts] == [n for n, _ in inputs]
    script = (configs / "amct_int8.sh").read_text()
    dirs = re.search(r"--data_dir=(\S+)", script)
    types = re.search(r"--data_types=(\S+)", script)
    assert dirs is not None and types is not None
    assert [Path(d.strip("'")).parent.name for d in dirs.group(1).split(";")] == [
        n for n, _ in inputs
    ]
    assert types.group(1).strip("'").split(";") == [t for _, t in inputs]
    return shapes.group(1).strip()


@pytest.mark.slow
@pytest.mark.parametrize("timestep", [TensorProto.FLOAT, TensorProto.INT64])
def test_unet_like_builds_in_one_command(tmp_path: Path, timestep: int) -> None:
    model = tiny_models.save(tiny_models.unet_like(timestep), tmp_path / "unet.onnx")
    t_dtype = "int64" if timestep == TensorProto.INT64 else "float32"
    data = tmp_path / "data"
    for which, seed in (("calib", 0), ("eval", 1)):
        _npys(data / which / "sample", (1, 4, 8, 8), "float32", N, seed)
        _npys(data / which / "timestep", (), t_dtype, N, seed)
        _npys(data / which / "encoder_hidden_states", (1, 7, 16), "float32", N, seed)
    config = _config(tmp_path, calib={"jobs": 1, "sources": [str(data / "calib")]})
    config = merge(config, {"eval_sources": [str(data / "eval")]})
    result = build(model, config)
    (soc,) = result.socs
    assert set(soc.artifacts) == {"fp16", "int8", "w8"}  # 310P3: weight-only INT8 too
    _check_int8(
        tmp_path / "ws",
        "unet",
        [("sample", "float32"), ("timestep", t_dtype), ("encoder_hidden_states", "float32")],
    )
    calib_t = json.loads((tmp_path / "ws" / "calib" / "timestep" / "manifest.json").read_text())
    assert calib_t["shape"] == [] and calib_t["dtype"] == t_dtype and calib_t["count"] == N
    assert len(soc.compare["candidates"]) == 3  # fp16, int8, w8


@pytest.mark.slow
def test_vad_like_state_not_split_and_scalar_sr_via_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tiny_models.save(tiny_models.vad_like(), tmp_path / "vad.onnx")
    data = tmp_path / "d"
    for which in ("calib", "eval"):
        _npys(data / which / "input", (1, 32), "float32", N, 2)
        _npys(data / which / "state", (2, 1, 16), "float32", N, 3)
        for i in range(N):
            (data / which / "sr").mkdir(parents=True, exist_ok=True)
            np.save(data / which / "sr" / f"{i}.npy", np.array(16000, np.int64))
    args = ["build", str(model), "--backend", "sim", "--out", str(tmp_path / "ws")]
    args += ["--input-shape", "input:1,32;state:2,1,16", "--loop", "3", "--warmup", "1"]
    for name in ("input", "state", "sr"):
        args += [
            "--calib",
            f"{name}={data / 'calib' / name}",
            "--eval",
            f"{name}={data / 'eval' / name}",
        ]
    code, _out, err = run_cli(capsys, *args)
    assert code in (0, 1), err
    state = json.loads((tmp_path / "ws" / "calib" / "state" / "manifest.json").read_text())
    assert state["shape"] == [2, 1, 16] and state["batch_dim"] is None and state["count"] == N
    inp = json.loads((tmp_path / "ws" / "calib" / "input" / "manifest.json").read_text())
    assert inp["batch_dim"] == 0 and inp["shape"] == [1, 32]
    _check_int8(
        tmp_path / "ws", "vad", [("input", "float32"), ("state", "float32"), ("sr", "int64")]
    )


@pytest.mark.slow
def test_image_and_array_inputs_and_pinned_value(tmp_path: Path) -> None:
    model = tiny_models.save(tiny_models.image_and_vector(), tmp_path / "iv.onnx")
    cond = _npys(tmp_path / "cond", (1, 8), "float32", N, 4)
    held = _npys(tmp_path / "cond_eval", (1, 8), "float32", 4, 5)  # 4 bundled photos
    config = _config(
        tmp_path,
        calib={"jobs": 1, "limit": N},
        inputs={"cond": {"calib": [str(cond)], "eval": [str(held)]}},
    )
    result = build(model, config)
    assert set(result.socs[0].artifacts) == {"fp16", "int8", "w8"}
    _check_int8(tmp_path / "ws", "iv", [("image", "float32"), ("cond", "float32")])
    image = json.loads((tmp_path / "ws" / "calib" / "image" / "manifest.json").read_text())
    assert image["layout"] == "NCHW" and "kind" not in image  # the image path, unchanged
    # pinned: cond is folded into the model, neither calibrated nor evaluated
    pinned = merge(
        config,
        {"inputs": {"cond": {"value": 0.5, "calib": [], "eval": []}}, "out": str(tmp_path / "ws2")},
    )
    again = build(model, pinned)
    pre = json.loads(next((tmp_path / "ws2" / "model").glob("*.json")).read_text())
    assert pre["pinned"] == {"cond": [[0.5] * 8]}
    assert list(
        json.loads((tmp_path / "ws2" / "calib" / "image" / "manifest.json").read_text())["shape"]
    ) == [1, 3, 16, 16]
    assert not (tmp_path / "ws2" / "calib" / "cond").exists() and again.socs[0].artifacts


def test_array_input_without_data_says_what_to_pass(tmp_path: Path) -> None:
    model = tiny_models.save(tiny_models.unet_like(), tmp_path / "unet.onnx")
    with pytest.raises(UsageError) as info:
        build(model, _config(tmp_path))
    assert "input 'sample' (float32 [1, 4, 8, 8]) needs calibration data" in info.value.message
    assert "--calib sample=DIR" in (info.value.hint or "")
    with pytest.raises(UsageError, match="'timestep_' is not an input") as info:
        build(model, _config(tmp_path, inputs={"timestep_": {"kind": "array"}}))
    assert info.value.hint == "did you mean 'timestep'?"


@pytest.mark.slow
def test_random_calibration_is_loud_and_marked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = tiny_models.save(tiny_models.unet_like(TensorProto.INT64), tmp_path / "unet.onnx")
    with pytest.raises(UsageError, match="needs a range"):
        build(model, _config(tmp_path, calib={"jobs": 1, "sources": ["random"], "limit": 4}))
    config = _config(
        tmp_path,
        calib={"jobs": 1, "sources": ["random"], "limit": 4},
        inputs={"timestep": {"range": [0, 1000]}},
    )
    result = build(model, config)
    assert any("RANDOM" in w for w in result.warnings)
    assert "RANDOM" in caplog.text
    manifest = json.loads((tmp_path / "ws" / "calib" / "timestep" / "manifest.json").read_text())
    assert manifest["kind"] == "random" and manifest["count"] == 4
    om = json.loads((tmp_path / "ws" / "Ascend310P3" / "om" / "unet_int8.json").read_text())
    assert set(om["calib_kinds"].values()) == {"random"}
    assert any("RANDOM" in w for w in result.socs[0].compare["warnings"])
    html = Path(result.socs[0].reports["html"]).read_text()
    assert "RANDOM data" in html


def test_constant_calibration_arrays_are_flagged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """All-zero latents saved as calibration data: every INT8 range collapses, so the build
    says why instead of only failing its gates (the eval data are fine, so nothing else would)."""
    model = tiny_models.save(tiny_models.conv_net(channels=4, hw=8), tmp_path / "dec.onnx")
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(3):
        np.save(calib / f"z{i}.npy", np.zeros((1, 4, 8, 8), np.float32))
    held = _npys(tmp_path / "held", (1, 4, 8, 8), "float32", 3, 1)
    config = _config(tmp_path, calib={"jobs": 1, "sources": [str(calib)]})
    config = merge(config, {"eval_sources": [str(held)], "socs": ["Ascend310B1"]})
    result = build(model, config)
    expected = "calibration input 'input' is nearly constant over all 3 samples"
    assert any(expected in w for w in result.warnings)
    assert any(expected in w for w in result.socs[0].compare["warnings"])
    assert expected in caplog.text
    caplog.clear()
    again = build(model, config)  # cached: still said
    assert expected in caplog.text and any(expected in w for w in again.warnings)
