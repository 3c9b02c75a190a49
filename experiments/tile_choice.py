"""The fast levels' tile side, 128 against 256, on lab images of a given tile count (experiment
log entry 40): bytes of the pixel payloads and the pixel stage's speed, one thread, one CPU.

Each image is coded at both sides, then timed `--rounds` times in alternating order (128 first
in even rounds), best of the rounds per side; decoding is checked against the pixels. Only lab
(training) folders are read: the rule this informs, learned.group_tile, must not be fitted on EVAL.
Usage: python experiments/tile_choice.py [--level fast] [--rounds 3] [--tiles 16 31] [--cpu K]

--occupancy instead times the model pass alone (pixelmodel.encode_planes / decode_planes) on the
first 1, 2, 3, 4, 6 and 8 tiles of 128 of one lab photo's top row: the basis of the kernels'
PL_MIN_TILES (a lane batch costs about the same with any number of live lanes).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from codec import kernels, learned, pixelmodel, rans
from codec.api import _to_groups
from codec.colour import forward_rgb
from codec.imagefile import load_image
from codec.layout import tile_boxes, tile_grid
from codec.model import default_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LAB = ["wikipedia_photos", "urban100_subset", "usc_sipi", "waterloo_bragzone", "screenshots_gimp"]
OCCUPANCY_PHOTOS = "urban100_subset"  # --occupancy's photo: the first of this folder
SIDES = (128, 256)


def lab_images(data: Path, lo: int, hi: int) -> list[Path]:
    """Lab PNGs with lo..hi tiles of 256 (by header size: no pixels read)."""
    out = []
    for folder in LAB:
        for path in sorted((data / folder).rglob("*.png")):
            with Image.open(path) as im:
                ty, tx = tile_grid(im.height, im.width, 256)
            if lo <= ty * tx <= hi:
                out.append(path)
    return out


def measure(groups: list[np.ndarray], level: int, rounds: int) -> dict[int, list[float]]:
    """side -> [payload bytes, best encode s, best decode s]."""
    model = default_model()
    shapes = [g.shape for g in groups]
    coded = {t: learned.encode_groups(model, groups, tile=t, level=level) for t in SIDES}
    res = {t: [float(sum(len(p) for p in coded[t])), np.inf, np.inf] for t in SIDES}
    for r in range(rounds):
        for t in SIDES if r % 2 == 0 else SIDES[::-1]:
            t0 = time.perf_counter()
            learned.encode_groups(model, groups, tile=t, level=level)
            t1 = time.perf_counter()
            out = learned.decode_groups(model, coded[t], shapes, level=level)
            t2 = time.perf_counter()
            if not all(np.array_equal(a, b) for a, b in zip(out, groups, strict=True)):
                raise AssertionError(f"tile {t}: decoded pixels differ")
            res[t][1] = min(res[t][1], t1 - t0)
            res[t][2] = min(res[t][2], t2 - t1)
    return res


def occupancy(path: Path, level: int, rounds: int) -> None:
    """Model-pass time of n tiles of 128 side by side in one row, n = 1..8: every n once a
    round, after a warm-up round, best of the rounds."""
    pt = default_model().pixel_tables(level)
    img = load_image(path).pixels
    planes = forward_rgb(img[..., :3]) if img.ndim == 3 else img[None]
    counts = (1, 2, 3, 4, 6, 8)
    if planes.shape[1] < 128 or planes.shape[2] < 128 * counts[-1]:
        raise SystemExit(f"{path} is too small for {counts[-1]} tiles of 128 in a row")
    best = {n: [np.inf, np.inf] for n in counts}
    for r in range(rounds + 1):
        for n in counts:
            group = np.ascontiguousarray(planes[:, :128, : 128 * n])
            boxes = tile_boxes(128, 128 * n, 128)
            t0 = time.perf_counter()
            code = pixelmodel.encode_planes(group, boxes, None, pt.prior, level)
            t1 = time.perf_counter()
            data, bb = rans.encode_streams(code.symbols, code.table_ids, code.bounds, pt.tables)
            t2 = time.perf_counter()
            out = pixelmodel.decode_planes(data, bb, group.shape, boxes, None, code.coefs,
                                           pt.prior, pt.tables, level=level)  # fmt: skip
            t3 = time.perf_counter()
            if not np.array_equal(out, group):
                raise AssertionError(f"{n} tiles: decoded pixels differ")
            if r:
                best[n] = [min(best[n][0], t1 - t0), min(best[n][1], t3 - t2)]
    for n, (enc, dec) in best.items():
        print(f"{n} tiles: model pass encode {enc * 1e3:.2f} ms, decode {dec * 1e3:.2f} ms"
              f" ({enc / n * 1e3:.2f} / {dec / n * 1e3:.2f} a tile)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--level", default="fast", help="effort name or header index")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tiles", type=int, nargs=2, default=(16, 31), metavar=("LO", "HI"))
    ap.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)),
                    help="the CPU to pin to (-1: the scheduler's choice)")  # fmt: skip
    ap.add_argument("--quiet", action="store_true", help="totals only")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--occupancy", action="store_true", help="lane batches of 1..8 tiles")
    args = ap.parse_args(argv)
    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})
    level = pixelmodel.level_index(args.level)
    if args.occupancy:
        photo = sorted((args.data / OCCUPANCY_PHOTOS).glob("*.png"))[0]
        with kernels.using_threads(1):
            occupancy(photo, level, 3 * args.rounds)
        return
    total = {t: np.zeros(3) for t in SIDES}
    measured = 0
    with kernels.using_threads(1):
        for path in lab_images(args.data, *args.tiles):
            img = load_image(path)
            if img.mode not in ("L", "RGB"):  # one plane group, as the rule sees it
                continue
            measured += 1
            res = measure(_to_groups(img), level, args.rounds)
            for t in SIDES:
                total[t] += res[t]
            if not args.quiet:
                name = path.relative_to(args.data)
                print(f"{name}: bytes 128/256 {res[128][0] / res[256][0]:.4f}"
                      f" speed 128 vs 256: encode {res[256][1] / res[128][1]:.3f}x"
                      f" decode {res[256][2] / res[128][2]:.3f}x", flush=True)  # fmt: skip
    a, b = total[128], total[256]
    print(f"level {args.level}, {measured} images with {args.tiles[0]}-{args.tiles[1]} tiles "
          f"of 256: bytes 128/256 {a[0] / b[0]:.4f}; 128 against 256: encode {b[1] / a[1]:.3f}x,"
          f" decode {b[2] / a[2]:.3f}x")  # fmt: skip


if __name__ == "__main__":
    main()
