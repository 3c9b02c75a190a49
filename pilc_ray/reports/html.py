"""report.json -> one self-contained HTML page: tables plus matplotlib plots as inline PNGs.

Self-contained so it can be mailed, archived beside the index on S3, or opened offline: no
scripts, fonts, styles or images are fetched; every plot is a base64 `data:` PNG with alt text.
Plots are drawn on bare `Figure` objects (no pyplot global state), so rendering is safe inside a
job driver or a server thread.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

DPI = 96
PEER_LABELS = {"pilc": "pilc (ours)", "png": "PNG", "webp": "WebP lossless", "jxl": "JPEG XL"}
SPLIT_LABELS = {"read": "read input", "decode_input": "decode input", "predictor": "predictor",
                "model": "model", "coder": "coder", "container": "container",
                "encode_other": "encode (other)", "encode": "encode", "write": "write blobs"}

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2430;
background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.25em;margin:1.6em 0 .5em;border-bottom:1px solid
#d8dde5;padding-bottom:.2em}
.sub{color:#5b6675}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{background:#fff;border:1px solid #d8dde5;border-radius:8px;padding:10px 14px;min-width:140px}
.card b{display:block;font-size:1.35em}.card span{color:#5b6675;font-size:.85em}
table{border-collapse:collapse;background:#fff;margin:8px 0;font-size:.92em}
th,td{border:1px solid #d8dde5;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5}td.n{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fafbfc}
figure{background:#fff;border:1px solid #d8dde5;border-radius:8px;margin:12px 0;padding:8px}
figure img{max-width:100%;height:auto;display:block}
figcaption{color:#5b6675;font-size:.88em;padding:4px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:12px}
code{background:#eef1f5;padding:1px 4px;border-radius:3px}
"""


# --------------------------------------------------------------------------------------------
# formatting


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "–"
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def fmt_num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def _esc(v: Any) -> str:
    return html.escape(fmt_num(v) if not isinstance(v, str) else v)


