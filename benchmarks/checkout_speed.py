#!/usr/bin/env python
"""Speed of two checkouts of the codec side by side (before/after a kernel change), one thread.

Each checkout runs in a worker process of its own (PYTHONPATH picks it; both must be built);
the driver hands them the same image in turn, ABBA, for encode and for decode at each level, so
a slow phase of a shared machine hits both sides. Reports B's speed over A's per set and level
(> 1: B is faster), the median of the per-image ratios beside it, and checks that both wrote
the same bytes.

    python benchmarks/checkout_speed.py A_DIR B_DIR SET [SET ...] --out RESULT.md \\
        [--levels fast,default,max] [--limit N] [--rounds R]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

WORKER = r"""
import os, sys, time, hashlib
os.environ["PILC_THREADS"] = "1"
import codec
from codec.imagefile import RasterImage, load_image
paths = sys.argv[1:]
images = {}
blobs = {}
def image(k):
    if k not in images:
        img = load_image(paths[k])
        images[k] = RasterImage(img.pixels, img.mode)
    return images[k]
for line in sys.stdin:
    op, level, k = line.split()
    k = int(k)
    img = image(k)
    if op == "enc":
        t0 = time.perf_counter()
        blob = bytes(codec.encode(img, effort=level, fallback="never"))
        dt = time.perf_counter() - t0
        blobs[level, k] = blob
        print(dt, hashlib.sha256(blob).hexdigest()[:16], flush=True)
    else:
        t0 = time.perf_counter()
        codec.decode(blobs[level, k])
        print(time.perf_counter() - t0, "-", flush=True)
"""


class Worker:
    def __init__(self, checkout: Path, paths: list[Path]) -> None:
        env = dict(os.environ, PYTHONPATH=str(checkout))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, *map(str, paths)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=checkout,
        )  # fmt: skip

    def ask(self, op: str, level: str, k: int) -> tuple[float, str]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(f"{op} {level} {k}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"worker died on {op} {level} image {k}")
        dt, digest = line.split()
        return float(dt), digest

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        self.proc.wait()


def compare(a: Path, b: Path, folder: Path, levels: list[str], limit: int | None,
            rounds: int) -> list[dict]:  # fmt: skip
    paths = sorted(p for p in folder.glob("*.png"))[:limit]
    wa, wb = Worker(a, paths), Worker(b, paths)
    rows = []
    for level in levels:
        for op in ("enc", "dec"):
            ta = tb = 0.0
            ratios = []
            for _ in range(rounds):
                for k in range(len(paths)):
                    (x1, da), (y1, db) = wa.ask(op, level, k), wb.ask(op, level, k)
                    (y2, _), (x2, _) = wb.ask(op, level, k), wa.ask(op, level, k)
                    if op == "enc" and da != db:
                        raise SystemExit(f"{paths[k]}: {level} bytes differ between checkouts")
                    ta, tb = ta + x1 + x2, tb + y1 + y2
                    ratios.append((x1 + x2) / (y1 + y2))
            rows.append({"set": folder.name, "level": level, "op": op, "images": len(paths),
                         "b_over_a": ta / tb, "median": statistics.median(ratios)})  # fmt: skip
            print(rows[-1], flush=True)
    wa.close()
    wb.close()
    return rows


def commit_of(checkout: Path) -> str:
    run = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)  # fmt: skip
    dirty = subprocess.run(["git", "-C", str(checkout), "status", "--porcelain", "--", "codec"],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return (run.stdout.strip() or "?") + (" (with uncommitted changes)" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path, help="checkout A (before)")
    ap.add_argument("b", type=Path, help="checkout B (after)")
    ap.add_argument("sets", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--levels", default="fast,default,max")
    ap.add_argument("--limit", type=int, default=None, help="images per set")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args(argv)
    levels = args.levels.split(",")
    rows = [r for s in args.sets
            for r in compare(args.a, args.b, s, levels, args.limit, args.rounds)]  # fmt: skip
    given = sys.argv[1:] if argv is None else argv
    cmd = "python benchmarks/checkout_speed.py " + shlex.join(given)
    lines = [
        "# Two checkouts side by side",
        "",
        f"- command: `{cmd}`",
        f"- A: {commit_of(args.a)}; B: {commit_of(args.b)}",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs;"
        ' one thread per side (PILC_THREADS=1), fallback="never"',
        "- B/A = A's time / B's time over the set (> 1: B is faster), each image coded twice per"
        " side in ABBA order; median = the median of the per-image ratios; both sides wrote the"
        " same bytes for every image",
        "",
        "| set | level | images | encode B/A | median | decode B/A | median |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    by_key = {(r["set"], r["level"], r["op"]): r for r in rows}
    for s in dict.fromkeys(r["set"] for r in rows):
        for level in levels:
            e, d = by_key[s, level, "enc"], by_key[s, level, "dec"]
            lines.append(
                f"| {s} | {level} | {e['images']} | {e['b_over_a']:.3f} | {e['median']:.3f} | "
                f"{d['b_over_a']:.3f} | {d['median']:.3f} |"
            )
    args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
