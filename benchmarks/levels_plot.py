"""Bytes against speed of every codec and effort level in a peers.py run: one PNG with encode and
decode panels, each point a codec over all images of the run (bytes vs PNG against MB/s, log
speed axis), our levels joined by a line. Reads the JSON peers.py wrote, so the plot shows
exactly the measured numbers.

Usage: python benchmarks/levels_plot.py benchmarks/results/pilc_levels_eval.json \
           --out benchmarks/results/pilc_levels_eval.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# our levels, joined by a line; pilc-max-v1/-v2 (levels 2, 3) plot as points of their own
OURS = ("pilc-fastest", "pilc-fast", "pilc", "pilc-max")


def totals(report: dict) -> dict[str, dict[str, float]]:
    """Per codec, over every set of the run: bytes, raw bytes, encode and decode seconds (MB/s
    are raw bytes over total time, as peers.py computes them per set), and PNG's bytes on the
    same images for the relative size."""
    out: dict[str, dict[str, float]] = {}
    for s in report["sets"]:
        png = next((r for r in s["summary"] if r["codec"] == "png"), None)
        for r in s["summary"]:
            if not r.get("images") or r.get("failures") or not r.get("enc_MBps") or png is None:
                continue
            if r["images"] != png["images"]:
                continue  # a codec that skipped some images (modes) is not comparable
            t = out.setdefault(r["codec"], dict.fromkeys(("bytes", "raw", "enc_s", "dec_s",
                                                         "png"), 0.0))  # fmt: skip
            t["bytes"] += r["bytes"]
            t["raw"] += r["raw_bytes"]
            t["enc_s"] += r["raw_bytes"] / 1e6 / r["enc_MBps"]
            t["dec_s"] += r["raw_bytes"] / 1e6 / r["dec_MBps"]
            t["png"] += png["bytes"]
    return out


def plot(report: dict, out: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = totals(report)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    for ax, key, label in ((axes[0], "enc_s", "encode"), (axes[1], "dec_s", "decode")):
        for name, v in sorted(t.items()):
            x, y = v["raw"] / 1e6 / v[key], 100 * v["bytes"] / v["png"]
            ours = name in OURS
            ax.scatter([x], [y], s=46 if ours else 30, color="#c0392b" if ours else "#34495e",
                       zorder=3)  # fmt: skip
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        line = [(t[n]["raw"] / 1e6 / t[n][key], 100 * t[n]["bytes"] / t[n]["png"])
                for n in OURS if n in t]  # fmt: skip
        if line:
            ax.plot(*zip(*line, strict=True), color="#c0392b", lw=1, zorder=2)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(f"{label} MB/s, one core (log scale)")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(f"bytes vs {label} speed")
    axes[0].set_ylabel("bytes, % of PNG (lower is better)")
    fig.suptitle(f"{report.get('command', '')[:110]}", fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("json", type=Path, help="peers.py JSON report")
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    a = ap.parse_args(argv)
    plot(json.loads(a.json.read_text()), a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
