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


# Pixels per encoder chunk and decoder band (whole tiles): the encoder's working set is ~10-12
# bytes per sample (symbols, table ids, their concatenation, the coder's worst-case buffer; for a
# packed canvas also its pixels and the symbols put back in group order), ~150-180 MiB for RGB,
# however large the image or batch; 64 tiles of 256 x 256 still fill 64 cores.
CHUNK_PIXELS = 1 << 22


def tile_chunks(boxes_all, limit: int) -> list[list[tuple[int, int, int]]]:
    """Runs of whole tiles, (group, first tile, end tile), holding at most `limit` pixels (or
    one tile) per chunk: the encoder's working memory scales with a chunk, not the batch."""
    chunks: list[list[tuple[int, int, int]]] = [[]]
    size = 0
    for g, boxes in enumerate(boxes_all):
        start = 0
        for t, (_, _, h, w) in enumerate(boxes):
            n = int(h * w)
            if size and size + n > limit:
                if t > start:
                    chunks[-1].append((g, start, t))
                chunks.append([])
                size, start = 0, t
            size += n
        if len(boxes) > start:
            chunks[-1].append((g, start, len(boxes)))
    return [c for c in chunks if c]


def tile_bands(boxes: np.ndarray, limit: int) -> list[tuple[int, int]]:
    """Tile runs [a, b) (boxes in raster order) covering a rectangle of at most `limit` pixels,
    or one tile: whole tile rows where they fit, else runs of tiles within one row. The
    decoder's unit of work and of intermediate memory."""
    bands: list[tuple[int, int]] = []
    start = size = t = 0  # pending run of whole rows: [start, t), `size` pixels
    while t < len(boxes):
        end = t
        while end < len(boxes) and boxes[end, 0] == boxes[t, 0]:
            end += 1
        n = int(boxes[t:end, 2] @ boxes[t:end, 3])
        if size and size + n > limit:  # flush the pending rows
            bands.append((start, t))
            size = 0
        if n > limit:  # a row too wide for one band: runs of whole tiles within it
            bands.extend((t + a, t + b) for ((_, a, b),) in tile_chunks([boxes[t:end]], limit))
        else:
            start = t if size == 0 else start
            size += n
        t = end
    if size:
        bands.append((start, len(boxes)))
    return bands
