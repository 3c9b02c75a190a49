"""Read single images back from a job's output: `open_archive(uri).get(image_id)`.

An `Archive` is what a service holds for its lifetime. It parses the index footer once (row-group
id ranges and byte spans), so an uncached image costs one ranged read of one index row group and
one ranged read of its blob, local or S3. Row groups and blobs are kept in byte-bounded LRU caches
that collapse concurrent misses for the same key into one read. Every decoded image is checked
twice (the blob's own checksum inside the codec, then the index row's checksum), so a corrupt or
misplaced blob raises `CorruptImage` and is logged; wrong pixels are never returned.

Thread-safe: the parsed footer is immutable and each read builds its own small reader, so
lookups from many threads run in parallel without a global lock.
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

import codec
from codec.api import checksum as pixel_checksum
from codec.errors import CodecError
from codec.imagefile import DEFAULT_MAX_SAMPLES, RasterImage
from pilc_ray import index as ix
from pilc_ray import storage as st

log = logging.getLogger(__name__)

MAX_ID_BYTES = 1024  # S3's key limit; ids come from keys and relative paths
# what reading an image needs from its row: decoding only these is ~3x cheaper than the full row
LOOKUP_COLUMNS = ["id", "blob_uri", "offset", "length", "checksum", "passthrough", "samples",
                  "mode", "height", "width", "codec"]
MIB = 1 << 20
V = TypeVar("V")


# --------------------------------------------------------------------------------------------
# errors


class ArchiveError(Exception):
    """Base of everything `Archive` raises on purpose; `status` is the HTTP status it maps to."""

    status = 500
    code = "error"


class InvalidId(ArchiveError, ValueError):
    status, code = 400, "invalid_id"


class ImageNotFound(ArchiveError, KeyError):
    status, code = 404, "not_found"

    def __str__(self) -> str:  # KeyError would print the repr of its argument
        return str(self.args[0]) if self.args else "not found"


class ImageTooLarge(ArchiveError):
    status, code = 413, "too_large"


class CorruptImage(ArchiveError):
    """The stored blob does not decode to the image the index describes."""

    status, code = 500, "corrupt_blob"


class UnsupportedFormat(ArchiveError):
    status, code = 406, "unsupported_format"


class StorageUnavailable(ArchiveError):
    """The index or a blob could not be read (missing shard, S3 errors after retries)."""

    status, code = 503, "storage_unavailable"


def validate_id(image_id: object) -> str:
    """Refuse ids no job writes and that only serve path tricks, before any read.

    Ids are keys looked up in the index, never joined into storage paths (blobs are reached only
    through the `blob_uri` the job wrote), so this is defence in depth: no control characters
    (NUL included), no '.' or '..' segments, no backslashes, at most MAX_ID_BYTES of UTF-8.
    Leading '/' and '//' stay legal: a manifest without an id column uses its URIs as ids.
    """
    if not isinstance(image_id, str) or not image_id:
        raise InvalidId("an image id must be a non-empty string")
    try:
        n = len(image_id.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise InvalidId("image id is not valid UTF-8") from e
    if n > MAX_ID_BYTES:
        raise InvalidId(f"image id is {n} bytes; the limit is {MAX_ID_BYTES}")
    if any(ord(c) < 32 or ord(c) == 127 for c in image_id):
        raise InvalidId("image id contains control characters")
    if "\\" in image_id:
        raise InvalidId("image id contains a backslash")
    if any(seg in (".", "..") for seg in image_id.split("/")):
        raise InvalidId("image id contains a '.' or '..' path segment")
    return image_id


def json_row(row: dict) -> dict:
    """An index row as JSON-safe values (checksum as 16 hex digits: it exceeds 2^53)."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, datetime):
            v = v.isoformat()
        elif k == "checksum" and isinstance(v, int):
            v = f"{v:016x}"
        elif isinstance(v, float) and not np.isfinite(v):
            v = None
        out[k] = v
    return out


# --------------------------------------------------------------------------------------------
# cache


