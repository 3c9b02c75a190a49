"""Classical fallback codecs: what the blob stores when the learned model does not win.

Each *kind* turns a `RasterImage`'s pixels into a payload and back, bit-exactly. Payloads hold
pixels only (ICC/Exif/text travel in the container), with one exception: a "P" image's palette
is part of the payload, because indices are meaningless without it:

* kind "png": the PNG's PLTE (+ tRNS when the palette is RGBA) carries it;
* kind "zlib": the payload starts with ``[entry size 3|4][u16le entry count][palette bytes]``.

`decode_classical` returns the index array for "P"; `decode_classical_palette` returns
``(palette, palette_mode)`` to restore `RasterImage.palette`/`palette_mode`, and
`decode_classical_image` does both at once.

Payload formats (stable, since blobs outlive the code):

* "png"  -- a PNG without metadata, Pillow's default settings (zlib level 6); 16-bit LA/RGB/RGBA
  via libpng at level 6. Also the reference size the product must never exceed.
* "webp" -- lossless WebP (VP8L, exact RGB under transparent alpha). Written with cwebp's lossless
  defaults (quality 75 / method 4), at the fast effort level with method 1 (`ClassicalEffort`);
  the decoder reads either. 8-bit only; gray is stored as R=G=B (the subtract-green transform
  makes the copies nearly free) and must decode with equal channels.
* "jxl"  -- lossless JPEG XL (libjxl via imagecodecs), any 8/16-bit L/LA/RGB/RGBA.
* "zlib" -- zlib level 9 of the raw pixel bytes in C order (16-bit little-endian; mode "1" packed 8
  pixels per byte with ``np.packbits(axis=1)``; "P" with the palette header above). Stores every
  mode, including CMYK; the last resort. Headerless: it only knows its byte count, so the caller's
  (mode, shape) must come from the container.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from codec.errors import CodecError
from codec.imagefile import (
    RasterImage,
    mode_channels,
    mode_dtype,
    mode_shape,
    png_decode_pixels,
    png_encode_pixels,
    png_reaches,
)

__all__ = [
    "CLASSICAL_KINDS",
    "DEFAULT_KINDS",
    "JXL_EFFORT",
    "ClassicalEffort",
    "DEFAULT_EFFORT",
    "classical_effort",
    "supported_kinds",
    "default_kinds",
    "encode_classical",
    "encode_kind",
    "decode_classical",
    "decode_classical_palette",
    "decode_classical_image",
]

CLASSICAL_KINDS = ("png", "webp", "jxl", "zlib")
"""Stable names; the blob header stores the index, so only ever append."""

JXL_EFFORT = 7
"""libjxl's default effort. On 16-bit medical/camera images e7 is ~8% smaller than e4 at ~3x the
encode time (~1 MP/s on one core); decode speed is the same."""
WEBP_QUALITY = 75
WEBP_METHOD = 4


@dataclass(frozen=True)
class ClassicalEffort:
    """Encoder settings of the classical kinds. They trade encode time for bytes and never change
    what a payload is, so any setting decodes with the same code."""

    webp_method: int = WEBP_METHOD
    webp_quality: int = WEBP_QUALITY
    jxl_effort: int = JXL_EFFORT


DEFAULT_EFFORT = ClassicalEffort()

# At the fast level a classical encoder, where the fallback check runs one, costs 3-43x the learned
# encode: WebP method 1 at quality 75 takes 0.2-0.9x method 4's time for -0.6..+4% of its bytes
# (train sets; docs/experiments.md entry 28).
_FAST_EFFORT = ClassicalEffort(webp_method=1)
_EFFORTS = {"fast": _FAST_EFFORT, "fastest": _FAST_EFFORT}  # both fast levels (1 and 5)


def classical_effort(level: str) -> ClassicalEffort:
    """The classical settings that go with a learned effort level's name."""
    return _EFFORTS.get(level, DEFAULT_EFFORT)


