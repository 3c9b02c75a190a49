"""Fit the pixel model's coding tables and bucket priors by running the exact integer pipeline.

Two passes over the training images: the first (flat prior) measures each bucket's mean |error|,
which becomes the prior every tile plane starts from; the second counts symbols per table with
that prior, and the counts (plus a small discretised-logistic floor, so no symbol is starved and
rare levels keep a sane shape) become the tables. Big images are down-weighted to SAMPLES_PER_IMAGE
so screenshots do not outvote photos.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from codec import learned, pixelmodel, rans
from codec.layout import DEFAULT_TILE, TILE
from codec.model import DEFAULT_WEIGHTS, Model, PixelTables, level_file, model_id
from codec.train.data import DEFAULT_TRAIN_DIRS, list_images, load_planes

SAMPLES_PER_IMAGE = 1 << 18
# Screenshots are left out of the table fit: their residuals (a spike at 0 under heavy tails)
# pulled every level's shape away from photos' (+0.2% bytes on RGB, +2% on gray photos;
# screenshots gain 1.2% from them, but photos are what the learned path is for).
# docs/experiments.md entry 9.
TABLE_DIRS = tuple(d for d in DEFAULT_TRAIN_DIRS if d != "screenshots_gimp")
FLOOR_WEIGHT = 24.0  # pseudo-counts of the logistic floor per table
# The shipped tables (c268fb2d) were fitted on 128-pixel tiles, format v4's only side. The
# encoder now defaults to 256 (layout.DEFAULT_TILE); refitting there would change the model id,
# and blobs name the model they need, so v4 blobs would no longer decode with the shipped
# weights. Tables adapt per bucket anyway: the 256 tiles' gain was measured with these tables
# (docs/experiments.md entry 12).
FIT_TILE = TILE


def logistic_table(sigma: float, centre: float = 0.0) -> np.ndarray:
    """Discretised logistic over the 256 residual symbols (mod-256 order)."""
    r = np.arange(256)
    r = np.where(r < 128, r, r - 256).astype(np.float64) - centre
    cdf = lambda v: 1.0 / (1.0 + np.exp(-v / sigma))  # noqa: E731
    with np.errstate(over="ignore"):
        return np.maximum(cdf(r + 0.5) - cdf(r - 0.5), 1e-12)


def level_sigmas() -> np.ndarray:
    """Logistic scale at the centre of every level (level edges are mean |error| x 128)."""
    edges = np.concatenate([[1], pixelmodel._LEVEL_EDGES, [pixelmodel._LEVEL_EDGES[-1] * 1.3]])
    centres = np.sqrt(edges[:-1] * edges[1:]) / 128.0
    return np.maximum(centres / (2 * np.log(2)), 0.05)


# Mean lean of the (sign-flipped) residual in each offset class: P's rounding offset is 0-1/8
# in the first, 2/8-4/8 in the second (pixelmodel._coding_frame).
CLASS_CENTRES = (0.0, 0.375)


def initial_tables() -> np.ndarray:
    """Logistic tables in table-id order (kind, level, offset class): the starting point of a
    fit and the floor that keeps rare tables sane."""
    rows = [
        logistic_table(s, c)
        for _ in range(pixelmodel.N_KINDS)
        for s in level_sigmas()
        for c in CLASS_CENTRES
    ]
    return np.stack(rows)


def flat_prior() -> np.ndarray:
    """Starting prior: mean |error| proportional to the energy bucket's lower edge."""
    e_edges = np.concatenate([[0], pixelmodel._E_EDGES])
    per_e = np.maximum(16 * 8 * (e_edges / 6.0 + 0.5), 16).astype(np.int64)
    per_e = np.concatenate([per_e, np.full(pixelmodel.N_E_BUCKETS - len(per_e), per_e[-1])])
    row = np.repeat(per_e, pixelmodel.N_SUB_BUCKETS)
    return np.tile(row, (pixelmodel.N_KINDS, 1))


