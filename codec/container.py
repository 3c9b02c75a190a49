"""The blob container: a small versioned header, then the learned or classical payload.

Layout (docs/FORMAT.md is the spec): magic "PILC", version, codec, mode, flags, varint width and
height, xxh3-64 of the raw pixels, the model id (learned blobs), optional metadata entries (ICC,
Exif, text), a 32-bit check of all those header bytes, then the payload. `parse` checks every
field against hard limits and the bytes actually present before anything is sized from it.
Why a header check besides the pixel checksum: a flipped byte in the ICC profile or the text
decodes to correct pixels with wrong metadata, which the pixel checksum cannot see.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import xxhash

from codec import varints
from codec.errors import CodecError
from codec.imagefile import MODES

MAGIC = b"PILC"
VERSION = 5  # 5: a group's flags may choose 256-pixel tiles (docs/FORMAT.md)
# A version 4 blob is a version 5 blob whose groups all use 128-pixel tiles: still read.
READ_VERSIONS = (4, 5)
CODECS = ("learned", "png", "webp", "jxl", "zlib")
MAX_SIDE = 1 << 20
FLAG_METADATA = 1
LEVEL_SHIFT, LEVEL_MASK = 1, 0b1110  # flags bits 1-3: the learned path's effort level
# Effort levels a header can name (codec/pixelmodel.py LEVELS). Level 0 leaves the bits clear,
# so a default-level blob is byte for byte what it was before levels existed. "max" is level 4
# (max v3, the first to set bit 3); the earlier max models keep decoding as "max-v1" (level 2)
# and "max-v2" (level 3). "fast" is level 5 (fast v2); level 1, the first fast level, was named
# "fast" before level 5 existed and is "fastest" now: its blobs decode as they always did
# (FORMAT.md, "levels").
EFFORTS = ("default", "fastest", "max-v1", "max-v2", "max", "fast")
# The levels a user picks, fastest first (the earlier max models stay accepted by name), and
# what each trades (benchmarks/results/pilc_levels_eval.md), for the command lines' help.
EFFORT_CHOICES = ("fastest", "fast", "default", "max")
EFFORT_HELP = (
    "learned path's level: fastest (~4x the default's speed on photos, 2-10%% more bytes), fast "
    "(~3.5x, within ~1%% of the default's bytes), default, or max (3-10%% fewer bytes than "
    "JPEG-XL e7, ~5x slower); one decoder reads every level"
)
_META_ICC, _META_EXIF, _META_TEXT = 1, 2, 3
_MAX_META_ENTRIES = 3


@dataclass
class Header:
    """Everything before the payload."""

    codec: str
    mode: str
    width: int
    height: int
    checksum: int
    model_id: str | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    text: dict[str, str] = field(default_factory=dict)
    version: int = VERSION  # of a parsed blob; pack always writes VERSION
    effort: str = "default"  # learned blobs: the pixel model's effort level

    def to_dict(self) -> dict:
        return {
            "format_version": self.version,
            "codec": self.codec,
            "mode": self.mode,
            "width": self.width,
            "height": self.height,
            "checksum": f"{self.checksum:016x}",
            "model_id": self.model_id,
            "effort": self.effort if self.codec == "learned" else None,
            "icc_profile_bytes": len(self.icc_profile or b""),
            "exif_bytes": len(self.exif or b""),
            "text": dict(self.text),
        }


def pack(header: Header, payload: bytes) -> bytes:
    """Header + payload -> blob."""
    meta = []
    if header.icc_profile:
        meta.append((_META_ICC, header.icc_profile))
    if header.exif:
        meta.append((_META_EXIF, header.exif))
    if header.text:
        meta.append((_META_TEXT, json.dumps(header.text, sort_keys=True).encode()))
    if header.effort not in EFFORTS or (header.codec != "learned" and header.effort != "default"):
        raise CodecError(f"effort {header.effort!r} cannot be stored for codec {header.codec}")
    flags = (FLAG_METADATA if meta else 0) | (EFFORTS.index(header.effort) << LEVEL_SHIFT)
    out = bytearray(MAGIC)
    out += bytes([VERSION, CODECS.index(header.codec), MODES.index(header.mode), flags])
    out += varints.encode_one(header.width) + varints.encode_one(header.height)
    out += header.checksum.to_bytes(8, "little")
    if header.codec == "learned":
        out += bytes.fromhex(header.model_id or "")
    if meta:
        out += varints.encode_one(len(meta))
        for key, value in meta:
            out += bytes([key]) + varints.encode_one(len(value)) + value
    out += header_check(out).to_bytes(4, "little")
    return bytes(out) + payload


def header_check(header_bytes: bytes | bytearray | memoryview) -> int:
    """Low 32 bits of xxh3-64 of the header bytes (magic up to the end of the metadata)."""
    return xxhash.xxh3_64_intdigest(bytes(header_bytes)) & 0xFFFFFFFF


def parse(blob: bytes | memoryview) -> tuple[Header, memoryview]:
    """Blob -> (header, payload view). CodecError on anything malformed."""
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise CodecError(f"blob must be bytes, got {type(blob).__name__}")
    try:
        if isinstance(blob, memoryview) and not blob.c_contiguous:
            blob = blob.tobytes()  # a strided view is bytes-like too: read its bytes in order
        r = varints.Reader(memoryview(blob).cast("B") if not isinstance(blob, bytes) else blob)
    except (ValueError, TypeError) as e:  # a released view (or one that cannot be read as bytes)
        raise CodecError(f"blob cannot be read: {e}") from None
    if r.remaining < 4 or r.take(4) != MAGIC:
        raise CodecError("not a pilc blob (bad magic)")
    version = r.u8()
    if version not in READ_VERSIONS:
        raise CodecError(f"unsupported format version {version} (this build reads {READ_VERSIONS})")
    codec_id, mode_id, flags = r.take(3)
    if codec_id >= len(CODECS):
        raise CodecError(f"unknown codec id {codec_id}")
    if mode_id >= len(MODES):
        raise CodecError(f"unknown mode id {mode_id}")
    level = (flags & LEVEL_MASK) >> LEVEL_SHIFT
    if flags & ~(FLAG_METADATA | LEVEL_MASK) or level >= len(EFFORTS):
        raise CodecError(f"unknown header flags {flags:#x}")
    if level and CODECS[codec_id] != "learned":
        raise CodecError(f"an effort level is set on a {CODECS[codec_id]} blob")
    width = r.varint(MAX_SIDE)
    height = r.varint(MAX_SIDE)
    if width < 1 or height < 1:
        raise CodecError(f"invalid image size {width}x{height}")
    header = Header(
        CODECS[codec_id], MODES[mode_id], width, height, r.u64(), version=version,
        effort=EFFORTS[level],
    )  # fmt: skip
    if header.codec == "learned":
        header.model_id = r.take(8).hex()
    if flags & FLAG_METADATA:
        seen = set()
        for _ in range(r.varint(_MAX_META_ENTRIES)):
            key = r.u8()
            value = r.sized_bytes(r.remaining)
            if key in seen or key not in (_META_ICC, _META_EXIF, _META_TEXT):
                raise CodecError(f"bad or repeated metadata entry {key}")
            seen.add(key)
            if key == _META_ICC:
                header.icc_profile = value
            elif key == _META_EXIF:
                header.exif = value
            else:
                header.text = _parse_text(value)
    end = r.pos
    if int.from_bytes(r.take(4), "little") != header_check(r.data[:end]):
        raise CodecError("header check failed: the blob's header or metadata is corrupt")
    return header, r.data[r.pos :]


def _parse_text(value: bytes) -> dict[str, str]:
    try:
        text = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CodecError(f"metadata text is not JSON: {e}") from e
    if not isinstance(text, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in text.items()
    ):
        raise CodecError("metadata text must map strings to strings")
    return text
