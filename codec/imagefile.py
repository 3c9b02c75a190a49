"""Exact image I/O: files (or arrays, or Pillow images) in, `RasterImage` out, and back to PNG.

The codec is lossless on *pixels*, so this module's job is to hand it the pixels exactly as stored
(16-bit stays 16-bit, palette images stay indices + palette) and to write them back exactly.

Conventions (the rest of the codec relies on them):

* ``pixels`` is a C-contiguous, native-endian ``uint8`` (8-bit modes) or ``uint16`` (";16" modes)
  array, ``(H, W)`` for "L", "L;16", "P" and "1" (0/1 values, uint8) and ``(H, W, C)`` otherwise.
* ``exif`` is the raw TIFF-structured Exif block *without* the ``b"Exif\\0\\0"`` JPEG prefix (the
  form PNG's eXIf chunk stores), so a JPEG's Exif compares equal after a trip through PNG.
* ``palette`` ("P" only) holds the PLTE entries as RGB triplets, or as RGBA quads when the file had
  transparency (PNG tRNS, expanded to one alpha per entry; GIF transparency index);
  ``palette_mode`` says which ("RGB"/"RGBA"), because a byte length alone is ambiguous (12 bytes =
  4 RGB or 3 RGBA entries).
* PNG colour-key transparency (tRNS on a gray/RGB image) has no field here: it is expanded into a
  real alpha channel on load (L -> LA, RGB -> RGBA, "1" -> LA), so rendering is preserved exactly.
* Dropped on purpose: gamma/chromaticity/sRGB/pHYs chunks and non-PNG text (JPEG comments, XMP in
  WebP/TIFF). Animated or multi-page images are refused rather than silently cut to one frame.

Every failure to read or write raises `CodecError` (and nothing else), with a message saying why.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from codec.errors import CodecError

__all__ = [
    "MODES",
    "DEFAULT_MAX_SAMPLES",
    "RasterImage",
    "load_image",
    "mode_for_array",
    "to_png_bytes",
    "to_tiff_bytes",
    "to_file_bytes",
    "mode_channels",
    "mode_dtype",
    "mode_shape",
    "png_encode_pixels",
    "png_decode_pixels",
    "open_pillow",
]

MODES = ("L", "LA", "RGB", "RGBA", "L;16", "LA;16", "RGB;16", "RGBA;16", "P", "CMYK", "1")
def _max_samples_from_env() -> int:
    raw = os.environ.get("PILC_MAX_SAMPLES", "").strip()
    if not raw:
        return 2**31
    try:
        value = int(raw)
    except ValueError:
        raise CodecError(f"PILC_MAX_SAMPLES must be a positive integer, not {raw!r}") from None
    if value < 1:
        raise CodecError(f"PILC_MAX_SAMPLES must be a positive integer, not {raw!r}")
    return value


DEFAULT_MAX_SAMPLES = _max_samples_from_env()
"""The one size limit of every reading path (PNG, Pillow formats, arrays, blobs): images with
more than this many samples (H*W*C) are refused before their pixels are decoded. Default 2^31
(a 2 GiB 8-bit decode); set PILC_MAX_SAMPLES, or pass max_samples= per call. Pillow's own
"decompression bomb" pixel limit is lifted to this one wherever Pillow decodes for us, so it
never refuses an image this limit accepts."""

_CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "P": 1, "1": 1, "CMYK": 4}
_MAX_META_BYTES = 64 * 2**20  # decompressed iCCP/zTXt/iTXt cap: a zip bomb in a text chunk
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_EXIF_PREFIX = b"Exif\x00\x00"


def mode_channels(mode: str) -> int:
    """Samples per pixel for a mode (palette and 1-bit count as one index/bit sample)."""
    _check_mode(mode)
    return _CHANNELS[mode.removesuffix(";16")]


def mode_dtype(mode: str) -> np.dtype:
    """The pixel dtype a mode is stored in."""
    _check_mode(mode)
    return np.dtype(np.uint16) if mode.endswith(";16") else np.dtype(np.uint8)


def mode_shape(mode: str, height: int, width: int) -> tuple[int, ...]:
    """The pixel-array shape for a mode, so decoders can check what they produced."""
    c = mode_channels(mode)
    return (height, width) if mode in ("L", "L;16", "P", "1") else (height, width, c)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise CodecError(f"unknown image mode {mode!r}; expected one of {MODES}")


@dataclass(eq=False)
class RasterImage:
    """Pixels plus the metadata a lossless round trip must carry (see module docstring)."""

    pixels: np.ndarray
    mode: str
    icc_profile: bytes | None = None
    exif: bytes | None = None
    text: dict[str, str] = field(default_factory=dict)
    palette: bytes | None = None
    palette_mode: str | None = None  # "RGB" or "RGBA" for "P"; inferred from length when omitted

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Fail early (CodecError) on an inconsistent image instead of deep inside an encoder."""
        _check_mode(self.mode)
        px = self.pixels
        if not isinstance(px, np.ndarray):
            raise CodecError(f"pixels must be a numpy array, got {type(px).__name__}")
        want = mode_dtype(self.mode)
        if px.dtype != want:
            raise CodecError(f"mode {self.mode} needs {want} pixels, got {px.dtype}")
        if px.ndim < 2 or px.shape[0] == 0 or px.shape[1] == 0:
            raise CodecError(f"empty or non-2D pixel array of shape {px.shape}")
        if px.shape != mode_shape(self.mode, px.shape[0], px.shape[1]):
            raise CodecError(f"mode {self.mode} does not fit pixel array shape {px.shape}")
        if self.mode == "1" and px.size and int(px.max()) > 1:
            raise CodecError('mode "1" pixels must be 0 or 1')
        if self.mode == "P":
            if not self.palette:
                raise CodecError('mode "P" needs a palette')
            self.palette = bytes(self.palette)
            if self.palette_mode is None:
                n = len(self.palette)
                self.palette_mode = "RGB" if n % 3 == 0 else "RGBA"
            if self.palette_mode not in ("RGB", "RGBA"):
                raise CodecError(f"palette_mode must be RGB or RGBA, not {self.palette_mode!r}")
            step = len(self.palette_mode)
            if len(self.palette) % step or not 1 <= len(self.palette) // step <= 256:
                raise CodecError(
                    f"palette of {len(self.palette)} bytes is not 1-256 {self.palette_mode} entries"
                )
        elif self.palette is not None or self.palette_mode is not None:
            raise CodecError(f'only mode "P" has a palette, not {self.mode}')
        self.exif = _normalize_exif(self.exif)  # one canonical form, so equality means something
        self.icc_profile = bytes(self.icc_profile) if self.icc_profile else None
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.text.items()):
            raise CodecError("text must map str to str")

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return mode_channels(self.mode)

    @property
    def palette_entries(self) -> int:
        """Number of palette entries ("P" only; 0 otherwise)."""
        if self.palette is None or self.palette_mode is None:
            return 0
        return len(self.palette) // len(self.palette_mode)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RasterImage):
            return NotImplemented
        return (
            self.mode == other.mode
            and self.pixels.dtype == other.pixels.dtype
            and self.pixels.shape == other.pixels.shape
            and bool(np.array_equal(self.pixels, other.pixels))
            and self.icc_profile == other.icc_profile
            and self.exif == other.exif
            and dict(self.text) == dict(other.text)
            and self.palette == other.palette
            and self.palette_mode == other.palette_mode
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, array-valued


# --------------------------------------------------------------------------------------------
# arrays and modes


def mode_for_array(arr: np.ndarray) -> str:
    """Infer the mode of a bare array: uint8/uint16 with 1-4 channels, or bool for "1".

    "P" and "CMYK" cannot be inferred (a 4-channel array is taken as RGBA); build a RasterImage
    explicitly for those.
    """
    if not isinstance(arr, np.ndarray):
        raise CodecError(f"expected a numpy array, got {type(arr).__name__}")
    if arr.dtype == np.bool_:
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 1):
            return "1"
        raise CodecError(f"a bool array must be (H, W) for mode '1', got shape {arr.shape}")
    if arr.dtype.kind != "u" or arr.dtype.itemsize not in (1, 2):
        raise CodecError(f"pixels must be uint8 or uint16, got dtype {arr.dtype}")
    if arr.ndim == 2:
        base = "L"
    elif arr.ndim == 3 and 1 <= arr.shape[2] <= 4:
        base = ("L", "LA", "RGB", "RGBA")[arr.shape[2] - 1]
    else:
        raise CodecError(f"cannot infer an image mode from array shape {arr.shape}")
    return base + (";16" if arr.dtype.itemsize == 2 else "")