class LRUCache(Generic[V]):
    """Byte-bounded LRU; `get_or_load` makes concurrent misses of one key load it once."""

    def __init__(self, max_bytes: int, sizeof: Callable[[V], int]) -> None:
        self.max_bytes, self.sizeof = max(0, int(max_bytes)), sizeof
        self._data: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._inflight: dict[Hashable, threading.Event] = {}
        self._lock = threading.Lock()
        self.bytes = self.hits = self.misses = self.evictions = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            self._data.move_to_end(key)
            return hit[0]

    def put(self, key: Hashable, value: V) -> None:
        size = self.sizeof(value)
        if size > self.max_bytes:
            return  # bigger than the whole cache: serve it, do not keep it
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._data[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, s) = self._data.popitem(last=False)
                self.bytes -= s
                self.evictions += 1

    def _take_hit(self, key: Hashable):
        """The cached entry (counted as a hit, moved to most recent) or None; hold the lock."""
        hit = self._data.get(key)
        if hit is not None:
            self._data.move_to_end(key)
            self.hits += 1
        return hit

    def get_or_load(self, key: Hashable, load: Callable[[], V]) -> tuple[V, bool]:
        """(value, was it a hit). A failed load raises in the loader only; waiters retry."""
        while True:
            with self._lock:
                hit = self._take_hit(key)
                if hit is not None:
                    return hit[0], True
                event = self._inflight.get(key)
                if event is None:
                    event = self._inflight[key] = threading.Event()
                    self.misses += 1
                    break
            event.wait()
            with self._lock:
                hit = self._take_hit(key)
                if hit is not None:
                    return hit[0], True
                if key in self._inflight:
                    continue
                # the load failed or was too big to keep: load it ourselves
                self._inflight[key] = event = threading.Event()
                self.misses += 1
                break
        try:
            value = load()
            self.put(key, value)
            return value, False
        finally:
            with self._lock:
                self._inflight.pop(key, None)
            event.set()

    def discard(self, key: Hashable) -> None:
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.bytes -= old[1]

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.bytes = 0

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "evictions": self.evictions,
                "bytes": self.bytes, "items": len(self._data), "max_bytes": self.max_bytes}


# --------------------------------------------------------------------------------------------
# the index file


class _Span(st.SeekableRaw):
    """A seekable file of which only [start, start + len(data)) is present (one ranged read)."""

    def __init__(self, data: bytes, start: int, size: int) -> None:
        super().__init__()
        self.data, self.start, self._size, self.pos = data, start, size, 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._size - self.pos
        lo = self.pos - self.start
        if lo < 0 or lo + n > len(self.data):
            raise OSError(f"read of {n} bytes at {self.pos} outside the fetched row group")
        self.pos += n
        return self.data[lo : lo + n]


class _IndexFile:
    """One version of index.parquet: footer parsed once; immutable afterwards."""

    _generations = itertools.count()

    def __init__(self, uri: str, storage: st.Storage) -> None:
        self.uri, self.storage = uri, storage
        self.generation = next(self._generations)  # cache keys: never reused by a reopen
        self.stamp = storage.stat(uri)
        reader = st.RangedReader(storage, uri, self.stamp.size)
        self.meta = pq.ParquetFile(reader).metadata
        self.footer_bytes, self.footer_requests = reader.bytes_read, reader.requests
        self.schema = self.meta.schema.to_arrow_schema()
        col = self.schema.get_field_index("id")
        if col < 0:
            raise ValueError(f"{uri} has no 'id' column: not a pilc index")
        self.ids = ix.RowGroupIds.from_metadata(self.meta, col)
        self.spans: list[tuple[int, int]] = []
        for i in range(self.meta.num_row_groups):
            rg = self.meta.row_group(i)
            lo, hi = self.stamp.size, 0
            for c in range(rg.num_columns):
                cc = rg.column(c)
                start = cc.data_page_offset
                if cc.has_dictionary_page and cc.dictionary_page_offset:
                    start = min(start, cc.dictionary_page_offset)
                lo, hi = min(lo, start), max(hi, start + cc.total_compressed_size)
            self.spans.append((lo, hi))

    @property
    def num_rows(self) -> int:
        return self.meta.num_rows

    def candidates(self, image_id: str) -> list[int]:
        """Row groups that may hold `image_id`: one at most for a compacted index."""
        return self.ids.candidates(image_id)

    def first_group_from(self, start: str) -> int:
        """The first row group that may hold ids >= start (sorted index; else 0)."""
        return self.ids.first_group_from(start)

    def read_row_group(self, rg: int, columns: list[str] | None = None) -> pa.Table:
        """One row group in exactly one ranged read (all its bytes); only `columns` decoded."""
        lo, hi = self.spans[rg]
        data = self.storage.get_range(self.uri, lo, hi - lo)
        pf = pq.ParquetFile(_Span(data, lo, self.stamp.size), metadata=self.meta)
        return pf.read_row_group(rg, columns=columns)

    def read_columns(self, rg: int, columns: list[str] | None) -> pa.Table:
        """Some columns of one row group (coalesced ranged reads; for listings)."""
        reader = st.RangedReader(self.storage, self.uri, self.stamp.size)
        pf = pq.ParquetFile(reader, metadata=self.meta, pre_buffer=True)
        return pf.read_row_group(rg, columns=columns)


