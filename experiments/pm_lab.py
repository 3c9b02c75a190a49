"""Lab for the per-pixel model (docs/experiments.md entries 6-8).

Cross-entropy on eval images of context tables fitted on training images, for variants of the
predictor blend and the context; much faster to iterate on than the codec. Usage:
    [LAB_N_ACT=24 LAB_N_LEV=40] python experiments/pm_lab.py rgb|sg|gray \
        use_bias,power,use_ls,adaptive,prior_n,halve,cross,drop_mask,err4,spread,
        drop_mask_plane2,alt_predictor2
e.g. `python experiments/pm_lab.py rgb 0,2,1,1,4,256,0,6,0,0,0,0` is what codec v2 ships;
alt_predictor2 = 1 puts MED in slot 2 (drop_mask 2 then keeps it: the entry-8 gray runs).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit, prange
from PIL import Image

from codec.pixelmodel import _solve  # the codec's own LS solver

TILE = 128
K_SP = 4  # spatial sub-predictors
K_X = 3  # cross sub-predictors per plane > 0
N_ACT = int(os.environ.get("LAB_N_ACT", 24))
N_CROSS = 6
N_LEV = int(os.environ.get("LAB_N_LEV", 40))


@njit(cache=True, inline="always")
def _nb(p, y, x, i, j, w):
    """N, W, NW, NE, NN, WW of (y, x) at tile coords (i, j), tile width w."""
    if i == 0 and j == 0:
        return 128, 128, 128, 128, 128, 128
    if i == 0:
        W = np.int64(p[y, x - 1])
        WW = np.int64(p[y, x - 2]) if j > 1 else W
        return W, W, W, W, W, WW
    N = np.int64(p[y - 1, x])
    NE = np.int64(p[y - 1, x + 1]) if j + 1 < w else N
    NN = np.int64(p[y - 2, x]) if i > 1 else N
    if j == 0:
        return N, N, N, NE, NN, N
    W = np.int64(p[y, x - 1])
    NW = np.int64(p[y - 1, x - 1])
    WW = np.int64(p[y, x - 2]) if j > 1 else W
    return N, W, NW, NE, NN, WW


@njit(cache=True, inline="always")
def _at(a, i, j, h, w):
    if i < 0 or j < 0 or j >= w:
        return 0
    return a[i, j]


@njit(cache=True)
def _feats(planes, c, y, x, i, j, w, f):
    p = planes[c]
    N, W, NW, NE, NN, WW = _nb(p, y, x, i, j, w)
    f[0] = N
    f[1] = W
    f[2] = NW
    f[3] = NE
    f[4] = NN
    f[5] = WW
    n = 6
    for r in range(min(c, 2)):
        g = planes[r]
        gN, gW, gNW, gNE, gNN, gWW = _nb(g, y, x, i, j, w)
        f[n] = g[y, x]
        f[n + 1] = gN
        f[n + 2] = gW
        f[n + 3] = gNW
        f[n + 4] = gNE
        n += 5
    return n


@njit(cache=True)
def _fit_ls(planes, c, y0, x0, h, w, coef):
    f = np.zeros(16, dtype=np.float64)
    A = np.zeros((16, 16))
    b = np.zeros(16)
    n = 6
    for i in range(h):
        for j in range(w):
            n = _feats(planes, c, y0 + i, x0 + j, i, j, w, f)
            xv = np.float64(planes[c, y0 + i, x0 + j])
            for u in range(n):
                b[u] += f[u] * xv
                for v in range(n):
                    A[u, v] += f[u] * f[v]
    for u in range(n):
        A[u, u] += 1e-3 * (A[u, u] + 1.0)
    sol = _solve(A, b, n)
    coef[:] = 0
    for u in range(n):
        v = np.round(sol[u] * 256.0)
        coef[u] = max(-2047, min(2047, v))


@njit(cache=True)
def _tile(planes, y0, x0, h, w, sym, act, crs, recip, act_edges, params, prior, lev_edges):
    C = planes.shape[0]
    K = K_SP + K_X * 2 + 1
    coef = np.zeros(16, dtype=np.int64)
    fv = np.zeros(16, dtype=np.int64)
    errk = np.zeros((K, h, w), dtype=np.int64)
    te = np.zeros((C, h, w), dtype=np.int64)
    q = np.zeros(K, dtype=np.int64)
    asum = np.zeros(N_ACT, dtype=np.int64)
    acnt = np.zeros(N_ACT, dtype=np.int64)
    wgt = np.zeros(K, dtype=np.int64)
    # bias correction state: per context sum/count
    nb_ctx = 64 * 16
    bsum = np.zeros(nb_ctx, dtype=np.int64)
    bcnt = np.zeros(nb_ctx, dtype=np.int64)
    use_bias = params[0]
    power = params[1]
    for c in range(C):
        p = planes[c]
        bsum[:] = 0
        bcnt[:] = 0
        for u in range(N_ACT):
            acnt[u] = params[4]
            asum[u] = (prior[min(c, 2), u] * params[4]) >> 4
        nk = K_SP if c == 0 else K_SP + K_X * (1 if c == 1 else 2)
        use_ls = params[2]
        if use_ls:
            _fit_ls(planes, c, y0, x0, h, w, coef)
            nk += 1
        for i in range(h):
            y = y0 + i
            for j in range(w):
                x = x0 + j
                N, W, NW, NE, NN, WW = _nb(p, y, x, i, j, w)
                teW = _at(te[c], i, j - 1, h, w)
                teN = _at(te[c], i - 1, j, h, w)
                teNW = _at(te[c], i - 1, j - 1, h, w)
                teNE = _at(te[c], i - 1, j + 1, h, w)
                q[0] = (W + NE - N) << 3
                q[1] = (N << 3) - (((teW + teN + teNE) * 16) >> 5)
                if params[11] == 1:
                    hi = max(N, W)
                    lo = min(N, W)
                    q[2] = (lo if NW >= hi else (hi if NW <= lo else N + W - NW)) << 3
                elif params[11] == 2:
                    q[2] = (N + W - NW) << 3
                elif params[11] == 3:
                    q[2] = ((N + W) << 2) + ((NE - NW) << 1)
                else:
                    q[2] = (W << 3) - (((teW + teN + teNW) * 10) >> 5)
                q[3] = (N << 3) - (((teNW + teN + teNE) * 7) >> 5)
                k = K_SP
                for r in range(min(c, 2)):
                    g = planes[r]
                    gN, gW, gNW, gNE, gNN, gWW = _nb(g, y, x, i, j, w)
                    gX = np.int64(g[y, x])
                    q[k] = (W + gX - gW) << 3
                    q[k + 1] = (N + gX - gN) << 3
                    q[k + 2] = (N + W - NW + gX - (gN + gW - gNW)) << 3
                    k += K_X
                if use_ls:
                    nf = _feats(planes, c, y, x, i, j, w, fv)
                    accl = 0
                    for u in range(nf):
                        accl += coef[u] * fv[u]
                    q[nk - 1] = (accl + 16) >> 5
                    if use_ls == 2:
                        for m in range(nk - 1):
                            q[m] = q[nk - 1]
                tot = 0
                acc = 0
                best = 1 << 60
                for m in range(nk):
                    if (params[7] >> m) & 1:
                        continue
                    if c == 2 and (params[10] >> m) & 1:
                        continue
                    s = (
                        _at(errk[m], i - 1, j, h, w)
                        + _at(errk[m], i, j - 1, h, w)
                        + _at(errk[m], i - 1, j - 1, h, w)
                        + _at(errk[m], i - 1, j + 1, h, w)
                    )
                    if params[8] == 0:
                        s += _at(errk[m], i, j - 2, h, w) + _at(errk[m], i - 2, j, h, w)
                    if s < best:
                        best = s
                    s = s >> 2
                    if s > 4095:
                        s = 4095
                    wv = recip[s]
                    if power == 2:
                        wv = (wv * wv) >> 16
                    wv += 1
                    wgt[m] = wv
                    tot += wv
                    acc += wv * q[m]
                P = (acc + (tot >> 1)) // tot
                # context: local error energy E -> bucket -> adaptive mean |e| -> level
                E = 2 * abs(teN) + 2 * abs(teW) + abs(teNW) + abs(teNE)
                if c == 1:
                    E += 2 * abs(te[0, i, j])
                elif c == 2:
                    E += abs(te[0, i, j]) + abs(te[1, i, j])
                if params[9]:
                    qmin = 1 << 40
                    qmax = -(1 << 40)
                    for m in range(nk):
                        if (params[7] >> m) & 1:
                            continue
                        qmin = min(qmin, q[m])
                        qmax = max(qmax, q[m])
                    E += ((qmax - qmin) * params[9]) >> 2
                E = E >> 3
                if E > 4095:
                    E = 4095
                ab = 0
                while ab < N_ACT - 1 and E >= act_edges[ab]:
                    ab += 1
                if params[3]:
                    mean = (asum[ab] << 4) // acnt[ab]  # |te| x8, x16 fixed -> /8
                    lv = 0
                    while lv < N_LEV - 1 and mean >= lev_edges[lv]:
                        lv += 1
                else:
                    lv = ab
                if use_bias:
                    pat = 0
                    if N * 8 > P:
                        pat |= 1
                    if W * 8 > P:
                        pat |= 2
                    if NW * 8 > P:
                        pat |= 4
                    if NE * 8 > P:
                        pat |= 8
                    bc = (min(ab, 63) << 4) | pat
                    if bcnt[bc] > 0:
                        P += bsum[bc] // bcnt[bc] if bsum[bc] >= 0 else -((-bsum[bc]) // bcnt[bc])
                if P < 0:
                    P = 0
                if P > 255 * 8:
                    P = 255 * 8
                pred = (P + 4) >> 3
                xv = np.int64(p[y, x])
                sym[c, y, x] = (xv - pred) & 255
                act[c, y, x] = lv
                t = (xv << 3) - P
                te[c, i, j] = t
                at = abs(t)
                asum[ab] += at
                acnt[ab] += 1
                if acnt[ab] >= params[5]:
                    asum[ab] = (asum[ab] + 1) >> 1
                    acnt[ab] = acnt[ab] >> 1
                act[c, y, x] = lv
                if use_bias:
                    bsum[bc] += t
                    bcnt[bc] += 1
                    if bcnt[bc] >= 128:
                        bsum[bc] = bsum[bc] // 2 if bsum[bc] >= 0 else -((-bsum[bc]) // 2)
                        bcnt[bc] = 64
                for m in range(nk):
                    errk[m, i, j] = abs((xv << 3) - q[m])
                if c == 0:
                    cv = 0
                elif c == 1:
                    cv = abs(te[0, i, j]) >> 3
                else:
                    cv = (abs(te[0, i, j]) + abs(te[1, i, j])) >> 4
                cb = 0
                while cb < N_CROSS - 1 and cv >= (1 << cb):
                    cb += 1
                crs[c, y, x] = cb if params[6] else 0


@njit(cache=True, parallel=True)
def group_pass(planes, boxes, recip, act_edges, params, prior, lev_edges):
    C, H, Wd = planes.shape
    sym = np.zeros((C, H, Wd), dtype=np.uint8)
    act = np.zeros((C, H, Wd), dtype=np.uint8)
    crs = np.zeros((C, H, Wd), dtype=np.uint8)
    for t in prange(boxes.shape[0]):
        _tile(
            planes,
            boxes[t, 0],
            boxes[t, 1],
            boxes[t, 2],
            boxes[t, 3],
            sym,
            act,
            crs,
            recip,
            act_edges,
            params,
            prior,
            lev_edges,
        )
    return sym, act, crs


def boxes_of(h, w):
    out = []
    for y in range(0, h, TILE):
        for x in range(0, w, TILE):
            out.append((y, x, min(TILE, h - y), min(TILE, w - x)))
    return np.array(out, dtype=np.int64)


RECIP = (65535 // (np.arange(4096) + 1)).astype(np.int64)
ACT_EDGES = np.unique(np.round(np.geomspace(1, 600, N_ACT - 1)).astype(np.int64))
ACT_EDGES = np.concatenate([ACT_EDGES, np.full(N_ACT - 1 - len(ACT_EDGES), 10**9)]).astype(np.int64)


LEV_EDGES = np.round(np.geomspace(2, 16 * 8 * 60, N_LEV - 1)).astype(np.int64)
PRIOR = np.zeros((3, N_ACT), dtype=np.int64)


def load(path, colour):
    im = Image.open(path)
    a = np.asarray(im.convert("RGB"))
    if colour == "gray":
        return np.ascontiguousarray(np.asarray(im.convert("L"))[None])
    if colour == "sg":
        r, g, b = (a[..., k].astype(np.int16) for k in range(3))
        return np.stack([g, (r - g + 128) & 255, (b - g + 128) & 255]).astype(np.uint8)
    return np.ascontiguousarray(np.stack([a[..., 1], a[..., 0], a[..., 2]]))


def stats(paths, colour, params, limit=1 << 19):
    """Joint counts [plane, act, cross, sym] over images."""
    cnt = np.zeros((3, N_LEV, N_CROSS, 256), dtype=np.float64)
    per_image = []
    for path in paths:
        pl = load(path, colour)
        sym, act, crs = group_pass(
            pl, boxes_of(*pl.shape[1:]), RECIP, ACT_EDGES, params, PRIOR, LEV_EDGES
        )
        c_img = np.zeros_like(cnt)
        idx = ((np.arange(pl.shape[0])[:, None, None] * N_LEV + act) * N_CROSS + crs) * 256 + sym
        c_img.ravel()[:] = np.bincount(idx.ravel(), minlength=cnt.size)
        n = pl.size
        wgt = min(1.0, limit / n)
        cnt += c_img * wgt
        per_image.append((path, c_img, n))
    return cnt, per_image


def prior_from(paths, colour, params):
    tot = np.zeros((3, N_ACT))
    n = np.zeros((3, N_ACT))
    for path in paths:
        pl = load(path, colour)
        sym, act, crs = group_pass(
            pl, boxes_of(*pl.shape[1:]), RECIP, ACT_EDGES, params, PRIOR, LEV_EDGES
        )
        mag = np.abs(sym.astype(np.int8).astype(np.int64)) * 8 + 2
        for c in range(pl.shape[0]):
            tot[c] += np.bincount(act[c].ravel(), weights=mag[c].ravel(), minlength=N_ACT)
            n[c] += np.bincount(act[c].ravel(), minlength=N_ACT)
    return np.round(16 * tot / np.maximum(n, 1)).astype(np.int64)


def bits(table_counts, c_img):
    p = table_counts + 0.02
    p = p / p.sum(-1, keepdims=True)
    return -(c_img * np.log2(p)).sum()


def main():
    colour = sys.argv[1] if len(sys.argv) > 1 else "sg"
    params = np.array(
        [int(a) for a in sys.argv[2].split(",")]
        if len(sys.argv) > 2
        else [0, 1, 0, 0, 4, 256, 0, 0, 0, 0, 0, 0],
        dtype=np.int64,
    )
    data = Path("../shared/data")
    train = (
        sorted((data / "wikipedia_photos").glob("*.png"))[:12]
        + sorted((data / "waterloo_bragzone").rglob("*.png"))[:10]
        + sorted((data / "urban100_subset").rglob("*.png"))[:6]
    )
    evals = {
        "mcmaster": sorted((data / "mcmaster18").glob("*.png"))[:6],
        "clic": sorted((data / "clic_2images").glob("*.png")),
        "in64": sorted((data / "imagenet_sample_downsampled/64x64").glob("*.png"))[:60],
    }
    t0 = time.time()
    if colour != "gray":
        train = [t for t in train if Image.open(t).mode == "RGB"]
    print(len(train), "train images")
    global PRIOR
    if params[3]:
        # prior: mean |te| (x8, x16 fp) per plane, bucket, measured with the plain bucket mapping
        p0 = params.copy()
        p0[3] = 0
        c0, _ = stats(train, colour, p0)
        PRIOR = prior_from(train, colour, p0)
    cnt, _ = stats(train, colour, params)
    print(f"train {time.time() - t0:.1f}s")
    for name, paths in evals.items():
        _, per = stats(paths, colour, params)
        tot_bits = sum(bits(cnt, c) for _, c, _ in per)
        tot_n = sum(n for _, _, n in per)
        self_bits = sum(bits(c, c) for _, c, _ in per)
        print(f"{name}: {tot_bits / tot_n:.3f} bpsp (self-fit {self_bits / tot_n:.3f})")


if __name__ == "__main__":
    main()
