# numba baseline (benchmarks only): codec/pixelmodel.py at 29b2273. See __init__.py.
"""Per-pixel model of one tile plane: blended prediction and adaptive table choice, fused with rANS.

Why per pixel: a residual's best predictor and its spread change from pixel to pixel; a fixed
predictor per tile and a context from residuals alone left ~10% on the table (docs/experiments.md,
entries 5-6). Every sample of a tile plane is modelled in raster order from its already coded
neighbours, so the decoder runs the same recurrence fused with the rANS decode of the plane's one
stream; tiles stay independent (one GPU thread, or one CPU task, per tile), planes of a tile run
in order (later planes see earlier ones).

Prediction (all integers, 1/8 pixel units):
  * 3 spatial predictors from JPEG-XL's weighted-predictor family: W+NE-N, N corrected by the
    signed true errors of NW, N, NE, and W corrected by those of W, N, NW (true error =
    value - prediction, so a correction adds it; format version 2 subtracted it, which is why
    these measured worse than nothing there, docs/experiments.md entries 7 and 9),
  * per earlier plane r, 3 cross-plane predictors (W, N and gradient predictors of this plane
    plus the gradient of plane r towards the current position),
  * one least-squares linear predictor over N, W, NW, NE, NN, WW (+ 5 taps of each earlier
    plane), fitted by the encoder per tile plane and sent as coefficients in 1/256 (|a| <= 2047),
  blended with weights ~ 1 / (recent |error| of each predictor + 12)^2 around the pixel; on planes
  > 0 the LS predictor's weight is doubled (-0.2% bytes on RGB, docs/experiments.md entry 9).

Table choice: a local error energy E (|true error| of N, W, NW, NE, NN, WW and, for planes > 0,
of the co-located earlier planes), split 4 ways by a sub-bucket, picks one of N_BUCKETS
buckets; each bucket keeps a running mean of the |error| it saw in this tile plane (started
from a trained prior), and that mean's log picks one of N_LEVELS levels of the plane's kind; the
prediction's rounding offset picks one of the level's two tables and the residual's sign
(_coding_frame).
The sub-bucket is the decoder network's scale class where the group carries the VQ stage, else
a class of the local pixel gradient |N-NW| + |W-NW| + |NE-N| (edges vs noise at equal error
energy: -0.3% bytes on photos, -2% on screenshots, docs/experiments.md entry 9). The adaptation
makes the tables fit images unlike the training set (docs/experiments.md, entry 6).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from benchmarks.numba_baseline import rans
from codec.errors import CodecError

N_SPATIAL = 3
N_CROSS_PRED = 3
N_PRED_MAX = N_SPATIAL + 2 * N_CROSS_PRED + 1
N_TAPS_MAX = 16  # LS taps of plane 2: 6 own + 5 of each earlier plane
COEF_ONE = 256  # LS coefficients are in 1/256
COEF_MAX = 2047
N_E_BUCKETS = 24
N_SUB_BUCKETS = 4  # with the VQ stage: VQ scale index >> VQ_SHIFT; without: gradient class
VQ_SHIFT = 4
N_BUCKETS = N_E_BUCKETS * N_SUB_BUCKETS
N_LEVELS = 40
N_KINDS = 3  # table families: plane 0 (and gray / alpha), plane 1, plane 2
N_OFFSET_CLASSES = 2  # |P - 8 * round(P / 8)| < 2 or >= 2 (in 1/8): see _coding_frame
N_PIXEL_TABLES = N_KINDS * N_LEVELS * N_OFFSET_CLASSES
FAR_OFFSETS = 0b11000111  # bit d + 4 set where the rounding offset d (-4..3) has |d| >= 2
PRIOR_COUNT = 4
HALVE_AT = 256
GRAD_EDGES = (1, 4, 12)  # |N-NW| + |W-NW| + |NE-N| -> gradient class 0..3
GRAD_CLASS = np.searchsorted(GRAD_EDGES, np.arange(GRAD_EDGES[-1] + 1), side="right").astype(
    np.uint8
)
PAD = 2  # zero border of the per-tile error buffers

# np.unique leaves 21 energy edges, so E_BUCKET never gives 22-23: those two serve the samples of
# a tile's first row and first column (-0.3% bytes on gray, -0.07% RGB, docs/experiments.md
# entry 9). Format quirk: the level edges start 2, 2, so level 1 never occurs.
EDGE_ROW_BUCKET = 22
EDGE_COL_BUCKET = 23
_E_EDGES = np.unique(np.round(np.geomspace(1, 600, N_E_BUCKETS - 1)).astype(np.int64))
E_BUCKET = np.searchsorted(_E_EDGES, np.arange(4096), side="right").astype(np.uint8)
_LEVEL_EDGES = np.round(np.geomspace(2, 16 * 8 * 60, N_LEVELS - 1)).astype(np.int64)
MEAN_MAX = 1 << 15
LEVEL_OF_MEAN = np.searchsorted(_LEVEL_EDGES, np.arange(MEAN_MAX), side="right").astype(np.uint8)
CNT_RECIP = np.concatenate([[0], -(-(1 << 33) // np.arange(1, HALVE_AT + 1))]).astype(np.int64)
# Blend weight of a predictor whose 6-neighbour |error| sum (1/8 units) is 2s: ~ 1 / (s + 12)^2,
# at most 65536 (so a blend's weight total stays < 2^21, as _floor_div needs). The softening
# constant replaced format v2's 1 / (s/2 + 1)^2 (-0.1..-0.6% bytes, docs/experiments.md entry 9).
WEIGHT_SOFT = 12
WEIGHT_OF_ERR = (
    65535 * WEIGHT_SOFT**2 // (np.arange(4096, dtype=np.int64) + WEIGHT_SOFT) ** 2 + 1
).astype(np.int32)


def n_taps(plane: int) -> int:
    """LS taps of a plane: 6 own neighbours + 5 per earlier plane (at most 2)."""
    return 6 + 5 * min(plane, 2)


@njit(cache=True, inline="always")
def _neighbours(p, c, y, x, i, j, w):
    """N, W, NW, NE, NN, WW of plane c at (y, x), tile coordinates (i, j); tile edges
    replicate inward (the first sample sees 128)."""
    if i >= 2 and j >= 2 and j + 1 < w:
        return (
            np.int64(p[c, y - 1, x]),
            np.int64(p[c, y, x - 1]),
            np.int64(p[c, y - 1, x - 1]),
            np.int64(p[c, y - 1, x + 1]),
            np.int64(p[c, y - 2, x]),
            np.int64(p[c, y, x - 2]),
        )
    if i == 0 and j == 0:
        return 128, 128, 128, 128, 128, 128
    if i == 0:
        wv = np.int64(p[c, y, x - 1])
        ww = np.int64(p[c, y, x - 2]) if j > 1 else wv
        return wv, wv, wv, wv, wv, ww
    n = np.int64(p[c, y - 1, x])
    ne = np.int64(p[c, y - 1, x + 1]) if j + 1 < w else n
    nn = np.int64(p[c, y - 2, x]) if i > 1 else n
    if j == 0:
        return n, n, n, ne, nn, n
    wv = np.int64(p[c, y, x - 1])
    ww = np.int64(p[c, y, x - 2]) if j > 1 else wv
    return n, wv, np.int64(p[c, y - 1, x - 1]), ne, nn, ww


@njit(cache=True, inline="always")
def _taps(planes, c, y, x, i, j, w, f):
    """LS features of (c, y, x) into f; returns how many."""
    n, wv, nw, ne, nn, ww = _neighbours(planes, c, y, x, i, j, w)
    f[0] = n
    f[1] = wv
    f[2] = nw
    f[3] = ne
    f[4] = nn
    f[5] = ww
    k = 6
    for r in range(min(c, 2)):
        gn, gw, gnw, gne, _, _ = _neighbours(planes, r, y, x, i, j, w)
        f[k] = np.int64(planes[r, y, x])
        f[k + 1] = gn
        f[k + 2] = gw
        f[k + 3] = gnw
        f[k + 4] = gne
        k += 5
    return k


@njit(cache=True)
def _solve(a, b, n):
    """Solve the leading n x n system (Gaussian elimination, partial pivoting); encoder only."""
    m = a[:n, :n].copy()
    v = b[:n].copy()
    for k in range(n):
        piv = k
        for r in range(k + 1, n):
            if abs(m[r, k]) > abs(m[piv, k]):
                piv = r
        if piv != k:
            for cc in range(n):
                m[k, cc], m[piv, cc] = m[piv, cc], m[k, cc]
            v[k], v[piv] = v[piv], v[k]
        if abs(m[k, k]) < 1e-9:
            continue
        for r in range(k + 1, n):
            fct = m[r, k] / m[k, k]
            for cc in range(k, n):
                m[r, cc] -= fct * m[k, cc]
            v[r] -= fct * v[k]
    sol = np.zeros(n)
    for k in range(n - 1, -1, -1):
        acc = v[k]
        for cc in range(k + 1, n):
            acc -= m[k, cc] * sol[cc]
        sol[k] = acc / m[k, k] if abs(m[k, k]) >= 1e-9 else 0.0
    return sol


@njit(cache=True)
def fit_coefs(planes, c, y0, x0, h, w, coef):
    """Least-squares LS-predictor coefficients of tile plane c, fitted on every 3rd row and
    column, every 5th in tiles of >= 2^15 samples (an encoder choice, not part of the format:
    every 2nd made encode ~12% slower for 0.00-0.07% fewer bytes, docs/experiments.md entry 9;
    every 5th in 256-pixel tiles still sees more samples than every 3rd in 128-pixel ones, and
    saves ~5% of encode time for +0.05% bytes, entry 12)."""
    f = np.zeros(N_TAPS_MAX, dtype=np.int64)
    a = np.zeros((N_TAPS_MAX, N_TAPS_MAX))
    b = np.zeros(N_TAPS_MAX)
    n = 6 + 5 * min(c, 2)
    step = 5 if h * w >= 1 << 15 else (3 if h * w >= 1024 else 1)
    for i in range(0, h, step):
        for j in range(0, w, step):
            _taps(planes, c, y0 + i, x0 + j, i, j, w, f)
            xv = np.float64(planes[c, y0 + i, x0 + j])
            for u in range(n):
                fu = np.float64(f[u])
                b[u] += fu * xv
                for v in range(u + 1):
                    a[u, v] += fu * np.float64(f[v])
    for u in range(n):
        for v in range(u):
            a[v, u] = a[u, v]
        a[u, u] += 1e-3 * (a[u, u] + 1.0)
    sol = _solve(a, b, n)
    coef[:] = 0
    for u in range(n):
        coef[u] = max(-COEF_MAX, min(COEF_MAX, np.int64(np.round(sol[u] * COEF_ONE))))


@njit(cache=True, inline="always")
def _floor_div(a, b):
    """floor(a / b) for 0 < b < 2^21 and |a / b| < 2^20, via float64: exact, as a / b is either
    an integer or at least 1/b > 2^-21 away from one, while the rounding error is below 2^-33;
    IEEE division is correctly rounded on every CPU and GPU, and faster than int64 division."""
    return np.int64(np.floor(np.float64(a) / np.float64(b)))


@njit(cache=True, inline="always")
def _predict(planes, c, y, x, i, j, w, te, ek, q, coef, recip):
    """Blended prediction P (1/8 units, clamped) of (c, y, x), the local error energy E, the
    number of predictors and the gradient class. ek holds the last 3 rows of per-predictor
    |errors| (row i % 3)."""
    pi = i + PAD
    pj = j + PAD
    n, wv, nw, ne, nn, ww = _neighbours(planes, c, y, x, i, j, w)
    # The LS dot product gathers the same taps, in the same order, as `_taps` (which fit_coefs
    # uses); it is written out here because going through `_taps` and a tap array made the fused
    # decode ~15% slower (93-96 vs 79-83 ns/sample, one thread, 1024x1024 RGB crop).
    acc = coef[0] * n + coef[1] * wv + coef[2] * nw + coef[3] * ne + coef[4] * nn + coef[5] * ww
    t_w = np.int64(te[c, pi, pj - 1])
    t_n = np.int64(te[c, pi - 1, pj])
    t_nw = np.int64(te[c, pi - 1, pj - 1])
    t_ne = np.int64(te[c, pi - 1, pj + 1])
    q[0] = (wv + ne - n) << 3
    q[1] = (n << 3) + (((t_nw + t_n + t_ne) * 7) >> 5)
    q[2] = (wv << 3) + (((t_w + t_n + t_nw) * 10) >> 5)
    k = N_SPATIAL
    nt = 6
    for r in range(min(c, 2)):
        gn, gw, gnw, gne, _, _ = _neighbours(planes, r, y, x, i, j, w)
        gx = np.int64(planes[r, y, x])
        acc += (
            coef[nt] * gx
            + coef[nt + 1] * gn
            + coef[nt + 2] * gw
            + coef[nt + 3] * gnw
            + coef[nt + 4] * gne
        )
        nt += 5
        q[k] = (wv + gx - gw) << 3
        q[k + 1] = (n + gx - gn) << 3
        q[k + 2] = (n + wv - nw + gx - (gn + gw - gnw)) << 3
        k += N_CROSS_PRED
    q[k] = (acc + 16) >> 5
    k += 1
    r0 = i % 3
    r1 = (i + 2) % 3
    r2 = (i + 1) % 3
    tot = 0
    acc = 0
    for m in range(k):
        s = (
            np.int64(ek[r1, pj, m])
            + ek[r0, pj - 1, m]
            + ek[r1, pj - 1, m]
            + ek[r1, pj + 1, m]
            + ek[r2, pj, m]
            + ek[r0, pj - 2, m]
        ) >> 1
        if s > 4095:
            s = 4095
        wt = np.int64(recip[s])
        tot += wt
        acc += wt * q[m]
    if c > 0:  # the LS predictor (last) counts twice where it has cross-plane taps
        tot += wt
        acc += wt * q[k - 1]
    pr = _floor_div(acc + (tot >> 1), tot)
    if pr < 0:
        pr = 0
    elif pr > 255 * 8:
        pr = 255 * 8
    e = 2 * abs(t_n) + 2 * abs(t_w) + abs(t_nw) + abs(t_ne)
    e += abs(np.int64(te[c, pi - 2, pj])) + abs(np.int64(te[c, pi, pj - 2]))
    if c == 1:
        e += 2 * abs(np.int64(te[0, pi, pj]))
    elif c == 2:
        e += abs(np.int64(te[0, pi, pj])) + abs(np.int64(te[1, pi, pj]))
    e >>= 3
    if e > 4095:
        e = 4095
    gs = abs(n - nw) + abs(wv - nw) + abs(ne - n)
    return pr, e, k, np.int64(GRAD_CLASS[min(gs, GRAD_EDGES[-1])])


@njit(cache=True, inline="always")
def _bucket(e, sub, e_bucket):
    return np.int64(e_bucket[e]) * N_SUB_BUCKETS + sub


@njit(cache=True, inline="always")
def _level(asum, acnt, b, level_of_mean, cnt_recip):
    """Table level of bucket b: log-bucketed mean |error|. floor(a / n) is computed as
    a * ceil(2^33 / n) >> 33, exact for a < 2^24 and n <= 512 (asum < 2^19 by the prior bound
    and HALVE_AT), and a multiply instead of a division on the decoder's critical path."""
    mean = ((asum[b] << 4) * cnt_recip[acnt[b]]) >> 33
    if mean >= MEAN_MAX:
        mean = MEAN_MAX - 1
    return np.int64(level_of_mean[mean])


