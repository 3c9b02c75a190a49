"""codec.imagefile: exact pixels in, exact pixels (and metadata) out, CodecError for bad input."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from codec.errors import CodecError
from codec.imagefile import (
    MODES,
    PNG_STEP,
    RasterImage,
    load_image,
    mode_dtype,
    mode_for_array,
    mode_shape,
    png_encode_pixels,
    png_reaches,
    to_file_bytes,
    to_png_bytes,
    to_tiff_bytes,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
PNG_MODES = [m for m in MODES if m != "CMYK"]


def make_image(mode: str, h: int = 13, w: int = 21, seed: int = 0, **meta) -> RasterImage:
    rng = np.random.default_rng(seed)
    if mode == "1":
        return RasterImage(rng.integers(0, 2, (h, w), dtype=np.uint8), "1", **meta)
    if mode == "P":
        n = meta.pop("entries", 7)
        pm = meta.pop("palette_mode", "RGB")
        pal = rng.integers(0, 256, n * len(pm), dtype=np.uint8).tobytes()
        px = rng.integers(0, n, (h, w), dtype=np.uint8)
        return RasterImage(px, "P", palette=pal, palette_mode=pm, **meta)
    dt = mode_dtype(mode)
    px = rng.integers(0, np.iinfo(dt).max + 1, mode_shape(mode, h, w), dtype=dt)
    return RasterImage(px, mode, **meta)


META = {
    "icc_profile": b"fake icc profile " * 20,
    "exif": b"MM\x00*\x00\x00\x00\x08\x00\x00",
    "text": {"Title": "plain", "Unicode": "é€ 漢字", "Long": "x" * 5000, "LongU": "€" * 3000},
}


# ---------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("mode", PNG_MODES)
def test_png_round_trip_every_mode(mode):
    img = make_image(mode, **META)
    back = load_image(to_png_bytes(img))
    assert back == img
    assert back.pixels.dtype == mode_dtype(mode)
    assert back.pixels.flags.c_contiguous


@pytest.mark.parametrize("mode", PNG_MODES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 37), (40, 1), (9, 17)])
def test_png_round_trip_shapes(mode, shape):
    img = make_image(mode, *shape, seed=shape[1])
    assert load_image(to_png_bytes(img)) == img


def test_cmyk_round_trips_through_tiff():
    img = make_image("CMYK", icc_profile=b"cmyk icc")
    with pytest.raises(CodecError, match="CMYK"):
        to_png_bytes(img)
    data, ext = to_file_bytes(img)
    assert ext == "tiff" and data == to_tiff_bytes(img)
    assert load_image(data) == img


@pytest.mark.parametrize("entries", [1, 2, 3, 4, 16, 17, 200, 256])
@pytest.mark.parametrize("palette_mode", ["RGB", "RGBA"])
def test_palette_sizes(entries, palette_mode):
    img = make_image("P", entries=entries, palette_mode=palette_mode, seed=entries)
    back = load_image(to_png_bytes(img))
    assert back == img and back.palette_entries == entries


def test_palette_index_out_of_range_refused():
    img = RasterImage(np.array([[0, 5]], np.uint8), "P", palette=b"\0" * 6)
    with pytest.raises(CodecError, match="out of range"):
        to_png_bytes(img)


def test_exif_prefix_is_normalized():
    img = make_image("RGB", exif=b"Exif\x00\x00MM\x00*")
    assert img.exif == b"MM\x00*"
    assert load_image(to_png_bytes(img)).exif == b"MM\x00*"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(PNG_MODES),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_round_trip_property(mode, h, w, seed):
    img = make_image(mode, h, w, seed=seed)
    assert load_image(to_png_bytes(img)) == img


# ------------------------------------------------------------------------------- reading formats


def _png_with(img_png: bytes, *chunks: tuple[bytes, bytes]) -> bytes:
    extra = b"".join(
        struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d)) for t, d in chunks
    )
    return img_png[:33] + extra + img_png[33:]


@pytest.mark.parametrize("shape", [(6, 5), (6, 5, 2), (6, 5, 3), (6, 5, 4)])
def test_16bit_png_from_libpng_stays_16bit(shape):
    px = np.random.default_rng(1).integers(0, 65536, shape, dtype=np.uint16)
    img = load_image(bytes(imagecodecs.png_encode(px)))
    assert img.pixels.dtype == np.uint16 and np.array_equal(img.pixels, px)
    assert img.mode == mode_for_array(px)


def test_color_key_becomes_alpha():
    gray = np.array([[0, 7], [7, 200]], np.uint8)
    data = _png_with(bytes(imagecodecs.png_encode(gray)), (b"tRNS", struct.pack(">H", 7)))
    img = load_image(data)
    assert img.mode == "LA"
    assert np.array_equal(img.pixels[:, :, 0], gray)
    assert np.array_equal(img.pixels[:, :, 1], [[255, 0], [0, 255]])

    rgb = np.zeros((2, 2, 3), np.uint16)
    rgb[0, 0] = (1, 2, 3)
    data = _png_with(bytes(imagecodecs.png_encode(rgb)), (b"tRNS", struct.pack(">HHH", 1, 2, 3)))
    img = load_image(data)
    assert img.mode == "RGBA;16"
    assert img.pixels[0, 0, 3] == 0 and img.pixels[1, 1, 3] == 65535
    assert load_image(to_png_bytes(img)) == img


def test_palette_trns_shorter_than_plte():
    pil = Image.frombytes("P", (3, 1), bytes([0, 1, 2]))
    pil.putpalette(bytes(range(9)))
    buf = io.BytesIO()
    pil.save(buf, "PNG", transparency=b"\x10")
    img = load_image(buf.getvalue())
    assert img.palette_mode == "RGBA"
    assert img.palette == bytes([0, 1, 2, 16, 3, 4, 5, 255, 6, 7, 8, 255])


def _pil_bytes(pil: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    pil.save(buf, fmt, **kw)
    return buf.getvalue()


def test_jpeg_decodes_to_pixels_with_exif():
    px = np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x010F] = "maker"
    data = _pil_bytes(Image.fromarray(px), "JPEG", exif=exif.tobytes(), icc_profile=b"jpeg icc")
    img = load_image(data)
    with Image.open(io.BytesIO(data)) as ref:
        assert np.array_equal(img.pixels, np.asarray(ref))
    assert img.mode == "RGB" and img.icc_profile == b"jpeg icc"
    assert img.exif and not img.exif.startswith(b"Exif")
    assert load_image(to_png_bytes(img)) == img


@pytest.mark.parametrize(
    "mode,fmt,kw",
    [
        ("RGB", "WEBP", {"lossless": True}),
        ("RGBA", "WEBP", {"lossless": True, "exact": True}),
        ("RGB", "BMP", {}),
        ("L", "TIFF", {"compression": "tiff_lzw"}),
        ("L;16", "TIFF", {}),
        ("CMYK", "TIFF", {}),
        ("1", "TIFF", {}),
        ("L;16", "PPM", {}),
    ],
)
def test_pillow_formats_exact(mode, fmt, kw):
    img = make_image(mode, 9, 11)
    from codec.imagefile import _to_pil

    back = load_image(_pil_bytes(_to_pil(img), fmt, **kw))
    assert back.mode == mode and np.array_equal(back.pixels, img.pixels)


@pytest.mark.parametrize("shape", [(5, 7, 3), (5, 7, 4)])
def test_16bit_colour_tiff_not_reduced(shape):
    px = np.random.default_rng(3).integers(0, 65536, shape, dtype=np.uint16)
    img = load_image(bytes(imagecodecs.tiff_encode(px)))
    assert img.pixels.dtype == np.uint16 and np.array_equal(img.pixels, px)


def test_16bit_ppm_not_reduced():
    px = np.random.default_rng(4).integers(0, 65536, (4, 6, 3), dtype=np.uint16)
    data = b"P6\n# comment\n6 4\n65535\n" + px.astype(">u2").tobytes()
    img = load_image(data)
    assert img.mode == "RGB;16" and np.array_equal(img.pixels, px)


def test_gif_palette_with_transparency_index():
    pil = Image.frombytes("P", (4, 1), bytes([0, 1, 2, 1]))
    pil.putpalette(bytes(range(12)))
    img = load_image(_pil_bytes(pil, "GIF", transparency=1))
    assert img.mode == "P" and img.palette_mode == "RGBA"
    pal = np.frombuffer(img.palette, np.uint8).reshape(-1, 4)
    assert pal[1, 3] == 0 and pal[0, 3] == 255
    assert np.array_equal(img.pixels, [[0, 1, 2, 1]])


def test_animated_refused():
    frames = [Image.new("L", (4, 4), c) for c in (0, 255)]
    data = _pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(CodecError, match="frames"):
        load_image(data)
    apng = _pil_bytes(frames[0], "PNG", save_all=True, append_images=frames[1:])
    with pytest.raises(CodecError, match="animated"):
        load_image(apng)


# ----------------------------------------------------------------------------- arrays and Pillow


@pytest.mark.parametrize(
    "shape,dtype,mode",
    [
        ((3, 4), np.uint8, "L"),
        ((3, 4, 1), np.uint8, "L"),
        ((3, 4, 2), np.uint8, "LA"),
        ((3, 4, 3), np.uint8, "RGB"),
        ((3, 4, 4), np.uint8, "RGBA"),
        ((3, 4), np.uint16, "L;16"),
        ((3, 4, 2), np.uint16, "LA;16"),
        ((3, 4, 3), np.uint16, "RGB;16"),
        ((3, 4, 4), ">u2", "RGBA;16"),
        ((3, 4), bool, "1"),
    ],
)
def test_mode_for_array_and_load(shape, dtype, mode):
    arr = np.ones(shape, dtype=dtype)
    assert mode_for_array(arr) == mode
    img = load_image(arr)
    assert img.mode == mode and img.pixels.dtype == mode_dtype(mode)
    assert img.pixels.dtype.isnative and np.all(img.pixels == 1)
    assert not np.shares_memory(img.pixels, arr)


@pytest.mark.parametrize(
    "arr",
    [
        np.zeros((3, 4), np.float32),
        np.zeros((3, 4), np.int16),
        np.zeros((3, 4, 5), np.uint8),
        np.zeros((3,), np.uint8),
        np.zeros((2, 3, 4, 3), np.uint8),
        np.zeros((3, 4), np.uint32),
    ],
)
def test_mode_for_array_rejects(arr):
    with pytest.raises(CodecError):
        mode_for_array(arr)
    with pytest.raises(CodecError):
        load_image(arr)


def test_load_pil_image():
    pil = Image.new("RGBA", (3, 2), (1, 2, 3, 4))
    img = load_image(pil)
    assert img.mode == "RGBA" and img.pixels.shape == (2, 3, 4)
    assert np.all(img.pixels == [1, 2, 3, 4])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pixels": np.zeros((2, 2), np.uint16), "mode": "L"},
        {"pixels": np.zeros((2, 2, 3), np.uint8), "mode": "RGBA"},
        {"pixels": np.zeros((0, 2), np.uint8), "mode": "L"},
        {"pixels": np.full((2, 2), 2, np.uint8), "mode": "1"},
        {"pixels": np.zeros((2, 2), np.uint8), "mode": "P"},
        {"pixels": np.zeros((2, 2), np.uint8), "mode": "P", "palette": b"\0" * 5},
        {"pixels": np.zeros((2, 2), np.uint8), "mode": "L", "palette": b"\0" * 3},
        {"pixels": np.zeros((2, 2), np.uint8), "mode": "XYZ"},
        {"pixels": [[0]], "mode": "L"},
    ],
)
def test_raster_image_validation(kwargs):
    with pytest.raises(CodecError):
        RasterImage(**kwargs)


def test_bad_text_key_refused():
    img = make_image("L", text={"": "x"})
    with pytest.raises(CodecError):
        to_png_bytes(img)
    img = make_image("L", text={"€uro": "x"})
    with pytest.raises(CodecError):
        to_png_bytes(img)


# -------------------------------------------------------------------------------------- errors


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(CodecError, match="cannot read"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(CodecError, match="empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(CodecError, match="recognised"):
        load_image(b"definitely not an image")
    with pytest.raises(CodecError):
        load_image(12345)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["L", "RGB;16", "P", "1"])
def test_truncated_png_every_cut(mode):
    data = to_png_bytes(make_image(mode, 16, 16, text={"k": "v"}))
    for cut in range(0, len(data) - 1, max(1, len(data) // 60)):
        with pytest.raises(CodecError):
            load_image(data[:cut])


def test_corrupt_png_crc_and_idat():
    data = bytearray(to_png_bytes(make_image("RGB", 16, 16)))
    bad_crc = bytearray(data)
    bad_crc[-20] ^= 0xFF  # inside the last IDAT or its CRC
    with pytest.raises(CodecError):
        load_image(bytes(bad_crc))
    # a valid chunk structure around garbage image data
    i = data.index(b"IDAT")
    length = struct.unpack(">I", data[i - 4 : i])[0]
    body = bytes(length)
    fixed = data[: i + 4] + body + struct.pack(">I", zlib.crc32(b"IDAT" + body))
    fixed += data[i + 8 + length :]
    with pytest.raises(CodecError):
        load_image(bytes(fixed))


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "TIFF", "BMP", "GIF"])
def test_truncated_other_formats(fmt):
    mode = "L" if fmt == "GIF" else "RGB"
    px = np.random.default_rng(5).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    data = _pil_bytes(Image.fromarray(px).convert(mode), fmt)
    for frac in (0.1, 0.5, 0.9):
        try:
            load_image(data[: int(len(data) * frac)])
        except CodecError:
            pass  # the only acceptable exception; some formats decode short data as padding


def test_pixel_limit():
    data = to_png_bytes(make_image("RGB", 10, 10))
    assert load_image(data, max_samples=300).mode == "RGB"
    with pytest.raises(CodecError, match="samples"):
        load_image(data, max_samples=299)
    jpg = _pil_bytes(Image.new("RGB", (10, 10)), "JPEG")
    with pytest.raises(CodecError, match="samples"):
        load_image(jpg, max_samples=299)
    with pytest.raises(CodecError, match="samples"):
        load_image(np.zeros((10, 10, 3), np.uint8), max_samples=299)


def test_png_header_bomb_refused_before_decoding():
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    body = zlib.compress(b"")
    data = b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
        for t, d in ((b"IHDR", ihdr), (b"IDAT", body), (b"IEND", b""))
    )
    with pytest.raises(CodecError, match="samples"):
        load_image(data)


def test_text_zip_bomb_refused():
    from codec import imagefile

    old = imagefile._MAX_META_BYTES
    imagefile._MAX_META_BYTES = 1000
    try:
        bomb = b"Comment\0\0" + zlib.compress(b"a" * 5000)
        data = _png_with(to_png_bytes(make_image("L", 4, 4)), (b"zTXt", bomb))
        with pytest.raises(CodecError, match="more than"):
            load_image(data)
    finally:
        imagefile._MAX_META_BYTES = old


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_fuzzed_png_only_raises_codec_error(data):
    base = to_png_bytes(make_image("RGBA", 8, 8, text={"a": "b"}, icc_profile=b"icc"))
    buf = bytearray(base)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        buf[pos] = data.draw(st.integers(0, 255))
    try:
        img = load_image(bytes(buf))
    except CodecError:
        return
    img.validate()


# ------------------------------------------------------------------------------ real data files


def _real(rel: str) -> Path:
    p = DATA / rel
    if not p.exists():
        pytest.skip(f"{p} not available")
    return p


def test_real_16bit_medical_png():
    p = _real("medical_16bit/CT_small.png")
    img = load_image(p)
    ref = imagecodecs.png_decode(p.read_bytes())
    assert img.mode == "L;16" and np.array_equal(img.pixels, ref)
    assert load_image(to_png_bytes(img)) == img


def test_real_palette_png():
    folder = DATA / "waterloo_bragzone"
    if not folder.exists():
        pytest.skip("waterloo_bragzone not available")
    for p in sorted(folder.glob("*.png")):
        img = load_image(p)
        if img.mode == "P":
            with Image.open(p) as ref:
                assert np.array_equal(img.pixels, np.asarray(ref))
            assert load_image(to_png_bytes(img)) == img
            return
    pytest.skip("no palette PNG found")


def _raw_png(w: int, h: int, depth: int, ctype: int, rows: list[bytes], *chunks) -> bytes:
    raw = b"".join(b"\0" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)
    return _png_with(
        b"\x89PNG\r\n\x1a\n"
        + b"".join(
            struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
            for t, d in ((b"IHDR", ihdr), (b"IDAT", zlib.compress(raw)), (b"IEND", b""))
        ),
        *chunks,
    )


def test_low_bit_depth_gray_and_color_key():
    # 2-bit gray is scaled to 8 bits (as every viewer shows it); the key follows the scaling
    img = load_image(_raw_png(4, 1, 2, 0, [bytes([0b00011011])]))
    assert img.mode == "L" and img.pixels.tolist() == [[0, 85, 170, 255]]
    img = load_image(_raw_png(4, 1, 2, 0, [bytes([0b00011011])], (b"tRNS", b"\0\2")))
    assert img.mode == "LA" and img.pixels[:, :, 1].tolist() == [[255, 255, 0, 255]]
    img = load_image(_raw_png(8, 1, 1, 0, [bytes([0b10100000])]))
    assert img.mode == "1" and img.pixels.tolist() == [[1, 0, 1, 0, 0, 0, 0, 0]]
    img = load_image(_raw_png(8, 1, 1, 0, [bytes([0b10100000])], (b"tRNS", b"\0\1")))
    assert img.mode == "LA" and img.pixels[0, :3].tolist() == [[255, 0], [0, 255], [255, 0]]


FRESH_LOAD = """
import sys
from codec.imagefile import load_image
from codec.errors import CodecError
try:
    img = load_image(sys.argv[1])
    print("ok", img.pixels.shape)
