"""Reading stored blobs back and checking them: shared by retrieval (the archive, `pilc get`),
the batch job (its repair pass) and `pilc verify`, so none of them imports another's module.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import xxhash

import codec
from codec.api import checksum as pixel_checksum
from codec.imagefile import RasterImage
from pilc_ray import index as ix


def decode_blob(row: dict, blob: bytes) -> RasterImage:
    """Pixels of a stored blob; a passed-through JPEG is decoded by Pillow (its own pixels)."""
    if row.get("passthrough"):
        if xxhash.xxh3_64_intdigest(blob) != row["checksum"]:
            raise codec.CodecError(f"{row['id']}: stored JPEG does not match its checksum")
        return codec.load_image(blob)
    return codec.decode_image(blob)


def iter_index(dest: str, storage_options: Any = None,
               columns: list[str] | None = None) -> Iterator[dict]:
    """Every row of the compacted index, in id order (streamed one row group at a time)."""
    reader = ix.open_index(dest, storage_options)
    for rg in range(reader.pf.metadata.num_row_groups):
        yield from reader.pf.read_row_group(rg, columns=columns).to_pylist()


def verify(dest: str, storage_options: Any = None) -> dict[str, Any]:
    """Decode every indexed image alone (lookup-free: ranged read per row) and check checksums."""
    ok, bad = 0, []
    for row in iter_index(dest, storage_options):
        try:
            blob = ix.read_blob(row, storage_options)
            img = decode_blob(row, blob)
            if not row["passthrough"] and pixel_checksum(img.pixels) != row["checksum"]:
                raise codec.CodecError("pixels differ from the indexed checksum")
            ok += 1
        except Exception as e:  # noqa: BLE001 - report every bad row, keep checking
            bad.append({"id": row["id"], "error": f"{type(e).__name__}: {e}"})
    return {"ok": ok, "bad": bad}