def _from_array(arr: np.ndarray) -> RasterImage:
    mode = mode_for_array(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if mode == "1":
        px = arr.astype(np.uint8)
    else:
        px = np.ascontiguousarray(arr, dtype=mode_dtype(mode))  # also fixes byte order
        if px is arr:
            px = arr.copy()  # never alias the caller's buffer
    return RasterImage(px, mode)


# --------------------------------------------------------------------------------------------
# PNG chunk level: metadata, header checks, minimal streams for the pixel decoders


def _chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def _inflate_capped(data: bytes, what: str) -> bytes:
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, _MAX_META_BYTES)
    except zlib.error as e:
        raise CodecError(f"corrupt compressed {what} in PNG: {e}") from None
    if d.unconsumed_tail:
        raise CodecError(f"PNG {what} decompresses to more than {_MAX_META_BYTES} bytes")
    return out


@dataclass
class _PngInfo:
    width: int
    height: int
    bit_depth: int
    color_type: int
    plte: bytes | None = None
    trns: bytes | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    text: dict[str, str] = field(default_factory=dict)
    frames: int = 1
    minimal: bytes = b""  # IHDR/PLTE/IDAT/IEND only: what the pixel decoders get


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _parse_png(data: bytes) -> _PngInfo:
    """Walk the chunks (CRC-checked), pull metadata, and build a metadata-free copy.

    Decoders then never see text/ICC chunks (no Pillow text-size limits, no zip bombs beyond ours),
    and a truncated file is caught here by its missing IEND.
    """
    mv = memoryview(data)
    if bytes(mv[:8]) != _PNG_SIG:
        raise CodecError("not a PNG stream (bad signature)")
    pos, n = 8, len(data)
    info: _PngInfo | None = None
    keep: list[bytes] = []
    seen_idat = False
    while True:
        if pos + 12 > n:
            raise CodecError("truncated PNG: stream ends before IEND")
        length, ctype = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if length > 2**31 - 1 or end > n:
            raise CodecError(f"truncated PNG: chunk {ctype!r} runs past the end of the data")
        body = bytes(mv[pos + 8 : pos + 8 + length])
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        if zlib.crc32(ctype + body) != crc:
            raise CodecError(f"corrupt PNG: CRC mismatch in chunk {ctype!r}")
        pos = end
        if info is None:
            if ctype != b"IHDR" or length != 13:
                raise CodecError("corrupt PNG: first chunk is not a valid IHDR")
            w, h, depth, ctyp, _comp, _filt, _inter = struct.unpack(">IIBBBBB", body)
            if w == 0 or h == 0 or ctyp not in _PNG_CHANNELS:
                raise CodecError(f"corrupt PNG header ({w}x{h}, color type {ctyp})")
            info = _PngInfo(w, h, depth, ctyp)
            keep.append(_chunk(ctype, body))
            continue
        if ctype == b"IDAT":
            seen_idat = True
            keep.append(_chunk(ctype, body))
        elif ctype == b"PLTE":
            info.plte = body
            keep.append(_chunk(ctype, body))
        elif ctype == b"tRNS":
            info.trns = body
        elif ctype == b"iCCP" and info.icc_profile is None:
            name, _, rest = body.partition(b"\0")
            if len(rest) < 1:
                raise CodecError("corrupt PNG iCCP chunk")
            info.icc_profile = _inflate_capped(rest[1:], "ICC profile")
        elif ctype == b"eXIf":
            info.exif = body
        elif ctype in (b"tEXt", b"zTXt", b"iTXt"):
            k, v = _parse_text_chunk(ctype, body)
            info.text[k] = v
        elif ctype == b"acTL" and len(body) >= 4:
            info.frames = struct.unpack(">I", body[:4])[0]
        elif ctype == b"IEND":
            break
    if not seen_idat:
        raise CodecError("corrupt PNG: no image data (IDAT)")
    keep.append(_chunk(b"IEND", b""))
    info.minimal = _PNG_SIG + b"".join(keep)
    return info


