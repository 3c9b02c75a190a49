"""The host's share of encode_batch / decode_batch: everything but the kernel calls (colour
transform, checksums, payload packing and parsing), one thread, on a batch of photo crops. On a
GPU that share stays on the host, so it bounds the end-to-end rate of one process (docs/gpu.md).

    python benchmarks/host_share.py [--out benchmarks/results/host_share.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import codec  # noqa: E402
from codec import pixelmodel, rans  # noqa: E402

PHOTO = ROOT.parent / "shared/data/imagecompression_info/rgb8bit/flower_foveon.png"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/host_share.md")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with Image.open(PHOTO) as im:
        px = np.asarray(im)
    crops = [np.ascontiguousarray(px[y : y + 512, x : x + 512])
             for y in range(0, 1024, 512) for x in range(0, 1536, 512)] * 4  # fmt: skip
    raw = sum(c.nbytes for c in crops) / 1e6
    in_kernels = [0.0]

    def charged(fn):  # noqa: ANN001, ANN202
        def call(*a, **k):  # noqa: ANN002, ANN003, ANN202
            t = time.perf_counter()
            out = fn(*a, **k)
            in_kernels[0] += time.perf_counter() - t
            return out

        return call

    for mod, name in ((pixelmodel, "encode_planes"), (pixelmodel, "decode_planes"),
                      (rans, "encode_streams"), (rans, "encode_kernel_streams"),
                      (rans, "decode_streams")):  # fmt: skip
        setattr(mod, name, charged(getattr(mod, name)))
    best = {"encode": float("inf"), "decode": float("inf")}
    for _ in range(args.rounds):
        for what in ("encode", "decode"):
            in_kernels[0] = 0.0
            t = time.perf_counter()
            if what == "encode":
                blobs = codec.encode_batch(crops, fallback="never", threads=1)
            else:
                codec.decode_batch(blobs, threads=1)
            best[what] = min(best[what], time.perf_counter() - t - in_kernels[0])
    text = (
        "# Host share of the codec (everything but the kernels), one thread\n\n"
        f"`python benchmarks/host_share.py`: {len(crops)} crops of 512x512 RGB ({raw:.1f} MB), "
        f"best of {args.rounds}: encode {best['encode'] * 1e3:.0f} ms = "
        f"{raw / best['encode']:.0f} MB/s, decode {best['decode'] * 1e3:.0f} ms = "
        f"{raw / best['decode']:.0f} MB/s of raw pixels outside the kernel calls.\n"
    )
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
