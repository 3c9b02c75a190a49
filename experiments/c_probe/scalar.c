// Probe: pixelmodel._decode_kernel ported to C, scalar (docs/experiments.md entry 14).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define PAD 2
#define NPM 10
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

AI void decode_plane(uint8_t *planes, int64_t H, int64_t W, const int c, const int64_t *box,
                     int32_t *te, int32_t *ek, int64_t *asum, int64_t *acnt, const int64_t *coef,
                     const uint8_t *vq, int use_vq, const int64_t *prior, const Tabs *tb,
                     uint32_t *xs, int64_t *rp, int64_t rend, const uint8_t *data) {
    const int64_t y0 = box[0], x0 = box[1], h = box[2], w = box[3];
    const int64_t hw = H * W;
    const int64_t tw = w + 2 * PAD;          // te row stride
    const int64_t tp = (h + PAD) * tw;       // te plane stride
    const int kind = c < 2 ? c : 2;
    const int k = 3 + 3 * (c < 2 ? c : 2) + 1;
    memset(ek, 0, sizeof(int32_t) * 3 * tw * NPM);
    for (int u = 0; u < NB; u++) { acnt[u] = PRIOR_COUNT; asum[u] = (prior[kind * NB + u] * PRIOR_COUNT) >> 4; }
    uint8_t *pc = planes + c * hw;
    int64_t q[NPM];
    for (int64_t i = 0; i < h; i++) {
        const int64_t y = y0 + i;
        const int64_t pi = i + PAD;
        int32_t *er0 = ek + (i % 3) * tw * NPM;
        const int32_t *er1 = ek + ((i + 2) % 3) * tw * NPM;
        const int32_t *er2 = ek + ((i + 1) % 3) * tw * NPM;
        int32_t *trow = te + c * tp + pi * tw;
        for (int64_t j = 0; j < w; j++) {
            const int64_t x = x0 + j;
            const int64_t pj = j + PAD;
            int64_t nb[6];
            neighbours(pc, W, y, x, i, j, w, nb);
            int64_t n = nb[0], wv = nb[1], nw = nb[2], ne = nb[3], nn = nb[4], ww = nb[5];
            int64_t acc = coef[0] * n + coef[1] * wv + coef[2] * nw + coef[3] * ne + coef[4] * nn + coef[5] * ww;
            int64_t t_w = trow[pj - 1], t_n = trow[pj - tw], t_nw = trow[pj - tw - 1], t_ne = trow[pj - tw + 1];
            q[0] = (wv + ne - n) << 3;
            q[1] = (n << 3) + (((t_nw + t_n + t_ne) * 7) >> 5);
            q[2] = (wv << 3) + (((t_w + t_n + t_nw) * 10) >> 5);
            int kk = 3, nt = 6;
            for (int r = 0; r < (c < 2 ? c : 2); r++) {
                int64_t g[6];
                const uint8_t *pr_ = planes + r * hw;
                neighbours(pr_, W, y, x, i, j, w, g);
                int64_t gx = pr_[y * W + x];
                acc += coef[nt] * gx + coef[nt + 1] * g[0] + coef[nt + 2] * g[1] + coef[nt + 3] * g[2] + coef[nt + 4] * g[3];
                nt += 5;
                q[kk] = (wv + gx - g[1]) << 3;
                q[kk + 1] = (n + gx - g[0]) << 3;
                q[kk + 2] = (n + wv - nw + gx - (g[0] + g[1] - g[2])) << 3;
                kk += 3;
            }
            q[kk] = (acc + 16) >> 5;
            int64_t tot = 0, bl = 0, wt = 0;
            for (int m = 0; m < k; m++) {
                int64_t s = ((int64_t)er1[pj * NPM + m] + er0[(pj - 1) * NPM + m] + er1[(pj - 1) * NPM + m]
                             + er1[(pj + 1) * NPM + m] + er2[pj * NPM + m] + er0[(pj - 2) * NPM + m]) >> 1;
                if (s > 4095) s = 4095;
                wt = tb->recip[s];
                tot += wt;
                bl += wt * q[m];
            }
            if (c > 0) { tot += wt; bl += wt * q[k - 1]; }
            int64_t pr = (int64_t)floor((double)(bl + (tot >> 1)) / (double)tot);
            if (pr < 0) pr = 0; else if (pr > 255 * 8) pr = 255 * 8;
            int64_t e = 2 * i64abs(t_n) + 2 * i64abs(t_w) + i64abs(t_nw) + i64abs(t_ne);
            e += i64abs(trow[pj - 2 * tw]) + i64abs(trow[pj - 2]);
            if (c == 1) e += 2 * i64abs(te[pi * tw + pj]);
            else if (c == 2) e += i64abs(te[pi * tw + pj]) + i64abs(te[tp + pi * tw + pj]);
            e >>= 3;
            if (e > 4095) e = 4095;
            int64_t gs = i64abs(n - nw) + i64abs(wv - nw) + i64abs(ne - n);
            int64_t g = tb->grad_class[gs < 12 ? gs : 12];
            int64_t sub = use_vq ? (vq[c * hw + y * W + x] >> 4) : g;
            int64_t b = (int64_t)tb->e_bucket[e] * NSUB + sub;
            if (i == 0) b = EDGE_ROW_BUCKET * NSUB + sub;
            else if (j == 0) b = EDGE_COL_BUCKET * NSUB + sub;
            int64_t mean = ((asum[b] << 4) * tb->crc[acnt[b]]) >> 33;
            if (mean >= MEAN_MAX) mean = MEAN_MAX - 1;
            int64_t lv = tb->lom[mean];
            int64_t base = (pr + 4) >> 3;
            int64_t d = pr - (base << 3);
            int64_t far = (FAR_OFFSETS >> (d + 4)) & 1;
            int64_t neg = d >> 63;
            int64_t tid = ((kind * NLEV + lv) << 1) + far;
            int64_t sv = dec_sym(xs, rp, rend, tid, tb, data);
            int64_t xv = (base + ((sv ^ neg) - neg)) & 0xFF;
            pc[y * W + x] = (uint8_t)xv;
            int64_t t = (xv << 3) - pr;
            trow[pj] = (int32_t)t;
            for (int m = 0; m < k; m++) er0[pj * NPM + m] = (int32_t)i64abs((xv << 3) - q[m]);
            asum[b] += i64abs(t);
            acnt[b] += 1;
            if (acnt[b] >= HALVE_AT) { asum[b] = (asum[b] + 1) >> 1; acnt[b] >>= 1; }
        }
    }
}