def _parse_text_chunk(ctype: bytes, body: bytes) -> tuple[str, str]:
    key, sep, rest = body.partition(b"\0")
    if not sep or not key:
        raise CodecError(f"corrupt PNG {ctype.decode()} chunk")
    k = key.decode("latin-1")
    if ctype == b"tEXt":
        return k, rest.decode("latin-1")
    if ctype == b"zTXt":
        return k, _inflate_capped(rest[1:], "zTXt text").decode("latin-1")
    if len(rest) < 2:
        raise CodecError("corrupt PNG iTXt chunk")
    compressed, rest = rest[0], rest[2:]
    _lang, _, rest = rest.partition(b"\0")
    _tkey, _, rest = rest.partition(b"\0")
    raw = _inflate_capped(rest, "iTXt text") if compressed else rest
    try:
        return k, raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CodecError("corrupt PNG iTXt chunk: text is not UTF-8") from None


def _metadata_chunks(img: RasterImage) -> bytes:
    out = []
    if img.icc_profile:
        out.append(_chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(img.icc_profile, 9)))
    if img.exif:
        out.append(_chunk(b"eXIf", _normalize_exif(img.exif) or b""))
    for k, v in img.text.items():
        try:
            key = k.encode("latin-1")
        except UnicodeEncodeError:
            raise CodecError(f"PNG text key {k!r} is not Latin-1") from None
        if not 1 <= len(key) <= 79 or b"\0" in key:
            raise CodecError(f"PNG text key {k!r} must be 1-79 characters without NUL")
        big = len(v) > 1024
        try:
            lat = v.encode("latin-1")
        except UnicodeEncodeError:
            raw = v.encode("utf-8")
            body = key + (b"\0\1\0\0\0" + zlib.compress(raw, 9) if big else b"\0\0\0\0\0" + raw)
            out.append(_chunk(b"iTXt", body))
            continue
        if big:
            out.append(_chunk(b"zTXt", key + b"\0\0" + zlib.compress(lat, 9)))
        else:
            out.append(_chunk(b"tEXt", key + b"\0" + lat))
    return b"".join(out)


