"""Batches of ImageNet-size photos through the learned path's pixel stage (experiment log entry
42): encode and decode time per round, and the share of it inside the model-pass calls, one
thread, one CPU. To compare two checkouts, run it under each in turn (PYTHONPATH=CHECKOUT),
alternating: two codecs cannot share a process.

The images are crops of the lab photos (wikipedia_photos) at ImageNet's common shapes (500x375,
375x500, 500x333, 500x500 and a few others), drawn with a fixed seed, in batches of --batch
groups, as the batch job hands them to encode_batch. Every round trip is checked.
Usage: python experiments/pack_batches.py [--level fast] [--images 64] [--batch 16] [--rounds 4]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from codec import kernels, learned, pixelmodel
from codec.colour import forward_rgb
from codec.imagefile import load_image
from codec.model import default_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# (height, width), ImageNet's common landscape shape four times as likely as the rest
SHAPES = [(375, 500)] * 4 + [(500, 375)] * 2 + [(333, 500)] * 2 + [
    (500, 333), (500, 500), (281, 500), (400, 500), (500, 400), (345, 500), (354, 500),
    (428, 640)]  # fmt: skip


def crops(data: Path, n: int) -> list[np.ndarray]:
    """n (3, H, W) plane groups cut from the lab photos at SHAPES (seed 0)."""
    rng = np.random.default_rng(0)
    sources = [load_image(p).pixels for p in sorted((data / "wikipedia_photos").glob("*.png"))]
    out = []
    for k in range(n):
        h, w = SHAPES[rng.integers(len(SHAPES))]
        src = sources[k % len(sources)]
        h, w = min(h, src.shape[0]), min(w, src.shape[1])
        y, x = rng.integers(0, src.shape[0] - h + 1), rng.integers(0, src.shape[1] - w + 1)
        out.append(forward_rgb(np.ascontiguousarray(src[y : y + h, x : x + w, :3])))
    return out


class _ModelPassClock:
    """Seconds spent inside pixelmodel.encode_planes / decode_planes while installed."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.saved = (pixelmodel.encode_planes, pixelmodel.decode_planes)
        pixelmodel.encode_planes = self._timed(self.saved[0])
        pixelmodel.decode_planes = self._timed(self.saved[1])

    def _timed(self, fn):  # noqa: ANN001, ANN202
        def call(*a, **k):  # noqa: ANN002, ANN003, ANN202
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.seconds += time.perf_counter() - t

        return call

    def close(self) -> None:
        pixelmodel.encode_planes, pixelmodel.decode_planes = self.saved


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--level", default="fast", help="effort name or header index")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)),
                    help="the CPU to pin to (-1: the scheduler's choice)")  # fmt: skip
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args(argv)
    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})
    level = pixelmodel.level_index(args.level)
    groups = crops(args.data, args.images)
    batches = [groups[i : i + args.batch] for i in range(0, len(groups), args.batch)]
    model = default_model()
    best = dict.fromkeys(("encode", "encode model pass", "decode", "decode model pass"), np.inf)
    with kernels.using_threads(1):
        payloads = [learned.encode_groups(model, b, level=level) for b in batches]
        clock = _ModelPassClock()
        try:
            for _ in range(args.rounds):
                for what in ("encode", "decode"):
                    clock.seconds, t = 0.0, time.perf_counter()
                    for b, p in zip(batches, payloads, strict=True):
                        if what == "encode":
                            learned.encode_groups(model, b, level=level)
                        else:
                            out = learned.decode_groups(model, p, [g.shape for g in b], level=level)
                            if not all(np.array_equal(o, g) for o, g in zip(out, b, strict=True)):
                                raise AssertionError("decoded pixels differ")
                    best[what] = min(best[what], time.perf_counter() - t)
                    best[f"{what} model pass"] = min(best[f"{what} model pass"], clock.seconds)
        finally:
            clock.close()
    mb = sum(g.size for g in groups) / 1e6
    size = sum(len(p) for ps in payloads for p in ps)
    times = ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in best.items())
    print(f"level {args.level}, {len(groups)} images ({mb:.1f} MB) in batches of {args.batch}, "
          f"{size} bytes: {times}")  # fmt: skip


if __name__ == "__main__":
    main()
