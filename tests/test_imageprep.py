"""imageprep: exact values for tiny images, computed by hand in the tests."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ascend_quant.config import PreprocessConfig
from ascend_quant.errors import UsageError
from ascend_quant.imageprep import BadImageError, decode, prepare, validate

# A 2x3 RGB image (H=2, W=3); pixel (y, x) = PIXELS[y][x].
PIXELS = [
    [(0, 10, 20), (30, 40, 50), (60, 70, 80)],
    [(255, 128, 1), (2, 3, 4), (100, 200, 250)],
]


def png(array: np.ndarray | list, mode: str | None = None, **save: object) -> bytes:
    image = Image.fromarray(np.asarray(array, dtype=np.uint8), mode) if mode is None else None
    if image is None:
        image = Image.fromarray(np.asarray(array), mode)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **save)
    return buffer.getvalue()


def encode(image: Image.Image, fmt: str = "PNG", **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def cfg(**kw: object) -> PreprocessConfig:
    kw.setdefault("size", (2, 3))
    kw.setdefault("resample", "nearest")
    return PreprocessConfig(**kw)  # type: ignore[arg-type]


def test_float32_nchw_exact_bytes_with_scale_mean_std() -> None:
    mean, std = (0.5, 0.25, 0.125), (0.5, 2.0, 4.0)
    out = prepare(png(PIXELS), cfg(mean=mean, std=std)).array
    expected = np.zeros((1, 3, 2, 3), dtype=np.float32)
    for y in range(2):
        for x in range(3):
            for c in range(3):
                expected[0, c, y, x] = (PIXELS[y][x][c] / 255 - mean[c]) / std[c]
    assert out.dtype == np.float32 and out.shape == (1, 3, 2, 3)
    assert out.tobytes() == expected.tobytes()
    # one value spelled out: pixel (1, 0) red 255 -> (1.0 - 0.5) / 0.5 = 1.0
    assert out[0, 0, 1, 0] == 1.0


def test_nhwc_layout_and_bgr_order_with_mean_in_output_order() -> None:
    out = prepare(png(PIXELS), cfg(color="bgr", layout="NHWC", scale=1.0, mean=(1, 2, 3))).array
    assert out.shape == (1, 2, 3, 3)
    # pixel (0, 1) is RGB (30, 40, 50): BGR (50, 40, 30) minus (1, 2, 3)
    assert out[0, 0, 1].tolist() == [49.0, 38.0, 27.0]
    assert out[0, 1, 0].tolist() == [1 - 1, 128 - 2, 255 - 3]


def test_gray_uses_itu_601_luma() -> None:
    out = prepare(png(PIXELS), cfg(color="gray", scale=1.0, mean=(0,), std=(1,))).array
    assert out.shape == (1, 1, 2, 3)

    def luma(r: int, g: int, b: int) -> int:  # Pillow's fixed-point L = R*299/1000 + ...
        return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16

    expected = [[luma(*PIXELS[y][x]) for x in range(3)] for y in range(2)]
    assert out[0, 0].tolist() == expected
    assert expected[1][0] == 151  # 255*.299 + 128*.587 + 1*.114 = 151.5 -> 151 (fixed point)


def test_uint8_rounds_half_to_even_then_saturates() -> None:
    data = png([[[10, 11, 0], [200, 255, 3]]])
    out = prepare(data, cfg(size=(1, 2), dtype="uint8", scale=1.0, mean=(0.5,))).array
    # 9.5 -> 10, 10.5 -> 10, -0.5 -> 0 (rint gives -0, then saturated at 0); 199.5 -> 200
    assert out.dtype == np.uint8
    assert out[0, :, 0, 0].tolist() == [10, 10, 0]
    assert out[0, :, 0, 1].tolist() == [200, 254, 2]  # 254.5 -> 254, 2.5 -> 2
    over = prepare(data, cfg(size=(1, 2), dtype="uint8", scale=2.0)).array
    assert over[0, :, 0, 1].tolist() == [255, 255, 6]


def test_int8_saturates_both_ends() -> None:
    data = png([[[0, 127, 255]]])
    out = prepare(data, cfg(size=(1, 1), dtype="int8", scale=1.0, mean=(128,), std=(1,))).array
    assert out.dtype == np.int8
    assert out[0, :, 0, 0].tolist() == [-128, -1, 127]
    half = prepare(data, cfg(size=(1, 1), dtype="int8", scale=1.0, mean=(128.5,))).array
    assert half[0, :, 0, 0].tolist() == [-128, -2, 126]  # -1.5 -> -2, 126.5 -> 126


def test_float16_rounding() -> None:
    out = prepare(png([[[1, 2, 3]]]), cfg(size=(1, 1), dtype="float16")).array
    assert out.dtype == np.float16
    assert out.tobytes() == np.array([1 / 255, 2 / 255, 3 / 255], np.float16).tobytes()


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("color", ["rgb", "bgr", "gray"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "uint8", "int8"])
def test_every_level_matches_per_pixel_float64_arithmetic(
    layout: str, color: str, dtype: str
) -> None:
    """The lookup table gives the bytes of doing the arithmetic on each pixel in float64."""
    rgb = np.arange(256 * 3, dtype=np.uint8).reshape(16, 16, 3)  # every level in every channel
    rgb[:, :, 1] = rgb[:, :, 1][::-1]
    scale, mean, std = (2.0, 127.3, 0.7) if dtype.endswith("int8") else (1 / 255, 0.45, 0.226)
    n = 1 if color == "gray" else 3
    means, stds = (mean, mean / 2, mean * 1.5)[:n], (std, std * 3, std / 2)[:n]
    config = cfg(size=(16, 16), color=color, layout=layout, dtype=dtype, scale=scale)
    config = PreprocessConfig(**{**config.__dict__, "mean": means, "std": stds})
    out = prepare(png(rgb), config).array
    image = Image.fromarray(rgb)
    pixels = np.asarray(image.convert("L") if n == 1 else image, dtype=np.float64)
    pixels = pixels.reshape(16, 16, n)[:, :, ::-1] if color == "bgr" else pixels.reshape(16, 16, n)
    values = (pixels * scale - np.array(means)) / np.array(stds)
    if dtype == "uint8":
        values = np.clip(np.rint(values), 0, 255)
    elif dtype == "int8":
        values = np.clip(np.rint(values), -128, 127)
    values = values[None] if layout == "NHWC" else values.transpose(2, 0, 1)[None]
    assert out.tobytes() == np.ascontiguousarray(values.astype(dtype)).tobytes()


def test_stretch_nearest_upsamples_by_repeating() -> None:
    data = png([[[1, 1, 1], [2, 2, 2]], [[3, 3, 3], [4, 4, 4]]])
    out = prepare(data, cfg(size=(4, 4), scale=1.0, color="gray")).array
    assert out[0, 0].tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]


def test_letterbox_pads_centred_with_pad_value() -> None:
    data = png([[[10, 10, 10], [20, 20, 20]]])  # w=2, h=1 -> scale 2 -> 4x2, pad rows 0 and 3
    out = prepare(data, cfg(size=(4, 4), resize="letterbox", pad_value=7, scale=1.0)).array
    assert out[0, 1].tolist() == [[7] * 4, [10, 10, 20, 20], [10, 10, 20, 20], [7] * 4]


def test_center_crop_covers_then_crops_centre() -> None:
    row = [[v, v, v] for v in (1, 2, 3, 4)]
    data = png([row, row])  # w=4, h=2 -> target 2x2: no resize, crop columns 1..2
    out = prepare(data, cfg(size=(2, 2), resize="center-crop", scale=1.0)).array
    assert out[0, 0].tolist() == [[2, 3], [2, 3]]
    square = png([[[1, 1, 1], [2, 2, 2]], [[3, 3, 3], [4, 4, 4]]])  # 2x2 -> (2, 4): cover 4x4
    wide = prepare(square, cfg(size=(2, 4), resize="center-crop", scale=1.0)).array
    assert wide[0, 0].tolist() == [[1, 1, 2, 2], [3, 3, 4, 4]]  # rows 1..2 of the 4x4


def test_shorter_side_resizes_shorter_then_centre_pads() -> None:
    square = png([[[1, 1, 1], [2, 2, 2]], [[3, 3, 3], [4, 4, 4]]])  # 2x2 -> (2, 4): S=2
    out = prepare(square, cfg(size=(2, 4), resize="shorter-side", pad_value=9, scale=1.0)).array
    assert out[0, 0].tolist() == [[9, 1, 2, 9], [9, 3, 4, 9]]
    row = [[v, v, v] for v in (1, 2, 3, 4)]
    tall = prepare(png([row, row]), cfg(size=(2, 2), resize="shorter-side", scale=1.0)).array
    assert tall[0, 0].tolist() == [[2, 3], [2, 3]]


def test_resample_filter_is_applied() -> None:
    data = png([[[0, 0, 0], [255, 255, 255]]])
    near = prepare(data, cfg(size=(1, 4), resample="nearest", scale=1.0)).array
    bil = prepare(data, cfg(size=(1, 4), resample="bilinear", scale=1.0)).array
    assert near[0, 0, 0].tolist() == [0, 0, 255, 255]
    # bilinear x2: output centres at 0.25, 0.75, 1.25, 1.75 -> weights give 0, 64, 191, 255
    assert bil[0, 0, 0].tolist() == [0, 64, 191, 255]


def test_exif_orientation_is_applied() -> None:
    image = Image.fromarray(np.asarray(PIXELS, dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encode(image, exif=exif)
    out = prepare(data, cfg(size=(3, 2), scale=1.0, layout="NHWC"))
    assert (out.width, out.height) == (2, 3)
    expected = np.rot90(np.asarray(PIXELS), k=-1)
    assert out.array[0].tolist() == expected.tolist()


@pytest.mark.parametrize(
    ("mode", "pixel", "expected"),
    [
        ("L", 77, [77, 77, 77]),
        ("LA", (77, 0), [77, 77, 77]),  # alpha discarded
        ("RGBA", (5, 6, 7, 0), [5, 6, 7]),
        ("CMYK", (0, 0, 0, 0), [255, 255, 255]),
        ("CMYK", (0, 0, 0, 255), [0, 0, 0]),
        ("1", 1, [255, 255, 255]),
        ("I;16", 0x1234, [0x12, 0x12, 0x12]),  # high byte
        ("I", 70000, [255, 255, 255]),  # clipped to 16 bit, then high byte
        ("F", 12.6, [13, 13, 13]),
    ],
)
def test_any_pillow_mode_to_rgb(mode: str, pixel: object, expected: list[int]) -> None:
    image = Image.new(mode, (1, 1), pixel)  # type: ignore[arg-type]
    fmt = "TIFF" if mode in ("CMYK", "I", "F", "LA") else "PNG"
    out = prepare(encode(image, fmt), cfg(size=(1, 1), scale=1.0))
    assert out.array[0, :, 0, 0].tolist() == expected


def test_palette_with_transparency() -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 9, 8, 7] + [0] * 762)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 0
    out = prepare(encode(image, transparency=0), cfg(size=(1, 2), scale=1.0)).array
    assert out[0, :, 0, 1].tolist() == [9, 8, 7]
    assert out[0, :, 0, 0].tolist() == [0, 0, 0]


def test_sixteen_bit_png_keeps_high_byte() -> None:
    array = np.array([[0, 256, 65535]], dtype=np.uint16)
    out = prepare(encode(Image.fromarray(array)), cfg(size=(1, 3), color="gray", scale=1.0))
    assert out.array[0, 0, 0].tolist() == [0, 1, 255]


def test_bmp_webp_tiff_decode() -> None:
    image = Image.new("RGB", (2, 2), (40, 80, 120))
    for fmt, extra in (("BMP", {}), ("TIFF", {}), ("WEBP", {"lossless": True})):
        out = prepare(encode(image, fmt, **extra), cfg(size=(2, 2), scale=1.0)).array
        assert out[0, :, 0, 0].tolist() == [40, 80, 120], fmt


def reason(data: bytes, **kw: object) -> str:
    with pytest.raises(BadImageError) as info:
        decode(data, "x", **kw)  # type: ignore[arg-type]
    return info.value.reason


def test_bad_inputs_have_clear_reasons() -> None:
    good = encode(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG")
    assert reason(b"") == "empty file (0 bytes)"
    assert "not a recognised image" in reason(b"hello, I am not an image" * 10)
    assert "truncated" in reason(good[: len(good) // 2])
    noisy = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    png_bytes = encode(Image.fromarray(noisy))
    assert "truncated" in reason(png_bytes[: len(png_bytes) // 2]).lower()
    assert "unsupported format GIF" in reason(encode(Image.new("RGB", (2, 2)), "GIF"))
    corrupt = bytearray(png_bytes)
    corrupt[200:260] = b"\xff" * 60
    assert "corrupt" in reason(bytes(corrupt))


def test_decompression_bomb_refused() -> None:
    data = encode(Image.new("RGB", (20, 10)))
    assert "decompression bomb" in reason(data, max_pixels=199)
    assert decode(data, "x", max_pixels=200).size == (20, 10)


def test_decompression_bomb_uses_pillow_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    data = encode(Image.new("RGB", (20, 10)))  # 200 px: Pillow only warns; we refuse
    assert "decompression bomb" in reason(data)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # 4x the limit: Pillow's own error
    assert "decompression bomb" in reason(data)


def test_validate_rejects_impossible_configs() -> None:
    with pytest.raises(UsageError, match="std must not contain 0"):
        validate(cfg(std=(1, 0, 1)))
    with pytest.raises(UsageError, match="mean has 2 values"):
        validate(cfg(mean=(1, 2)))
    with pytest.raises(UsageError, match="pad value"):
        validate(cfg(pad_value=300))
    validate(cfg(color="gray"))  # default 3-value mean/std of equal values fit one channel
    with pytest.raises(UsageError, match="1 channel"):
        validate(cfg(color="gray", mean=(0.1, 0.2, 0.3)))