static int status(int64_t x0, int64_t x, int64_t rp, int64_t rend) {
    if (x0 < RANS_L) return 4;
    if (rp > rend) return 1;
    if (x != RANS_L) return 2;
    if (rp != rend) return 3;
    return 0;
}

int pm_decode(const uint8_t *data, const int64_t *bb, const int64_t *boxes, int64_t n_tiles,
              const uint8_t *vq, int use_vq, const int64_t *coefs, const int64_t *prior,
              uint8_t *planes, int64_t n_ch, int64_t H, int64_t W, int64_t *err,
              const uint8_t *bk, const uint32_t *fc, const uint8_t *e_bucket, const uint8_t *lom,
              const int64_t *crc, const int32_t *recip, const uint8_t *grad_class) {
    Tabs tb = {e_bucket, lom, grad_class, crc, recip, bk, fc};
    int64_t maxw = 0, maxh = 0;
    for (int64_t t = 0; t < n_tiles; t++) {
        if (boxes[t * 4 + 2] > maxh) maxh = boxes[t * 4 + 2];
        if (boxes[t * 4 + 3] > maxw) maxw = boxes[t * 4 + 3];
    }
    int32_t *te = malloc(sizeof(int32_t) * n_ch * (maxh + PAD) * (maxw + 2 * PAD));
    int32_t *ek = malloc(sizeof(int32_t) * 3 * (maxw + 2 * PAD) * NPM);
    int64_t asum[NB], acnt[NB];
    for (int64_t t = 0; t < n_tiles; t++) {
        const int64_t *box = boxes + 4 * t;
        memset(te, 0, sizeof(int32_t) * n_ch * (box[2] + PAD) * (box[3] + 2 * PAD));
        for (int64_t c = 0; c < n_ch; c++) {
            int64_t s = t * n_ch + c;
            int64_t rp = bb[s], rend = bb[s + 1];
            if (rend - rp < 4) { err[s] = 5; continue; }
            uint32_t x0 = (uint32_t)data[rp] | ((uint32_t)data[rp + 1] << 8) | ((uint32_t)data[rp + 2] << 16) | ((uint32_t)data[rp + 3] << 24);
            if (x0 < RANS_L) { err[s] = 4; continue; }
            uint32_t xs = x0;
            rp += 4;
            const int64_t *coef = coefs + (t * n_ch + c) * 16;
            if (c == 0) decode_plane(planes, H, W, 0, box, te, ek, asum, acnt, coef, vq, use_vq, prior, &tb, &xs, &rp, rend, data);
            else if (c == 1) decode_plane(planes, H, W, 1, box, te, ek, asum, acnt, coef, vq, use_vq, prior, &tb, &xs, &rp, rend, data);
            else decode_plane(planes, H, W, 2, box, te, ek, asum, acnt, coef, vq, use_vq, prior, &tb, &xs, &rp, rend, data);
            err[s] = status(x0, xs, rp, rend);
        }
    }
    free(te);
    free(ek);
    return 0;
}
