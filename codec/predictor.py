"""Three-way auto-regressive predictor (left L, top T, top-left D) with integer weights.

Each tile channel picks one of N_PREDICTORS fixed integer predictors (the encoder tries all and
keeps the one with the smallest sum of |residual|). Residuals are (x - prediction) mod 256, so a
symbol is one byte and reconstruction is the exact inverse. Tiles never look outside themselves.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from codec.layout import N_PREDICTORS, TILE


@njit(cache=True, inline="always")
def _clamp8(v: int) -> int:
    return 0 if v < 0 else (255 if v > 255 else v)


@njit(cache=True, inline="always")
def predict(p: int, left: int, top: int, diag: int) -> int:
    """Prediction of predictor p from the three causal neighbours (all ints in 0..255)."""
    if p == 0:  # MED / LOCO-I median edge detector
        hi = max(left, top)
        lo = min(left, top)
        if diag >= hi:
            return lo
        if diag <= lo:
            return hi
        return left + top - diag
    if p == 1:
        return left
    if p == 2:
        return top
    if p == 3:
        return (left + top) >> 1
    if p == 4:
        return _clamp8(left + top - diag)
    if p == 5:
        return _clamp8((3 * left + 3 * top - 2 * diag + 2) >> 2)
    if p == 6:
        return _clamp8(left + ((top - diag) >> 1))
    return _clamp8(top + ((left - diag) >> 1))


@njit(cache=True, inline="always")
def _neighbour_pred(plane, y0, x0, y, x, p):
    if y == y0:
        if x == x0:
            return 128
        return np.int64(plane[y, x - 1])
    if x == x0:
        return np.int64(plane[y - 1, x])
    return predict(
        p, np.int64(plane[y, x - 1]), np.int64(plane[y - 1, x]), np.int64(plane[y - 1, x - 1])
    )


@njit(cache=True, parallel=True)
def _encode_tiles(planes, boxes, symbols, pred_ids):
    n_tiles = boxes.shape[0]
    n_ch = planes.shape[0]
    for job in prange(n_tiles * n_ch):
        t = job // n_ch
        c = job % n_ch
        y0, x0, h, w = boxes[t, 0], boxes[t, 1], boxes[t, 2], boxes[t, 3]
        plane = planes[c]
        costs = np.zeros(N_PREDICTORS, dtype=np.int64)
        for y in range(y0, y0 + h):
            for x in range(x0, x0 + w):
                v = np.int64(plane[y, x])
                for p in range(N_PREDICTORS):
                    r = (v - _neighbour_pred(plane, y0, x0, y, x, p)) & 0xFF
                    costs[p] += r if r < 128 else 256 - r
        best = 0
        for p in range(1, N_PREDICTORS):
            if costs[p] < costs[best]:
                best = p
        pred_ids[t, c] = best
        for y in range(y0, y0 + h):
            for x in range(x0, x0 + w):
                v = np.int64(plane[y, x])
                symbols[c, y, x] = (v - _neighbour_pred(plane, y0, x0, y, x, best)) & 0xFF


@njit(cache=True, parallel=True)
def _decode_tiles(symbols, boxes, pred_ids, planes):
    n_tiles = boxes.shape[0]
    n_ch = planes.shape[0]
    for job in prange(n_tiles * n_ch):
        t = job // n_ch
        c = job % n_ch
        y0, x0, h, w = boxes[t, 0], boxes[t, 1], boxes[t, 2], boxes[t, 3]
        plane = planes[c]
        p = np.int64(pred_ids[t, c])
        for y in range(y0, y0 + h):
            for x in range(x0, x0 + w):
                pred = _neighbour_pred(plane, y0, x0, y, x, p)
                plane[y, x] = (pred + np.int64(symbols[c, y, x])) & 0xFF


def encode_residuals(planes: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C,H,W) uint8 planes -> (residual symbols (C,H,W) uint8, predictor ids (n_tiles, C) uint8)."""
    planes = np.ascontiguousarray(planes, dtype=np.uint8)
    symbols = np.empty_like(planes)
    pred_ids = np.zeros((boxes.shape[0], planes.shape[0]), dtype=np.uint8)
    _encode_tiles(planes, boxes, symbols, pred_ids)
    return symbols, pred_ids


def decode_residuals(symbols: np.ndarray, boxes: np.ndarray, pred_ids: np.ndarray) -> np.ndarray:
    """Exact inverse of encode_residuals."""
    planes = np.empty_like(symbols)
    _decode_tiles(np.ascontiguousarray(symbols), boxes, pred_ids, planes)
    return planes


def signed(symbols: np.ndarray) -> np.ndarray:
    """Residual symbols (mod 256) as signed int16 in [-128, 127]."""
    return symbols.astype(np.int8).astype(np.int16)


assert TILE % 8 == 0