_8BIT = ("L", "LA", "RGB", "RGBA")
_16BIT = ("L;16", "LA;16", "RGB;16", "RGBA;16")
DEFAULT_KINDS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(_8BIT, ("png", "webp")),
    **dict.fromkeys(_16BIT, ("png", "jxl")),
    "P": ("png",),
    "1": ("png",),
    "CMYK": ("zlib",),
}
_SUPPORT: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(_8BIT, ("png", "webp", "jxl", "zlib")),
    **dict.fromkeys(_16BIT, ("png", "jxl", "zlib")),
    "P": ("png", "zlib"),
    "1": ("png", "zlib"),
    "CMYK": ("zlib",),
}


def _available(kind: str) -> bool:
    if kind in ("png", "zlib"):
        return True
    try:
        import imagecodecs
    except ImportError:
        return False
    codec = {"webp": "WEBP", "jxl": "JPEGXL"}[kind]
    return bool(getattr(getattr(imagecodecs, codec, None), "available", False))


def supported_kinds(mode: str) -> tuple[str, ...]:
    """Kinds that store this mode exactly and are available in this build, best-known first."""
    if mode not in _SUPPORT:
        raise CodecError(f"unknown image mode {mode!r}")
    return tuple(k for k in _SUPPORT[mode] if _available(k))


def default_kinds(mode: str) -> tuple[str, ...]:
    """The candidates `encode_classical` tries when not told: cheap, usually-smallest ones."""
    if mode not in DEFAULT_KINDS:
        raise CodecError(f"unknown image mode {mode!r}")
    return tuple(k for k in DEFAULT_KINDS[mode] if _available(k)) or ("zlib",)


# --------------------------------------------------------------------------------------------
# encoding


def encode_kind(img: RasterImage, kind: str, *, effort: ClassicalEffort = DEFAULT_EFFORT) -> bytes:
    """Encode with one kind, without verification (CodecError if the kind cannot store it)."""
    if kind not in CLASSICAL_KINDS:
        raise CodecError(f"unknown classical kind {kind!r}; expected one of {CLASSICAL_KINDS}")
    if kind not in supported_kinds(img.mode):
        raise CodecError(f"kind {kind!r} cannot store mode {img.mode} (in this build)")
    try:
        if kind == "png":
            return png_encode_pixels(img)
        if kind == "zlib":
            return _zlib_encode(img)
        import imagecodecs

        px = img.pixels
        if kind == "webp":
            if img.mode in ("L", "LA"):
                gray = px if img.mode == "L" else px[:, :, 0]
                planes = [gray, gray, gray] + ([px[:, :, 1]] if img.mode == "LA" else [])
                px = np.ascontiguousarray(np.stack(planes, axis=2))
            return bytes(
                imagecodecs.webp_encode(
                    px,
                    effort.webp_quality,
                    lossless=True,
                    method=effort.webp_method,
                    numthreads=1,
                )
            )
        # jxl
        return bytes(
            imagecodecs.jpegxl_encode(px, lossless=True, effort=effort.jxl_effort, numthreads=1)
        )
    except CodecError:
        raise
    except Exception as e:
        raise CodecError(
            f"{kind} encoding of a {img.mode} {_shape_str(img)} image failed: {e}"
        ) from e


def _shape_str(img: RasterImage) -> str:
    return "x".join(str(d) for d in img.pixels.shape)


