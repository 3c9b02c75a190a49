"""Report aggregation over a large index: time and peak memory (it streams; RSS must stay flat).

Writes a synthetic index shaped like a job's (benchmarks/index_lookup.synthetic_part: 8 nodes x
4 workers, one run) in row groups of 16,384, then builds the report in a fresh process.

    python benchmarks/report_scale.py --rows 10000000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.index_lookup import synthetic_part  # noqa: E402
from pilc_ray import index as ix  # noqa: E402


def write_index(dest: Path, rows: int, chunk: int = 1_000_000) -> None:
    (dest / "index").mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(dest / ix.INDEX_FILE, ix.INDEX_SCHEMA, compression="zstd") as w:
        for start in range(0, rows, chunk):
            ids = np.arange(start, min(rows, start + chunk))
            w.write_table(synthetic_part(ids, start), row_group_size=ix.ROW_GROUP_SIZE)


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM; ru_maxrss would include the parent's, kept over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(dest: str) -> None:
    from pilc_ray.reports.aggregate import build_report
    from pilc_ray.reports.html import render_html

    base = peak_rss_mib()
    t0 = time.perf_counter()
    r = build_report(dest)
    t1 = time.perf_counter()
    page = render_html(r)
    t2 = time.perf_counter()
    print(json.dumps({"rows": r["images"]["indexed"], "aggregate_s": round(t1 - t0, 2),
                      "html_s": round(t2 - t1, 2), "html_kb": len(page) // 1024,
                      "rss_after_imports_mib": round(base),
                      "peak_rss_mib": round(peak_rss_mib())}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--child")
    a = p.parse_args()
    if a.child:
        child(a.child)
        return
    with tempfile.TemporaryDirectory(prefix="pilc-report-") as tmp:
        t0 = time.perf_counter()
        write_index(Path(tmp), a.rows)
        size = (Path(tmp) / ix.INDEX_FILE).stat().st_size
        print(f"index: {a.rows} rows, {size / 2**20:.0f} MiB, written in "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
        subprocess.run([sys.executable, __file__, "--child", tmp], check=True)


if __name__ == "__main__":
    main()
