"""Learned bytes of the codec on the experiment log's evaluation subsets (docs/experiments.md
entries 10-12: "coded" numbers), for one or more tile sides and, optionally, another weights file.

Why: cross-entropy labs say where to look; this says what the real encoder writes, side
information included. Every blob is `fallback="never"` (the learned path alone) and the first
set's blobs are decoded again to check they are exact. Usage:

    python experiments/coded_sizes.py [--tiles 128 256] [--weights other.npz] [--data DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import codec
from codec.layout import TILE_SIZES
from codec.model import load_model_file

# (name, glob under the data root, how many images of the sorted list; from its end if < 0).
# The EVAL ONLY folders are read for evaluation only (never for fitting: codec.train.fit_tables).
SETS = (
    ("mcmaster18 (first 6)", "mcmaster18/*.png", 6),
    ("clic", "clic_2images/*.png", 2),
    ("gray8bit (first 4)", "imagecompression_info/gray8bit/*.png", 4),
    ("rgb8bit (first 3)", "imagecompression_info/rgb8bit/*.p*", 3),
    ("imagenet 64x64 (first 150)", "imagenet_sample_downsampled/64x64/*.png", 150),
    ("screenshots (last 40)", "screenshots_gimp/*.png", -40),
)


def subset(root: Path, pattern: str, n: int) -> list[Path]:
    paths = sorted(root.glob(pattern))
    return paths[:n] if n > 0 else paths[n:]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tiles", type=int, nargs="+", choices=TILE_SIZES, default=list(TILE_SIZES))
    ap.add_argument("--weights", type=Path, help="weights .npz (default: the shipped model)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    a = ap.parse_args(argv)
    model = load_model_file(a.weights) if a.weights else None
    print("set | " + " | ".join(f"tile {t}" for t in a.tiles))
    for k, (name, folder, n) in enumerate(SETS):
        totals = dict.fromkeys(a.tiles, 0)
        for path in subset(a.data, folder, n):
            img = codec.load_image(path)
            for t in a.tiles:
                blob = codec.encode(img, fallback="never", tile=t, model=model)
                totals[t] += len(blob)
                if k == 0 and model is None and not np.array_equal(codec.decode(blob), img.pixels):
                    raise SystemExit(f"{path}: round trip failed")
        first = totals[a.tiles[0]]
        cells = [f"{v:,} ({(v / first - 1) * 100:+.2f}%)" for v in totals.values()]
        print(f"{name} | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
