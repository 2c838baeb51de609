"""calib: discovery, subsets, the calib set format, reuse, bad input and atomic replacement."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import tiny_models
from onnx import TensorProto, helper
from PIL import Image

from ascend_quant.config import CalibConfig, PreprocessConfig
from ascend_quant.data.calibset import CalibSet
from ascend_quant.data.images import discover, make_calib_set, select
from ascend_quant.errors import UsageError
from ascend_quant.onnx_io import save_for_ort


def write_png(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (3, 2)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path)
    return path


def solid_dir(root: Path, count: int) -> Path:
    for i in range(count):
        write_png(root / f"img{i}.png", (i, 2 * i, 3 * i))
    return root


@pytest.fixture
def warnings_seen(caplog: pytest.LogCaptureFixture):  # type: ignore[no-untyped-def]
    """Library warnings, even if the CLI has turned off propagation of the package logger."""
    logger = logging.getLogger("ascend_quant")
    logger.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.WARNING)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


PRE = PreprocessConfig(size=(2, 3), resample="nearest", scale=1.0)


def make(out: Path, sources: list[Path] | list[str], **kw: object) -> tuple[CalibSet, bool]:
    calib = CalibConfig(sources=tuple(str(s) for s in sources), jobs=1, **kw)  # type: ignore[arg-type]
    return make_calib_set(out, PRE, calib)


# ---------------------------------------------------------------- discovery


def test_discover_dirs_recursive_sorted_hidden_skipped(tmp_path: Path) -> None:
    for rel in ["b/2.jpg", "a.PNG", "b/1.tiff", "c.txt.bak", ".hidden.jpg", ".git/x.png", "z.webp"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    names = [p.relative_to(tmp_path).as_posix() for p in discover([str(tmp_path)])]
    assert names == ["a.PNG", "b/1.tiff", "b/2.jpg", "z.webp"]


def test_discover_globs_and_list_files(tmp_path: Path) -> None:
    for rel in ["imgs/1.jpg", "imgs/2.bmp", "imgs/sub/3.jpeg", "other/4.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    got = discover([str(tmp_path / "imgs/**/*.jp*g")])
    assert [p.name for p in got] == ["1.jpg", "3.jpeg"]
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "cal.txt").write_text(
        "# calibration images\n../other/4.png\n\n  ../imgs/2.bmp   # a comment\n../imgs/1.jpg\n"
    )
    got = discover([str(lists / "cal.txt")])
    assert [p.name for p in got] == ["4.png", "2.bmp", "1.jpg"]
    # a source listed twice keeps its first place
    got = discover([str(lists / "cal.txt"), str(tmp_path / "imgs")])
    assert [p.name for p in got] == ["4.png", "2.bmp", "1.jpg", "3.jpeg"]


def test_discover_relative_to_base(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    assert discover(["a.jpg"], base=tmp_path) == [tmp_path / "a.jpg"]


def test_discover_reports_every_missing_entry(tmp_path: Path) -> None:
    (tmp_path / "l.txt").write_text("missing1.jpg\nnote.gif\n")
    (tmp_path / "note.gif").write_bytes(b"GIF89a")
    with pytest.raises(UsageError) as info:
        discover([str(tmp_path / "l.txt"), str(tmp_path / "nope")])
    message = info.value.message
    assert f"{tmp_path / 'l.txt'}:1: missing1.jpg does not exist" in message
    assert "l.txt:2" in message and "unsupported file type '.gif'" in message
    assert f"{tmp_path / 'nope'} does not exist" in message


def test_no_images_found_names_where_it_looked(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"no images found in .*empty") as info:
        discover([str(tmp_path / "empty"), str(tmp_path / "*.png")])
    assert str(tmp_path / "*.png") in info.value.message
    assert ".jpg" in (info.value.hint or "")


def test_select_is_deterministic_and_keeps_order() -> None:
    paths = [Path(f"{i}.jpg") for i in range(50)]
    a, b = select(paths, 10, 7), select(paths, 10, 7)
    assert a == b and len(a) == 10
    assert a == sorted(a, key=lambda p: int(p.stem))
    assert select(paths, 10, 8) != a
    assert select(paths, None, 0) == paths and select(paths, 99, 0) == paths
    with pytest.raises(UsageError):
        select(paths, 0, 0)


# ---------------------------------------------------------------- the calib set format


def test_exact_bytes_list_batches_padding_and_manifest(tmp_path: Path) -> None:
    src = solid_dir(tmp_path / "src", 3)
    out = tmp_path / "out"
    calib_set, reused = make(out, [src], batch=2)
    assert not reused
    assert calib_set.sample_shape == (1, 3, 2, 3) and calib_set.dtype == "float32"
    names = [f.name for f in calib_set.sample_files]
    assert names == ["00000_img0.bin", "00001_img1.bin", "00002_img2.bin"]
    # sample 2 is the solid colour (2, 4, 6), scale 1, NCHW, float32 little-endian
    expected = np.array([2.0] * 6 + [4.0] * 6 + [6.0] * 6, dtype="<f4").tobytes()
    assert (out / "samples" / "00002_img2.bin").read_bytes() == expected
    assert (out / "samples.list").read_text().splitlines() == [f"samples/{n}" for n in names]
    batches = sorted((out / "batches_bs2").iterdir())
    assert [b.name for b in batches] == ["00000.bin", "00001.bin"]
    sample = {i: (out / "samples" / n).read_bytes() for i, n in enumerate(names)}
    assert batches[0].read_bytes() == sample[0] + sample[1]
    assert batches[1].read_bytes() == sample[2] + sample[0]  # padded from the start
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "ascend-quant-calib/1"
    assert manifest["shape"] == [1, 3, 2, 3] and manifest["dtype"] == "float32"
    assert manifest["layout"] == "NCHW" and manifest["batch"] == 2
    assert manifest["input_name"] == "input" and manifest["tool_version"]
    assert manifest["preprocess"]["size"] == [2, 3] and manifest["preprocess"]["scale"] == 1.0
    assert manifest["samples_dir"] == "samples" and manifest["list_file"] == "samples.list"
    assert manifest["batch_dir"] == "batches_bs2"
    assert manifest["batch_files"] == ["batches_bs2/00000.bin", "batches_bs2/00001.bin"]
    assert manifest["padded_samples"] == 1 and len(manifest["params_sha256"]) == 64
    entry = manifest["samples"][2]
    assert entry["source"] == str(src / "img2.png")
    assert entry["source_sha256"] == hashlib.sha256((src / "img2.png").read_bytes()).hexdigest()
    assert entry["file"] == "samples/00002_img2.bin"
    assert entry["sha256"] == hashlib.sha256(expected).hexdigest()
    assert (entry["width"], entry["height"]) == (3, 2)
    assert not (out / "samples.info").exists()
    raw = (out / "manifest.json").read_bytes()
    assert calib_set.manifest_sha256 == hashlib.sha256(raw).hexdigest()


def test_calibset_load_and_iterators(tmp_path: Path) -> None:
    make(tmp_path / "out", [solid_dir(tmp_path / "src", 3)], batch=2)
    calib_set = CalibSet.load(tmp_path / "out")
    assert calib_set.samples_dir == tmp_path / "out" / "samples"
    samples = list(calib_set.iter_samples())
    assert [s.shape for s in samples] == [(1, 3, 2, 3)] * 3
    assert samples[1][0, :, 0, 0].tolist() == [1.0, 2.0, 3.0]
    batches = list(calib_set.iter_batches())
    assert [b.shape for b in batches] == [(2, 3, 2, 3)] * 2
    assert np.array_equal(batches[1][1], samples[0][0])


def test_calibset_load_rejects_broken_sets(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no manifest\.json"):
        CalibSet.load(tmp_path)
    out = tmp_path / "out"
    make(out, [solid_dir(tmp_path / "src", 2)])
    victim = out / "samples" / "00001_img1.bin"
    victim.write_bytes(victim.read_bytes()[:-4])
    with pytest.raises(UsageError, match="has 68 bytes, expected 72"):
        CalibSet.load(out)
    victim.unlink()
    with pytest.raises(UsageError, match="is missing"):
        CalibSet.load(out)
    (out / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(UsageError, match="format"):
        CalibSet.load(out)


def test_info_file_and_options(tmp_path: Path) -> None:
    src = solid_dir(tmp_path / "src", 2)
    pre = PreprocessConfig(size=(4, 5), layout="NHWC", dtype="uint8", scale=1.0, color="bgr")
    calib_set, _ = make_calib_set(
        tmp_path / "out", pre, CalibConfig(sources=(str(src),), jobs=1), info=True
    )
    assert calib_set.sample_shape == (1, 4, 5, 3) and calib_set.dtype == "uint8"
    first = next(calib_set.iter_samples())
    assert first[0, 0, 0].tolist() == [0, 0, 0]
    assert list(calib_set.iter_samples())[1][0, 3, 4].tolist() == [3, 2, 1]  # BGR of (1, 2, 3)
    info = (tmp_path / "out" / "samples.info").read_text().splitlines()
    assert info == ["0 samples/00000_img0.bin 5 4", "1 samples/00001_img1.bin 5 4"]


def test_limit_and_seed_pick_the_same_subset(tmp_path: Path) -> None:
    src = solid_dir(tmp_path / "src", 8)
    a, _ = make(tmp_path / "a", [src], limit=3, seed=5)
    b, _ = make(tmp_path / "b", [src], limit=3, seed=5)
    names = [f.name for f in a.sample_files]
    assert names == [f.name for f in b.sample_files] and len(names) == 3
    c, _ = make(tmp_path / "c", [src], limit=3, seed=6)
    assert [f.name.split("_")[1] for f in c.sample_files] != [n.split("_")[1] for n in names]


def test_parallel_output_is_byte_identical(tmp_path: Path) -> None:
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for i in range(6):
        src.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(src / f"{i}.png")
    pre = PreprocessConfig(size=(8, 8), resize="letterbox")
    one, _ = make_calib_set(tmp_path / "one", pre, CalibConfig(sources=(str(src),), jobs=1))
    two, _ = make_calib_set(tmp_path / "two", pre, CalibConfig(sources=(str(src),), jobs=2))
    for a, b in zip(one.sample_files, two.sample_files, strict=True):
        assert a.read_bytes() == b.read_bytes()
    assert one.manifest["samples"] == two.manifest["samples"]


class CountingProgress:
    """Records every advance, to check the bar reaches exactly the number of images."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        self.total = total
        yield self.steps.append


