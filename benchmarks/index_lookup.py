"""Index lookup of one id in a large compacted index: latency and bytes read.

Builds an index the way a job does (shuffled parts written by `PartWriter`, merged by
`index.compact`), then looks up random ids, cold (a fresh reader: footer + one row group) and
warm (footer cached, as the retrieval service keeps it).

    python benchmarks/index_lookup.py --rows 10000000 --row-group-size 16384 \
        --out benchmarks/results/pipeline_index_lookup.md
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from pilc_ray import index as ix


def synthetic_part(ids: np.ndarray, seed: int) -> pa.Table:
    """Index rows shaped like a real job's (ids like 'photos/0001234567.png')."""
    rng = np.random.default_rng(seed)
    n = len(ids)
    id_strs = [f"photos/{i // 10000:04d}/{i:010d}.png" for i in ids]
    shard = [f"/data/job/shards/{(i // 16) % 256:02x}/{(i // 16):024x}.pshard" for i in ids]
    length = rng.integers(20_000, 400_000, n)
    raw = length * 3
    cols = {
        "id": pa.array(id_strs), "source_uri": pa.array(["/data/src/" + s for s in id_strs]),
        "blob_uri": pa.array(shard), "offset": pa.array((ids % 16) * 200_000),
        "length": pa.array(length), "height": pa.array(rng.integers(64, 1024, n), pa.int32()),
        "width": pa.array(rng.integers(64, 1024, n), pa.int32()),
        "channels": pa.array(np.full(n, 3), pa.int16()), "mode": pa.array(["RGB"] * n),
        "codec": pa.array(["learned"] * n), "passthrough": pa.array(np.zeros(n, bool)),
        "model_id": pa.array(["6e86340217d2f8bc"] * n), "raw_bytes": pa.array(raw),
        "compressed_bytes": pa.array(length), "samples": pa.array(raw),
        "bpsp": pa.array((8 * length / raw).astype(np.float32)),
        "checksum": pa.array(rng.integers(0, 2**63, n).astype(np.uint64)),
        "worker": pa.array([f"node-{i % 8}:1234/w{i % 4}" for i in ids]),
        "attempt": pa.array(np.ones(n), pa.int16()),
        "read_s": pa.array(rng.random(n, np.float32) * 0.01),
        "decode_input_s": pa.array(rng.random(n, np.float32) * 0.01),
        "encode_s": pa.array(rng.random(n, np.float32)),
        "write_s": pa.array(rng.random(n, np.float32) * 0.01),
        "batch_s": pa.array(rng.random(n, np.float32) * 5),
        "created": pa.array((1.7e15 + ids * 1000).astype(np.int64)).cast(ix.TS),
        "run_id": pa.array(["bench"] * n),
    }
    return ix.conform(pa.table(cols)).sort_by("id")


def build(dest: str, rows: int, part_rows: int, row_group_size: int) -> dict:
    order = np.random.default_rng(0).permutation(rows)
    storage_parts = Path(dest) / ix.PARTS_DIR
    storage_parts.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for k, start in enumerate(range(0, rows, part_rows)):
        t = synthetic_part(order[start : start + part_rows], k)
        (storage_parts / f"bench-{k:06d}.parquet").write_bytes(
            ix.table_bytes(t, ix.PART_ROW_GROUP_SIZE))  # as PartWriter writes them
    parts_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = ix.compact(dest, row_group_size=row_group_size)
    return {"parts_s": parts_s, "compact_s": time.perf_counter() - t0, "result": res}


def measure(dest: str, rows: int, n: int) -> dict:
    rng = np.random.default_rng(1)
    picks = [f"photos/{i // 10000:04d}/{i:010d}.png" for i in rng.integers(0, rows, n)]
    size = os.path.getsize(ix.resolve_index_uri(dest))
    cold, cold_bytes, warm, warm_bytes = [], [], [], []
    for image_id in picks[: max(20, n // 5)]:
        t0 = time.perf_counter()
        r = ix.IndexReader(dest)  # fresh: reads and parses the footer, then one row group
        row = r.get(image_id)
        cold.append(time.perf_counter() - t0)
        cold_bytes.append(r.file.bytes_read)
        assert row["id"] == image_id
    reader = ix.IndexReader(dest)
    for image_id in picks:
        before = reader.file.bytes_read
        t0 = time.perf_counter()
        row = reader.get(image_id)
        warm.append(time.perf_counter() - t0)
        warm_bytes.append(reader.file.bytes_read - before)
        assert row["id"] == image_id
    q = lambda xs, p: float(np.percentile(xs, p)) * 1e3  # noqa: E731
    return {
        "file_bytes": size, "row_groups": reader.pf.metadata.num_row_groups,
        "footer_bytes": reader.footer_bytes,
        "cold_p50_ms": q(cold, 50), "cold_p95_ms": q(cold, 95),
        "cold_bytes": statistics.median(cold_bytes),
        "warm_p50_ms": q(warm, 50), "warm_p95_ms": q(warm, 95),
        "warm_bytes": statistics.median(warm_bytes), "lookups": n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--part-rows", type=int, default=200_000)
    ap.add_argument("--row-group-size", type=int, default=ix.ROW_GROUP_SIZE)
    ap.add_argument("--lookups", type=int, default=500)
    ap.add_argument("--dir", help="work folder (default: a temporary one)")
    ap.add_argument("--out", help="write a Markdown report here")
    a = ap.parse_args()
    work = a.dir or tempfile.mkdtemp(prefix="pilc-index-bench-")
    dest = os.path.join(work, "job")
    if not os.path.exists(ix.resolve_index_uri(dest)):
        b = build(dest, a.rows, a.part_rows, a.row_group_size)
    else:
        b = {"parts_s": float("nan"), "compact_s": float("nan"), "result": None}
    m = measure(dest, a.rows, a.lookups)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = [
        "# Index lookup benchmark",
        "",
        f"Command: `python {' '.join(sys.argv)}`  ",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores (shared with other work), "
        f"Python {platform.python_version()}, pyarrow {pa.__version__}",
        "",
        f"- rows: {a.rows:,}; written as {-(-a.rows // a.part_rows)} shuffled parts in "
        f"{b['parts_s']:.1f} s, compacted (sort by id, dedupe, row groups of "
        f"{a.row_group_size}) in {b['compact_s']:.1f} s; peak RSS {peak:.0f} MiB",
        f"- index file: {m['file_bytes'] / 2**20:.1f} MiB, {m['row_groups']} row groups, "
        f"footer read on open {m['footer_bytes'] / 2**20:.2f} MiB",
        "",
        "| lookup | p50 ms | p95 ms | bytes read per lookup | fraction of file |",
        "|---|---|---|---|---|",
        f"| cold (new reader: footer + 1 row group) | {m['cold_p50_ms']:.1f} | "
        f"{m['cold_p95_ms']:.1f} | {m['cold_bytes'] / 2**20:.2f} MiB | "
        f"{m['cold_bytes'] / m['file_bytes']:.2%} |",
        f"| warm (footer cached: 1 row group) | {m['warm_p50_ms']:.1f} | "
        f"{m['warm_p95_ms']:.1f} | {m['warm_bytes'] / 2**10:.0f} KiB | "
        f"{m['warm_bytes'] / m['file_bytes']:.3%} |",
        "",
        f"{m['lookups']} warm lookups of random ids, {max(20, m['lookups'] // 5)} cold ones; the "
        "file is in the page cache (local disk), so this is the index's own cost, not the "
        "disk's.",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if a.out:
        Path(a.out).write_text(report)


if __name__ == "__main__":
    main()
