// Shared by the decode-kernel probes: constants, tables, neighbour fetch, rANS symbol decode
// and stream status, each as codec/pixelmodel.py and codec/rans.py define them.
#pragma once
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

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