@njit(cache=True, inline="always")
def _coding_frame(pr, kind, lv):
    """Where a sample's residual is coded from: base = P rounded to a whole value, whether the
    residual's sign is flipped (neg = -1, else 0: r -> (r ^ neg) - neg, branch-free as the
    flips are a coin toss), and the rANS table. P's rounding offset d = P - 8 * base (-4..3,
    in 1/8) says which side of base the value more likely lies: the residual is flipped where
    d < 0, so every table sees it leaning the same way, and |d| >= 2 (P near a half) picks the
    table of the level's second offset class (-0.3% bytes on photos, -1.5% gray, -1.1%
    screenshots, docs/experiments.md entry 10)."""
    base = (pr + 4) >> 3
    d = pr - (base << 3)
    far = (FAR_OFFSETS >> (d + 4)) & 1
    return base, d >> 63, ((kind * N_LEVELS + lv) << 1) + far


@njit(cache=True, inline="always")
def _model_step(planes, c, y, x, i, j, w, te, ek, q, coef, vq, use_vq, asum, acnt, tabs):
    """Everything encoder and decoder compute before a sample is coded: prediction, bucket,
    table level and predictor count. The bucket's sub-index is the VQ scale class where the
    group carries the VQ stage, else the local gradient class. tabs = (E_BUCKET,
    LEVEL_OF_MEAN, CNT_RECIP, WEIGHT_OF_ERR)."""
    e_bucket, lom, crc, recip = tabs
    pr, e, k, g = _predict(planes, c, y, x, i, j, w, te, ek, q, coef, recip)
    sub = (np.int64(vq[c, y, x]) >> VQ_SHIFT) if use_vq else g
    b = _bucket(e, sub, e_bucket)
    # Overwriting b (rather than branching before the E_BUCKET load inside _bucket) measured
    # ~10% faster in benchmarks/kernel_timing.py: the load stays off the branch.
    if i == 0:  # tile edges predict worse than their error energy says: own buckets
        b = EDGE_ROW_BUCKET * N_SUB_BUCKETS + sub
    elif j == 0:
        b = EDGE_COL_BUCKET * N_SUB_BUCKETS + sub
    return pr, b, _level(asum, acnt, b, lom, crc), k


