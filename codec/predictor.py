"""Three-way auto-regressive predictor (left L, top T, top-left D) with integer weights.

Each tile channel picks one of N_PREDICTORS fixed integer predictors (the encoder tries all and
keeps the one with the smallest sum of |residual|). Planes after the first add a cross-plane
term, (a*r0 + b*r1 + 32) >> 6 from the co-located residuals of earlier planes, with (a, b) fitted
per tile by least squares: it adapts the colour decorrelation to each tile (about 4% fewer bits
on saturated photos, docs/experiments.md). Residuals are (x - prediction) mod 256, so a
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


@njit(cache=True, inline="always")
def _mix_term(symbols, y, x, c, a, b):
    """Cross-plane correction: (a*r0 + b*r1 + 32) >> 6 from earlier planes' signed residuals."""
    if c == 0:
        return 0
    r0 = np.int64(symbols[0, y, x])
    r0 = r0 - 256 if r0 >= 128 else r0
    acc = a * r0
    if c == 2:
        r1 = np.int64(symbols[1, y, x])
        r1 = r1 - 256 if r1 >= 128 else r1
        acc += b * r1
    return (acc + 32) >> 6


@njit(cache=True, inline="always")
def _signed_at(symbols, c, y, x):
    v = np.int64(symbols[c, y, x])
    return v - 256 if v >= 128 else v


@njit(cache=True)
def _fit_mix(plane, symbols, y0, x0, h, w, c, p):
    """Least-squares (a, b) in 1/64 units of the base residual on earlier planes' residuals."""
    s00 = s01 = s11 = s0e = s1e = 0.0
    for y in range(y0, y0 + h):
        for x in range(x0, x0 + w):
            e = np.int64(plane[y, x]) - _neighbour_pred(plane, y0, x0, y, x, p)
            r0 = _signed_at(symbols, 0, y, x)
            s00 += r0 * r0
            s0e += r0 * e
            if c == 2:
                r1 = _signed_at(symbols, 1, y, x)
                s01 += r0 * r1
                s11 += r1 * r1
                s1e += r1 * e
    a = 0.0
    b = 0.0
    if c == 1:
        if s00 > 0:
            a = s0e / s00
    else:
        det = s00 * s11 - s01 * s01
        if det > 1e-9 * (s00 * s11 + 1.0):
            a = (s0e * s11 - s1e * s01) / det
            b = (s1e * s00 - s0e * s01) / det
        elif s00 > 0:
            a = s0e / s00
    qa = min(127, max(-128, int(np.round(a * 64))))
    qb = min(127, max(-128, int(np.round(b * 64))))
    return qa, qb


@njit(cache=True)
def _cost(plane, symbols, y0, x0, h, w, c, p, a, b):
    total = 0
    for y in range(y0, y0 + h):
        for x in range(x0, x0 + w):
            pred = _clamp8(
                _neighbour_pred(plane, y0, x0, y, x, p) + _mix_term(symbols, y, x, c, a, b)
            )
            r = (np.int64(plane[y, x]) - pred) & 0xFF
            total += r if r < 128 else 256 - r
    return total


@njit(cache=True, parallel=True)
def _encode_tiles(planes, boxes, symbols, pred_ids, mix):
    n_ch = planes.shape[0]
    for t in prange(boxes.shape[0]):
        y0, x0, h, w = boxes[t, 0], boxes[t, 1], boxes[t, 2], boxes[t, 3]
        for c in range(n_ch):  # planes in order: later planes use earlier residuals
            plane = planes[c]
            best = 0
            best_cost = -1
            best_a = 0
            best_b = 0
            for p in range(N_PREDICTORS):
                a, b = (0, 0) if c == 0 else _fit_mix(plane, symbols, y0, x0, h, w, c, p)
                cost = _cost(plane, symbols, y0, x0, h, w, c, p, a, b)
                if best_cost < 0 or cost < best_cost:
                    best, best_cost, best_a, best_b = p, cost, a, b
            pred_ids[t, c] = best
            if c > 0:
                mix[t, c - 1, 0] = best_a
                mix[t, c - 1, 1] = best_b
            for y in range(y0, y0 + h):
                for x in range(x0, x0 + w):
                    pred = _clamp8(
                        _neighbour_pred(plane, y0, x0, y, x, best)
                        + _mix_term(symbols, y, x, c, best_a, best_b)
                    )
                    symbols[c, y, x] = (np.int64(plane[y, x]) - pred) & 0xFF


@njit(cache=True, parallel=True)
def _decode_tiles(symbols, boxes, pred_ids, mix, planes):
    n_ch = planes.shape[0]
    for t in prange(boxes.shape[0]):
        y0, x0, h, w = boxes[t, 0], boxes[t, 1], boxes[t, 2], boxes[t, 3]
        for c in range(n_ch):
            plane = planes[c]
            p = np.int64(pred_ids[t, c])
            a = np.int64(mix[t, c - 1, 0]) if c > 0 else 0
            b = np.int64(mix[t, c - 1, 1]) if c > 0 else 0
            for y in range(y0, y0 + h):
                for x in range(x0, x0 + w):
                    pred = _clamp8(
                        _neighbour_pred(plane, y0, x0, y, x, p) + _mix_term(symbols, y, x, c, a, b)
                    )
                    plane[y, x] = (pred + np.int64(symbols[c, y, x])) & 0xFF


def encode_residuals(
    planes: np.ndarray, boxes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(C,H,W) uint8 planes -> residual symbols (C,H,W), predictor ids (n_tiles, C) uint8 and
    cross-plane weights (n_tiles, max(C-1, 0), 2) int8 (1/64 units)."""
    planes = np.ascontiguousarray(planes, dtype=np.uint8)
    symbols = np.empty_like(planes)
    n_ch = planes.shape[0]
    pred_ids = np.zeros((boxes.shape[0], n_ch), dtype=np.uint8)
    mix = np.zeros((boxes.shape[0], max(n_ch - 1, 0), 2), dtype=np.int8)
    _encode_tiles(planes, boxes, symbols, pred_ids, mix)
    return symbols, pred_ids, mix


def decode_residuals(
    symbols: np.ndarray, boxes: np.ndarray, pred_ids: np.ndarray, mix: np.ndarray
) -> np.ndarray:
    """Exact inverse of encode_residuals."""
    planes = np.empty_like(symbols)
    _decode_tiles(np.ascontiguousarray(symbols), boxes, pred_ids, mix, planes)
    return planes


def signed(symbols: np.ndarray) -> np.ndarray:
    """Residual symbols (mod 256) as signed int16 in [-128, 127]."""
    return symbols.astype(np.int8).astype(np.int16)


assert TILE % 8 == 0
