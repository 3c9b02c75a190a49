"""Tile and cell geometry shared by encoder and decoder.

Every image plane group is cut into square tiles coded independently (bounded memory, any size,
mixed-size batches). Each (tile, plane) is one rANS stream decoded by the per-pixel model
(codec/pixelmodel.py). The tile side is the encoder's choice, sent in the group's flags: 256 by
default, as a tile's first row and column predict worse and its model state starts cold
(-0.15% bytes on RGB photos, -0.9% gray, -1.2% screenshots against 128, docs/experiments.md
entry 12; 512 gave back most of it), or 128 for 4x more independent streams per image (a 1 MP RGB
image gives 48 streams at 256, 192 at 128) where one image must fill many cores or a GPU.
"""

from __future__ import annotations

import numpy as np

TILE = 128  # the format's base tile side; a group's flags may double it
TILE_SIZES = (128, 256)
DEFAULT_TILE = 256
CELL = 8  # one VQ latent per CELL x CELL pixels


def tile_grid(height: int, width: int, tile: int = TILE) -> tuple[int, int]:
    """Number of tile rows and columns."""
    return -(-height // tile), -(-width // tile)


def tile_boxes(height: int, width: int, tile: int = TILE) -> np.ndarray:
    """(n_tiles, 4) int64 rows of (y0, x0, h, w) in raster order."""
    ty, tx = tile_grid(height, width, tile)
    boxes = np.empty((ty * tx, 4), dtype=np.int64)
    k = 0
    for i in range(ty):
        for j in range(tx):
            y0, x0 = i * tile, j * tile
            boxes[k] = (y0, x0, min(tile, height - y0), min(tile, width - x0))
            k += 1
    return boxes


def cell_shape(h: int, w: int) -> tuple[int, int]:
    """Latent grid of a tile of h x w pixels."""
    return -(-h // CELL), -(-w // CELL)