def _zlib_encode(img: RasterImage) -> bytes:
    px = img.pixels
    if img.mode == "1":
        raw = np.packbits(px.astype(bool), axis=1).tobytes()
    elif img.mode == "P":
        pal = img.palette or b""
        step = len(img.palette_mode or "RGB")
        raw = struct.pack("<BH", step, len(pal) // step) + pal + px.tobytes()
    else:
        raw = px.astype(px.dtype.newbyteorder("<"), copy=False).tobytes()
    return zlib.compress(raw, 9)


def encode_classical(
    img: RasterImage,
    kinds: Sequence[str] | None = None,
    *,
    effort: ClassicalEffort = DEFAULT_EFFORT,
) -> tuple[str, bytes]:
    """Smallest verified payload among the candidate kinds: ``(kind, payload)``.

    Candidates default to `default_kinds(img.mode)`; kinds that cannot store the mode are skipped.
    A candidate is decoded again and compared bit-exactly (pixels, and palette for "P") before
    it may win, so a library quirk can cost size but never exactness (`smallest_verified`). If
    no candidate survives, "zlib" is used: it stores every mode.
    """
    best = smallest_verified(img, kinds, effort=effort)
    if best is None:
        payload = encode_kind(img, "zlib", effort=effort)
        if not _verifies(img, "zlib", payload):  # pragma: no cover - raw zlib always round trips
            raise CodecError(f"no classical kind could store this {img.mode} image exactly")
        best = ("zlib", payload)
    return best


def smallest_verified(
    img: RasterImage,
    kinds: Sequence[str] | None = None,
    *,
    effort: ClassicalEffort = DEFAULT_EFFORT,
    below: int | None = None,
) -> tuple[str, bytes] | None:
    """Smallest payload among the candidate kinds that decodes back exactly, or None.

    Every candidate is encoded; only the smallest is decoded and compared, and the next only if
    that one fails, so verification costs one decode, not one per kind. Candidates of `below`
    bytes or more are dropped unverified (a caller holding a smaller blob cannot use them).
    PNG, which rarely wins but must run for the never-worse-than-PNG guarantee, goes last and
    stops early (imagefile.png_reaches) once it cannot beat the best verified payload or
    `below`. Ties among the others go to the earlier candidate; PNG must be strictly smaller."""
    img.validate()
    cands = default_kinds(img.mode) if kinds is None else tuple(kinds)
    for k in cands:
        if k not in CLASSICAL_KINDS:
            raise CodecError(f"unknown classical kind {k!r}; expected one of {CLASSICAL_KINDS}")
    usable = [k for k in cands if k in supported_kinds(img.mode)]
    best = _smallest_verified(img, [k for k in usable if k != "png"], usable, effort, below)
    if "png" not in usable:
        return best
    limits = [n for n in (below, best and len(best[1])) if n is not None]
    bound = min(limits, default=None)  # what PNG must come under to matter
    if bound is not None and png_reaches(img, bound):
        return best  # the PNG file is longer than its zlib stream: it cannot win, nor tie
    return _smallest_verified(img, ["png"], usable, effort, bound) or best


def _smallest_verified(
    img: RasterImage,
    kinds: list[str],
    order: list[str],
    effort: ClassicalEffort,
    below: int | None,
) -> tuple[str, bytes] | None:
    encoded = []
    for k in kinds:
        try:
            payload = encode_kind(img, k, effort=effort)
        except CodecError:
            continue
        if below is None or len(payload) < below:
            encoded.append((len(payload), order.index(k), k, payload))
    for _, _, k, payload in sorted(encoded):
        if _verifies(img, k, payload):
            return k, payload
    return None


def _verifies(img: RasterImage, kind: str, payload: bytes) -> bool:
    try:
        back = decode_classical_image(kind, payload, img.mode, img.pixels.shape)
    except CodecError:
        return False
    same = np.array_equal(back.pixels, img.pixels) and back.pixels.dtype == img.pixels.dtype
    if img.mode == "P":
        same = same and back.palette == img.palette and back.palette_mode == img.palette_mode
    return same


# --------------------------------------------------------------------------------------------
# decoding


def decode_classical(kind: str, payload: bytes, mode: str, shape: tuple[int, ...]) -> np.ndarray:
    """Exact pixel array (indices for "P") of a payload; CodecError if corrupt or not (mode, shape).

    Header dimensions are checked before any pixel decoding, so a hostile payload cannot make the
    decoder allocate more than the expected image.
    """
    return decode_classical_image(kind, payload, mode, shape).pixels


def decode_classical_image(
    kind: str, payload: bytes, mode: str, shape: tuple[int, ...]
) -> RasterImage:
    """Like `decode_classical`, but as a RasterImage with the palette restored for "P"."""
    shape = tuple(int(d) for d in shape)
    if len(shape) < 2 or shape[0] <= 0 or shape[1] <= 0:
        raise CodecError(f"invalid image shape {shape}")
    if mode not in _SUPPORT:
        raise CodecError(f"unknown image mode {mode!r}")
    if shape != mode_shape(mode, shape[0], shape[1]):
        raise CodecError(f"shape {shape} does not fit mode {mode}")
    if kind not in CLASSICAL_KINDS:
        raise CodecError(f"unknown classical kind {kind!r}")
    if kind not in _SUPPORT[mode]:
        raise CodecError(f"kind {kind!r} never stores mode {mode}")
    payload = bytes(payload)
    try:
        if kind == "png":
            img = _png_decode(payload, mode, shape)
        elif kind == "zlib":
            img = _zlib_decode(payload, mode, shape)
        elif kind == "webp":
            img = RasterImage(_webp_decode(payload, mode, shape), mode)
        else:
            img = RasterImage(_jxl_decode(payload, mode, shape), mode)
    except CodecError as e:
        raise CodecError(f"{kind} payload: {e}") from e.__cause__
    except Exception as e:
        raise CodecError(f"corrupt {kind} payload: {e}") from e
    if img.mode != mode or img.pixels.shape != shape or img.pixels.dtype != mode_dtype(mode):
        raise CodecError(
            f"{kind} payload decodes to {img.mode} {img.pixels.shape} {img.pixels.dtype}, "
            f"expected {mode} {shape}"
        )
    return img


def decode_classical_palette(kind: str, payload: bytes) -> tuple[bytes, str]:
    """``(palette, palette_mode)`` stored in a "P" payload, without decoding the pixels."""
    payload = bytes(payload)
    try:
        if kind == "png":
            from codec.imagefile import _parse_png

            info = _parse_png(payload)
            if info.color_type != 3 or not info.plte:
                raise CodecError("PNG payload has no palette")
            n = len(info.plte) // 3
            rgb = np.frombuffer(info.plte[: 3 * n], np.uint8).reshape(n, 3)
            if info.trns is None:
                return rgb.tobytes(), "RGB"
            alpha = np.full((n, 1), 255, np.uint8)
            t = np.frombuffer(info.trns[:n], np.uint8)
            alpha[: len(t), 0] = t
            return np.concatenate([rgb, alpha], axis=1).tobytes(), "RGBA"
        if kind == "zlib":
            head = zlib.decompressobj().decompress(payload, 3 + 4 * 256)
            return _zlib_palette(head)[:2]
    except CodecError:
        raise
    except Exception as e:
        raise CodecError(f"corrupt {kind} payload: {e}") from e
    raise CodecError(f"kind {kind!r} does not carry a palette")


def _png_decode(payload: bytes, mode: str, shape: tuple[int, ...]) -> RasterImage:
    # the sample cap makes the header check happen before pixels are decoded
    img = png_decode_pixels(payload, max_samples=int(np.prod(shape)))
    if img.icc_profile or img.exif or img.text:
        raise CodecError("PNG payload unexpectedly carries metadata")
    return img


def _zlib_palette(raw: bytes) -> tuple[bytes, str, int]:
    if len(raw) < 3:
        raise CodecError("truncated palette header")
    step, n = struct.unpack_from("<BH", raw)
    if step not in (3, 4) or not 1 <= n <= 256:
        raise CodecError(f"bad palette header ({step}-byte entries, {n} entries)")
    end = 3 + step * n
    if len(raw) < end:
        raise CodecError("truncated palette")
    return raw[3:end], ("RGB" if step == 3 else "RGBA"), end


def _zlib_decode(payload: bytes, mode: str, shape: tuple[int, ...]) -> RasterImage:
    h, w = shape[0], shape[1]
    if mode == "1":
        want = h * ((w + 7) // 8)
    else:
        want = int(np.prod(shape)) * mode_dtype(mode).itemsize
    extra = 3 + 4 * 256 if mode == "P" else 0
    d = zlib.decompressobj()
    try:
        raw = d.decompress(payload, want + extra + 1)
    except zlib.error as e:
        raise CodecError(f"corrupt zlib payload: {e}") from None
    if not d.eof or d.unused_data or d.unconsumed_tail:
        raise CodecError("zlib payload is truncated or has trailing data")
    palette = palette_mode = None
    if mode == "P":
        palette, palette_mode, start = _zlib_palette(raw)
        raw = raw[start:]
    if len(raw) != want:
        raise CodecError(f"zlib payload holds {len(raw)} bytes, expected {want}")
    if mode == "1":
        packed = np.frombuffer(raw, np.uint8).reshape(h, (w + 7) // 8)
        px = np.ascontiguousarray(np.unpackbits(packed, axis=1, count=w))
    else:
        dt = mode_dtype(mode)
        px = np.frombuffer(raw, dt.newbyteorder("<")).astype(dt).reshape(shape)
    return RasterImage(px, mode, palette=palette, palette_mode=palette_mode)


def _webp_dims(payload: bytes) -> tuple[int, int, bool]:
    """(width, height, alpha_is_used) from the VP8L header."""
    if len(payload) < 25 or payload[:4] != b"RIFF" or payload[8:12] != b"WEBP":
        raise CodecError("not a WebP stream")
    if payload[12:16] != b"VP8L" or payload[20] != 0x2F:
        raise CodecError("not a lossless (VP8L) WebP stream")
    (bits,) = struct.unpack_from("<I", payload, 21)
    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool((bits >> 28) & 1)


def _webp_decode(payload: bytes, mode: str, shape: tuple[int, ...]) -> np.ndarray:
    import imagecodecs

    w, h, has_alpha = _webp_dims(payload)
    if (h, w) != shape[:2]:
        raise CodecError(f"WebP is {w}x{h}, expected {shape[1]}x{shape[0]}")
    alpha = mode in ("LA", "RGBA")
    if has_alpha and not alpha:
        raise CodecError(f"WebP payload has alpha, expected {mode}")
    # (an RGBA payload without alpha_is_used is a fully opaque image: decoding it as RGBA is exact)
    px = np.asarray(imagecodecs.webp_decode(payload, hasalpha=alpha))
    if px.ndim != 3 or px.shape[2] != (4 if alpha else 3):
        raise CodecError(f"WebP decoded to shape {px.shape}")
    if mode in ("L", "LA"):
        g = px[:, :, 0]
        if not (np.array_equal(g, px[:, :, 1]) and np.array_equal(g, px[:, :, 2])):
            raise CodecError("gray WebP payload decodes to colour")
        px = g if mode == "L" else np.stack([g, px[:, :, 3]], axis=2)
    return np.ascontiguousarray(px)


class _Bits:
    """LSB-first bit reader for the JPEG XL SizeHeader."""

    def __init__(self, data: bytes) -> None:
        self.v = int.from_bytes(data, "little")
        self.pos = 0

    def u(self, n: int) -> int:
        r = (self.v >> self.pos) & ((1 << n) - 1)
        self.pos += n
        return r

    def u32_dim(self) -> int:
        return 1 + self.u((9, 13, 18, 30)[self.u(2)])


_JXL_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}


def _jxl_codestream(payload: bytes) -> bytes:
    if payload[:2] == b"\xff\x0a":
        return payload
    pos = 0
    while pos + 8 <= len(payload):
        size, btype = struct.unpack_from(">I4s", payload, pos)
        head = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", payload, pos + 8)
            head = 16
        elif size == 0:
            size = len(payload) - pos
        if size < head:
            break
        if btype == b"jxlc":
            return payload[pos + head : pos + size]
        if btype == b"jxlp":
            return payload[pos + head + 4 : pos + size]
        pos += size
    raise CodecError("not a JPEG XL stream (no codestream found)")


def _jxl_dims(payload: bytes) -> tuple[int, int]:
    cs = _jxl_codestream(payload)
    if cs[:2] != b"\xff\x0a" or len(cs) < 12:
        raise CodecError("not a JPEG XL codestream")
    b = _Bits(cs[2:12])
    small = b.u(1)
    h = (b.u(5) + 1) * 8 if small else b.u32_dim()
    ratio = b.u(3)
    if ratio:
        num, den = _JXL_RATIOS[ratio]
        w = h * num // den
    else:
        w = (b.u(5) + 1) * 8 if small else b.u32_dim()
    return w, h


def _jxl_decode(payload: bytes, mode: str, shape: tuple[int, ...]) -> np.ndarray:
    import imagecodecs

    w, h = _jxl_dims(payload)
    if (h, w) != shape[:2]:
        raise CodecError(f"JPEG XL is {w}x{h}, expected {shape[1]}x{shape[0]}")
    px = np.asarray(imagecodecs.jpegxl_decode(payload, numthreads=1))
    if px.ndim == 3 and px.shape[2] == 1 and mode_channels(mode) == 1:
        px = px[:, :, 0]
    return np.ascontiguousarray(px)
