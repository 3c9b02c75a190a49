"""codec.classical: every mode through every kind bit-exactly; corrupt payloads -> CodecError."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec import classical
from codec.classical import (
    CLASSICAL_KINDS,
    DEFAULT_KINDS,
    _jxl_dims,
    decode_classical,
    decode_classical_image,
    decode_classical_palette,
    default_kinds,
    encode_classical,
    encode_kind,
    smallest_verified,
    supported_kinds,
)
from codec.errors import CodecError
from codec.imagefile import (
    MODES,
    RasterImage,
    load_image,
    mode_dtype,
    mode_shape,
    png_encode_pixels,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
PAIRS = [(m, k) for m in MODES for k in supported_kinds(m)]


def make_image(mode: str, h: int = 13, w: int = 21, seed: int = 0, **meta) -> RasterImage:
    """Random pixels of a mode (noise: the hardest case for every kind)."""
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


def test_kind_names_are_stable():
    # stored as an enum index in blob headers: append only, never reorder
    assert CLASSICAL_KINDS == ("png", "webp", "jxl", "zlib")


def test_this_build_has_the_expected_kinds():
    assert supported_kinds("RGB") == ("png", "webp", "jxl", "zlib")
    assert supported_kinds("RGB;16") == ("png", "jxl", "zlib")
    assert supported_kinds("P") == ("png", "zlib")
    assert supported_kinds("1") == ("png", "zlib")
    assert supported_kinds("CMYK") == ("zlib",)
    for mode in MODES:
        assert "zlib" in supported_kinds(mode)
        assert set(DEFAULT_KINDS[mode]) <= set(supported_kinds(mode))
    with pytest.raises(CodecError):
        supported_kinds("RGBX")


@pytest.mark.parametrize("mode,kind", PAIRS)
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (13, 21)])
def test_every_mode_every_kind_round_trip(mode, kind, shape):
    img = make_image(mode, *shape, seed=shape[0] * 31 + shape[1])
    payload = encode_kind(img, kind)
    out = decode_classical(kind, payload, mode, img.pixels.shape)
    assert out.dtype == img.pixels.dtype and out.shape == img.pixels.shape
    assert np.array_equal(out, img.pixels)
    back = decode_classical_image(kind, payload, mode, img.pixels.shape)
    assert back.palette == img.palette and back.palette_mode == img.palette_mode


@pytest.mark.parametrize("mode", MODES)
def test_encode_classical_picks_smallest_verified(mode):
    # smooth content, so the real codecs beat zlib and the choice is meaningful
    img = make_image(mode, 24, 32, seed=3)
    if mode not in ("P", "1"):
        ramp = (np.arange(24 * 32).reshape(24, 32) % 251).astype(img.pixels.dtype)
        img.pixels[...] = ramp if img.pixels.ndim == 2 else ramp[:, :, None]
    kind, payload = encode_classical(img)
    assert kind in default_kinds(mode)
    sizes = {k: len(encode_kind(img, k)) for k in default_kinds(mode)}
    assert len(payload) == min(sizes.values())
    back = decode_classical_image(kind, payload, mode, img.pixels.shape)
    assert np.array_equal(back.pixels, img.pixels) and back.palette == img.palette


def _ramp_rgb() -> RasterImage:
    img = make_image("RGB", 24, 32, seed=3)
    img.pixels[...] = (np.arange(24 * 32).reshape(24, 32) % 251).astype(np.uint8)[:, :, None]
    return img


def test_smallest_verified_decodes_only_the_smallest_that_round_trips(monkeypatch):
    img = _ramp_rgb()
    sizes = {k: len(encode_kind(img, k)) for k in ("png", "webp")}
    small, large = sorted(sizes, key=sizes.get)
    decoded = []
    real_decode = classical.decode_classical_image

    def decode(kind, payload, mode, shape):
        decoded.append(kind)
        return real_decode(kind, payload, mode, shape)

    monkeypatch.setattr(classical, "decode_classical_image", decode)
    assert smallest_verified(img, ["png", "webp"])[0] == small
    assert decoded == [small]  # one decode, not one per kind

    def broken(kind, payload, mode, shape):  # a library quirk on the smallest candidate
        decoded.append(kind)
        back = real_decode(kind, payload, mode, shape)
        if kind == small:
            back.pixels[0, 0, 0] ^= 1
        return back

    monkeypatch.setattr(classical, "decode_classical_image", broken)
    decoded.clear()
    kind, payload = smallest_verified(img, ["png", "webp"])
    assert (kind, len(payload), decoded) == (large, sizes[large], [small, large])


def test_smallest_verified_drops_candidates_at_or_above_the_bound():
    img = _ramp_rgb()
    sizes = {k: len(encode_kind(img, k)) for k in ("png", "webp")}
    small = min(sizes, key=sizes.get)
    assert smallest_verified(img, ["png", "webp"], below=sizes[small]) is None
    assert smallest_verified(img, ["png", "webp"], below=sizes[small] + 1)[0] == small
    assert encode_classical(make_image("P", 8, 8), ["webp"])[0] == "zlib"  # none survive: zlib


def test_png_kind_is_pillow_default():
    img = make_image("RGB", 20, 20)
    assert encode_kind(img, "png") == png_encode_pixels(img)
    _, payload = encode_classical(img, ["png"])
    assert payload == png_encode_pixels(img)


def test_encode_classical_candidates():
    img = make_image("P", 8, 8)
    assert encode_classical(img, ["webp", "jxl"])[0] == "zlib"  # none can store P -> last resort
    with pytest.raises(CodecError, match="unknown"):
        encode_classical(img, ["gif"])
    rgb = make_image("RGB", 8, 8)
    assert encode_classical(rgb, ["jxl"])[0] == "jxl"
    with pytest.raises(CodecError):
        encode_kind(img, "webp")


def test_webp_keeps_rgb_under_transparent_alpha():
    img = make_image("RGBA", 16, 16)
    img.pixels[:8, :, 3] = 0
    payload = encode_kind(img, "webp")
    assert np.array_equal(decode_classical("webp", payload, "RGBA", img.pixels.shape), img.pixels)
    img.pixels[:, :, 3] = 255  # libwebp drops an all-opaque alpha plane; we must still get RGBA
    payload = encode_kind(img, "webp")
    assert np.array_equal(decode_classical("webp", payload, "RGBA", img.pixels.shape), img.pixels)


@pytest.mark.parametrize("palette_mode", ["RGB", "RGBA"])
@pytest.mark.parametrize("kind", ["png", "zlib"])
def test_palette_travels_in_payload(kind, palette_mode):
    img = make_image("P", 5, 6, entries=12, palette_mode=palette_mode)
    payload = encode_kind(img, kind)
    assert decode_classical_palette(kind, payload) == (img.palette, palette_mode)
    with pytest.raises(CodecError):
        decode_classical_palette("webp", encode_kind(make_image("RGB"), "webp"))
    with pytest.raises(CodecError):
        decode_classical_palette("png", encode_kind(make_image("RGB"), "png"))


# ------------------------------------------------------------------------------ corrupt payloads


@pytest.mark.parametrize("mode,kind", [(m, k) for m, k in PAIRS if m in ("RGB", "L;16", "P", "1")])
def test_truncated_payload_raises(mode, kind):
    img = make_image(mode, 16, 16)
    payload = encode_kind(img, kind)
    for cut in sorted({0, 1, 5, 12, 20, len(payload) // 2, len(payload) - 1}):
        with pytest.raises(CodecError):
            decode_classical(kind, payload[:cut], mode, img.pixels.shape)


@pytest.mark.parametrize("kind", CLASSICAL_KINDS)
def test_garbage_payload_raises(kind):
    for junk in (b"", b"\0" * 40, b"RIFF" + b"\xff" * 60, bytes(range(256))):
        with pytest.raises(CodecError):
            decode_classical(kind, junk, "RGB", (8, 8, 3))


@pytest.mark.parametrize("kind", ["png", "webp", "jxl", "zlib"])
def test_wrong_shape_or_mode_raises(kind):
    img = make_image("RGB", 8, 10)
    payload = encode_kind(img, kind)
    wrong = [("RGB", (8, 11, 3)), ("L", (8, 10))]
    if kind != "zlib":  # headerless: a same-size transposed shape is not detectable
        wrong.append(("RGB", (10, 8, 3)))
    if kind not in (
        "webp",
        "zlib",
    ):  # WebP cannot tell RGB from fully opaque RGBA (libwebp drops the plane)
        wrong.append(("RGBA", (8, 10, 4)))
    for mode, shape in wrong:
        with pytest.raises(CodecError):
            decode_classical(kind, payload, mode, shape)
    with pytest.raises(CodecError):
        decode_classical(kind, payload, "RGB", (8, 10, 4))  # shape does not fit the mode


def test_webp_payload_must_match_mode():
    rgb = make_image("RGB", 8, 8)
    with pytest.raises(CodecError, match="colour"):
        decode_classical("webp", encode_kind(rgb, "webp"), "L", (8, 8))
    rgba = make_image("RGBA", 8, 8)
    with pytest.raises(CodecError, match="alpha"):
        decode_classical("webp", encode_kind(rgba, "webp"), "RGB", (8, 8, 3))


def test_zlib_trailing_or_short_data_raises():
    img = make_image("L", 4, 4)
    payload = encode_kind(img, "zlib")
    with pytest.raises(CodecError):
        decode_classical("zlib", payload + b"x", "L", (4, 4))
    with pytest.raises(CodecError):
        decode_classical("zlib", zlib.compress(img.pixels.tobytes() + b"x"), "L", (4, 4))
    with pytest.raises(CodecError):
        decode_classical("zlib", zlib.compress(img.pixels.tobytes()[:-1]), "L", (4, 4))
    bad_palette = zlib.compress(struct.pack("<BH", 5, 2) + b"\0" * 30)
    with pytest.raises(CodecError):
        decode_classical("zlib", bad_palette, "P", (4, 4))


def test_unknown_kind_and_unsupported_pair():
    with pytest.raises(CodecError):
        decode_classical("gif", b"", "RGB", (2, 2, 3))
    with pytest.raises(CodecError):
        decode_classical("webp", b"", "RGB;16", (2, 2, 3))
    with pytest.raises(CodecError):
        decode_classical("png", b"", "RGB", (0, 2, 3))


@settings(max_examples=120, deadline=None)
@given(kind=st.sampled_from(CLASSICAL_KINDS), data=st.data())
def test_fuzzed_payloads_only_raise_codec_error(kind, data):
    img = make_image("RGB", 12, 12, seed=9)
    buf = bytearray(encode_kind(img, kind))
    for _ in range(data.draw(st.integers(1, 3))):
        buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
    try:
        out = decode_classical(kind, bytes(buf), "RGB", (12, 12, 3))
    except CodecError:
        return
    # formats without checksums may decode flipped bits to other pixels, never another shape
    assert out.shape == (12, 12, 3) and out.dtype == np.uint8


def test_jxl_header_dims():
    for h, w in [(1, 1), (8, 16), (600, 800), (9, 9), (513, 1025), (1080, 1920), (5, 3000)]:
        payload = bytes(imagecodecs.jpegxl_encode(np.zeros((h, w), np.uint8), lossless=True))
        assert _jxl_dims(payload) == (w, h)


# ------------------------------------------------------------------------------ real data files


def test_real_16bit_file_prefers_smaller_than_png():
    p = DATA / "medical_16bit" / "MR_small.png"
    if not p.exists():
        pytest.skip(f"{p} not available")
    img = load_image(p)
    kind, payload = encode_classical(img)
    assert len(payload) <= len(encode_kind(img, "png"))
    assert np.array_equal(decode_classical(kind, payload, img.mode, img.pixels.shape), img.pixels)


def test_raster_image_with_metadata_encodes_pixels_only():
    img = make_image("RGB", 6, 6, icc_profile=b"icc", text={"a": "b"})
    payload = encode_kind(img, "png")
    back = decode_classical_image("png", payload, "RGB", img.pixels.shape)
    assert back.icc_profile is None and back.text == {}
    assert isinstance(back, RasterImage)