@njit(cache=True, inline="always")
def _update(planes, c, i, j, xv, pr, b, k, te, ek, q, asum, acnt):
    """After coding xv: store true and per-predictor errors, adapt the bucket's mean |error|."""
    pi = i + PAD
    pj = j + PAD
    t = (xv << 3) - pr
    te[c, pi, pj] = t
    r0 = i % 3
    for m in range(k):
        ek[r0, pj, m] = abs((xv << 3) - q[m])
    asum[b] += abs(t)
    acnt[b] += 1
    if acnt[b] >= HALVE_AT:
        asum[b] = (asum[b] + 1) >> 1
        acnt[b] >>= 1


@njit(cache=True, inline="always")
def _reset(asum, acnt, prior, kind, ek):
    ek[:] = 0
    for u in range(N_BUCKETS):
        acnt[u] = PRIOR_COUNT
        asum[u] = (prior[kind, u] * PRIOR_COUNT) >> 4


@njit(cache=True, inline="always")
def _tile_state(n_ch, h, w):
    """Per-tile model state: true errors of every plane (padded), the 3-row ring of
    per-predictor |errors|, predictions, and the bucket sums and counts."""
    te = np.zeros((n_ch, h + PAD, w + 2 * PAD), dtype=np.int32)
    ek = np.zeros((3, w + 2 * PAD, N_PRED_MAX), dtype=np.int32)
    q = np.zeros(N_PRED_MAX, dtype=np.int64)
    asum = np.zeros(N_BUCKETS, dtype=np.int64)
    acnt = np.zeros(N_BUCKETS, dtype=np.int64)
    return te, ek, q, asum, acnt