def _insert_after_ihdr(png: bytes, chunks: bytes) -> bytes:
    # IHDR is always first and 13 bytes long: signature(8) + len/type(8) + 13 + crc(4)
    return png[:33] + chunks + png[33:] if chunks else png


def _normalize_exif(exif: bytes | None) -> bytes | None:
    if not exif:
        return None
    exif = bytes(exif)
    return exif[len(_EXIF_PREFIX) :] if exif.startswith(_EXIF_PREFIX) else exif


# --------------------------------------------------------------------------------------------
# pixel-level PNG (shared with codec.classical, which stores pixels only)


def png_encode_pixels(
    img: RasterImage, *, compress_level: int = 6, optimize: bool = False
) -> bytes:
    """Pixels (+ palette for "P") as a PNG with no metadata; Pillow defaults unless told otherwise.

    Pillow writes every mode it can store exactly (8-bit modes, "1", "P", 16-bit gray); 16-bit
    LA/RGB/RGBA go through libpng (imagecodecs) at the same zlib level, because Pillow would
    reduce them to 8 bits.
    """
    if img.mode == "CMYK":
        raise CodecError("PNG cannot store CMYK; use to_tiff_bytes or the zlib classical kind")
    px = img.pixels
    try:
        if img.mode in ("LA;16", "RGB;16", "RGBA;16"):
            import imagecodecs

            level = 9 if optimize else compress_level
            return bytes(imagecodecs.png_encode(px, level=level))
        pil = _to_pil(img)
        buf = io.BytesIO()
        kw: dict = {"compress_level": compress_level, "optimize": optimize}
        if img.mode == "P" and img.palette_mode == "RGBA":
            kw["transparency"] = img.palette[3::4]  # type: ignore[index]
        pil.save(buf, format="PNG", **kw)
        return buf.getvalue()
    except CodecError:
        raise
    except Exception as e:
        raise CodecError(f"PNG encoding of a {img.mode} image failed: {e}") from e


PNG_STEP = 4096  # compressed bytes per step of png_reaches


def png_reaches(img: RasterImage, limit: int) -> bool:
    """Whether png_encode_pixels(img) would be `limit` bytes or more, answered by running the
    same Pillow zlib encoder and stopping once its compressed stream alone reaches `limit`.

    The zlib stream is the same whatever the output block size (tests/codec/test_imagefile.py
    checks it against the IDAT data of png_encode_pixels), and the file adds its signature and
    chunks to it, so a True is exact; a PNG that loses by 2x stops about half way. 8-bit L, LA,
    RGB and RGBA only (others, and any Pillow that lacks the encoder: False, meaning "encode")."""
    if img.mode not in ("L", "LA", "RGB", "RGBA") or img.pixels.dtype != np.uint8:
        return False
    pil = _to_pil(img)
    try:
        # what PngImagePlugin._save hands ImageFile._save at compress_level 6, no optimize
        encoder = Image._getencoder(pil.mode, "zip", pil.mode, (False, 6, -1, b""))
    except (AttributeError, OSError, TypeError, ValueError):
        return False
    try:
        encoder.setimage(pil.im, (0, 0, *pil.size))
        total = 0
        while True:
            _, status, data = encoder.encode(PNG_STEP)
            total += len(data)
            if total >= limit:
                return True
            if status:
                return False
    finally:
        encoder.cleanup()