def table(headers: Sequence[str] | None, rows: Sequence[Sequence[Any]],
          numeric: Sequence[int] = ()) -> str:
    """An HTML table; `numeric` columns are right-aligned."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers or ())
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{_esc(c)}</td>' if i in numeric else f"<td>{_esc(c)}</td>"
                         for i, c in enumerate(r)) + "</tr>" for r in rows)
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    return f"<table>{thead}<tbody>{body}</tbody></table>"


def kv_table(pairs: Sequence[tuple[str, Any]]) -> str:
    """Label / value rows (labels as row headers)."""
    return table(None, [(k, v) for k, v in pairs], (1,))


# --------------------------------------------------------------------------------------------
# plots


def _png(fig: Figure) -> tuple[str, int, int]:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    w, h = (int(round(x * DPI)) for x in fig.get_size_inches())
    return base64.b64encode(buf.getvalue()).decode(), w, h


def figure(plot_id: str, alt: str, caption: str, draw: Callable[[Figure], None],
           size: tuple[float, float] = (6.4, 3.4)) -> str:
    """A plot as an <img> with an inline PNG; `alt` says in words what it shows."""
    fig = Figure(figsize=size, layout="constrained")
    draw(fig)
    data, w, h = _png(fig)
    return (f'<figure id="plot-{plot_id}"><img class="plot" src="data:image/png;base64,{data}" '
            f'width="{w}" height="{h}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def plot_bpsp(r: dict) -> str:
    h = r["bpsp"]["histogram"]
    counts = h["counts"]
    last = max((i for i, c in enumerate(counts) if c), default=0)
    hi = max(8, last + 2)
    counts = counts[:hi]

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        x = [h["start"] + h["step"] * i for i in range(len(counts))]
        ax.bar(x, counts, width=h["step"], align="edge", color="#3b6fb6")
        mean = r["bpsp"]["aggregate"]
        if mean is not None:
            ax.axvline(mean, color="#c0392b", ls="--", label=f"all images: {mean:.3f} bpsp")
            ax.legend(loc="upper right")
        ax.set_xlabel("bits per sub-pixel (bpsp)")
        ax.set_ylabel("images")
        ax.set_title("Compressed size per image")

    b = r["bpsp"]
    alt = (f"Histogram of bits per sub-pixel over {r['images']['indexed']} images: median "
           f"{fmt_num(b['p50'], 2)}, 10th percentile {fmt_num(b['p10'], 2)}, 90th percentile "
           f"{fmt_num(b['p90'], 2)} bpsp")
    return figure("bpsp", alt, f"bins of {h['step']} bpsp; {h['overflow']} images above the "
                  "last bin", draw)


def plot_time_series(r: dict, max_runs: int = 6) -> str:
    series = r["time_series"][-max_runs:]

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        done = ax.twinx()  # cumulative images: its slope is the rate, readable for short runs
        for s in series:
            n = len(s["images_per_s"])
            xs = [s["bucket_s"] * (i + 1) for i in range(n)]
            line, = ax.step([0, *xs], [s["images_per_s"][0], *s["images_per_s"]], where="pre",
                            label=f"run {s['run_id']}: images/s")
            cum = np.cumsum(s.get("images_per_bucket") or
                            [v * s["bucket_s"] for v in s["images_per_s"]])
            done.plot([0, *xs], [0, *cum], ls="--", lw=1, color=line.get_color(),
                      label=f"run {s['run_id']}: images indexed")
        ax.set_xlabel("seconds since the run's first indexed batch")
        ax.set_ylabel("images / s")
        done.set_ylabel("images indexed (dashed)")
        ax.set_ylim(bottom=0)
        done.set_ylim(bottom=0)
        ax.set_title("Throughput over time")
        if series:
            ax.legend(loc="lower right", fontsize="x-small")

    peak = max((max(s["images_per_s"]) for s in series if s["images_per_s"]), default=0)
    alt = (f"Line plot of images per second over time for {len(series)} run(s); peak "
           f"{peak:.1f} images/s")
    return figure("timeseries", alt, "from the index rows' creation times (end of each batch), "
                  "in buckets of a few seconds", draw)


def plot_time_split(r: dict) -> str:
    secs = r["time_split"]["seconds"]
    items = [(SPLIT_LABELS.get(k, k), v) for k, v in secs.items()]
    total = sum(v for _, v in items) or 1.0

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        labels = [k for k, _ in items][::-1]
        vals = [v for _, v in items][::-1]
        bars = ax.barh(labels, vals, color="#3b6fb6")
        for bar, v in zip(bars, vals, strict=True):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                    f" {100 * v / total:.1f}%", va="center", fontsize="small")
        ax.set_xlabel("worker seconds (summed over images)")
        ax.set_title("Where the time goes")
        ax.margins(x=0.15)

    top = max(items, key=lambda kv: kv[1]) if items else ("–", 0)
    alt = (f"Bar chart of worker time by stage; largest is {top[0]} at "
           f"{100 * top[1] / total:.0f}% of {total:.1f} s")
    return figure("timesplit", alt, r["time_split"]["note"], draw)


def plot_workers(r: dict, top: int = 32) -> str:
    rows = [w for w in r["workers"]["listed"] if w["images_per_busy_s"]][:top]

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        names = [w["worker"].rsplit("/", 1)[-1] + "\n" + w["worker"].split("/")[0][-14:]
                 for w in rows]
        ax.bar(range(len(rows)), [w["images_per_busy_s"] for w in rows], color="#2e8b57")
        ax.set_xticks(range(len(rows)), names, fontsize="x-small",
                      rotation=90 if len(rows) > 8 else 0)
        ax.set_ylabel("images / busy second")
        ax.set_title(f"Per-worker throughput ({len(rows)} of {r['workers']['count']} workers)")

    rates = [w["images_per_busy_s"] for w in rows]
    alt = (f"Bar chart of images per busy second for {len(rows)} workers, from "
           f"{min(rates, default=0):.1f} to {max(rates, default=0):.1f}")
    return figure("workers", alt, "busy = read + decode input + encode + write time of the "
                  "worker's images", draw)


def plot_codecs(r: dict) -> str:
    rows = r["by_codec"]

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.bar([g["name"] for g in rows], [g["images"] for g in rows], color="#8e44ad")
        for i, g in enumerate(rows):
            ax.text(i, g["images"], f"{g['images']}", ha="center", va="bottom")
        ax.margins(y=0.15)
        ax.set_ylabel("images")
        ax.set_title("Stored as (learned model or classical fallback)")

    alt = "Bar chart of images per stored codec: " + ", ".join(
        f"{g['name']} {g['images']}" for g in rows)
    return figure("codecs", alt, "'jpeg' = JPEG file stored as-is", draw, (6.4, 3.0))


def plot_compare(c: dict) -> str:
    totals = [t for t in c["totals"] if t["bpsp"] is not None]

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        names = [PEER_LABELS.get(t["codec"], t["codec"]) for t in totals]
        colors = ["#c0392b" if t["codec"] == "pilc" else "#7f8c8d" for t in totals]
        ax.bar(names, [t["bpsp"] for t in totals], color=colors)
        for i, t in enumerate(totals):
            ax.text(i, t["bpsp"], f"{t['bpsp']:.3f}\n({t['images']} img)", ha="center",
                    va="bottom", fontsize="small")
        ax.set_ylabel("bpsp (lower is better)")
        ax.margins(y=0.2)
        ax.set_title(f"Side by side on {c['n']} sampled images")

    alt = "Bar chart of bits per sub-pixel on the sample: " + ", ".join(
        f"{PEER_LABELS.get(t['codec'], t['codec'])} {t['bpsp']:.3f}" for t in totals)
    return figure("compare", alt, "each bar over the images that codec can store", draw)


# --------------------------------------------------------------------------------------------
# the page


def _cards(r: dict) -> str:
    b, tp = r["bytes"], r["throughput"]
    cards = [("images indexed", fmt_num(r["images"]["indexed"])),
             ("raw → compressed", f"{fmt_bytes(b['raw'])} → {fmt_bytes(b['compressed'])}"),
             ("ratio", f"{b['ratio']:.3f}×" if b["ratio"] else "–"),
             ("bpsp (all images)", fmt_num(r["bpsp"]["aggregate"])),
             ("images / s (latest run)", fmt_num(tp["images_per_s"], 2)),
             ("failed inputs", fmt_num(r["failures"]["total"]))]
    return '<div class="cards">' + "".join(
        f"<div class=card><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>"
        for k, v in cards) + "</div>"


def _section_cluster(r: dict) -> str:
    c = r["cluster"]
    if not c:
        return "<p>No cluster recorded (no job record, or nothing was compressed).</p>"
    pairs = [("nodes", c["nodes"]), ("CPUs", c["cpus"]), ("GPUs", c["gpus"]),
             ("memory", f"{c['memory_gb']} GiB" if c["memory_gb"] else None),
             ("worker actors", c["workers"]), ("engine", c["engine"]),
             ("CPUs / GPUs per worker", f"{c['cpus_per_worker']} / {c['gpus_per_worker']}"),
             ("codec threads per worker", c["threads_per_worker"])]
    out = kv_table([(k, v) for k, v in pairs if v is not None])
    if c.get("node_shapes"):
        out += table(["nodes", "CPUs", "GPUs", "memory GiB"],
                     [(s["count"], s["cpus"], s["gpus"], s["memory_gb"])
                      for s in c["node_shapes"]], (0, 1, 2, 3))
    return out


def _section_compare(c: dict | None) -> str:
    if not c:
        return ("<p>Not measured. Rerun with <code>--compare-sample N</code> "
                "(<code>pilc report DEST --compare-sample 8</code>).</p>")
    if not c["n"]:
        return "<p>No images to sample (only passed-through JPEGs, or an empty index).</p>"
    tot = table(["codec", "images", "bytes", "bpsp", "ratio", "pilc bytes / this"],
                [(PEER_LABELS.get(t["codec"], t["codec"]), t["images"], fmt_bytes(t["bytes"]),
                  t["bpsp"], t["ratio"], t["pilc_vs_this"]) for t in c["totals"]],
                (1, 2, 3, 4, 5))
    per = table(["id", "mode", "size", "stored as", "pilc", "PNG", "WebP", "JPEG XL"],
                [(im["id"], im["mode"], f"{im['width']}×{im['height']}", im["codec"],
                  im["pilc"], im["png"], im["webp"], im["jxl"]) for im in c["images"]],
                (4, 5, 6, 7))
    return (plot_compare(c) + tot + f"<p class=sub>{html.escape(c['note'])}</p>"
            + "<details><summary>per image (bytes)</summary>" + per + "</details>")


def _section_failures(r: dict) -> str:
    f, runs = r["failures"], r["runs"]
    t = runs["totals"]
    out = kv_table([("inputs not indexed (errors table)", f["total"]),
                    ("images that needed a retry (attempt > 1)", r["retried_images"]),
                    ("batches retried (all runs)", t["retried_batches"]),
                    ("worker deaths (all runs)", t["worker_failures"]),
                    ("batches split to single images", t["split_batches"])])
    if f["by_stage"]:
        out += table(["stage", "inputs"], list(f["by_stage"].items()), (1,))
    if f["examples"]:
        out += ("<details><summary>first errors</summary>"
                + table(["id", "stage", "error"], [(e["id"], e["stage"], e["error"])
                                                  for e in f["examples"]]) + "</details>")
    return out


def render_html(r: dict) -> str:
    """The whole page for a report dict (as built by pilc_ray.reports.aggregate.build_report)."""
    has_rows = r["images"]["indexed"] > 0
    plots_top = [plot_bpsp(r), plot_codecs(r)] if has_rows else []
    plots_speed = [plot_time_series(r), plot_time_split(r), plot_workers(r)] if has_rows else []
    job = r.get("job") or {}
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>pilc job report – {html.escape(r['dest'])}</title><style>{_CSS}</style></head>",
        "<body><main>",
        "<h1>pilc job report</h1>",
        f"<p class=sub>{html.escape(r['dest'])} · model <code>{_esc(r['model_id'])}</code> · "
        f"latest run {_esc(job.get('run_id'))} ({_esc(job.get('status'))}) · generated "
        f"{html.escape(r['generated'])}</p>",
        _cards(r),
        "<h2>Compression</h2><div class=grid>", *plots_top, "</div>",
        kv_table([("images indexed", r["images"]["indexed"]),
                  ("of which JPEGs stored as-is", r["images"]["passthrough"]),
                  ("raw bytes", fmt_bytes(r["bytes"]["raw"])),
                  ("compressed bytes", fmt_bytes(r["bytes"]["compressed"])),
                  ("ratio", r["bytes"]["ratio"]),
                  ("bpsp, all images (8 × bytes / samples)", r["bpsp"]["aggregate"]),
                  ("bpsp, mean of images", r["bpsp"]["mean"]),
                  ("bpsp p10 / p50 / p90", " / ".join(fmt_num(r["bpsp"][k], 2)
                                                    for k in ("p10", "p50", "p90"))),
                  ("bpsp min / max", f"{fmt_num(r['bpsp']['min'])} / "
                                     f"{fmt_num(r['bpsp']['max'])}")]),
        "<h3>By codec (fallback counts)</h3>", _group_table(r["by_codec"], "codec"),
        "<h3>By image mode</h3>", _group_table(r["by_mode"], "mode"),
        "<h3>By effort level (learned blobs; (none): classical or passthrough)</h3>",
        _group_table(r.get("by_effort", []), "effort"),
        "<h3>Models</h3>", table(["model id", "images"], [
            ("(none: classical fallback or JPEG as-is)" if k == "(none)" else k, v)
            for k, v in r["models"].items()], (1,)),
        "<h2>Against PNG, WebP and JPEG XL</h2>", _section_compare(r.get("compare")),
        "<h2>Throughput</h2><div class=grid>", *plots_speed, "</div>",
        kv_table([("images / s, latest run (workers up)", r["throughput"]["images_per_s"]),
                  ("raw MB / s, latest run", r["throughput"]["raw_mb_per_s"]),
                  ("workers seen in the index", r["throughput"]["workers"])]),
        "<h3>Time split</h3>",
        table(["stage", "seconds", "share"],
              [(SPLIT_LABELS.get(k, k), v, f"{100 * v / tot:.1f}%")
               for tot in [sum(r["time_split"]["seconds"].values()) or 1.0]
               for k, v in r["time_split"]["seconds"].items()], (1, 2)),
        "<h3>Workers</h3>",
        table(["worker", "images", "raw", "busy s", "images / busy s", "MB / busy s"],
              [(w["worker"], w["images"], fmt_bytes(w["raw_bytes"]), w["busy_s"],
                w["images_per_busy_s"], w["raw_mb_per_busy_s"])
               for w in r["workers"]["listed"][:50]], (1, 2, 3, 4, 5)),
        "<h2>Failures and retries</h2>", _section_failures(r),
        "<h2>Cluster</h2>", _section_cluster(r),
        "<h2>Runs</h2>",
        table(["run", "status", "started", "compressed", "errors", "skipped (indexed)",
               "retried batches", "images / s", "total s"],
              [(x["run_id"], x["status"], x["started"], x["compressed"], x["errors"],
                x["already_indexed"], x["retried_batches"], x["images_per_s"], x["total_s"])
               for x in r["runs"]["runs"]], (3, 4, 5, 6, 7, 8)),
        f"<p class=sub>index: <code>{html.escape(r['index'])}</code> · report built in "
        f"{r['report_s']:.2f} s · <code>pilc report DEST --html out.html</code> rebuilds it</p>",
        "</main></body></html>",
    ]
    return "\n".join(parts)


def _group_table(rows: list[dict], what: str) -> str:
    return table([what, "images", "raw", "compressed", "bpsp", "ratio"],
                 [(g["name"], g["images"], fmt_bytes(g["raw_bytes"]),
                   fmt_bytes(g["compressed_bytes"]), g["bpsp"], g["ratio"]) for g in rows],
                 (1, 2, 3, 4, 5))