@njit(cache=True, inline="always")
def _encode_plane(planes, c, box, st, coef, vq, use_vq, prior, tabs, pos, out):
    """Forward pass over tile plane c: symbol, table id and bucket of every sample into
    out = (sym_out, tid_out, b_out) from pos on. Called with c a literal (see _encode_kernel)."""
    y0, x0, h, w = box
    te, ek, q, asum, acnt = st
    sym_out, tid_out, b_out = out
    kind = min(c, N_KINDS - 1)
    _reset(asum, acnt, prior, kind, ek)
    for i in range(h):
        y = y0 + i
        for j in range(w):
            x = x0 + j
            pr, b, lv, k = _model_step(
                planes, c, y, x, i, j, w, te, ek, q, coef, vq, use_vq, asum, acnt, tabs
            )
            xv = np.int64(planes[c, y, x])
            base, neg, tid = _coding_frame(pr, kind, lv)
            sym_out[pos] = (((xv - base) ^ neg) - neg) & 0xFF
            tid_out[pos] = tid
            b_out[pos] = b
            pos += 1
            _update(planes, c, i, j, xv, pr, b, k, te, ek, q, asum, acnt)


@njit(cache=True, inline="always")
def _decode_plane(planes, c, box, st, coef, vq, use_vq, prior, tabs, stream):
    """Fused model + rANS decode of tile plane c from stream = (state, read position, end, bk,
    fc, data); returns the final state and read position. Called with c a literal (see
    _decode_kernel)."""
    y0, x0, h, w = box
    te, ek, q, asum, acnt = st
    xs, rp, rend, bk, fc, data = stream
    kind = min(c, N_KINDS - 1)
    _reset(asum, acnt, prior, kind, ek)
    for i in range(h):
        y = y0 + i
        for j in range(w):
            x = x0 + j
            pr, b, lv, k = _model_step(
                planes, c, y, x, i, j, w, te, ek, q, coef, vq, use_vq, asum, acnt, tabs
            )
            base, neg, tid = _coding_frame(pr, kind, lv)
            sv, xs, rp = rans._dec_sym(xs, rp, rend, tid, bk, fc, data)
            xv = (base + ((np.int64(sv) ^ neg) - neg)) & 0xFF
            planes[c, y, x] = xv
            _update(planes, c, i, j, xv, pr, b, k, te, ek, q, asum, acnt)
    return xs, rp


