"""Bytes and one-thread speed of each effort level on a fixed set of TRAINING photos (never the
EVAL sets: this is the lab the levels were designed with, docs/experiments.md entries 19-21).

Learned path only (no fallback), every round trip checked. Bytes are relative to the first
level given; MB/s are raw bytes over wall time of encode_groups / decode_groups, one thread.

Usage: PILC_THREADS=1 python experiments/levels_lab.py [LEVEL ...] [--data DIR]   (levels
default: 0 1 2; data: ../shared/data beside the checkout)
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codec import kernels, learned  # noqa: E402
from codec.api import _to_groups  # noqa: E402
from codec.imagefile import load_image  # noqa: E402
from codec.model import default_model  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _gray(data: Path, pattern: str, n: int) -> list[str]:
    paths = sorted(glob.glob(str(data / pattern), recursive=True))
    return [p for p in paths if Image.open(p).mode == "L"][:n]


def lab_sets(data: Path = DATA) -> dict[str, list[str]]:
    return {
        "rgb": sorted(glob.glob(str(data / "wikipedia_photos/*.png")))[:6]
        + sorted(glob.glob(str(data / "urban100_subset/*.png")))[:3],
        "gray": _gray(data, "waterloo_bragzone/**/*.png", 8) + _gray(data, "usc_sipi/**/*.png", 6),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("levels", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--data", type=Path, default=DATA)
    a = ap.parse_args(argv)
    with kernels.using_threads(1):
        _run(a.levels, a.data)


def _run(levels: list[int], data: Path) -> None:
    model = default_model()
    for name, paths in lab_sets(data).items():
        size = dict.fromkeys(levels, 0)
        t_enc = dict.fromkeys(levels, 0.0)
        t_dec = dict.fromkeys(levels, 0.0)
        raw = 0
        for p in paths:
            img = load_image(p)
            if img.mode not in ("L", "RGB"):
                continue
            groups = _to_groups(img)
            raw += img.pixels.size
            for lv in levels:
                t0 = time.perf_counter()
                payloads = learned.encode_groups(model, groups, level=lv)
                t1 = time.perf_counter()
                back = learned.decode_groups(model, payloads, [g.shape for g in groups], level=lv)
                t2 = time.perf_counter()
                assert all(np.array_equal(a, b) for a, b in zip(back, groups, strict=True)), p
                size[lv] += sum(len(x) for x in payloads)
                t_enc[lv] += t1 - t0
                t_dec[lv] += t2 - t1
        for lv in levels:
            rel = 100 * (size[lv] / size[levels[0]] - 1)
            print(f"{name:5s} level {lv}: {8 * size[lv] / raw:.4f} bpsp ({rel:+.2f}%)  "
                  f"enc {raw / t_enc[lv] / 1e6:6.1f} MB/s  dec {raw / t_dec[lv] / 1e6:6.1f} MB/s")


if __name__ == "__main__":
    main(sys.argv[1:])