# --------------------------------------------------------------------------------------------
# decoding


class _CodecGate:
    """Bounds concurrent codec calls per process, so a burst of requests cannot hold more
    decoded images in memory than there are CPUs to decode them (the kernels themselves are
    thread-safe: each call has its own state)."""

    def __init__(self, limit: int) -> None:
        self._sem = threading.BoundedSemaphore(max(1, limit))

    def run(self, fn: Callable[[], V]) -> V:
        with self._sem:
            return fn()


_gate = _CodecGate(os.cpu_count() or 2)


# --------------------------------------------------------------------------------------------
# the archive


@dataclass
class _Counters:
    index_opens: int = 0
    row_group_reads: int = 0
    index_bytes: int = 0
    blob_reads: int = 0
    blob_bytes: int = 0
    decodes: int = 0
    decode_seconds: float = 0.0
    corrupt: int = 0


class Archive:
    """Random access to the images of one job output (local folder or S3 prefix).

    index_uri: the job's DEST (folder or ``s3://`` prefix) or its ``index/index.parquet``.
    Caches hold index row groups and blobs (compressed bytes); decoded pixels are not cached
    here (the HTTP service caches encoded responses). Limits refuse, before any blob read,
    images whose blob or pixel count is above them. `max_image_samples` defaults to the codec's
    one limit (PILC_MAX_SAMPLES, 2^31), so whatever the job accepted can be read back; a
    server lowers it per request (`pilc serve --max-image-mpix`).
    """

    def __init__(self, index_uri: str, storage_options: Any = None, *,
                 index_cache_bytes: int = 64 * MIB, blob_cache_bytes: int = 64 * MIB,
                 max_blob_bytes: int = 512 * MIB,
                 max_image_samples: int = DEFAULT_MAX_SAMPLES,
                 recheck_s: float = 5.0) -> None:
        self.uri = ix.resolve_index_uri(index_uri)
        self.storage_options = storage_options
        self.storage = st.open_storage(self.uri, storage_options)
        self.max_blob_bytes, self.max_image_samples = max_blob_bytes, max_image_samples
        self.recheck_s = recheck_s
        self.row_groups: LRUCache[pa.Table] = LRUCache(index_cache_bytes, lambda t: t.nbytes)
        self.blobs: LRUCache[bytes] = LRUCache(blob_cache_bytes, len)
        self.counters = _Counters()
        self._counter_lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._file = self._open()
        self._checked = time.monotonic()

    # index -----------------------------------------------------------------------------------

    def _open(self) -> _IndexFile:
        try:
            f = _IndexFile(self.uri, self.storage)
        except st.NotFound as e:
            raise FileNotFoundError(f"no compacted index at {self.uri}") from e
        self._count(index_opens=1, index_bytes=f.footer_bytes)
        return f

    def _current(self, force: bool = False) -> _IndexFile:
        """The index as of at most `recheck_s` ago: a new compaction is picked up by size/mtime."""
        f = self._file
        if not force and time.monotonic() - self._checked < self.recheck_s:
            return f
        with self._open_lock:
            if self._file is not f:
                return self._file  # another thread reopened it meanwhile
            self._checked = time.monotonic()
            try:
                stamp = self.storage.stat(self.uri)
            except st.StorageError as e:
                if force:
                    raise StorageUnavailable(f"cannot stat the index {self.uri}: {e}") from e
                return f  # keep serving from what we have
            if (stamp.size, stamp.mtime) != (f.stamp.size, f.stamp.mtime):
                self._file = self._open()
                self.row_groups.clear()
                self.blobs.clear()
            return self._file

    def _row_group(self, f: _IndexFile, rg: int, full: bool) -> pa.Table:
        def load() -> pa.Table:
            cols = None if full else [c for c in LOOKUP_COLUMNS if c in f.schema.names]
            t = f.read_row_group(rg, cols)
            self._count(row_group_reads=1, index_bytes=f.spans[rg][1] - f.spans[rg][0])
            return t

        return self.row_groups.get_or_load((f.generation, rg, full), load)[0]

    def meta(self, image_id: str) -> dict:
        """The full index row of `image_id` (ImageNotFound if it has none); no blob is read."""
        return self._find(image_id, full=True)

    def locate(self, image_id: str) -> dict:
        """The fields of the row that reading the image needs (LOOKUP_COLUMNS).

        Cheaper than `meta` to decode and to cache (a third of a 16k-row group's columns), so
        it is what every image read uses.
        """
        return self._find(image_id, full=False)

    def _find(self, image_id: str, full: bool) -> dict:
        validate_id(image_id)
        for attempt in (0, 1):
            f = self._current(force=attempt == 1)
            try:
                for rg in f.candidates(image_id):
                    t = self._row_group(f, rg, full)
                    hit = pc.index(t.column("id"), image_id).as_py()
                    if hit >= 0:
                        return t.slice(hit, 1).to_pylist()[0]
                break
            except (OSError, pa.ArrowException, st.StorageError) as e:
                if attempt:  # the file changed under us once is normal; twice is not
                    raise StorageUnavailable(f"cannot read the index {self.uri}: {e}") from e
                log.info("index read failed (%s); reopening %s", e, self.uri)
        raise ImageNotFound(f"no image with id {image_id!r} in the index")

    def __contains__(self, image_id: object) -> bool:
        try:
            self.locate(image_id)  # type: ignore[arg-type]
            return True
        except (ImageNotFound, InvalidId):
            return False

    def __len__(self) -> int:
        return self._current().num_rows

    def iter_rows(self, *, start: str | None = None, prefix: str | None = None,
                  limit: int | None = None, columns: list[str] | None = None) -> Iterator[dict]:
        """Rows in id order, streamed one row group at a time (for 100M-row indexes too).

        start: first id (inclusive); prefix: only ids starting with it. Both skip straight to
        the first row group that can hold them, using the footer's id ranges.
        """
        f = self._current()
        lo = max(start or "", prefix or "")
        cols = None if columns is None else list(dict.fromkeys(["id", *columns]))
        n, mins = 0, f.ids.mins
        for rg in range(f.first_group_from(lo) if lo else 0, f.meta.num_row_groups):
            if f.ids.sorted and prefix and mins[rg] > prefix and not mins[rg].startswith(prefix):
                return
            t = f.read_columns(rg, cols)
            ids = t.column("id")
            mask = None
            if lo:
                mask = pc.greater_equal(ids, lo)
            if prefix:
                m = pc.starts_with(ids, prefix)
                mask = m if mask is None else pc.and_(mask, m)
            if mask is not None:
                t = t.filter(mask)
            for row in t.to_pylist():
                if limit is not None and n >= limit:
                    return
                n += 1
                yield row
            if limit is not None and n >= limit:
                return

    # blobs and images ---------------------------------------------------------------------------

    def check_limits(self, row: dict) -> None:
        if row["length"] > self.max_blob_bytes:
            raise ImageTooLarge(f"{row['id']!r}: blob of {row['length']} bytes is over the "
                                f"{self.max_blob_bytes}-byte limit")
        samples = row.get("samples") or 0
        if samples > self.max_image_samples:
            raise ImageTooLarge(f"{row['id']!r}: {samples} samples is over the "
                                f"{self.max_image_samples}-sample limit")

    def _blob(self, row: dict) -> bytes:
        def load() -> bytes:
            uri = row["blob_uri"]
            try:
                data = st.open_storage(uri, self.storage_options).get_range(
                    uri, row["offset"], row["length"])
            except st.StorageError as e:
                raise StorageUnavailable(f"{row['id']!r}: cannot read its blob: {e}") from e
            self._count(blob_reads=1, blob_bytes=len(data))
            return data

        return self.blobs.get_or_load(_blob_key(row), load)[0]

    def blob(self, image_id: str) -> tuple[dict, bytes]:
        """(row, stored blob): one lookup and one ranged read when neither is cached.

        The row has the LOOKUP_COLUMNS only; `meta(image_id)` gives all of them.
        """
        row = self.locate(image_id)
        self.check_limits(row)
        return row, self._blob(row)

    def _corrupt(self, row: dict, why: str) -> CorruptImage:
        self._count(corrupt=1)
        self.blobs.discard(_blob_key(row))  # read it again next time: it may be repaired
        log.error("corrupt blob for id %r (%s at offset %s, %s bytes): %s", row["id"],
                  row["blob_uri"], row["offset"], row["length"], why)
        return CorruptImage(f"stored blob for {row['id']!r} failed verification: {why}")

    def _verified(self, row: dict, img: RasterImage) -> RasterImage:
        if not row.get("passthrough") and pixel_checksum(img.pixels) != row["checksum"]:
            raise self._corrupt(row, "decoded pixels differ from the index checksum")
        return img

    def _decode_one(self, row: dict, blob: bytes) -> RasterImage:
        from pilc_ray.integrity import decode_blob

        t0 = time.perf_counter()
        try:
            if row.get("passthrough"):
                img = decode_blob(row, blob)
            else:
                img = _gate.run(lambda: codec.decode_image(blob,
                                                           max_samples=self.max_image_samples))
        except CodecError as e:
            raise self._corrupt(row, str(e)) from e
        finally:
            self._count(decodes=1, decode_seconds=time.perf_counter() - t0)
        return self._verified(row, img)

    def original(self, image_id: str) -> tuple[dict, bytes]:
        """(row, stored file) of a passthrough image: the JPEG file the job was given, byte for
        byte, checked against the index checksum and never decoded (decoding and re-encoding
        would give a file several times bigger, and not the original).

        Other images were compressed from their pixels; their source file was not kept, so
        this raises UnsupportedFormat (406) for them rather than pass a PNG off as it.
        """
        row, blob = self.blob(image_id)
        if not row.get("passthrough"):
            raise UnsupportedFormat(
                f"{image_id!r} was compressed from its pixels ({row.get('codec')}); its original "
                "file is not stored: ask for png, raw or npy")
        if xxhash.xxh3_64_intdigest(blob) != row["checksum"]:
            raise self._corrupt(row, "stored file differs from the index checksum")
        return row, blob

    def image(self, image_id: str) -> RasterImage:
        """Pixels plus mode, palette, ICC, Exif and text, exactly as compressed."""
        row, blob = self.blob(image_id)
        return self._decode_one(row, blob)

    def get(self, image_id: str) -> np.ndarray:
        """The pixel array (H, W) or (H, W, C), bit-exact. `meta(image_id)` gives its row."""
        return self.image(image_id).pixels

    def get_with_meta(self, image_id: str) -> tuple[np.ndarray, dict]:
        """(pixels, full index row)."""
        pixels = self.get(image_id)
        return pixels, self.meta(image_id)

    def get_png(self, image_id: str) -> bytes:
        """The image as a PNG file (16-bit, palette, ICC/Exif/text kept)."""
        return to_png(self.image(image_id))

    def images(self, image_ids: Sequence[str]) -> list[RasterImage | ArchiveError]:
        """Many images with one codec pass for the learned blobs (the Serve batch path).

        Returns per id an image or the ArchiveError that id raised, so one bad id (or one
        corrupt blob) does not fail the others.
        """
        out: list[RasterImage | ArchiveError | None] = [None] * len(image_ids)
        batch: list[tuple[int, dict, bytes]] = []
        for i, image_id in enumerate(image_ids):
            try:
                row, blob = self.blob(image_id)
            except ArchiveError as e:
                out[i] = e
                continue
            if row.get("passthrough"):
                out[i] = self._try(row, blob)
            else:
                batch.append((i, row, blob))
        if batch:
            t0 = time.perf_counter()
            try:
                imgs = _gate.run(lambda: codec.decode_image_batch(
                    [b for _, _, b in batch], max_samples=self.max_image_samples))
                self._count(decodes=len(batch), decode_seconds=time.perf_counter() - t0)
                for (i, row, _), img in zip(batch, imgs, strict=True):
                    try:
                        out[i] = self._verified(row, img)
                    except CorruptImage as e:
                        out[i] = e
            except CodecError:
                for i, row, blob in batch:  # find the culprit(s): decode one at a time
                    out[i] = self._try(row, blob)
        return out  # type: ignore[return-value]

    def get_many(self, image_ids: Sequence[str]) -> list[np.ndarray]:
        """Pixel arrays of many ids in one batched decode; raises the first error."""
        arrays = []
        for r in self.images(image_ids):
            if isinstance(r, ArchiveError):
                raise r
            arrays.append(r.pixels)
        return arrays

    def _try(self, row: dict, blob: bytes) -> RasterImage | ArchiveError:
        try:
            return self._decode_one(row, blob)
        except ArchiveError as e:
            return e

    # bookkeeping --------------------------------------------------------------------------------

    def _count(self, **kw: float) -> None:
        with self._counter_lock:
            for k, v in kw.items():
                setattr(self.counters, k, getattr(self.counters, k) + v)

    def stats(self) -> dict[str, Any]:
        """Counters for /metrics and tests: reads, bytes, decodes, cache hits."""
        with self._counter_lock:
            c = dict(vars(self.counters))
        return {**c, "index_rows": self._file.num_rows,
                "index_row_groups": self._file.meta.num_row_groups,
                "row_group_cache": self.row_groups.stats(), "blob_cache": self.blobs.stats()}


