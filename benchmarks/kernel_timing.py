"""Per-sample cost of the pixel model's two hot loops, one thread: the encoder's pass (LS fit +
model) and the fused model + rANS decode kernel, on 1024x1024 crops (RGB and gray).

Usage: python benchmarks/kernel_timing.py [RGB_IMAGE GRAY_IMAGE] [--repeats N] [--tile 128|256]
Used for the speed entries of docs/experiments.md; wall time, best of N.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from codec import kernels, learned, pixelmodel
from codec.layout import DEFAULT_TILE, TILE_SIZES, tile_boxes
from codec.model import default_model
from codec.train.data import load_planes

DATA = "../shared/data/"
DEFAULTS = (
    DATA + "clic_2images/alberto-montalesi-176097.png",
    DATA + "imagecompression_info/gray8bit/flower_foveon.png",
)


def _planes(path: str) -> np.ndarray:
    """The image's plane group as the codec codes it, cropped to 1024x1024."""
    g = load_planes(Path(path))
    if g is None:
        raise SystemExit(f"{path}: not an 8-bit gray or colour image")
    return np.ascontiguousarray(g[:, :1024, :1024])


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("images", nargs="*", default=list(DEFAULTS))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tile", type=int, choices=TILE_SIZES, default=DEFAULT_TILE)
    a = ap.parse_args()
    kernels.set_threads(1)
    model = default_model()
    for path in a.images:
        g = _planes(path)
        payload = learned.encode_groups(model, [g], tile=a.tile)[0]
        p = learned._parse(payload, g.shape)
        vq = None  # the default: no VQ stage
        boxes = tile_boxes(g.shape[1], g.shape[2], a.tile)

        def enc(g=g, boxes=boxes, vq=vq):
            return pixelmodel.encode_planes(g, boxes, vq, model.prior)

        def dec(p=p, vq=vq):
            return pixelmodel.decode_planes(
                p.data, p.pixel_bytes, p.shape, p.boxes, vq, p.coefs, model.prior, model.tables
            )

        if not np.array_equal(dec(), g):
            raise SystemExit(f"{path}: decode mismatch")
        ns = [_best(f, a.repeats) / g.size * 1e9 for f in (enc, dec)]
        print(f"{path.split('/')[-1]} {g.shape}: encode {ns[0]:.1f} ns/sample, decode {ns[1]:.1f}")


if __name__ == "__main__":
    main()
