"""Reversible integer colour transform: subtract-green with a +128 offset, all mod 256.

Why this one: it keeps every plane 8-bit (so one 256-symbol alphabet serves all planes) and is
exact by construction; the +128 centres chroma so predictors rarely see wrap-around.
"""

from __future__ import annotations

import numpy as np


def forward_rgb(rgb: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 RGB -> (3,H,W) uint8 planes [G, R-G+128, B-G+128] (mod 256)."""
    r = rgb[..., 0].astype(np.int16)
    g = rgb[..., 1].astype(np.int16)
    b = rgb[..., 2].astype(np.int16)
    out = np.empty((3,) + rgb.shape[:2], dtype=np.uint8)
    out[0] = g
    out[1] = (r - g + 128) & 0xFF
    out[2] = (b - g + 128) & 0xFF
    return out


def inverse_rgb(planes: np.ndarray) -> np.ndarray:
    """Exact inverse of forward_rgb: (3,H,W) planes -> (H,W,3) uint8 RGB."""
    g = planes[0].astype(np.int16)
    out = np.empty(planes.shape[1:] + (3,), dtype=np.uint8)
    out[..., 0] = (planes[1].astype(np.int16) + g - 128) & 0xFF
    out[..., 1] = planes[0]
    out[..., 2] = (planes[2].astype(np.int16) + g - 128) & 0xFF
    return out