# Both kernels call the plane loop once per plane index with c a literal: numba inlines each
# copy, so a plane's predictor count and its cross-plane branches are compile-time constants
# (encode 6-11%, fused decode 4-12% faster; compiling both kernels takes ~175 s instead of ~51,
# once per environment as numba caches them; docs/experiments.md entry 10). Groups have 1 to 3
# planes.


@njit(cache=True, parallel=True)
def _encode_kernel(
    planes,
    boxes,
    vq,
    use_vq,
    coefs,
    prior,
    starts,
    sym_out,
    tid_out,
    b_out,
    e_bucket,
    lom,
    crc,
    recip,
):
    """Forward pass: fit LS coefs, then symbol and table id of every sample, in stream order."""
    n_ch = planes.shape[0]
    tabs = (e_bucket, lom, crc, recip)
    out = (sym_out, tid_out, b_out)
    for t in prange(boxes.shape[0]):
        box = (boxes[t, 0], boxes[t, 1], boxes[t, 2], boxes[t, 3])
        st = _tile_state(n_ch, box[2], box[3])
        for c in range(n_ch):
            coef = coefs[t, c]
            fit_coefs(planes, c, box[0], box[1], box[2], box[3], coef)
            pos = starts[t * n_ch + c]
            if c == 0:
                _encode_plane(planes, 0, box, st, coef, vq, use_vq, prior, tabs, pos, out)
            elif c == 1:
                _encode_plane(planes, 1, box, st, coef, vq, use_vq, prior, tabs, pos, out)
            else:
                _encode_plane(planes, 2, box, st, coef, vq, use_vq, prior, tabs, pos, out)