def _kinds(code: pixelmodel.PlaneCode, n_ch: int) -> np.ndarray:
    """Plane kind of every symbol of a group (stream order: tile-major, then plane)."""
    sizes = np.diff(code.bounds)
    kinds = np.tile(np.minimum(np.arange(n_ch), pixelmodel.N_KINDS - 1), len(sizes) // n_ch)
    return np.repeat(kinds, sizes)


def collect(
    model: Model,
    groups: list[np.ndarray],
    vq: bool = False,
    tile: int = FIT_TILE,
    level: int = pixelmodel.LEVEL_DEFAULT,
):
    """Weighted (table, symbol) counts, per (kind, bucket) sums of |error| x128 and counts, and
    VQ code counts, at an effort level."""
    hist = np.zeros((pixelmodel.N_PIXEL_TABLES, 256))
    err_sum = np.zeros((pixelmodel.N_KINDS, pixelmodel.N_BUCKETS))
    err_n = np.zeros_like(err_sum)
    codes = np.zeros(256)
    for g in groups:
        _, indices, (code,) = learned.analyse(model, [g], vq, tile, level)
        for idx in indices.values():
            codes += np.bincount(idx.ravel(), minlength=256)
        wgt = min(1.0, SAMPLES_PER_IMAGE / code.symbols.size)
        hist += wgt * np.bincount(
            code.table_ids.astype(np.int64) * 256 + code.symbols, minlength=hist.size
        ).reshape(hist.shape)
        mag = np.abs(code.symbols.astype(np.int8).astype(np.float64)) * 128 + 32
        key = _kinds(code, g.shape[0]) * pixelmodel.N_BUCKETS + code.buckets
        err_sum += wgt * np.bincount(key, weights=mag, minlength=err_sum.size).reshape(
            err_sum.shape
        )
        err_n += wgt * np.bincount(key, minlength=err_n.size).reshape(err_n.shape)
    return hist, err_sum, err_n, codes


def fit(
    arrays: dict[str, np.ndarray], groups: list[np.ndarray], vq: bool = False
) -> dict[str, np.ndarray]:
    """Arrays with fitted `prior` and `freqs` (last row: the VQ index table). Fitted the way
    the encoder runs by default (vq=False); the index table and the priors of VQ scales the
    fit does not see are kept from `arrays`."""
    arrays = dict(arrays)
    init = initial_tables()
    index_row = arrays["freqs"][-1:].astype(np.float64)
    arrays["freqs"] = rans.normalize_freqs(np.concatenate([init * 1e4, index_row]))
    flat = flat_prior()
    fallback = arrays.get("prior", flat)  # for buckets seen too rarely (VQ scales > 0)
    if fallback.shape != flat.shape:  # weights from before a bucket-layout change
        fallback = flat
    arrays["prior"] = flat
    _, err_sum, err_n, codes = collect(Model(arrays), groups, vq)
    if codes.sum() > 0:
        index_row = (codes + 0.5)[None]
    prior = np.where(err_n > 8, err_sum / np.maximum(err_n, 1), fallback)
    arrays["prior"] = np.clip(np.round(prior), 1, (1 << 20) - 1).astype(np.int64)
    hist, _, _, _ = collect(Model(arrays), groups, vq)
    arrays["freqs"] = rans.normalize_freqs(
        np.concatenate([_counts_to_tables(hist, init), index_row])
    )
    return arrays


def _counts_to_tables(hist: np.ndarray, init: np.ndarray) -> np.ndarray:
    """Counts plus the logistic floor (so no symbol is starved), one row per pixel table."""
    out = np.empty_like(hist)
    for t in range(hist.shape[0]):
        out[t] = hist[t] + FLOOR_WEIGHT * init[t] / init[t].sum()
        print(f"table {t:3d}: {out[t].sum():12.0f} samples")
    return out


def fit_level(model: Model, groups: list[np.ndarray], level: int) -> dict[str, np.ndarray]:
    """A level file's arrays (codec/model.py add_level) for a non-default effort level: the
    same two passes as `fit`, run with that level's pixel model on the encoder's default tile
    side (the default level's tables keep format v4's 128 for compatibility; a new level has
    no old blobs)."""
    init = initial_tables()
    flat = flat_prior()

    def attach(prior: np.ndarray, hist: np.ndarray) -> None:
        tables = rans.RansTables.from_freqs(rans.normalize_freqs(hist))
        model.levels[level] = PixelTables(level, prior, tables, "fitting")

    attach(flat, init * 1e4)
    _, err_sum, err_n, _ = collect(model, groups, tile=DEFAULT_TILE, level=level)
    prior = np.where(err_n > 8, err_sum / np.maximum(err_n, 1), flat)
    prior = np.clip(np.round(prior), 1, (1 << 20) - 1).astype(np.int64)
    attach(prior, init * 1e4)
    hist, _, _, _ = collect(model, groups, tile=DEFAULT_TILE, level=level)
    arrays = {
        "base_id": np.frombuffer(bytes.fromhex(model.model_id), dtype=np.uint8).copy(),
        "level": np.array([level], dtype=np.int64),
        "freqs": rans.normalize_freqs(_counts_to_tables(hist, init)),
        "prior": prior,
    }
    del model.levels[level]
    model.add_level(arrays)  # validates
    return arrays


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="VQ-VAE arrays to start from")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--dirs", nargs="*", default=list(TABLE_DIRS))
    ap.add_argument("--per-dir", type=int, default=24, help="images per folder (stratified)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(DEFAULT_WEIGHTS))
    ap.add_argument(
        "--effort",
        choices=pixelmodel.LEVELS,
        default="default",
        help="fit a level file for this effort level (beside --weights: <stem>.<effort>.npz) "
        "instead of the model's own tables",
    )
    a = ap.parse_args(argv)
    with np.load(a.weights, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if k != "lut"}
    rng = np.random.default_rng(a.seed)
    chosen = []
    for d in a.dirs:  # stratified: every folder contributes, none dominates
        paths = list_images([Path(a.data) / d])
        chosen += [paths[i] for i in sorted(rng.permutation(len(paths))[: a.per_dir])]
    groups = [g for g in (load_planes(p) for p in chosen) if g is not None]
    print(f"fitting tables on {len(groups)} images")
    if a.effort != "default":
        level_arrays = fit_level(Model(arrays), groups, pixelmodel.LEVELS.index(a.effort))
        out = level_file(a.weights, a.effort)
        np.savez_compressed(out, **level_arrays)
        print(f"{a.effort} tables {model_id(level_arrays)} -> {out}")
        return
    arrays = fit(arrays, groups)
    Model(arrays)  # validates
    np.savez_compressed(a.out, **arrays)
    print(f"model {model_id(arrays)} -> {a.out}")


if __name__ == "__main__":
    main()
