"""The Parquet index (one row per image) and the errors table: write, resume, compact, look up.

While a job runs, the driver appends small sorted *parts* (``index/parts/*.parquet``), each
written atomically, so a driver killed at any moment leaves only whole parts behind. At job end
`compact` merges the compacted index and all parts into ``index/index.parquet``: one row per id
(duplicates from a crash between writing the index and deleting the parts are dropped here),
sorted by id, in row groups with min/max statistics. A lookup then binary-searches the row-group
statistics and reads one row group.
"""

from __future__ import annotations

import bisect
import io
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pilc_ray import storage as st

INDEX_FILE = "index/index.parquet"
ERRORS_FILE = "index/errors.parquet"
PARTS_DIR = "index/parts"
ERROR_PARTS_DIR = "index/error-parts"
ROW_GROUP_SIZE = 16384
PART_ROW_GROUP_SIZE = 2048  # small: compaction holds one row group per part in memory
MERGE_FAN_IN = 64  # more parts than this are merged in several passes
TS = pa.timestamp("us", tz="UTC")

INDEX_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("source_uri", pa.string()),
    ("blob_uri", pa.string()),
    ("offset", pa.int64()),
    ("length", pa.int64()),
    ("height", pa.int32()),
    ("width", pa.int32()),
    ("channels", pa.int16()),
    ("mode", pa.string()),
    ("codec", pa.string()),
    ("passthrough", pa.bool_()),
    ("model_id", pa.string()),
    ("effort", pa.string()),  # learned blobs' level; null for classical, passthrough, old indexes
    ("raw_bytes", pa.int64()),
    ("compressed_bytes", pa.int64()),
    ("samples", pa.int64()),
    ("bpsp", pa.float32()),
    ("checksum", pa.uint64()),
    ("worker", pa.string()),
    ("attempt", pa.int16()),
    ("read_s", pa.float32()),
    ("decode_input_s", pa.float32()),
    ("encode_s", pa.float32()),
    ("write_s", pa.float32()),
    ("batch_s", pa.float32()),
    # codec stages (codec.timing) of the image's share of its batch's encode; null in indexes
    # written before these columns existed
    ("predictor_s", pa.float32()),
    ("model_s", pa.float32()),
    ("coder_s", pa.float32()),
    ("container_s", pa.float32()),
    ("created", TS),
    ("run_id", pa.string()),
])

ERRORS_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("source_uri", pa.string()),
    ("stage", pa.string()),
    ("error", pa.string()),
    ("error_type", pa.string()),
    ("worker", pa.string()),
    ("attempt", pa.int16()),
    ("time", TS),
    ("run_id", pa.string()),
])


def conform(table: pa.Table, schema: pa.Schema = INDEX_SCHEMA) -> pa.Table:
    """`table` in `schema`'s column order and types, missing columns as nulls.

    Indexes written before a column existed (e.g. the codec stage timings) stay readable and
    merge with new parts.
    """
    for f in schema:
        if f.name not in table.column_names:
            table = table.append_column(f, pa.nulls(len(table), f.type))
    return table.select(schema.names).cast(schema)


def _timestamps(values: Sequence[float]) -> pa.Array:
    us = (np.asarray(values, dtype=np.float64) * 1e6).astype(np.int64)
    return pa.array(us, type=pa.int64()).cast(TS)


def rows_to_table(rows: Sequence[dict], schema: pa.Schema, run_id: str) -> pa.Table:
    """Plain dict rows (from workers) -> a table of `schema`, sorted by id."""
    cols = {}
    for f in schema:
        if f.name == "run_id":
            cols[f.name] = pa.array([run_id] * len(rows), pa.string())
        elif f.type == TS:
            cols[f.name] = _timestamps([r.get(f.name, r.get("created", 0.0)) for r in rows])
        else:
            cols[f.name] = pa.array([r.get(f.name) for r in rows], type=f.type)
    t = pa.table(cols, schema=schema)
    return t.sort_by("id") if len(t) else t


def table_bytes(table: pa.Table, row_group_size: int = ROW_GROUP_SIZE) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", row_group_size=row_group_size)
    return buf.getvalue()