@njit(cache=True, parallel=True)
def _decode_kernel(
    data, bb, boxes, vq, use_vq, coefs, prior, planes, err, bk, fc, e_bucket, lom, crc, recip
):
    """Fused decode: per tile, per plane, model the next sample, rANS-decode it, reconstruct."""
    n_ch = planes.shape[0]
    tabs = (e_bucket, lom, crc, recip)
    for t in prange(boxes.shape[0]):
        box = (boxes[t, 0], boxes[t, 1], boxes[t, 2], boxes[t, 3])
        st = _tile_state(n_ch, box[2], box[3])
        for c in range(n_ch):
            s = t * n_ch + c
            rp = bb[s]
            rend = bb[s + 1]
            if rend - rp < 4:
                err[s] = 5
                continue
            x0_state = rans._get_state(data, rp)
            if x0_state < rans.RANS_L:
                err[s] = 4
                continue
            coef = coefs[t, c]
            stream = (x0_state, rp + 4, rend, bk, fc, data)
            if c == 0:
                xs, rp = _decode_plane(planes, 0, box, st, coef, vq, use_vq, prior, tabs, stream)
            elif c == 1:
                xs, rp = _decode_plane(planes, 1, box, st, coef, vq, use_vq, prior, tabs, stream)
            else:
                xs, rp = _decode_plane(planes, 2, box, st, coef, vq, use_vq, prior, tabs, stream)
            err[s] = rans._status(x0_state, xs, rp, rend)


def stream_starts(boxes: np.ndarray, n_ch: int) -> np.ndarray:
    """Symbol bounds of the streams of a group: one per (tile, plane), tile-major."""
    sizes = np.repeat(boxes[:, 2] * boxes[:, 3], n_ch)
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