def _to_pil(img: RasterImage) -> Image.Image:
    px, mode = img.pixels, img.mode
    if mode == "1":
        return Image.fromarray(px.astype(bool))
    if mode == "P":
        n = img.palette_entries
        if px.size and int(px.max()) >= n:
            raise CodecError(f"palette index {int(px.max())} out of range for {n} entries")
        pil = Image.frombytes("P", (img.width, img.height), np.ascontiguousarray(px).tobytes())
        pal = img.palette or b""
        if img.palette_mode == "RGBA":
            pal = bytes(np.frombuffer(pal, np.uint8).reshape(-1, 4)[:, :3].tobytes())
        pil.putpalette(pal, rawmode="RGB")
        return pil
    if mode == "L;16":
        return Image.frombytes("I;16", (img.width, img.height), px.astype("<u2").tobytes())
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        return Image.frombytes(mode, (img.width, img.height), np.ascontiguousarray(px).tobytes())
    raise CodecError(f"Pillow cannot hold a {mode} image exactly")


def png_decode_pixels(data: bytes, *, max_samples: int = DEFAULT_MAX_SAMPLES) -> RasterImage:
    """Decode a PNG stream exactly, with its metadata (see `load_image` for the conventions)."""
    info = _parse_png(bytes(data))
    if info.frames > 1:
        raise CodecError(f"animated PNG with {info.frames} frames is not supported")
    ch = _PNG_CHANNELS[info.color_type]
    _check_limit(info.width, info.height, ch, max_samples)
    key = _png_key(info)
    try:
        if info.bit_depth == 16:
            import imagecodecs

            px = np.asarray(imagecodecs.png_decode(info.minimal))
            mode = {0: "L;16", 4: "LA;16", 2: "RGB;16", 6: "RGBA;16"}[info.color_type]
            px = np.ascontiguousarray(px, dtype=np.uint16)
        else:
            with open_pillow(info.minimal, max_samples=max_samples) as pil:
                pil.load()
                mode, px = _pil_pixels(pil)
    except CodecError:
        raise
    except Exception as e:
        raise CodecError(f"corrupt PNG image data: {e}") from e
    if px.shape[:2] != (info.height, info.width):
        raise CodecError(f"PNG decoded to shape {px.shape}, header says {info.width}x{info.height}")
    palette = palette_mode = None
    if info.color_type == 3:
        palette, palette_mode, px = _png_palette(info, px)
    elif key is not None:
        mode, px = _apply_color_key(mode, px, key)
    return RasterImage(
        px,
        mode,
        icc_profile=info.icc_profile,
        exif=_normalize_exif(info.exif),
        text=info.text,
        palette=palette,
        palette_mode=palette_mode,
    )