except CodecError as e:
    print("refused", e)
"""


def _fresh_load(path: Path, env: dict[str, str] | None = None) -> str:
    """load_image in a new interpreter, so no earlier call has touched Pillow's global limit."""
    import os
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", FRESH_LOAD, str(path)], capture_output=True, text=True,
        env={**os.environ, **(env or {})}, check=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    return out.stdout.strip()


def test_one_pixel_limit_for_every_path_in_a_fresh_process(tmp_path):
    """A 13500 x 13500 PNG (over Pillow's own bomb limit, under ours) loads in a fresh process,
    not only after some other path raised Pillow's limit; PILC_MAX_SAMPLES lowers the one limit
    for PNG and Pillow formats alike, before pixels are decoded."""
    big = tmp_path / "big.png"
    Image.new("L", (13500, 13500)).save(big, compress_level=1)
    assert _fresh_load(big) == "ok (13500, 13500)"
    small_bmp = tmp_path / "small.bmp"
    Image.new("RGB", (100, 100)).save(small_bmp)
    for path in (big, small_bmp):
        got = _fresh_load(path, {"PILC_MAX_SAMPLES": "1000"})
        assert got.startswith("refused") and "more than 1000 samples" in got, got


def _idat_stream(png: bytes) -> bytes:
    out, i = b"", 8
    while i < len(png):
        (n,) = struct.unpack(">I", png[i : i + 4])
        if png[i + 4 : i + 8] == b"IDAT":
            out += png[i + 8 : i + 8 + n]
        i += 12 + n
    return out


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_png_reaches_measures_the_stream_png_encode_pixels_writes(mode):
    """png_reaches runs Pillow's zlib encoder in small steps; its answer is exact only if that
    stream is the one png_encode_pixels stores (a Pillow or zlib change would show here)."""
    rng = np.random.default_rng(7)
    shape = (300, 420) if mode == "L" else (300, 420, len(mode))
    ramp = np.add.outer(np.arange(300), np.arange(420)) // 3
    px = (ramp.reshape(300, 420, *([1] * (len(shape) - 2))) + rng.integers(0, 9, shape)) % 256
    img = RasterImage(px.astype(np.uint8), mode)
    stream = len(_idat_stream(png_encode_pixels(img)))
    assert stream > 2 * PNG_STEP  # several steps, so an early stop is possible
    assert png_reaches(img, stream) and png_reaches(img, PNG_STEP)
    assert not png_reaches(img, stream + 1)


def test_png_reaches_says_encode_where_it_cannot_tell():
    img = RasterImage(np.zeros((8, 8), np.uint16), "L;16")
    assert not png_reaches(img, 1)
