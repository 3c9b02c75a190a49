#!/usr/bin/env python
"""Speed of the library's two builds of the model (baseline x86-64 and x86-64-v3,
codec/kernels/pilc_cpu_v3.c) side by side, one thread, per effort level.

Both builds live in one library, so one process switches between them (kernels.using_v3) per
image in ABBA order: a slow phase of a shared machine hits both sides. Reports, per set and
level, baseline time / v3 time for encode and decode (> 1: v3 is faster) and checks that both
give the same bytes and pixels.

    python benchmarks/isa_speed.py DIR [DIR ...] --out benchmarks/results/isa_speed.md
"""

from __future__ import annotations

import os

os.environ["PILC_THREADS"] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

import codec  # noqa: E402
from codec import kernels  # noqa: E402
from codec.imagefile import RasterImage, load_image  # noqa: E402

LEVELS = ("fastest", "fast", "default", "max")


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def abba(fn: Callable[[], object]) -> tuple[object, object, float, float]:
    """fn through the baseline build (A) and the v3 build (B) in ABBA order: both outputs and
    both summed times."""
    outs, times = {}, {False: 0.0, True: 0.0}
    for v3 in (False, True, True, False):
        with kernels.using_v3(v3):
            outs[v3], dt = timed(fn)
        times[v3] += dt
    return outs[False], outs[True], times[False], times[True]


def bench_set(folder: Path, limit: int | None) -> list[dict]:
    paths = sorted(p for p in folder.glob("*.png"))[:limit]
    images = []
    for p in paths:
        img = load_image(str(p))
        images.append(RasterImage(img.pixels, img.mode))
    rows = []
    for level in LEVELS:  # warm up: tables, model and first-call costs stay out of the times
        abba(lambda level=level: codec.decode(codec.encode(images[0], effort=level)))
    for level in LEVELS:
        enc = {False: 0.0, True: 0.0}
        dec = {False: 0.0, True: 0.0}
        raw = 0
        for img in images:
            raw += img.pixels.nbytes
            base, v3, ta, tb = abba(
                lambda img=img, level=level: codec.encode(img, effort=level, fallback="never")
            )
            if base != v3:
                raise SystemExit(f"{folder}: {level} bytes differ between the builds")
            enc[False] += ta
            enc[True] += tb
            pa, pb, ta, tb = abba(lambda base=base: np.asarray(codec.decode(base)))
            if not (np.array_equal(pa, img.pixels) and np.array_equal(pb, img.pixels)):
                raise SystemExit(f"{folder}: {level} round trip failed")
            dec[False] += ta
            dec[True] += tb
        rows.append(
            {
                "set": folder.name,
                "level": level,
                "images": len(images),
                "enc_base": 2 * raw / enc[False] / 1e6,
                "enc_v3": 2 * raw / enc[True] / 1e6,
                "dec_base": 2 * raw / dec[False] / 1e6,
                "dec_v3": 2 * raw / dec[True] / 1e6,
            }
        )
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=None, help="images per set")
    args = ap.parse_args(argv)
    if not kernels.set_v3(True):
        raise SystemExit("this CPU does not run x86-64-v3: nothing to compare")
    rows = [r for d in args.dirs for r in bench_set(d, args.limit)]
    cmd = "python benchmarks/isa_speed.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    lines = [
        "# The model's x86-64-v3 build against the baseline build",
        "",
        f"- command: `{cmd}`",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs,"
        " one thread (PILC_THREADS=1)",
        "- MB/s = raw pixel bytes / wall time, each image coded twice per build in ABBA order;"
        " both builds gave the same bytes and pixels on every image",
        "- in use since docs/experiments.md entries 32-33: the v3 build at every level where the"
        " CPU runs it",
        "",
        "| set | level | images | enc base | enc v3 | v3 / base | dec base | dec v3 | v3 / base |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['set']} | {r['level']} | {r['images']} | {r['enc_base']:.1f} | "
            f"{r['enc_v3']:.1f} | {r['enc_v3'] / r['enc_base']:.3f} | {r['dec_base']:.1f} | "
            f"{r['dec_v3']:.1f} | {r['dec_v3'] / r['dec_base']:.3f} |"
        )
    args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