def _png_key(info: _PngInfo) -> tuple[int, ...] | None:
    """tRNS colour key of a gray/RGB PNG, in the decoded pixel's scale, or None."""
    t = info.trns
    if t is None or info.color_type not in (0, 2):
        return None
    vals = struct.unpack(">" + "H" * (len(t) // 2), t[: len(t) // 2 * 2])
    need = 1 if info.color_type == 0 else 3
    if len(vals) < need:
        return None
    vals = vals[:need]
    d = info.bit_depth
    if d < 8 and info.color_type == 0:
        # Pillow scales 2/4-bit gray up to 0..255 and gives 1-bit as mode "1" (0/1 after us)
        if d == 1:
            return (vals[0] & 1,)
        return ((vals[0] & ((1 << d) - 1)) * (255 // ((1 << d) - 1)),)
    return vals


def _apply_color_key(mode: str, px: np.ndarray, key: tuple[int, ...]) -> tuple[str, np.ndarray]:
    """Turn colour-key transparency into an explicit alpha channel (see module docstring)."""
    if mode == "1":
        mode, px = "L", px * np.uint8(255)
        key = (key[0] * 255,)
    wide = mode.endswith(";16")
    top = 65535 if wide else 255
    if px.ndim == 2:
        hit = px == key[0]
        base = px[:, :, None]
    else:
        hit = np.all(px == np.asarray(key, dtype=px.dtype), axis=2)
        base = px
    alpha = np.where(hit, 0, top).astype(px.dtype)[:, :, None]
    new_mode = {"L": "LA", "RGB": "RGBA", "L;16": "LA;16", "RGB;16": "RGBA;16"}[mode]
    return new_mode, np.ascontiguousarray(np.concatenate([base, alpha], axis=2))


def _png_palette(info: _PngInfo, px: np.ndarray) -> tuple[bytes, str, np.ndarray]:
    plte = info.plte or b""
    n = len(plte) // 3
    if n == 0:
        raise CodecError("corrupt PNG: palette image without a PLTE chunk")
    rgb = np.frombuffer(plte[: n * 3], np.uint8).reshape(n, 3)
    hi = int(px.max()) if px.size else 0
    if hi >= n:
        # out-of-range indices render black in libpng; make that explicit so writing back works
        rgb = np.concatenate([rgb, np.zeros((hi + 1 - n, 3), np.uint8)])
        n = hi + 1
    if info.trns is None:
        return rgb.tobytes(), "RGB", px
    alpha = np.full((n, 1), 255, np.uint8)
    t = np.frombuffer(info.trns[:n], np.uint8)
    alpha[: len(t), 0] = t
    return np.concatenate([rgb, alpha], axis=1).tobytes(), "RGBA", px


# --------------------------------------------------------------------------------------------
# Pillow (everything that is not PNG) and loading


def _pil_pixels(pil: Image.Image) -> tuple[str, np.ndarray]:
    """Map a loaded Pillow image to (mode, pixels) without changing any value; else CodecError."""
    m = pil.mode
    if m == "1":
        return "1", np.asarray(pil, dtype=bool).astype(np.uint8)
    if m in ("L", "LA", "RGB", "RGBA", "CMYK", "P"):
        return m, np.ascontiguousarray(np.asarray(pil), dtype=np.uint8)
    if m.startswith("I;16"):
        return "L;16", np.ascontiguousarray(np.asarray(pil), dtype=np.uint16)
    if m == "I":
        a = np.asarray(pil)
        if a.size and (int(a.min()) < 0 or int(a.max()) > 65535):
            raise CodecError("32-bit integer image with values outside 0..65535 is not supported")
        return "L;16", a.astype(np.uint16)
    if m == "RGBX":
        return "RGB", np.ascontiguousarray(np.asarray(pil)[:, :, :3])
    if m == "PA":
        return "RGBA", np.ascontiguousarray(np.asarray(pil.convert("RGBA")))
    raise CodecError(f"image mode {m!r} cannot be stored exactly (supported: {MODES})")


def _check_limit(width: int, height: int, channels: int, max_samples: int) -> None:
    if width * height * channels > max_samples:
        raise CodecError(
            f"image {width}x{height}x{channels} has more than {max_samples} samples; refusing it"
        )


def _from_pil(pil: Image.Image, *, max_samples: int, data: bytes | None = None) -> RasterImage:
    _check_limit(pil.width, pil.height, len(pil.getbands()), max_samples)
    if getattr(pil, "n_frames", 1) > 1 and pil.format not in ("MPO",):
        raise CodecError(
            f"{pil.format} image has {pil.n_frames} frames; animated/multi-page is not supported"
        )
    pil.load()
    deep = None
    if data is not None and pil.format == "TIFF" and _tiff_is_deep(pil):
        deep = _tiff_deep(pil, data)
    elif data is not None and pil.format == "PPM":
        deep = _pnm_deep(data)
    mode, px = deep if deep is not None else _pil_pixels(pil)
    palette = palette_mode = None
    if mode == "P":
        palette, palette_mode, px = _pil_palette(pil, px)
    text = {k: v for k, v in getattr(pil, "text", {}).items() if isinstance(v, str)}
    return RasterImage(
        px,
        mode,
        icc_profile=pil.info.get("icc_profile") or None,
        exif=_normalize_exif(pil.info.get("exif")),
        text=text,
        palette=palette,
        palette_mode=palette_mode,
    )


def _pil_palette(pil: Image.Image, px: np.ndarray) -> tuple[bytes, str, np.ndarray]:
    raw_mode = pil.palette.mode if pil.palette is not None else "RGB"
    pal = pil.getpalette(rawmode="RGBA" if raw_mode == "RGBA" else "RGB") or [0, 0, 0]
    step = 4 if raw_mode == "RGBA" else 3
    arr = np.asarray(pal, np.uint8).reshape(-1, step)
    hi = int(px.max()) if px.size else 0
    if hi >= len(arr):
        pad = np.zeros((hi + 1 - len(arr), step), np.uint8)
        if step == 4:
            pad[:, 3] = 255
        arr = np.concatenate([arr, pad])
    trns = pil.info.get("transparency")
    if step == 3 and trns is not None:
        alpha = np.full((len(arr), 1), 255, np.uint8)
        if isinstance(trns, int) and 0 <= trns < len(arr):
            alpha[trns, 0] = 0
        elif isinstance(trns, bytes):
            t = np.frombuffer(trns[: len(arr)], np.uint8)
            alpha[: len(t), 0] = t
        arr, step = np.concatenate([arr, alpha], axis=1), 4
    return arr.tobytes(), ("RGBA" if step == 4 else "RGB"), px


def _tiff_is_deep(pil: Image.Image) -> bool:
    bps = getattr(pil, "tag_v2", {}).get(258)
    bps = bps if isinstance(bps, tuple) else (bps,)
    return any(b is not None and b > 8 for b in bps) and not pil.mode.startswith("I;16")


def _tiff_deep(pil: Image.Image, data: bytes) -> tuple[str, np.ndarray]:
    """Deep (>8-bit) TIFF that Pillow would reduce to 8 bits: decode with libtiff (imagecodecs)."""
    import imagecodecs

    photometric = getattr(pil, "tag_v2", {}).get(262, 1)
    if photometric not in (1, 2):  # BlackIsZero gray, RGB; not CMYK/WhiteIsZero/YCbCr/...
        raise CodecError(f"deep TIFF with photometric interpretation {photometric} unsupported")
    px = np.asarray(imagecodecs.tiff_decode(data))
    if px.dtype != np.uint16:
        raise CodecError(f"TIFF with {px.dtype} samples is not supported (need uint8/uint16)")
    if px.ndim == 3 and px.shape[2] == 1:
        px = px[:, :, 0]
    return mode_for_array(px), np.ascontiguousarray(px)


def _pnm_header(data: bytes) -> tuple[bytes, int, int, int, int]:
    """(magic, width, height, maxval, pixel offset) of a binary PGM/PPM."""
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if pos >= len(data):
            raise CodecError("truncated PNM header")
        if data[pos : pos + 1] == b"#":
            nl = data.find(b"\n", pos)
            pos = len(data) if nl < 0 else nl
            continue
        start = pos
        while pos < len(data) and not data[pos : pos + 1].isspace():
            pos += 1
        fields.append(data[start:pos])
    try:
        return fields[0], int(fields[1]), int(fields[2]), int(fields[3]), pos + 1
    except ValueError:
        raise CodecError("corrupt PNM header") from None


def _pnm_deep(data: bytes) -> tuple[str, np.ndarray] | None:
    """Binary PGM/PPM with maxval > 255 as stored (big-endian 16-bit samples, not rescaled);
    Pillow would reduce 16-bit PPM to 8 bits. None when Pillow's reading is exact."""
    magic, w, h, maxval, pos = _pnm_header(data)
    ch = {b"P5": 1, b"P6": 3}.get(magic)
    if ch is None or maxval <= 255:
        return None
    count = w * h * ch
    if len(data) < pos + 2 * count:
        raise CodecError("truncated PNM pixel data")
    raw = np.frombuffer(data, ">u2", count=count, offset=pos)
    px = raw.astype(np.uint16).reshape((h, w) if ch == 1 else (h, w, ch))
    return ("L;16" if ch == 1 else "RGB;16"), px


def load_image(
    src: str | os.PathLike | bytes | bytearray | memoryview | np.ndarray | Image.Image,
    *,
    max_samples: int = DEFAULT_MAX_SAMPLES,
) -> RasterImage:
    """Read an image with its exact stored pixels and the metadata worth keeping.

    PNG is parsed here (any bit depth; 16-bit through libpng); everything else goes through
    Pillow, with 16-bit colour TIFF/PPM routed around Pillow's 8-bit reduction. JPEGs are decoded
    to pixels (the codec is then lossless on those pixels, not on the JPEG file). Arrays are copied
    and their mode inferred with `mode_for_array`; a Pillow image is taken as Pillow decoded it
    (pass the file instead for 16-bit colour). Any failure raises CodecError.
    """
    if isinstance(src, RasterImage):
        src.validate()
        return src
    if isinstance(src, np.ndarray):
        if src.size > max_samples:
            raise CodecError(f"array of shape {src.shape} has more than {max_samples} samples")
        return _from_array(src)
    if isinstance(src, Image.Image):
        try:
            return _from_pil(src, max_samples=max_samples)
        except CodecError:
            raise
        except Exception as e:
            raise CodecError(f"cannot read Pillow image: {e}") from e
    if isinstance(src, (bytes, bytearray, memoryview)):
        data, name = bytes(src), "<bytes>"
    elif isinstance(src, (str, os.PathLike)):
        name = os.fspath(src)
        try:
            with open(name, "rb") as f:
                data = f.read()
        except OSError as e:
            raise CodecError(f"cannot read image file {name!r}: {e.strerror or e}") from e
    else:
        raise CodecError(f"cannot load an image from {type(src).__name__}")
    if not data:
        raise CodecError(f"{name}: empty file")
    try:
        if data.startswith(_PNG_SIG):
            return png_decode_pixels(data, max_samples=max_samples)
        return _load_with_pillow(data, max_samples)
    except CodecError as e:
        raise CodecError(f"{name}: {e}") from e.__cause__


def _lift_pillow_limit(max_samples: int) -> None:
    """Our sample limit governs (checked from the header before any pixel is decoded); lift
    Pillow's smaller pixel-bomb limit to match (process-wide, only ever raised) so it cannot
    refuse an image we accept, whichever path reads it first."""
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_samples:
        Image.MAX_IMAGE_PIXELS = max_samples


@contextlib.contextmanager
def open_pillow(source: bytes | str | os.PathLike, *,
                max_samples: int = DEFAULT_MAX_SAMPLES) -> Iterator[Image.Image]:
    """`PIL.Image.open` under the one size limit (`DEFAULT_MAX_SAMPLES`): the way every part of
    pilc opens a file with Pillow (the job's JPEG passthrough, training data), so no path keeps
    Pillow's own smaller "decompression bomb" limit, or keeps it only until another path lifted
    it. The image's samples (W*H*bands, from its header) are checked before it is yielded:
    CodecError if over the limit. Other Pillow errors propagate as Pillow raises them."""
    _lift_pillow_limit(max_samples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            pil = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        except Image.DecompressionBombError as e:
            # Pillow's limit is at least ours (lifted above), so this image is over ours too
            raise CodecError(f"image has more than {max_samples} samples; refusing it ({e})"
                             ) from None
        with pil:
            _check_limit(pil.width, pil.height, len(pil.getbands()), max_samples)
            yield pil


def _load_with_pillow(data: bytes, max_samples: int) -> RasterImage:
    try:
        with open_pillow(data, max_samples=max_samples) as pil:
            return _from_pil(pil, max_samples=max_samples, data=data)
    except CodecError:
        raise
    except Image.DecompressionBombError as e:
        raise CodecError(f"image too large: {e}") from e
    except Image.UnidentifiedImageError:
        raise CodecError("not a recognised image format") from None
    except Exception as e:
        raise CodecError(f"corrupt or truncated image: {e}") from e


# --------------------------------------------------------------------------------------------
# writing


def to_png_bytes(img: RasterImage) -> bytes:
    """The image as a PNG: 16-bit stays 16-bit, "P" stays palette, ICC/Exif/text are written.

    Pixels use Pillow's default settings (zlib level 6), the reference size the product compares
    against. CMYK has no PNG form: use `to_tiff_bytes` (or `to_file_bytes`, which picks).
    """
    img.validate()
    return _insert_after_ihdr(png_encode_pixels(img), _metadata_chunks(img))


def to_tiff_bytes(img: RasterImage) -> bytes:
    """A deflate TIFF (for CMYK, which PNG cannot hold). Keeps pixels and ICC only; Exif and text
    do not survive this path."""
    img.validate()
    if img.mode not in ("L", "LA", "RGB", "RGBA", "CMYK", "L;16", "1", "P"):
        raise CodecError(f"to_tiff_bytes does not write {img.mode}; use to_png_bytes")
    try:
        pil = _to_pil(img)
        buf = io.BytesIO()
        kw: dict = {"compression": "tiff_adobe_deflate"}
        if img.icc_profile:
            kw["icc_profile"] = img.icc_profile
        pil.save(buf, format="TIFF", **kw)
        return buf.getvalue()
    except CodecError:
        raise
    except Exception as e:
        raise CodecError(f"TIFF encoding failed: {e}") from e


def to_file_bytes(img: RasterImage) -> tuple[bytes, str]:
    """Best exact file form: (PNG bytes, "png"), or (TIFF bytes, "tiff") for CMYK."""
    if img.mode == "CMYK":
        return to_tiff_bytes(img), "tiff"
    return to_png_bytes(img), "png"