@dataclass
class PlaneCode:
    """Encoder output of one plane group, in stream order (tile-major, then plane)."""

    symbols: np.ndarray  # uint8 residual symbols
    table_ids: np.ndarray  # uint8 rANS table of each symbol
    buckets: np.ndarray  # uint8 context bucket of each symbol (table fitting only)
    bounds: np.ndarray  # int64 stream bounds
    coefs: np.ndarray  # (n_tiles, C, N_TAPS_MAX) int64 LS coefficients


_NO_VQ = np.zeros((1, 1, 1), dtype=np.uint8)


def _check_planes(n_ch: int) -> None:
    if not 1 <= n_ch <= 3:  # the kernels specialise plane indices 0, 1 and 2
        raise CodecError(f"a plane group has 1 to 3 planes, not {n_ch}")


def encode_planes(
    planes: np.ndarray, boxes: np.ndarray, vq: np.ndarray | None, prior: np.ndarray
) -> PlaneCode:
    """(C,H,W) uint8 planes -> everything the coder and the payload need. vq: the (C,H,W) VQ
    scale map where the group carries the VQ stage, else None."""
    planes = np.ascontiguousarray(planes, dtype=np.uint8)
    n_ch = planes.shape[0]
    _check_planes(n_ch)
    starts = stream_starts(boxes, n_ch)
    sym = np.empty(int(starts[-1]), dtype=np.uint8)
    tid = np.empty(int(starts[-1]), dtype=np.uint8)
    buckets = np.empty(int(starts[-1]), dtype=np.uint8)
    coefs = np.zeros((len(boxes), n_ch, N_TAPS_MAX), dtype=np.int64)
    # Inputs the kernels only read go in read-only (rans._ro): numba compiles once per
    # writability, and each compile of these kernels takes over a minute.
    _encode_kernel(
        rans._ro(planes),
        rans._ro(boxes),
        rans._ro(_NO_VQ if vq is None else np.ascontiguousarray(vq)),
        vq is not None,
        coefs,
        rans._ro(prior),
        starts,
        sym,
        tid,
        buckets,
        E_BUCKET,
        LEVEL_OF_MEAN,
        CNT_RECIP,
        WEIGHT_OF_ERR,
    )
    return PlaneCode(sym, tid, buckets, starts, coefs)


def decode_planes(
    data: np.ndarray,
    byte_bounds: np.ndarray,
    shape: tuple[int, int, int],
    boxes: np.ndarray,
    vq: np.ndarray | None,
    coefs: np.ndarray,
    prior: np.ndarray,
    tables: rans.RansTables,
    first_stream: int = 0,
) -> np.ndarray:
    """Inverse of encode_planes + rANS: the (C,H,W) uint8 planes. first_stream numbers the
    streams in errors (where these boxes are a band of a larger group)."""
    n_ch = shape[0]
    _check_planes(n_ch)
    n_streams = len(boxes) * n_ch
    if len(byte_bounds) != n_streams + 1:
        raise CodecError("stream count does not match the tile layout")
    if int(byte_bounds[-1]) > len(data) or np.any(np.diff(byte_bounds) < 0):
        raise CodecError("stream byte bounds out of range")
    if tables.n_tables < N_PIXEL_TABLES:
        raise CodecError("model has too few coding tables for the pixel model")
    planes = np.zeros(shape, dtype=np.uint8)
    err = np.zeros(n_streams, dtype=np.int64)
    _decode_kernel(
        rans._ro(data),
        byte_bounds.astype(np.int64),
        rans._ro(boxes),
        rans._ro(_NO_VQ if vq is None else np.ascontiguousarray(vq)),
        vq is not None,
        rans._ro(coefs),
        rans._ro(prior),
        planes,
        err,
        tables._bk,
        tables._fc,
        E_BUCKET,
        LEVEL_OF_MEAN,
        CNT_RECIP,
        WEIGHT_OF_ERR,
    )
    bad = np.flatnonzero(err)
    if bad.size:
        s = int(bad[0])
        raise CodecError(f"residual stream {first_stream + s}: corrupt (code {int(err[s])})")
    return planes