FORMATS = {"png": "image/png", "raw": "application/octet-stream", "npy": "application/x-npy"}
# media type of a passthrough row's stored file, by its `codec` column
ORIGINAL_MEDIA_TYPES = {"jpeg": "image/jpeg"}


def original_media_type(row: dict) -> str:
    """Content type of a passthrough row's stored file (the job passes only JPEGs through)."""
    return ORIGINAL_MEDIA_TYPES.get(row.get("codec") or "", "application/octet-stream")


@dataclass(frozen=True)
class Rendered:
    """An image encoded for sending: body, media type, extra headers (shape of raw pixels)."""

    body: bytes
    media_type: str
    headers: tuple[tuple[str, str], ...] = ()


def render(img: RasterImage, fmt: str) -> Rendered:
    """png: a PNG file. raw: the pixel bytes, C order, little-endian (shape and dtype in the
    headers). npy: the array as a .npy file. Palette images give their indices in raw/npy."""
    if fmt == "png":
        return Rendered(to_png(img), FORMATS["png"])
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, not {fmt!r}")
    px = img.pixels
    if px.dtype.itemsize > 1:
        px = px.astype(px.dtype.newbyteorder("<"), copy=False)
    px = np.ascontiguousarray(px)
    if fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, px, allow_pickle=False)
        body = buf.getvalue()
    else:
        body = px.tobytes()
    return Rendered(body, FORMATS[fmt], (("X-Image-Shape", ",".join(map(str, px.shape))),
                                         ("X-Image-Dtype", px.dtype.name),
                                         ("X-Image-Mode", img.mode)))


def _blob_key(row: dict) -> tuple[str, int, int]:
    return row["blob_uri"], row["offset"], row["length"]


def to_png(img: RasterImage) -> bytes:
    """PNG bytes of an image; CMYK has no PNG form (UnsupportedFormat)."""
    if img.mode == "CMYK":
        raise UnsupportedFormat("CMYK images have no PNG form; ask for raw or npy")
    return codec.to_png_bytes(img)


def open_archive(index_uri: str, storage_options: Any = None, **options: Any) -> Archive:
    """An `Archive` over a job's DEST (folder or s3:// prefix) or its index.parquet."""
    return Archive(index_uri, storage_options, **options)