def read_table(uri: str, options: Any = None, columns: list[str] | None = None) -> pa.Table:
    storage = st.open_storage(uri, options)
    if st.is_s3(uri):
        return pq.read_table(storage.open_read(uri), columns=columns)
    return pq.read_table(st.local_path(uri), columns=columns)


# --------------------------------------------------------------------------------------------
# writing parts


def open_parquet(uri: str, options: Any = None) -> pq.ParquetFile:
    """A Parquet file read lazily (ranged reads on S3): only what is asked for is fetched."""
    storage = st.open_storage(uri, options)
    return pq.ParquetFile(storage.open_read(uri) if st.is_s3(uri) else st.local_path(uri))


class PartWriter:
    """Buffers rows (as Arrow, ~10x smaller than dicts) and writes sorted parts atomically."""

    def __init__(self, dest: str, run_id: str, options: Any = None, flush_rows: int = 20_000,
                 flush_seconds: float = 30.0) -> None:
        self.dest = st.normalize(dest)
        self.run_id = run_id
        self.options = options
        self.storage = st.open_storage(self.dest, options)
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self.rows: list[pa.Table] = []
        self.errors: list[pa.Table] = []
        self.buffered = 0
        self.seq = 0
        self.last_flush = time.monotonic()
        self.rows_written = 0
        self.errors_written = 0

    def add(self, rows: Sequence[dict], errors: Sequence[dict]) -> None:
        if rows:
            self.rows.append(rows_to_table(rows, INDEX_SCHEMA, self.run_id))
        if errors:
            self.errors.append(rows_to_table(errors, ERRORS_SCHEMA, self.run_id))
        self.buffered += len(rows) + len(errors)
        due = time.monotonic() - self.last_flush > self.flush_seconds
        if self.buffered >= self.flush_rows or (due and self.buffered):
            self.flush()

    def flush(self) -> None:
        """Write what is buffered (rows before errors: an error never hides a good row)."""
        if self.rows:
            t = pa.concat_tables(self.rows).sort_by("id")
            self.storage.put(st.join(self.dest, PARTS_DIR, f"{self.run_id}-{self.seq:06d}.parquet"),
                             table_bytes(t, PART_ROW_GROUP_SIZE))
            self.rows_written += len(t)
            self.rows = []
        if self.errors:
            t = pa.concat_tables(self.errors).sort_by("id")
            self.storage.put(
                st.join(self.dest, ERROR_PARTS_DIR, f"{self.run_id}-{self.seq:06d}.parquet"),
                table_bytes(t, PART_ROW_GROUP_SIZE))
            self.errors_written += len(t)
            self.errors = []
        self.buffered = 0
        self.seq += 1
        self.last_flush = time.monotonic()


# --------------------------------------------------------------------------------------------
# resume


def _part_uris(dest: str, folder: str, options: Any) -> list[str]:
    storage = st.open_storage(dest, options)
    return sorted(o.uri for o in storage.list_folder(st.join(dest, folder))
                  if o.uri.endswith(".parquet"))


def indexed_ids(dest: str, options: Any = None) -> pa.Array:
    """Every id already in the index or its pending parts (what a rerun skips)."""
    dest = st.normalize(dest)
    storage = st.open_storage(dest, options)
    chunks = []
    main = st.join(dest, INDEX_FILE)
    if storage.exists(main):
        chunks.extend(read_table(main, options, ["id"]).column("id").chunks)
    for uri in _part_uris(dest, PARTS_DIR, options):
        chunks.extend(read_table(uri, options, ["id"]).column("id").chunks)
    if not chunks:
        return pa.array([], pa.string())
    return pa.concat_arrays([c.cast(pa.string()) for c in chunks])


# --------------------------------------------------------------------------------------------
# compaction


@dataclass
class CompactResult:
    rows: int
    errors: int
    duplicates_dropped: int
    row_groups: int
    bytes: int
    seconds: float


def _first_per_id(table: pa.Table, keep_last: bool = False) -> tuple[pa.Table, pa.Table]:
    """(one row per id, sorted by id; the dropped rows). Ties keep the earliest row."""
    n = len(table)
    order = np.arange(n, dtype=np.int64)
    if keep_last:
        order = -order
    t = table.append_column("_ord", pa.array(order))
    t = t.sort_by([("id", "ascending"), ("_ord", "ascending")])
    ids = t.column("id").combine_chunks()
    if n:
        first = pc.not_equal(ids.slice(1), ids.slice(0, n - 1))
        keep = pa.concat_arrays([pa.array([True]), first.fill_null(True)])
    else:
        keep = pa.array([], pa.bool_())
    kept = t.filter(keep).drop_columns(["_ord"])
    dropped = t.filter(pc.invert(keep)).drop_columns(["_ord"])
    return kept, dropped


