"""Semi-dynamic table choice: decoder scale x local residual activity x earlier-plane residual.

The table of each residual sample is lut[kind, scale, activity, cross] where
  scale    = the VQ decoder's scale index at that sample (network, once per tile),
  activity = bucket of 2|W| + 2|N| + |NW| + |NE| over residuals already decoded in the same
             stream (a band of one tile plane; neighbours outside the band count as 0),
  cross    = bucket of the co-located residual(s) of earlier planes (0 for plane 0).
Because activity only looks inside the stream, every stream still decodes independently (one GPU
thread each) while the coder adapts per sample, which the network alone (at 1/8 resolution)
cannot. Encoder and decoder share `_table_at`, so both choose identical tables.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from codec import rans
from codec.errors import CodecError
from codec.layout import BAND

N_ACTIVITY = 12
N_CROSS = 8
_ACT_EDGES = np.array([1, 2, 3, 5, 8, 12, 18, 28, 44, 70, 110], dtype=np.int64)
ACT_BUCKET = np.searchsorted(_ACT_EDGES, np.arange(6 * 128 + 1), side="right").astype(np.uint8)
MAG = np.minimum(127, np.abs(np.arange(256, dtype=np.int64) - 256 * (np.arange(256) >= 128)))
MAG = MAG.astype(np.int64)
CROSS_BUCKET = np.minimum(N_CROSS - 1, [int(v).bit_length() for v in range(256)]).astype(np.uint8)


def cross_context(symbols: np.ndarray, plane: int) -> np.ndarray:
    """(H,W) uint8 cross bucket of plane `plane` from the decoded earlier planes."""
    if plane == 0:
        return np.zeros(symbols.shape[1:], dtype=np.uint8)
    mag0 = MAG[symbols[0]]
    ctx = mag0 if plane == 1 else (mag0 + MAG[symbols[1]] + 1) >> 1
    return CROSS_BUCKET[ctx]


@njit(cache=True, inline="always")
def _activity_at(sym, y, x, yb, x0, x1, mag, act_bucket):
    """Activity bucket of sample (y, x) from residuals decoded before it in its stream."""
    a = 0
    if x > x0:
        a += 2 * mag[sym[y, x - 1]]
    if y > yb:
        a += 2 * mag[sym[y - 1, x]]
        if x > x0:
            a += mag[sym[y - 1, x - 1]]
        if x + 1 < x1:
            a += mag[sym[y - 1, x + 1]]
    return act_bucket[a]


@njit(cache=True, parallel=True)
def _activity(sym, boxes, band, mag, act_bucket, out):
    for t in prange(boxes.shape[0]):
        y0, x0, h, w = boxes[t, 0], boxes[t, 1], boxes[t, 2], boxes[t, 3]
        for yb in range(y0, y0 + h, band):
            for y in range(yb, min(yb + band, y0 + h)):
                for x in range(x0, x0 + w):
                    out[y, x] = _activity_at(sym, y, x, yb, x0, x0 + w, mag, act_bucket)


def activity(sym: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Encoder side: activity bucket of every sample of one plane (all residuals known)."""
    out = np.empty(sym.shape, dtype=np.uint8)
    _activity(np.ascontiguousarray(sym), boxes, BAND, MAG, ACT_BUCKET, out)
    return out


def table_ids(
    sym: np.ndarray, scale: np.ndarray, cross: np.ndarray, lut: np.ndarray, boxes: np.ndarray
) -> np.ndarray:
    """Encoder side: the table of every sample of one plane (lut of that plane's kind)."""
    return lut[scale, activity(sym, boxes), cross]


@njit(cache=True, parallel=True)
def _decode_plane(
    data, bb, s_tile, s_y, boxes, band, scale, cross, lut, mag, act_bucket, s2s, fc, sym, err
):
    mask = (1 << 16) - 1
    for s in prange(bb.shape[0] - 1):
        rp = bb[s]
        rend = bb[s + 1]
        if rend - rp < 4:
            err[s] = 5
            continue
        x_state = (
            np.int64(data[rp])
            | (np.int64(data[rp + 1]) << 8)
            | (np.int64(data[rp + 2]) << 16)
            | (np.int64(data[rp + 3]) << 24)
        )
        rp += 4
        if x_state < 65536:
            err[s] = 4
            continue
        over = False
        t = s_tile[s]
        yb = s_y[s]
        y0, x0, h, w = boxes[t, 0], boxes[t, 1], boxes[t, 2], boxes[t, 3]
        for y in range(yb, min(yb + band, y0 + h)):
            for x in range(x0, x0 + w):
                a = _activity_at(sym, y, x, yb, x0, x0 + w, mag, act_bucket)
                tid = np.int64(lut[np.int64(scale[y, x]), np.int64(a), np.int64(cross[y, x])])
                slot = x_state & mask
                v = s2s[(tid << 16) | slot]
                e = np.int64(fc[(tid << 8) | np.int64(v)])
                x_state = (e & 0xFFFF) * (x_state >> 16) + slot - (e >> 16)
                if x_state < 65536:
                    if rp + 2 <= rend:
                        x_state = (
                            (x_state << 16) | np.int64(data[rp]) | (np.int64(data[rp + 1]) << 8)
                        )
                        rp += 2
                    else:
                        x_state <<= 16
                        over = True
                sym[y, x] = v
        if over:
            err[s] = 1
        elif x_state != 65536:
            err[s] = 2
        elif rp != rend:
            err[s] = 3
        else:
            err[s] = 0


def stream_origins(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tile index and first row of every stream of one plane, in stream order."""
    tiles, rows = [], []
    for t, (y0, _, h, _) in enumerate(boxes):
        for yb in range(int(y0), int(y0 + h), BAND):
            tiles.append(t)
            rows.append(yb)
    return np.array(tiles, dtype=np.int64), np.array(rows, dtype=np.int64)


def decode_plane(
    data: np.ndarray,
    byte_bounds: np.ndarray,
    boxes: np.ndarray,
    scale: np.ndarray,
    cross: np.ndarray,
    lut: np.ndarray,
    tables: rans.RansTables,
) -> np.ndarray:
    """Decoder side: residual symbols (H,W) of one plane, tables chosen as the encoder did."""
    s_tile, s_y = stream_origins(boxes)
    if len(byte_bounds) != len(s_tile) + 1:
        raise CodecError("stream count does not match the tile layout")
    if int(byte_bounds[-1]) > len(data) or np.any(np.diff(byte_bounds) < 0):
        raise CodecError("stream byte bounds out of range")
    sym = np.zeros(scale.shape, dtype=np.uint8)
    err = np.zeros(len(s_tile), dtype=np.int64)
    _decode_plane(
        data,
        byte_bounds,
        s_tile,
        s_y,
        boxes,
        BAND,
        scale,
        cross,
        lut,
        MAG,
        ACT_BUCKET,
        tables.slot2sym.reshape(-1),
        tables._fc,
        sym,
        err,
    )
    bad = np.flatnonzero(err)
    if bad.size:
        raise CodecError(f"residual stream {int(bad[0])}: corrupt (code {int(err[bad[0]])})")
    return sym