def test_parallel_reports_bad_files_and_full_progress(tmp_path: Path) -> None:
    src = solid_dir(tmp_path / "src", 9)
    (src / "img4.png").write_bytes(b"")
    progress = CountingProgress()
    calib = CalibConfig(sources=(str(src),), jobs=2, skip_bad=True)
    got, _ = make_calib_set(tmp_path / "o", PRE, calib, progress=progress)
    assert progress.total == 9 and sum(progress.steps) == 9
    assert [s["source"].rsplit("/", 1)[1] for s in got.manifest["samples"]] == [
        f"img{i}.png" for i in (0, 1, 2, 3, 5, 6, 7, 8)
    ]
    assert got.manifest["skipped"][0]["reason"] == "empty file (0 bytes)"


def test_parallel_worker_crash_propagates_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ascend_quant import imageprep

    real = imageprep.prepare

    def prepare(data: bytes, config: PreprocessConfig, name: str, *rest: object) -> object:
        if name.endswith("img2.png"):
            raise RuntimeError("decoder crashed")
        return real(data, config, name, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(imageprep, "prepare", prepare)  # forked workers inherit it
    src = solid_dir(tmp_path / "src", 6)
    with pytest.raises(RuntimeError, match="decoder crashed"):
        make_calib_set(tmp_path / "o", PRE, CalibConfig(sources=(str(src),), jobs=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_interrupt_stops_the_workers_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ascend_quant.data import images as calib_module

    done_log = tmp_path / "done.log"
    real = calib_module._process

    def slow_process(task: tuple[int, str, str]) -> dict[str, object]:
        time.sleep(0.02)
        with open(done_log, "a") as log:  # forked workers inherit this patch
            log.write("x")
        return real(task)

    class InterruptAtFirstAdvance:
        @contextlib.contextmanager
        def task(self, description: str, total: int | None = None) -> Iterator[object]:
            def advance(n: int) -> None:
                if n:
                    raise KeyboardInterrupt

            yield advance

    monkeypatch.setattr(calib_module, "_process", slow_process)
    src = solid_dir(tmp_path / "src", 100)
    with pytest.raises(KeyboardInterrupt):
        make_calib_set(
            tmp_path / "o",
            PRE,
            CalibConfig(sources=(str(src),), jobs=2),
            progress=InterruptAtFirstAdvance(),  # type: ignore[arg-type]
        )
    assert len(done_log.read_text()) < 50  # the workers stopped claiming images
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done.log", "src"]


def test_default_sources_are_the_bundled_images(tmp_path: Path) -> None:
    calib_set, _ = make_calib_set(
        tmp_path / "out", PreprocessConfig(size=(8, 8)), CalibConfig(limit=2, jobs=1)
    )
    assert len(calib_set) == 2
    assert "calib/images" in calib_set.manifest["samples"][0]["source"]


# ---------------------------------------------------------------- reuse and replacement


def test_rerun_reuses_and_changes_invalidate(tmp_path: Path) -> None:
    src = solid_dir(tmp_path / "src", 2)
    out = tmp_path / "out"
    first, reused = make(out, [src])
    assert not reused
    again, reused = make(out, [src])
    assert reused and again.manifest_sha256 == first.manifest_sha256
    _, reused = make(out, [src], batch=2)  # a parameter changed
    assert not reused
    write_png(src / "img1.png", (9, 9, 9))  # a source's bytes changed
    changed, reused = make(out, [src], batch=2)
    assert not reused
    assert list(changed.iter_samples())[1][0, 0, 0, 0] == 9.0
    (out / "samples" / "00001_img1.bin").write_bytes(b"\0" * 72)  # output tampered with
    _, reused = make(out, [src], batch=2)
    assert not reused


def test_bad_images_listed_all_and_previous_output_intact(tmp_path: Path) -> None:
    src = solid_dir(tmp_path / "src", 2)
    out = tmp_path / "out"
    before, _ = make(out, [src])
    snapshot = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (src / "zero.jpg").write_bytes(b"")
    (src / "junk.png").write_bytes(b"this is not a png at all")
    good = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(good, "JPEG")
    (src / "trunc.jpg").write_bytes(good.getvalue()[:300])
    with pytest.raises(UsageError) as info:
        make(out, [src])
    message = info.value.message
    assert message.startswith("3 of 5 images are unusable")
    assert f"{src / 'zero.jpg'}: empty file" in message
    assert f"{src / 'junk.png'}: not a recognised image" in message
    assert f"{src / 'trunc.jpg'}: truncated image" in message
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == snapshot
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []
    assert CalibSet.load(out).manifest_sha256 == before.manifest_sha256


def test_failure_with_no_previous_output_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    with pytest.raises(UsageError):
        make(tmp_path / "out", [src])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_skip_bad_warns_and_renumbers(
    tmp_path: Path, warnings_seen: pytest.LogCaptureFixture
) -> None:
    caplog = warnings_seen
    src = solid_dir(tmp_path / "src", 3)
    (src / "img1.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="ascend_quant"):
        calib_set, _ = make(tmp_path / "out", [src], skip_bad=True)
    assert [f.name for f in calib_set.sample_files] == ["00000_img0.bin", "00001_img2.bin"]
    assert any("skipping" in r.message and "img1.png" in r.message for r in caplog.records)
    manifest = calib_set.manifest
    assert manifest["skipped"][0]["reason"] == "empty file (0 bytes)"
    assert sorted(p.name for p in (tmp_path / "out" / "samples").iterdir()) == [
        "00000_img0.bin",
        "00001_img2.bin",
    ]


def test_decompression_bomb_in_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    write_png(src / "big.png", (1, 1, 1), size=(30, 30))
    write_png(src / "small.png", (1, 1, 1), size=(3, 2))
    with pytest.raises(UsageError, match=r"big\.png: decompression bomb"):
        make_calib_set(
            tmp_path / "o", PRE, CalibConfig(sources=(str(src),), jobs=1), max_pixels=100
        )
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(UsageError, match="1 of 2 images"):
        make(tmp_path / "o", [src])


def test_unsupported_format_with_image_suffix(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (2, 2)).save(src / "anim.png", "GIF")
    with pytest.raises(UsageError, match="unsupported format GIF"):
        make(tmp_path / "o", [src])


def test_refuses_to_replace_a_foreign_directory(tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    with pytest.raises(UsageError, match="refusing to replace"):
        make(out, [solid_dir(tmp_path / "src", 1)])
    assert (out / "thesis.tex").read_text() == "years of work"


def test_integer_dtype_with_tiny_scale_warns(
    tmp_path: Path, warnings_seen: pytest.LogCaptureFixture
) -> None:
    caplog = warnings_seen
    pre = PreprocessConfig(size=(2, 2), dtype="uint8")
    with caplog.at_level(logging.WARNING, logger="ascend_quant"):
        make_calib_set(
            tmp_path / "o", pre, CalibConfig(sources=(str(solid_dir(tmp_path / "s", 1)),), jobs=1)
        )
    assert any("--scale 1" in r.message for r in caplog.records)


# ---------------------------------------------------------------- target from a model


def image_model(
    dims: list[int | str], elem: int = TensorProto.FLOAT, name: str = "x"
) -> onnx.ModelProto:
    x = helper.make_tensor_value_info(name, elem, dims)
    y = helper.make_tensor_value_info("y", elem, dims)
    graph = helper.make_graph([helper.make_node("Identity", [name], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_model_gives_size_layout_dtype_and_channels(tmp_path: Path) -> None:
    src = [solid_dir(tmp_path / "src", 1)]
    conv = tiny_models.save(tiny_models.conv_net(hw=16), tmp_path / "conv.onnx")
    calib = CalibConfig(sources=tuple(map(str, src)), jobs=1)
    got, _ = make_calib_set(tmp_path / "a", PreprocessConfig(), calib, model=conv)
    assert got.sample_shape == (1, 3, 16, 16) and got.input_name == "input"
    nhwc = save_for_ort(image_model([1, 10, 12, 3], TensorProto.FLOAT16), tmp_path / "h.onnx")
    got, _ = make_calib_set(tmp_path / "b", PreprocessConfig(), calib, model=nhwc)
    assert (got.sample_shape, got.dtype, got.layout) == ((1, 10, 12, 3), "float16", "NHWC")
    assert got.input_name == "x"
    gray = save_for_ort(image_model([1, 1, 4, 4], TensorProto.UINT8), tmp_path / "g.onnx")
    got, _ = make_calib_set(tmp_path / "c", PreprocessConfig(scale=1.0), calib, model=gray)
    assert (got.sample_shape, got.dtype) == ((1, 1, 4, 4), "uint8")
    assert got.manifest["preprocess"]["color"] == "gray"


def test_model_dynamic_dims_need_size(tmp_path: Path) -> None:
    calib = CalibConfig(sources=(str(solid_dir(tmp_path / "src", 1)),), jobs=1)
    dyn = save_for_ort(image_model(["n", 3, "h", "w"]), tmp_path / "d.onnx")
    with pytest.raises(UsageError, match="dynamic height/width") as info:
        make_calib_set(tmp_path / "o", PreprocessConfig(), calib, model=dyn)
    assert "--size" in (info.value.hint or "")
    got, _ = make_calib_set(tmp_path / "o", PreprocessConfig(size=(5, 6)), calib, model=dyn)
    assert got.sample_shape == (1, 3, 5, 6)


def test_model_errors(tmp_path: Path) -> None:
    calib = CalibConfig(sources=(str(solid_dir(tmp_path / "src", 1)),), jobs=1)
    conv = tiny_models.save(tiny_models.conv_net(hw=16), tmp_path / "conv.onnx")
    with pytest.raises(UsageError, match="disagrees"):
        make_calib_set(tmp_path / "o", PreprocessConfig(size=(8, 8)), calib, model=conv)
    with pytest.raises(UsageError, match="no input named 'nope'"):
        make_calib_set(tmp_path / "o", PreprocessConfig(), calib, model=conv, input_name="nope")
    with pytest.raises(UsageError, match="not a 4-D"):
        flat = save_for_ort(image_model([1, 4]), tmp_path / "f.onnx")
        make_calib_set(tmp_path / "o", PreprocessConfig(), calib, model=flat)
    with pytest.raises(UsageError, match="element type INT64"):
        ints = save_for_ort(image_model([1, 3, 4, 4], TensorProto.INT64), tmp_path / "i.onnx")
        make_calib_set(tmp_path / "o", PreprocessConfig(), calib, model=ints)
    with pytest.raises(UsageError, match="model not found"):
        make_calib_set(tmp_path / "o", PreprocessConfig(), calib, model=tmp_path / "x.onnx")
    with pytest.raises(UsageError, match="no target size"):
        make_calib_set(tmp_path / "o", PreprocessConfig(), calib)


def test_parallel_with_other_threads_uses_forkserver(tmp_path: Path) -> None:
    """A progress-bar thread is alive in the CLI; the pool must not fork then, and still work."""
    import threading

    from ascend_quant.data import images as calib_module

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert calib_module._mp_context().get_start_method() == "forkserver"
        src = solid_dir(tmp_path / "src", 3)
        got, _ = make_calib_set(tmp_path / "o", PRE, CalibConfig(sources=(str(src),), jobs=2))
    finally:
        stop.set()
        thread.join()
    assert [s[0, :, 0, 0].tolist() for s in got.iter_samples()][2] == [2.0, 4.0, 6.0]
