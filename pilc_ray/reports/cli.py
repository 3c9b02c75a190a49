"""`pilc report INDEX [--html out.html] [--json out.json] [--compare-sample N]`.

Rebuilds a job's report from any existing index (a DEST folder or prefix, or its
index/index.parquet; local or S3) and prints the summary as rich tables in the terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.table import Table


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index", help="job output (folder or s3:// prefix) or its index.parquet")
    p.add_argument("--html", metavar="OUT.html", help="write the HTML report here")
    p.add_argument("--json", metavar="OUT.json", help="write the report as JSON here")
    p.add_argument("--compare-sample", type=int, default=0, metavar="N",
                   help="also compress N sampled images with PNG, WebP and JPEG XL")
    from pilc_ray.storage_flags import add_store_arguments

    add_store_arguments(p)


def summary_tables(r: dict[str, Any]) -> list[Table]:
    """The terminal view: headline numbers, codecs, time split, sample comparison."""
    from pilc_ray.reports.html import SPLIT_LABELS, fmt_bytes, fmt_num  # matplotlib: lazily

    head = Table(title=f"pilc report: {r['dest']}", show_header=False)
    head.add_column("what", style="bold")
    head.add_column("value", justify="right")
    b, bp, tp, c = r["bytes"], r["bpsp"], r["throughput"], r["cluster"] or {}
    for k, v in [
        ("images indexed", fmt_num(r["images"]["indexed"])),
        ("JPEGs stored as-is", fmt_num(r["images"]["passthrough"])),
        ("raw -> compressed", f"{fmt_bytes(b['raw'])} -> {fmt_bytes(b['compressed'])}"),
        ("ratio", fmt_num(b["ratio"])),
        ("bpsp all / mean / p50", " / ".join(fmt_num(x) for x in
                                             (bp["aggregate"], bp["mean"], bp["p50"]))),
        ("images/s (latest run)", fmt_num(tp["images_per_s"], 2)),
        ("raw MB/s (latest run)", fmt_num(tp["raw_mb_per_s"], 2)),
        ("workers", fmt_num(tp["workers"])),
        ("cluster", f"{fmt_num(c.get('nodes'))} nodes, {fmt_num(c.get('cpus'), 0)} CPUs, "
                    f"{fmt_num(c.get('gpus'), 0)} GPUs" if c else "–"),
        ("model", str(r["model_id"])),
        ("failed inputs", fmt_num(r["failures"]["total"])),
        ("images retried", fmt_num(r["retried_images"])),
        ("batches retried / worker deaths",
         f"{r['runs']['totals']['retried_batches']} / {r['runs']['totals']['worker_failures']}"),
    ]:
        head.add_row(k, v)
    codecs = Table(title="stored as")
    for col in ("codec", "images", "compressed", "bpsp"):
        codecs.add_column(col, justify="left" if col == "codec" else "right")
    for g in r["by_codec"]:
        codecs.add_row(g["name"], fmt_num(g["images"]), fmt_bytes(g["compressed_bytes"]),
                       fmt_num(g["bpsp"]))
    split = Table(title="time split (worker seconds)")
    split.add_column("stage")
    split.add_column("seconds", justify="right")
    split.add_column("share", justify="right")
    secs = r["time_split"]["seconds"]
    total = sum(secs.values()) or 1.0
    for k, v in secs.items():
        split.add_row(SPLIT_LABELS.get(k, k), f"{v:.2f}", f"{100 * v / total:.1f}%")
    tables = [head, codecs, split]
    if r.get("compare") and r["compare"]["n"]:
        cmp = Table(title=f"side by side on {r['compare']['n']} sampled images")
        for col in ("codec", "images", "bytes", "bpsp", "pilc / this"):
            cmp.add_column(col, justify="left" if col == "codec" else "right")
        for t in r["compare"]["totals"]:
            cmp.add_row(t["codec"], str(t["images"]), fmt_bytes(t["bytes"]), fmt_num(t["bpsp"]),
                        fmt_num(t["pilc_vs_this"]))
        tables.append(cmp)
    return tables


def run_report(a: argparse.Namespace) -> int:
    from rich.console import Console

    from pilc_ray import storage as st
    from pilc_ray.reports.aggregate import build_report
    from pilc_ray.reports.html import render_html
    from pilc_ray.storage_flags import store_options

    try:
        r = build_report(a.index, store_options(a), compare=a.compare_sample)
    except (st.NotFound, FileNotFoundError) as e:
        print(f"pilc: error: no index at {a.index}: {e}", file=sys.stderr)
        return 1
    console = Console()
    for t in summary_tables(r):
        console.print(t)
    for out, body in ((a.json, lambda: json.dumps(r, indent=1, default=str)),
                      (a.html, lambda: render_html(r))):
        if out:  # a local path or an s3:// URI
            st.open_storage(out, store_options(a)).put(st.normalize(out), body().encode())
            console.print(f"wrote {out}")
    return 0
