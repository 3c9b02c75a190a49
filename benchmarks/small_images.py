"""Per-call speed of every effort level on small images (32x32 and 64x64), optionally side by
side with another checkout of the codec.

Why: at 32x32 a call codes 3,072 samples, so what the codec does around its kernels (payload
parsing, argument checks, kernel pointers) weighs as much as the samples (issue 15: the max
level's >= 3 MB/s decode and the fast level's speed on the small-image sets). Two checkouts
cannot share one process, so with --baseline the rounds alternate between two processes (this
checkout, the baseline, this checkout, ...) and each figure is the best round.

With --batch each set is coded in one `codec.encode_batch` / `codec.decode_batch` call (what the
batch job does with a chunk of images) instead of one call per image.

Usage:
    python benchmarks/small_images.py [--baseline ROOT] [--rounds 5] [--limit 120] [--batch]
ROOT is another checkout with its kernels built (e.g. `git worktree add /tmp/base REV` then
`python setup.py build_ext --inplace` there).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
DATA = HERE.parent / "shared" / "data" / "imagenet_sample_downsampled"
SETS = ("32x32", "64x64")
EFFORTS = ("fastest", "fast", "default", "max")


def _encode_all(codec, imgs: list, effort: str, batch: bool) -> list:
    if batch:
        return codec.encode_batch(imgs, effort=effort, threads=1)
    return [codec.encode(i, effort=effort, threads=1) for i in imgs]


def _decode_all(codec, blobs: list, batch: bool) -> list:
    if batch:
        return codec.decode_batch(blobs, threads=1)
    return [codec.decode(b, threads=1) for b in blobs]


def measure(root: str, limit: int, batch: bool = False) -> dict[str, list[float]]:
    """One round in this process, with the codec imported from root: (set, effort) -> [encode
    MB/s, decode MB/s, bytes], one thread, fallback auto (what a user gets); batch: one call
    per set."""
    sys.path.insert(0, root)
    import numpy as np
    from PIL import Image

    import codec

    if not Path(codec.__file__).resolve().is_relative_to(Path(root).resolve()):
        raise SystemExit(f"codec imported from {codec.__file__}, not {root}")
    out: dict[str, list[float]] = {}
    for name in SETS:
        paths = sorted(glob.glob(str(DATA / name / "*.png")))[:limit]
        imgs = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
        raw = sum(i.nbytes for i in imgs)
        for effort in EFFORTS:
            blobs = _encode_all(codec, imgs, effort, batch)  # warm-up too
            t0 = time.perf_counter()
            blobs = _encode_all(codec, imgs, effort, batch)
            t1 = time.perf_counter()
            back = _decode_all(codec, blobs, batch)
            t2 = time.perf_counter()
            if not all(np.array_equal(a, b) for a, b in zip(imgs, back, strict=True)):
                raise SystemExit(f"round trip failed: {name} {effort}")
            out[f"{name} {effort}"] = [raw / (t1 - t0) / 1e6, raw / (t2 - t1) / 1e6,
                                       float(sum(map(len, blobs)))]  # fmt: skip
    return out


def _round(root: str, limit: int, batch: bool) -> dict[str, list[float]]:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--measure", root, "--limit", str(limit)]
    cmd += ["--batch"] if batch else []
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, env=env).stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", help="another checkout to time in alternation")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--limit", type=int, default=120)
    ap.add_argument("--batch", action="store_true", help="one encode_batch/decode_batch per set")
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.measure:
        print(json.dumps(measure(a.measure, a.limit, a.batch)))
        return
    roots = {"this": str(HERE)} | ({"baseline": a.baseline} if a.baseline else {})
    best: dict[str, dict[str, list[float]]] = {k: {} for k in roots}
    for _ in range(a.rounds):
        for label, root in roots.items():
            for key, (enc, dec, size) in _round(root, a.limit, a.batch).items():
                b = best[label].setdefault(key, [0.0, 0.0, size])
                b[0], b[1] = max(b[0], enc), max(b[1], dec)
    head = "| set, level | " + " | ".join(
        f"{k} enc MB/s | {k} dec MB/s | {k} bytes" for k in roots) + " |"  # fmt: skip
    print(head)
    print("|---" * (1 + 3 * len(roots)) + "|")
    for key in best["this"]:
        cells = [f"{best[k][key][0]:.2f} | {best[k][key][1]:.2f} | {best[k][key][2]:,.0f}"
                 for k in roots]  # fmt: skip
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
