"""Tile, cell and stream geometry shared by encoder and decoder.

Every image plane group is cut into TILE x TILE tiles coded independently (bounded memory, any
size, mixed-size batches). Inside a tile, each channel is split into bands of BAND rows; each band
is one rANS stream (<= 4096 samples), so a 1 MP RGB image gives ~770 streams: enough parallel work
for a GPU, few enough that per-stream overhead (a 4-byte state and a length) stays < 0.02 bpsp.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit

TILE = 128
CELL = 8  # one VQ latent per CELL x CELL pixels
BAND = 32
N_PREDICTORS = 8


def tile_grid(height: int, width: int) -> tuple[int, int]:
    """Number of tile rows and columns."""
    return -(-height // TILE), -(-width // TILE)


def tile_boxes(height: int, width: int) -> np.ndarray:
    """(n_tiles, 4) int64 rows of (y0, x0, h, w) in raster order."""
    ty, tx = tile_grid(height, width)
    boxes = np.empty((ty * tx, 4), dtype=np.int64)
    k = 0
    for i in range(ty):
        for j in range(tx):
            y0, x0 = i * TILE, j * TILE
            boxes[k] = (y0, x0, min(TILE, height - y0), min(TILE, width - x0))
            k += 1
    return boxes


def cell_shape(h: int, w: int) -> tuple[int, int]:
    """Latent grid of a tile of h x w pixels."""
    return -(-h // CELL), -(-w // CELL)


@njit(cache=True)
def _stream_order(height: int, width: int, c0: int, c1: int, tile: int, band: int):
    """Flat (c, y, x) indices in stream order and the stream bounds, for channels [c0, c1)."""
    n = (c1 - c0) * height * width
    order = np.empty(n, dtype=np.int64)
    tyn = (height + tile - 1) // tile
    txn = (width + tile - 1) // tile
    n_streams = 0
    for ty in range(tyn):
        h = min(tile, height - ty * tile)
        n_streams += txn * (c1 - c0) * ((h + band - 1) // band)
    bounds = np.empty(n_streams + 1, dtype=np.int64)
    bounds[0] = 0
    k = 0
    s = 0
    for ty in range(tyn):
        y0 = ty * tile
        h = min(tile, height - y0)
        for tx in range(txn):
            x0 = tx * tile
            w = min(tile, width - x0)
            for c in range(c0, c1):
                for b0 in range(0, h, band):
                    b1 = min(h, b0 + band)
                    for y in range(y0 + b0, y0 + b1):
                        base = (c * height + y) * width
                        for x in range(x0, x0 + w):
                            order[k] = base + x
                            k += 1
                    s += 1
                    bounds[s] = k
    return order, bounds


@lru_cache(maxsize=8)
def plane_order(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each coded sample of one plane lives (flat y*W+x), and the stream bounds.

    Streams run tile by tile (raster), then band; inside a band, raster order. Cached (read-only)
    because encode and decode of a batch ask for the same shapes many times.
    """
    order, bounds = _stream_order(height, width, 0, 1, TILE, BAND)
    order.flags.writeable = False
    bounds.flags.writeable = False
    return order, bounds
