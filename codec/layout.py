"""Tile and cell geometry shared by encoder and decoder.

Every image plane group is cut into TILE x TILE tiles coded independently (bounded memory, any
size, mixed-size batches). Each (tile, plane) is one rANS stream decoded by the per-pixel model
(codec/pixelmodel.py): a 1 MP RGB image gives 192 streams, a batch of images thousands, while the
per-stream overhead (a 4-byte state, a length and the LS coefficients) stays near 0.01 bpsp.
"""

from __future__ import annotations

import numpy as np

TILE = 128
CELL = 8  # one VQ latent per CELL x CELL pixels


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
