"""The per-batch work: read inputs, encode them in one codec pass, write blobs, return index rows.

`BatchCompressor` is plain Python (no Ray), so the same code runs inside a Ray actor, a Ray Data
actor pool, or a single process for benchmarks. A batch's outcome is only index rows and error
rows: small, whatever the images weigh.

Blob naming is deterministic: a shard is named by the hash of its sorted ids, an object by the
hash of its id. A retried batch therefore overwrites its own earlier, partial attempt instead of
leaving an orphan beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import xxhash

import codec
from codec import timing
from codec.api import checksum as pixel_checksum
from codec.errors import CodecError
from codec.imagefile import RasterImage
from pilc_ray import storage as st
from pilc_ray.job.sources import Item

JPEG_MAGIC = b"\xff\xd8\xff"
SHARD_MAGIC = b"PILCSHD1"
SHARD_SUFFIX = ".pshard"


@dataclass
class WorkerConfig:
    """Everything a worker needs; plain data, shipped once to each actor."""

    dest: str
    layout: str = "shards"  # "shards" (one object per batch) or "objects" (one per image)
    fallback: str = "auto"
    tile: int | None = None  # learned path's tile side (codec.layout.TILE_SIZES; None: codec's)
    effort: str = "default"  # learned path's level: "fastest", "fast", "default" or "max"
    jpeg: str = "passthrough"  # "passthrough": store JPEG files as-is; "decode": compress pixels
    storage_options: dict[str, Any] = field(default_factory=dict)
    threads: int = 1  # codec kernel threads per worker: one per CPU it was given
    device: str = "cpu"  # where the codec's pixel stage runs: "cpu", "cuda" or "emulated"
    max_input_bytes: int = 1 << 30  # refuse bigger input files instead of exhausting memory
    verify: bool = False  # decode every blob again before writing (doubles the cost)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def shard_name(ids: Sequence[str]) -> str:
    """Deterministic shard key for a batch: same ids -> same name, so retries overwrite."""
    h = hashlib.sha1("\n".join(sorted(ids)).encode()).hexdigest()[:24]
    return f"shards/{h[:2]}/{h}{SHARD_SUFFIX}"


def object_name(image_id: str, passthrough: bool) -> str:
    """Deterministic per-image key; a hash, so no id can escape the destination folder."""
    h = hashlib.sha1(image_id.encode()).hexdigest()[:24]
    return f"objects/{h[:2]}/{h}{'.jpg' if passthrough else '.pilc'}"


def pack_shard(entries: Sequence[tuple[str, bytes]]) -> tuple[bytes, list[int]]:
    """Blobs back to back, then a JSON table of contents, its length and a magic.

    The index holds offset and length of every blob; the footer only lets a lost index be rebuilt
    from the shards themselves.
    """
    offsets, pos = [], 0
    for _, blob in entries:
        offsets.append(pos)
        pos += len(blob)
    toc = json.dumps([[i, o, len(b)] for (i, b), o in zip(entries, offsets, strict=True)],
                     separators=(",", ":")).encode()
    body = b"".join(b for _, b in entries) + toc + struct.pack("<Q", len(toc)) + SHARD_MAGIC
    return body, offsets


def read_shard_toc(data: bytes) -> list[tuple[str, int, int]]:
    """(id, offset, length) of every blob in a shard, from its footer."""
    if len(data) < 16 or data[-8:] != SHARD_MAGIC:
        raise ValueError("not a pilc shard (bad footer magic)")
    (n,) = struct.unpack("<Q", data[-16:-8])
    if n > len(data) - 16:
        raise ValueError("corrupt shard footer")
    return [(str(i), int(o), int(n_)) for i, o, n_ in json.loads(data[-16 - n : -16])]


def _jpeg_header(data: bytes) -> tuple[str, int, int, int]:
    """Mode, width, height, channels of a JPEG stored as-is, after decoding it once in full:
    a truncated or corrupt JPEG must fail here, on ingest (errors table), not later as an
    archive that looks corrupt when it is read back."""
    from codec.imagefile import open_pillow

    # open_pillow: the codec's one size limit (PILC_MAX_SAMPLES), checked from the header; not
    # Pillow's smaller bomb limit, which a fresh worker would otherwise apply to JPEGs alone
    with open_pillow(data) as im:
        if im.format != "JPEG":
            raise CodecError(f"expected a JPEG, Pillow sees {im.format}")
        w, h = im.size
        ch = len(im.getbands())
        try:
            im.load()  # Pillow refuses truncated data (ImageFile.LOAD_TRUNCATED_IMAGES is off)
        except (OSError, SyntaxError, ValueError) as e:
            raise CodecError(f"corrupt or truncated JPEG: {e}") from e
        return im.mode, w, h, ch


STAGE_COLUMNS = tuple(f"{name}_s" for name in timing.STAGES)


def stage_shares(stages: dict[str, float], share: float) -> dict[str, float]:
    """One image's part of its batch's codec stage times (index columns predictor_s, ...).

    `encode_batch` codes the whole batch in one pass, so stage times exist only per batch; each
    image gets the fraction `share` of them, its samples over the batch's samples. Summed over
    the index they are exact; per image they are an estimate (bigger images get more).
    """
    return {f"{name}_s": float(stages.get(name, 0.0)) * share for name in timing.STAGES}


class BatchCompressor:
    """Holds the model and storage clients; compresses one batch per call."""

    def __init__(self, config: WorkerConfig | dict[str, Any], name: str | None = None) -> None:
        self.config = cfg = config if isinstance(config, WorkerConfig) else WorkerConfig(**config)
        if cfg.layout not in ("shards", "objects"):
            raise ValueError(f"layout must be 'shards' or 'objects', not {cfg.layout!r}")
        if cfg.jpeg not in ("passthrough", "decode"):
            raise ValueError(f"jpeg must be 'passthrough' or 'decode', not {cfg.jpeg!r}")
        self._set_threads(cfg.threads)
        from codec import gpu

        self.backend = gpu.resolve(cfg.device)  # a clear CodecError if "cuda" sees no GPU
        from codec.model import default_model

        self.model = default_model()
        self.model_id = self.model.model_id
        self.dest = st.normalize(cfg.dest)
        self.out = st.open_storage(self.dest, cfg.storage_options)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.batches = 0

    @staticmethod
    def _set_threads(n: int) -> None:
        """The worker's CPU allotment, not the node's CPUs, bounds the codec's threads."""
        from codec import kernels

        kernels.set_threads(max(1, int(n)))

    def warm_up(self) -> None:
        """Load the model and run the kernels once before the first timed batch."""
        rng = np.random.default_rng(0)
        px = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
        opts = {"model": self.model, "device": self._codec_options()["device"]}
        blob = codec.encode_batch([RasterImage(px, "RGB")], **opts)[0]
        codec.decode(blob, device=opts["device"])

    # reading ---------------------------------------------------------------------------------

    def _read(self, item: Item) -> bytes | RasterImage:
        """Input bytes (files) or an image (in-memory sources)."""
        if item.ref is not None:
            value = item.ref
            try:
                import ray

                if isinstance(value, ray.ObjectRef):
                    value = ray.get(value)
            except ImportError:
                pass
            if isinstance(value, (bytes, bytearray, memoryview)):
                return bytes(value)
            return codec.load_image(value)
        if item.size > self.config.max_input_bytes:
            raise CodecError(f"input of {item.size} bytes exceeds max_input_bytes")
        storage = st.open_storage(item.uri, self.config.storage_options)
        return storage.get(item.uri)

    # the batch --------------------------------------------------------------------------------

    def compress(self, items: Sequence[Item], attempt: int = 1) -> dict[str, list[dict]]:
        """Compress and store a batch; returns {"rows": [...], "errors": [...]}."""
        cfg = self.config
        t_batch = time.perf_counter()
        rows: list[dict] = []
        errors: list[dict] = []
        images: list[tuple[Item, RasterImage, float, float]] = []  # item, image, read_s, load_s
        passthrough: list[tuple[Item, bytes, float, tuple]] = []

        def fail(item: Item, stage: str, err: BaseException | str) -> None:
            errors.append({"id": item.id, "source_uri": item.uri, "stage": stage,
                           "error": str(err)[:2000], "error_type": type(err).__name__
                           if isinstance(err, BaseException) else "Error",
                           "worker": self.name, "attempt": attempt, "time": time.time()})

        for item in items:
            t0 = time.perf_counter()
            try:
                data = self._read(item)
            except (st.StorageError, CodecError, OSError) as e:
                fail(item, "read", e)
                continue
            t1 = time.perf_counter()
            try:
                if isinstance(data, RasterImage):
                    images.append((item, data, t1 - t0, 0.0))
                    continue
                if len(data) > cfg.max_input_bytes:
                    raise CodecError(f"input of {len(data)} bytes exceeds max_input_bytes")
                if cfg.jpeg == "passthrough" and data.startswith(JPEG_MAGIC):
                    passthrough.append((item, data, t1 - t0, _jpeg_header(data)))
                    continue
                img = codec.load_image(data)
                images.append((item, img, t1 - t0, time.perf_counter() - t1))
            except Exception as e:  # noqa: BLE001 - any decoder failure is this input's fault
                fail(item, "decode-input", e)

        t_enc = time.perf_counter()
        with timing.collect() as stages:
            blobs = self._encode(images, fail)
        enc_s = time.perf_counter() - t_enc
        encoded = [(it, img, rs, ls, b) for (it, img, rs, ls), b in zip(images, blobs, strict=True)
                   if b is not None]
        samples_total = sum(img.pixels.size for _, img, _, _, _ in encoded) or 1

        entries: list[tuple[Item, bytes, dict]] = []
        raw_total = sum(img.pixels.nbytes for _, img, _, _, _ in encoded) or 1
        for it, img, rs, ls, blob in encoded:
            head = codec.info(blob)
            h, w = img.pixels.shape[:2]
            entries.append((it, blob, {
                "mode": img.mode, "height": h, "width": w,
                "channels": 1 if img.pixels.ndim == 2 else int(img.pixels.shape[2]),
                "codec": head["codec"], "passthrough": False,
                "model_id": head.get("model_id") or None, "effort": head.get("effort"),
                "raw_bytes": int(img.pixels.nbytes), "samples": int(img.pixels.size),
                "checksum": int(head["checksum"], 16),
                "read_s": rs, "decode_input_s": ls,
                "encode_s": enc_s * img.pixels.nbytes / raw_total,
                **stage_shares(stages, img.pixels.size / samples_total),
            }))
        for it, data, rs, (mode, w, h, ch) in passthrough:
            entries.append((it, data, {
                "mode": mode, "height": h, "width": w, "channels": ch, "codec": "jpeg",
                "passthrough": True, "model_id": None, "effort": None, "raw_bytes": w * h * ch,
                "samples": w * h * ch, "checksum": xxhash.xxh3_64_intdigest(data),
                "read_s": rs, "decode_input_s": 0.0, "encode_s": 0.0,
                **stage_shares(stages, 0.0),
            }))
        if cfg.verify:
            entries = self._verify(entries, fail)

        t_write = time.perf_counter()
        placed = self._write(entries)
        write_s = time.perf_counter() - t_write
        comp_total = sum(len(b) for _, b, _ in entries) or 1
        batch_s = time.perf_counter() - t_batch
        for (it, blob, meta), (uri, offset) in zip(entries, placed, strict=True):
            rows.append({
                "id": it.id, "source_uri": it.uri, "blob_uri": uri, "offset": offset,
                "length": len(blob), **meta, "compressed_bytes": len(blob),
                "bpsp": 8.0 * len(blob) / max(1, meta["samples"]),
                "write_s": write_s * len(blob) / comp_total, "worker": self.name,
                "attempt": attempt, "batch_s": batch_s, "created": time.time(),
            })
        self.batches += 1
        return {"rows": rows, "errors": errors}

    def _codec_options(self) -> dict[str, Any]:
        return {"fallback": self.config.fallback, "tile": self.config.tile, "model": self.model,
                "effort": self.config.effort,
                "device": self.backend if self.backend is not None else "cpu"}

    def _encode(self, images: list, fail) -> list[bytes | None]:
        """One codec pass for the batch; if it fails, find the culprits one image at a time."""
        if not images:
            return []
        imgs = [img for _, img, _, _ in images]
        try:
            return list(codec.encode_batch(imgs, **self._codec_options()))
        except Exception:  # noqa: BLE001 - isolate the bad image(s) below
            pass
        out: list[bytes | None] = []
        for (item, img, _, _) in images:
            try:
                out.append(codec.encode(img, **self._codec_options()))
            except Exception as e:  # noqa: BLE001
                fail(item, "encode", e)
                out.append(None)
        return out

    def _verify(self, entries: list, fail) -> list:
        kept = []
        for it, blob, meta in entries:
            try:
                if not meta["passthrough"]:
                    back = codec.decode(blob)
                    if pixel_checksum(back) != meta["checksum"]:
                        raise CodecError("verification decode differs from the input")
                kept.append((it, blob, meta))
            except Exception as e:  # noqa: BLE001
                fail(it, "verify", e)
        return kept

    def _write(self, entries: list[tuple[Item, bytes, dict]]) -> list[tuple[str, int]]:
        """Store the blobs; returns (uri, offset) per entry. Raises on failure (batch retried)."""
        if not entries:
            return []
        if self.config.layout == "objects":
            out = []
            for it, blob, meta in entries:
                uri = st.join(self.dest, object_name(it.id, meta["passthrough"]))
                self.out.put(uri, blob)
                out.append((uri, 0))
            return out
        body, offsets = pack_shard([(it.id, blob) for it, blob, _ in entries])
        uri = st.join(self.dest, shard_name([it.id for it, _, _ in entries]))
        self.out.put(uri, body)
        return [(uri, o) for o in offsets]
