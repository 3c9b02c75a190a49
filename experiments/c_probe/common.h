// Shared by the decode-kernel probes: constants, tables, neighbour fetch, rANS symbol decode
// and stream status, each as codec/pixelmodel.py and codec/rans.py define them.
#pragma once
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "pm_decode.h"

#define PAD 2
#ifndef NPM
#define NPM 10  // per-predictor |error| slots per position (16 for the AVX2 lanes)
#endif
#define NB 96
#define NSUB 4
#define NLEV 40
#define RANS_L (1 << 16)
#define FAR_OFFSETS 199
#define HALVE_AT 256
#define PRIOR_COUNT 4
#define EDGE_ROW_BUCKET 22
#define EDGE_COL_BUCKET 23
#define MEAN_MAX (1 << 15)
#define AI static inline __attribute__((always_inline))

typedef struct {
    const uint8_t *e_bucket, *lom, *grad_class;
    const int64_t *crc;
    const int32_t *recip;
    const uint8_t *bk;
    const uint32_t *fc;
} Tabs;

AI int64_t i64abs(int64_t v) { return v < 0 ? -v : v; }

// neighbours N, W, NW, NE, NN, WW of plane p (row-major h x W image, stride ws)
AI void neighbours(const uint8_t *p, int64_t ws, int64_t y, int64_t x, int64_t i, int64_t j,
                   int64_t w, int64_t *o) {
    const uint8_t *r = p + y * ws + x;
    if (i >= 2 && j >= 2 && j + 1 < w) {
        o[0] = r[-ws]; o[1] = r[-1]; o[2] = r[-ws - 1]; o[3] = r[-ws + 1]; o[4] = r[-2 * ws];
        o[5] = r[-2];
        return;
    }
    if (i == 0 && j == 0) { o[0] = o[1] = o[2] = o[3] = o[4] = o[5] = 128; return; }
    if (i == 0) {
        int64_t wv = r[-1];
        int64_t ww = j > 1 ? r[-2] : wv;
        o[0] = o[1] = o[2] = o[3] = o[4] = wv; o[5] = ww;
        return;
    }
    int64_t n = r[-ws];
    int64_t ne = j + 1 < w ? r[-ws + 1] : n;
    int64_t nn = i > 1 ? r[-2 * ws] : n;
    if (j == 0) { o[0] = n; o[1] = n; o[2] = n; o[3] = ne; o[4] = nn; o[5] = n; return; }
    int64_t wv = r[-1];
    int64_t ww = j > 1 ? r[-2] : wv;
    o[0] = n; o[1] = wv; o[2] = r[-ws - 1]; o[3] = ne; o[4] = nn; o[5] = ww;
}

AI int64_t dec_sym(uint32_t *xp, int64_t *rpp, int64_t rend, int64_t t, const Tabs *tb,
                   const uint8_t *data) {
    int64_t x = *xp;
    int64_t slot = x & 0xFFFF;
    int64_t s = tb->bk[(t << 11) | (slot >> 5)];
    int64_t e = tb->fc[(t << 8) | s];
    while (slot >= (e >> 16) + (e & 0xFFFF)) { s++; e = tb->fc[(t << 8) | s]; }
    x = (e & 0xFFFF) * (x >> 16) + slot - (e >> 16);
    int64_t need = x < RANS_L;
    int64_t rp = *rpp;
    int64_t rc = rp < rend - 2 ? rp : rend - 2;
    int64_t wd = (int64_t)data[rc] | ((int64_t)data[rc + 1] << 8);
    int64_t mask = -need;
    x = (((x << 16) | wd) & mask) | (x & ~mask);
    *xp = (uint32_t)x;
    *rpp = rp + 2 * need;
    return s;
}

