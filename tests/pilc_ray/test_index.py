"""Index parts, compaction (sort, dedupe, errors table) and one-row-group lookups."""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pilc_ray import index as ix


def _row(i: int, uri: str | None = None) -> dict:
    return {"id": f"img/{i:06d}.png", "source_uri": uri or f"/src/{i:06d}.png",
            "blob_uri": "/out/shards/x.pshard", "offset": i * 10, "length": 10, "height": 4,
            "width": 4, "channels": 3, "mode": "RGB", "codec": "learned", "passthrough": False,
            "model_id": "m", "raw_bytes": 48, "compressed_bytes": 10, "samples": 48,
            "bpsp": 1.6, "checksum": 2**63 + i, "worker": "w", "attempt": 1, "read_s": 0.0,
            "decode_input_s": 0.0, "encode_s": 0.1, "write_s": 0.0, "batch_s": 0.2,
            "created": time.time()}


def _err(i: int, msg: str = "bad") -> dict:
    return {"id": f"img/{i:06d}.png", "source_uri": f"/src/{i:06d}.png", "stage": "read",
            "error": msg, "error_type": "X", "worker": "w", "attempt": 1, "time": time.time()}


def test_parts_compact_sorted_deduplicated_with_statistics(tmp_path):
    dest = str(tmp_path / "job")
    w = ix.PartWriter(dest, "run1", flush_rows=300)
    w.add([_row(i) for i in range(999, 499, -1)], [_err(5), _err(7)])  # out of order
    w.add([_row(i) for i in range(0, 500)], [_err(600)])  # 600 fails, but is indexed too
    w.add([_row(17, uri="/elsewhere/17.png")], [])  # same id, another input
    w.flush()
    assert len(ix.indexed_ids(dest)) == 1001
    res = ix.compact(dest, row_group_size=64)
    assert res.rows == 1000 and res.duplicates_dropped == 1 and res.row_groups == 16
    t = pq.read_table(tmp_path / "job" / ix.INDEX_FILE)
    ids = t.column("id").to_pylist()
    assert ids == sorted(ids) and len(set(ids)) == 1000
    assert t.schema.equals(ix.INDEX_SCHEMA)
    md = pq.ParquetFile(tmp_path / "job" / ix.INDEX_FILE).metadata
    assert md.row_group(3).column(0).statistics.has_min_max
    errs = pq.read_table(tmp_path / "job" / ix.ERRORS_FILE).to_pylist()
    by_id = {e["id"]: e for e in errs}
    assert set(by_id) == {"img/000017.png"}  # errors of ids indexed later are gone
    assert by_id["img/000017.png"]["stage"] == "duplicate-id"
    assert not list((tmp_path / "job" / ix.PARTS_DIR).glob("*.parquet"))
    # compacting again is a no-op; a crash that left a part beside the index dedupes away
    w2 = ix.PartWriter(dest, "run2")
    w2.add([_row(3), _row(1000)], [_err(2000)])
    w2.flush()
    res = ix.compact(dest, row_group_size=64)
    assert res.rows == 1001
    errs = pq.read_table(tmp_path / "job" / ix.ERRORS_FILE).column("id").to_pylist()
    assert "img/002000.png" in errs


def test_lookup_reads_one_row_group(tmp_path):
    dest = str(tmp_path / "job")
    w = ix.PartWriter(dest, "r")
    w.add([_row(i) for i in range(20_000)], [])
    w.flush()
    ix.compact(dest, row_group_size=1000)
    reader = ix.IndexReader(dest)
    size = (tmp_path / "job" / ix.INDEX_FILE).stat().st_size
    before = reader.file.bytes_read
    row = reader.get("img/012345.png")
    assert row["offset"] == 123450 and row["checksum"] == 2**63 + 12345
    assert reader.file.bytes_read - before < size / 10  # one row group of twenty
    with pytest.raises(KeyError):
        reader.get("img/999999.png")
    with pytest.raises(KeyError):
        reader.get("")
    assert ix.lookup(dest, "img/000000.png")["id"] == "img/000000.png"
    assert ix.lookup(str(tmp_path / "job" / ix.INDEX_FILE), "img/019999.png")["offset"] == 199990
    with pytest.raises(FileNotFoundError):
        ix.lookup(str(tmp_path / "none"), "x")


def test_compaction_streams_and_handles_unsorted_parts(tmp_path):
    dest = tmp_path / "job"
    w = ix.PartWriter(str(dest), "a", flush_rows=10**9)
    w.add([_row(i) for i in range(0, 3000, 2)], [_err(1), _err(3)])
    w.flush()
    ix.compact(str(dest), row_group_size=100)
    w = ix.PartWriter(str(dest), "b", flush_rows=10**9)
    w.add([_row(i) for i in range(1, 3000, 2)] + [_row(10)], [])  # 10: crash-window duplicate
    w.flush()
    res = ix.compact(str(dest), row_group_size=100)
    assert res.rows == 3000 and res.row_groups == 30 and res.duplicates_dropped == 0
    ids = pq.read_table(dest / ix.INDEX_FILE).column("id").to_pylist()
    assert ids == sorted(f"img/{i:06d}.png" for i in range(3000))
    assert pq.read_table(dest / ix.ERRORS_FILE).num_rows == 0  # 1 and 3 were indexed later
    # a part written by hand, not sorted: merged in memory instead, same result
    t = ix.rows_to_table([_row(5000), _row(4000)], ix.INDEX_SCHEMA, "x").sort_by(
        [("id", "descending")])
    pq.write_table(t, dest / ix.PARTS_DIR / "zz-unsorted.parquet")
    res = ix.compact(str(dest), row_group_size=100)
    ids = pq.read_table(dest / ix.INDEX_FILE).column("id").to_pylist()
    assert res.rows == 3002 and ids == sorted(ids)


def test_multi_pass_merge_keeps_the_earliest_run(tmp_path, monkeypatch):
    monkeypatch.setattr(ix, "MERGE_FAN_IN", 3)
    dest = str(tmp_path / "job")
    for k in range(10):  # ten runs, ids overlapping between consecutive ones
        w = ix.PartWriter(dest, f"r{k:02d}")
        w.add([_row(i, uri=f"/src/{k}/{i}.png" if i == 7 else None)
               for i in range(k * 50, k * 50 + 80)], [])
        w.flush()
    res = ix.compact(dest, row_group_size=100)
    t = pq.read_table(tmp_path / "job" / ix.INDEX_FILE)
    assert res.rows == 530 and t.column("id").to_pylist() == sorted(t.column("id").to_pylist())
    assert t.filter(pa.compute.equal(t.column("id"), "img/000060.png"))["run_id"][0].as_py() \
        == "r00"