def _write_sorted(table: pa.Table, uri: str, options: Any, row_group_size: int) -> int:
    """Write `table` (already sorted) with statistics; returns its size. Atomic on all stores."""
    storage = st.open_storage(uri, options)
    fd, tmp = tempfile.mkstemp(suffix=".parquet")
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_size,
                       write_statistics=["id"])
        storage.put_file(tmp, uri)
        return os.path.getsize(tmp)
    finally:
        os.unlink(tmp)


class _NotSorted(Exception):
    """A part is not sorted by id (not written by PartWriter): merge in memory instead."""


class _SortedRun:
    """One id-sorted Parquet file (the old index or a part), read a row group at a time."""

    def __init__(self, uri: str, options: Any, rank: int) -> None:
        storage = st.open_storage(uri, options)
        self.pf = pq.ParquetFile(storage.open_read(uri) if st.is_s3(uri) else st.local_path(uri))
        self.rank, self.next_rg = rank, 0
        self.buf: pa.Table | None = None
        self.ids: list[str] = []  # the buffer's ids as Python strings: bisect per round
        self.pos = 0
        self.prev_last: str | None = None

    def fill(self) -> bool:
        """Make sure a non-empty buffer is loaded; False when the file is used up."""
        while self.pos >= len(self.ids) and self.next_rg < self.pf.num_row_groups:
            t = self.pf.read_row_group(self.next_rg)
            self.next_rg += 1
            self.buf = conform(t)
            self.ids, self.pos = self.buf.column("id").to_pylist(), 0
            if self.ids:
                if any(a > b for a, b in zip(self.ids, self.ids[1:], strict=False)) or (
                        self.prev_last is not None and self.ids[0] < self.prev_last):
                    raise _NotSorted()
                self.prev_last = self.ids[-1]
        return self.pos < len(self.ids)

    @property
    def last_id(self) -> str:
        return self.ids[-1]

    def take_upto(self, frontier: str) -> pa.Table:
        """Remove and return the buffered rows with id <= frontier (tagged with this rank)."""
        end = bisect.bisect_right(self.ids, frontier, lo=self.pos)
        out = self.buf.slice(self.pos, end - self.pos)
        self.pos = end
        return out.append_column("_rank", pa.array(np.full(len(out), self.rank, np.int32)))


