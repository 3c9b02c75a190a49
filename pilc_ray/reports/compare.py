"""Side-by-side sample for a report: our stored blobs vs PNG, WebP and JPEG XL, all lossless.

The sample is deterministic (evenly spaced rows of the id-sorted index, so the same index gives
the same images) and needs only the job output: pixels come from decoding our own blob, which is
lossless, so the sources need not be reachable. Peers are the classical codecs exactly as the
codec's fallback and benchmarks/peers.py call them (codec.classical.encode_kind: Pillow PNG at
its defaults, WebP lossless method 4, JPEG XL lossless effort 7 through imagecodecs). Peer sizes
are pixels only; our blob also carries its header (and any ICC/Exif/text of the input).
"""

from __future__ import annotations

import time
from typing import Any

import codec
from codec.classical import encode_kind
from codec.errors import CodecError
from pilc_ray import index as ix

PEERS = ("png", "webp", "jxl")
_COLUMNS = ["id", "blob_uri", "offset", "length", "passthrough", "codec", "mode", "width",
            "height", "samples", "raw_bytes"]


def sample_rows(index_uri: str, options: Any, n: int) -> list[dict]:
    """Up to `n` evenly spaced rows that hold codec blobs (passed-through JPEGs are skipped)."""
    pf = ix.open_parquet(index_uri, options)
    meta = pf.metadata
    total = meta.num_rows
    if n <= 0 or not total:
        return []
    starts, acc = [], 0
    for g in range(meta.num_row_groups):
        starts.append(acc)
        acc += meta.row_group(g).num_rows
    picked: list[dict] = []
    seen: set[str] = set()
    cache: dict[int, list[dict]] = {}
    for k in range(min(n, total)):
        pos = int((k + 0.5) * total / min(n, total))
        g = max(i for i, s in enumerate(starts) if s <= pos)
        if g not in cache:
            cache.clear()  # one row group in memory at a time
            cache[g] = pf.read_row_group(g, columns=_COLUMNS).to_pylist()
        rows = cache[g]
        for row in rows[pos - starts[g]:]:  # the first usable row from pos on, in this group
            if not row["passthrough"] and row["id"] not in seen:
                seen.add(row["id"])
                picked.append(row)
                break
    return picked


def compare_sample(index_uri: str, options: Any, n: int) -> dict[str, Any]:
    """Sizes of our blobs and of PNG/WebP/JPEG XL for a sample of `n` indexed images."""
    images = []
    for row in sample_rows(index_uri, options, n):
        blob = ix.read_blob(row, options)
        img = codec.decode_image(blob)
        entry: dict[str, Any] = {k: row[k] for k in ("id", "mode", "width", "height", "samples",
                                                     "raw_bytes", "codec")}
        entry["pilc"] = len(blob)
        entry["encode_s"] = {}
        for kind in PEERS:
            t0 = time.perf_counter()
            try:
                entry[kind] = len(encode_kind(img, kind))
            except CodecError:  # e.g. WebP has no 16-bit: that peer cannot store this image
                entry[kind] = None
            entry["encode_s"][kind] = time.perf_counter() - t0
        images.append(entry)
    return {"n": len(images), "requested": n, "peers": list(PEERS), "images": images,
            "totals": compare_totals(images),
            "note": "pixels only for peers; our blob includes its header. Peers as in "
                    "codec.classical (PNG: Pillow defaults; WebP lossless m4; JPEG XL lossless e7)"}


def compare_totals(images: list[dict]) -> list[dict[str, Any]]:
    """Per peer, over the images it can store: its bytes and ours on the same images."""
    out = []
    for kind in ("pilc", *PEERS):
        have = [im for im in images if im.get(kind) is not None]
        size = sum(im[kind] for im in have)
        ours = sum(im["pilc"] for im in have)
        samples = sum(im["samples"] for im in have)
        raw = sum(im["raw_bytes"] for im in have)
        out.append({"codec": kind, "images": len(have), "bytes": size,
                    "bpsp": 8 * size / samples if samples else None,
                    "ratio": raw / size if size else None,
                    "pilc_bytes": ours, "pilc_vs_this": ours / size if size else None})
    return out