// Everything before the blend: the predictions q of plane c at (y, x) (tile coordinates (i, j),
// tile width w; te: the tile's true errors, tw / tp their row / plane strides), the error
// energy *e and the gradient sum *gs; returns how many predictors.
AI int model_inputs(const uint8_t *planes, int64_t hw, int64_t W, const int c, int64_t y,
                    int64_t x, int64_t i, int64_t j, int64_t w, const int32_t *te, int64_t tw,
                    int64_t tp, const int64_t *coef, int64_t *q, int64_t *e, int64_t *gs) {
    const int64_t pi = i + PAD, pj = j + PAD;
    const int32_t *trow = te + c * tp + pi * tw;
    int64_t nb[6];
    neighbours(planes + c * hw, W, y, x, i, j, w, nb);
    int64_t acc = coef[0] * nb[0] + coef[1] * nb[1] + coef[2] * nb[2] + coef[3] * nb[3]
                  + coef[4] * nb[4] + coef[5] * nb[5];
    int64_t t_w = trow[pj - 1], t_n = trow[pj - tw], t_nw = trow[pj - tw - 1], t_ne = trow[pj - tw + 1];
    q[0] = (nb[1] + nb[3] - nb[0]) << 3;
    q[1] = (nb[0] << 3) + (((t_nw + t_n + t_ne) * 7) >> 5);
    q[2] = (nb[1] << 3) + (((t_w + t_n + t_nw) * 10) >> 5);
    int kk = 3, nt = 6;
    for (int r = 0; r < (c < 2 ? c : 2); r++) {
        int64_t g[6];
        const uint8_t *pr_ = planes + r * hw;
        neighbours(pr_, W, y, x, i, j, w, g);
        int64_t gx = pr_[y * W + x];
        acc += coef[nt] * gx + coef[nt + 1] * g[0] + coef[nt + 2] * g[1] + coef[nt + 3] * g[2]
               + coef[nt + 4] * g[3];
        nt += 5;
        q[kk] = (nb[1] + gx - g[1]) << 3;
        q[kk + 1] = (nb[0] + gx - g[0]) << 3;
        q[kk + 2] = (nb[0] + nb[1] - nb[2] + gx - (g[0] + g[1] - g[2])) << 3;
        kk += 3;
    }
    q[kk] = (acc + 16) >> 5;
    int64_t ee = 2 * i64abs(t_n) + 2 * i64abs(t_w) + i64abs(t_nw) + i64abs(t_ne);
    ee += i64abs(trow[pj - 2 * tw]) + i64abs(trow[pj - 2]);
    if (c == 1) ee += 2 * i64abs(te[pi * tw + pj]);
    else if (c == 2) ee += i64abs(te[pi * tw + pj]) + i64abs(te[tp + pi * tw + pj]);
    ee >>= 3;
    *e = ee > 4095 ? 4095 : ee;
    *gs = i64abs(nb[0] - nb[2]) + i64abs(nb[1] - nb[2]) + i64abs(nb[3] - nb[0]);
    return kk + 1;
}

// Blend sums of k predictors: weight total and weighted sum (the LS predictor, last, counts
// twice on planes > 0), from each predictor's six neighbouring |errors| in the 3-row ring.
AI void blend_sums(const int32_t *er0, const int32_t *er1, const int32_t *er2, int64_t pj,
                   const int64_t *q, const int k, const int c, const Tabs *tb, int64_t *tot,
                   int64_t *bl) {
    int64_t tt = 0, bb = 0, wt = 0;
    for (int m = 0; m < k; m++) {
        int64_t s = ((int64_t)er1[pj * NPM + m] + er0[(pj - 1) * NPM + m] + er1[(pj - 1) * NPM + m]
                     + er1[(pj + 1) * NPM + m] + er2[pj * NPM + m] + er0[(pj - 2) * NPM + m]) >> 1;
        if (s > 4095) s = 4095;
        wt = tb->recip[s];
        tt += wt;
        bb += wt * q[m];
    }
    if (c > 0) { tt += wt; bb += wt * q[k - 1]; }
    *tot = tt;
    *bl = bb;
}

static int status(int64_t x0, int64_t x, int64_t rp, int64_t rend) {
    if (x0 < RANS_L) return 4;
    if (rp > rend) return 1;
    if (x != RANS_L) return 2;
    if (rp != rend) return 3;
    return 0;
}

// Largest tile height and width of a group (per-tile buffers are sized once for these).
static void max_tile_side(const int64_t *boxes, int64_t n_tiles, int64_t *maxh, int64_t *maxw) {
    *maxh = *maxw = 0;
    for (int64_t t = 0; t < n_tiles; t++) {
        if (boxes[t * 4 + 2] > *maxh) *maxh = boxes[t * 4 + 2];
        if (boxes[t * 4 + 3] > *maxw) *maxw = boxes[t * 4 + 3];
    }
}

// True errors of every plane of a tile (padded) and the 3-row ring of per-predictor |errors|
// (64-byte aligned for the AVX2 lanes).
static int32_t *alloc_te(int64_t n_ch, int64_t maxh, int64_t maxw) {
    return malloc(sizeof(int32_t) * n_ch * (maxh + PAD) * (maxw + 2 * PAD));
}
static int32_t *alloc_ek(int64_t maxw) {
    return aligned_alloc(64, (sizeof(int32_t) * 3 * (maxw + 2 * PAD) * NPM + 63) / 64 * 64);
}

// Stream s's header, as the decode kernel checks it: 0 and its initial state and read range,
// or the error code (5: shorter than 4 bytes, 4: initial state below RANS_L).
static int open_stream(const uint8_t *data, const int64_t *bb, int64_t s, uint32_t *x0,
                       int64_t *rp, int64_t *rend) {
    *x0 = 0;
    *rp = bb[s];
    *rend = bb[s + 1];
    if (*rend - *rp < 4) return 5;
    const uint8_t *d = data + *rp;
    *x0 = (uint32_t)d[0] | ((uint32_t)d[1] << 8) | ((uint32_t)d[2] << 16) | ((uint32_t)d[3] << 24);
    if (*x0 < RANS_L) return 4;
    *rp += 4;
    return 0;
}