class _RowGroupWriter:
    """Parquet writer emitting row groups of exactly `size` rows (the last one shorter)."""

    def __init__(self, path: str, schema: pa.Schema, size: int) -> None:
        self.w = pq.ParquetWriter(path, schema, compression="zstd", write_statistics=["id"])
        self.size, self.buf, self.n, self.rows = size, [], 0, 0

    def write(self, t: pa.Table) -> None:
        self.buf.append(t)
        self.n += len(t)
        if self.n >= self.size:
            whole = pa.concat_tables(self.buf)
            cut = (self.n // self.size) * self.size
            self.w.write_table(whole.slice(0, cut), row_group_size=self.size)
            self.buf, self.n = [whole.slice(cut)], self.n - cut
            self.rows += cut

    def close(self) -> None:
        if self.n:
            self.w.write_table(pa.concat_tables(self.buf), row_group_size=self.size)
            self.rows += self.n
        self.w.close()


def _merge_runs(uris: list[str], options: Any, path: str, row_group_size: int,
                error_ids: pa.Array) -> tuple[int, list[dict], set[str]]:
    """Stream-merge sorted runs into `path`: one row per id (earliest run wins).

    Memory is one row group per run, whatever the index size. Returns (rows written,
    duplicate ids naming another input, ids of `error_ids` that got indexed).
    """
    runs = [_SortedRun(u, options, i) for i, u in enumerate(uris)]
    runs = [r for r in runs if r.fill()]
    out = _RowGroupWriter(path, INDEX_SCHEMA, row_group_size)
    last_id: str | None = None
    last_uri: str | None = None
    dups: list[dict] = []
    indexed_errors: set[str] = set()
    try:
        while runs:
            frontier = min(r.last_id for r in runs)
            t = pa.concat_tables([r.take_upto(frontier) for r in runs])
            t = t.sort_by([("id", "ascending"), ("_rank", "ascending")])
            ids = t.column("id").combine_chunks()
            n = len(t)
            keep = np.ones(n, dtype=bool)
            if n > 1:
                keep[1:] = pc.not_equal(ids.slice(1), ids.slice(0, n - 1)).to_numpy(
                    zero_copy_only=False)
            if n and ids[0].as_py() == last_id:
                keep[0] = False
            if not keep.all():
                uris_col = t.column("source_uri").to_pylist()
                kept_pos = np.flatnonzero(keep)
                for p in np.flatnonzero(~keep):
                    k = np.searchsorted(kept_pos, p, "right") - 1
                    kept_uri = uris_col[kept_pos[k]] if k >= 0 else last_uri
                    if uris_col[p] != kept_uri:
                        dups.append({"id": ids[int(p)].as_py(), "source_uri": uris_col[p]})
            kept = t.filter(pa.array(keep)).drop_columns(["_rank"])
            if len(kept):
                out.write(kept)
                last_id = kept.column("id")[-1].as_py()
                last_uri = kept.column("source_uri")[-1].as_py()
                if len(error_ids):
                    hit = pc.is_in(kept.column("id"), value_set=error_ids)
                    indexed_errors.update(kept.column("id").filter(hit).to_pylist())
            runs = [r for r in runs if r.fill()]
    finally:
        out.close()
    return out.rows, dups, indexed_errors


def _merge_all(runs: list[str], options: Any, path: str, row_group_size: int,
               error_ids: pa.Array) -> tuple[int, list[dict], set[str]]:
    """Merge any number of sorted runs, at most MERGE_FAN_IN at a time (bounded memory)."""
    import shutil

    work = tempfile.mkdtemp(prefix="pilc-merge-")
    dups: list[dict] = []
    try:
        level = 0
        while len(runs) > MERGE_FAN_IN:  # consecutive groups keep "earliest run wins"
            merged = []
            for g in range(0, len(runs), MERGE_FAN_IN):
                out = os.path.join(work, f"l{level}-{g:08d}.parquet")
                _, d, _ = _merge_runs(runs[g : g + MERGE_FAN_IN], options, out,
                                      PART_ROW_GROUP_SIZE, pa.array([], pa.string()))
                dups += d
                merged.append(out)
            runs, level = merged, level + 1
        rows, d, indexed = _merge_runs(runs, options, path, row_group_size, error_ids)
        return rows, dups + d, indexed
    finally:
        shutil.rmtree(work, ignore_errors=True)


def compact(dest: str, options: Any = None, row_group_size: int = ROW_GROUP_SIZE,
            run_id: str = "compact") -> CompactResult:
    """Merge index parts into the sorted, deduplicated index; same for the errors table.

    A streaming merge of sorted runs (the old index and the parts), so memory does not grow with
    the index. Crash-safe in any order: parts are deleted only after the new index is in place,
    and a rerun of `compact` drops the duplicates such a crash can leave.
    """
    t0 = time.perf_counter()
    dest = st.normalize(dest)
    storage = st.open_storage(dest, options)
    main = st.join(dest, INDEX_FILE)
    parts = _part_uris(dest, PARTS_DIR, options)
    has_main = storage.exists(main)

    main_err = st.join(dest, ERRORS_FILE)
    err_parts = _part_uris(dest, ERROR_PARTS_DIR, options)
    etables = [read_table(main_err, options)] if storage.exists(main_err) else []
    etables += [read_table(u, options) for u in err_parts]
    errors = (pa.concat_tables(etables, promote_options="permissive") if etables
              else ERRORS_SCHEMA.empty_table())
    errors = errors.select(ERRORS_SCHEMA.names).cast(ERRORS_SCHEMA)

    rows, dups, indexed_errors = 0, [], set()
    if parts or not has_main:
        runs = ([main] if has_main else []) + parts
        fd, tmp = tempfile.mkstemp(suffix=".parquet")
        os.close(fd)
        try:
            try:
                rows, dups, indexed_errors = _merge_all(runs, options, tmp, row_group_size,
                                                        errors.column("id").unique())
            except _NotSorted:
                rows, dups, indexed_errors = _merge_in_memory(runs, options, tmp,
                                                              row_group_size, errors)
            storage.put_file(tmp, main)
            size = os.path.getsize(tmp)
        finally:
            os.unlink(tmp)
    else:
        size = storage.size(main)
        meta = pq.ParquetFile(storage.open_read(main)).metadata
        rows = meta.num_rows

    # errors: the latest per id still not indexed, plus inputs whose id was taken by another
    if len(errors) and indexed_errors:
        errors = errors.filter(pc.invert(pc.is_in(errors.column("id"),
                                                  value_set=pa.array(sorted(indexed_errors)))))
    if dups:
        now = time.time()
        errors = pa.concat_tables([errors, rows_to_table([{
            "id": d["id"], "source_uri": d["source_uri"], "stage": "duplicate-id",
            "error": f"id {d['id']!r} also names another input; that one was indexed, this one "
                     "was not (give each input a unique id)",
            "error_type": "DuplicateId", "worker": "driver", "attempt": 0, "time": now,
        } for d in dups], ERRORS_SCHEMA, run_id)])
    errors, _ = _first_per_id(errors, keep_last=True)
    if err_parts or dups or storage.exists(main_err) or len(errors):
        _write_sorted(errors, main_err, options, row_group_size)
    for uri in parts + err_parts:
        storage.delete(uri)
    pf_meta = pq.ParquetFile(storage.open_read(main)).metadata
    return CompactResult(rows, len(errors), len(dups), pf_meta.num_row_groups, size,
                         time.perf_counter() - t0)


def _kept_uri(index: pa.Table, dropped: pa.Table) -> pa.Array:
    """For each dropped row, the source_uri of the row kept for its id."""
    if not len(dropped):
        return pa.array([], pa.string())
    pos = pc.index_in(dropped.column("id"), index.column("id"))
    return pc.take(index.column("source_uri"), pos)


def _merge_in_memory(uris: list[str], options: Any, path: str, row_group_size: int,
                     errors: pa.Table) -> tuple[int, list[dict], set[str]]:
    """Fallback for unsorted parts: everything in memory, sorted, first row per id kept."""
    table = pa.concat_tables([conform(read_table(u, options)) for u in uris])
    index, dropped = _first_per_id(table)
    dup = dropped.filter(pc.not_equal(dropped.column("source_uri"), _kept_uri(index, dropped)))
    pq.write_table(index, path, compression="zstd", row_group_size=row_group_size,
                   write_statistics=["id"])
    hit = pc.is_in(errors.column("id"), value_set=index.column("id"))
    return (len(index), dup.select(["id", "source_uri"]).to_pylist(),
            set(errors.column("id").filter(hit).to_pylist()))


# --------------------------------------------------------------------------------------------
# lookup


@dataclass(frozen=True)
class RowGroupIds:
    """Per-row-group min/max of the id column, from a parquet footer: which row groups may
    hold an id (shared by `IndexReader` and the archive's index file)."""

    mins: list[str | None]
    maxs: list[str | None]
    sorted: bool  # all stats present and row groups in id order (a compacted index)

    @classmethod
    def from_metadata(cls, meta: pq.FileMetaData, col: int) -> RowGroupIds:
        mins: list[str | None] = []
        maxs: list[str | None] = []
        for i in range(meta.num_row_groups):
            s = meta.row_group(i).column(col).statistics
            ok = s is not None and s.has_min_max
            mins.append(s.min if ok else None)
            maxs.append(s.max if ok else None)
        ordered = all(m is not None for m in mins) and all(
            maxs[i] <= mins[i + 1] for i in range(len(mins) - 1))
        return cls(mins, maxs, ordered)

    def candidates(self, image_id: str) -> list[int]:
        """Row groups that may hold `image_id` (one at most for a compacted index)."""
        if self.sorted:
            i = bisect.bisect_right(self.mins, image_id) - 1
            return [i] if i >= 0 and image_id <= self.maxs[i] else []
        return [i for i, (lo, hi) in enumerate(zip(self.mins, self.maxs, strict=True))
                if lo is None or hi is None or lo <= image_id <= hi]

    def first_group_from(self, start: str) -> int:
        """The first row group that may hold ids >= start (sorted index; else 0)."""
        if not self.sorted:
            return 0
        return bisect.bisect_left(self.maxs, start)


class IndexReader:
    """An open compacted index: footer parsed once, then one row group read per lookup."""

    def __init__(self, index_uri: str, options: Any = None) -> None:
        self.uri = resolve_index_uri(index_uri)
        self.storage = st.open_storage(self.uri, options)
        self.stamp = self.storage.stat(self.uri)
        self.file = st.RangedReader(self.storage, self.uri, self.stamp.size)
        self.pf = pq.ParquetFile(self.file)
        self.footer_bytes = self.file.bytes_read
        self.ids = RowGroupIds.from_metadata(
            self.pf.metadata, self.pf.schema_arrow.get_field_index("id"))
        self.lock = threading.Lock()
        self.opened = time.monotonic()

    def candidates(self, image_id: str) -> list[int]:
        """Row groups that may hold `image_id` (one, for a compacted index)."""
        return self.ids.candidates(image_id)

    def get(self, image_id: str) -> dict:
        """The row for `image_id`; KeyError when the index has none."""
        with self.lock:
            for rg in self.candidates(image_id):
                t = self.pf.read_row_group(rg)
                hit = pc.index(t.column("id"), image_id).as_py()
                if hit >= 0:
                    return t.slice(hit, 1).to_pylist()[0]
        raise KeyError(image_id)


def resolve_index_uri(uri: str) -> str:
    """A job folder or the index file itself -> the index file's URI."""
    uri = st.normalize(uri)
    return uri if uri.endswith(".parquet") else st.join(uri, INDEX_FILE)


_readers: dict[tuple[str, str], IndexReader] = {}
_readers_lock = threading.Lock()
_RECHECK_S = 5.0


def open_index(index_uri: str, options: Any = None) -> IndexReader:
    """A cached IndexReader; reopened when the file's size changed (a new compaction)."""
    key = (resolve_index_uri(index_uri), repr(st.StorageOptions.from_any(options)))
    with _readers_lock:
        r = _readers.get(key)
    if r is not None:
        if st.is_s3(key[0]) and time.monotonic() - r.opened < _RECHECK_S:
            return r  # a HEAD per lookup would double S3 latency; recheck every few seconds
        stamp = r.storage.stat(r.uri)
        if (stamp.size, stamp.mtime) == (r.stamp.size, r.stamp.mtime):
            r.opened = time.monotonic()
            return r
    try:
        r = IndexReader(key[0], options)
    except st.NotFound as e:
        raise FileNotFoundError(f"no compacted index at {key[0]}") from e
    with _readers_lock:
        _readers[key] = r
    return r


def lookup(index_uri: str, image_id: str, storage_options: Any = None) -> dict:
    """The index row of one image (KeyError if absent), reading one row group."""
    return open_index(index_uri, storage_options).get(image_id)


def read_blob(row: dict, storage_options: Any = None) -> bytes:
    """The stored blob of an index row: one ranged read."""
    uri = row["blob_uri"]
    return st.open_storage(uri, storage_options).get_range(uri, row["offset"], row["length"])


def drop_ids(dest: str, ids: Sequence[str], options: Any = None,
             row_group_size: int = ROW_GROUP_SIZE) -> int:
    """Rewrite the compacted index without the rows of `ids` (a repair: the next job codes
    those images again); returns how many rows went. Run only while holding DEST's lease."""
    if not ids:
        return 0
    dest = st.normalize(dest)
    main = st.join(dest, INDEX_FILE)
    table = read_table(main, options)
    gone = pc.is_in(table.column("id"), value_set=pa.array(sorted(set(ids)), pa.string()))
    kept = table.filter(pc.invert(gone))
    _write_sorted(kept, main, options, row_group_size)
    return len(table) - len(kept)


def has_pending_parts(dest: str, options: Any = None) -> bool:
    """Whether index parts wait to be compacted (a run was killed before its compaction)."""
    dest = st.normalize(dest)
    return bool(_part_uris(dest, PARTS_DIR, options) or _part_uris(dest, ERROR_PARTS_DIR, options))
