"""Plane order of colour images: G, R, B (no arithmetic transform).

Why no transform: the pixel model predicts R and B with cross-plane predictors from the already
coded G (and R) planes, blended per pixel; that adapts the colour decorrelation locally, where a
fixed subtract-green or YCoCg transform measured 4-5% worse on photos (docs/experiments.md,
entry 6). G first because it carries most of the luminance.
"""

from __future__ import annotations

import numpy as np


def forward_rgb(rgb: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 RGB -> (3,H,W) uint8 planes [G, R, B]."""
    return np.ascontiguousarray(np.stack([rgb[..., 1], rgb[..., 0], rgb[..., 2]]))


def inverse_rgb(planes: np.ndarray) -> np.ndarray:
    """Exact inverse of forward_rgb: (3,H,W) planes -> (H,W,3) uint8 RGB."""
    return np.ascontiguousarray(np.stack([planes[1], planes[0], planes[2]], axis=-1))
