// Probe: pixelmodel._decode_kernel in C with NL equal-shape tiles decoded stage-interleaved
// (build with -DNL=1, 2 or 4); docs/experiments.md entry 14.
#include "common.h"

typedef struct {
    int64_t y0, x0, h, w, tw, tp;
    int32_t *te, *ek;
    int64_t asum[NB], acnt[NB];
    const int64_t *coef;
    uint32_t xs; int64_t rp, rend;
    int64_t q[NPM];
    int32_t *er0; const int32_t *er1, *er2; int32_t *trow;
} Ctx;

AI void ctx_plane_start(Ctx *C, const int c, const int64_t *prior) {
    const int kind = c < 2 ? c : 2;
    memset(C->ek, 0, sizeof(int32_t) * 3 * C->tw * NPM);
    for (int u = 0; u < NB; u++) { C->acnt[u] = PRIOR_COUNT; C->asum[u] = (prior[kind * NB + u] * PRIOR_COUNT) >> 4; }
}
AI void ctx_row(Ctx *C, const int c, int64_t i) {
    C->er0 = C->ek + (i % 3) * C->tw * NPM;
    C->er1 = C->ek + ((i + 2) % 3) * C->tw * NPM;
    C->er2 = C->ek + ((i + 1) % 3) * C->tw * NPM;
    C->trow = C->te + c * C->tp + (i + PAD) * C->tw;
}

#ifndef NL
#define NL 2
#endif
AI void step_multi(Ctx **CC, const int nl, uint8_t *planes, int64_t H, int64_t W, const int c, int64_t i, int64_t j,
                   const uint8_t *vq, int use_vq, const Tabs *tb, const uint8_t *data) {
    const int64_t hw = H * W;
    const int kind = c < 2 ? c : 2;
    const int k = 3 + 3 * (c < 2 ? c : 2) + 1;
    const int64_t pj = j + PAD;
    int64_t pr[NL], b[NL], tid[NL], base[NL], neg[NL], xv[NL], tot[NL], bl[NL];
    int64_t gs[NL], e[NL];
    for (int l = 0; l < nl; l++) {
        Ctx *C = CC[l];
        model_inputs(planes, hw, W, c, C->y0 + i, C->x0 + j, i, j, C->w, C->te, C->tw, C->tp,
                     C->coef, C->q, &e[l], &gs[l]);
    }
    for (int l = 0; l < nl; l++) {
        Ctx *C = CC[l];
        blend_sums(C->er0, C->er1, C->er2, pj, C->q, k, c, tb, &tot[l], &bl[l]);
    }
    for (int l = 0; l < nl; l++) {
        Ctx *C = CC[l];
        int64_t g = tb->grad_class[gs[l] < 12 ? gs[l] : 12];
        int64_t sub = use_vq ? (vq[c * hw + (C->y0 + i) * W + C->x0 + j] >> 4) : g;
        int64_t bq = (int64_t)tb->e_bucket[e[l]] * NSUB + sub;
        if (i == 0) bq = EDGE_ROW_BUCKET * NSUB + sub;
        else if (j == 0) bq = EDGE_COL_BUCKET * NSUB + sub;
        b[l] = bq;
        int64_t p_ = (int64_t)floor((double)(bl[l] + (tot[l] >> 1)) / (double)tot[l]);
        pr[l] = p_ < 0 ? 0 : (p_ > 255 * 8 ? 255 * 8 : p_);
    }
    for (int l = 0; l < nl; l++) {
        Ctx *C = CC[l];
        int64_t mean = ((C->asum[b[l]] << 4) * tb->crc[C->acnt[b[l]]]) >> 33;
        if (mean >= MEAN_MAX) mean = MEAN_MAX - 1;
        int64_t lv = tb->lom[mean];
        int64_t bs = (pr[l] + 4) >> 3;
        int64_t d = pr[l] - (bs << 3);
        int64_t far = (FAR_OFFSETS >> (d + 4)) & 1;
        neg[l] = d >> 63;
        base[l] = bs;
        tid[l] = ((kind * NLEV + lv) << 1) + far;
    }
    for (int l = 0; l < nl; l++) {
        Ctx *C = CC[l];
        int64_t sv = dec_sym(&C->xs, &C->rp, C->rend, tid[l], tb, data);
        xv[l] = (base[l] + ((sv ^ neg[l]) - neg[l])) & 0xFF;
    }
    for (int l = 0; l < nl; l++) {
        Ctx *C = CC[l];
        uint8_t *pc = planes + c * hw;
        pc[(C->y0 + i) * W + C->x0 + j] = (uint8_t)xv[l];
        int64_t t = (xv[l] << 3) - pr[l];
        C->trow[pj] = (int32_t)t;
        for (int m = 0; m < k; m++) C->er0[pj * NPM + m] = (int32_t)i64abs((xv[l] << 3) - C->q[m]);
        C->asum[b[l]] += i64abs(t);
        C->acnt[b[l]] += 1;
        if (C->acnt[b[l]] >= HALVE_AT) { C->asum[b[l]] = (C->asum[b[l]] + 1) >> 1; C->acnt[b[l]] >>= 1; }
    }
}

// nl equal-shape tiles of one plane in lockstep (nl = 1: a tile alone)
AI void planeG(Ctx **CC, const int nl, uint8_t *planes, int64_t H, int64_t W, const int c, const uint8_t *vq, int use_vq,
               const int64_t *prior, const Tabs *tb, const uint8_t *data) {
    for (int l = 0; l < nl; l++) ctx_plane_start(CC[l], c, prior);
    for (int64_t i = 0; i < CC[0]->h; i++) {
        for (int l = 0; l < nl; l++) ctx_row(CC[l], c, i);
        for (int64_t j = 0; j < CC[0]->w; j++) step_multi(CC, nl, planes, H, W, c, i, j, vq, use_vq, tb, data);
    }
}


static void ctx_init(Ctx *C, const int64_t *box, int64_t n_ch) {
    C->y0 = box[0]; C->x0 = box[1]; C->h = box[2]; C->w = box[3];
    C->tw = C->w + 2 * PAD; C->tp = (C->h + PAD) * C->tw;
    memset(C->te, 0, sizeof(int32_t) * n_ch * C->tp);
}
// returns 0 if ok, else err code; stream s
static int ctx_stream(Ctx *C, const uint8_t *data, const int64_t *bb, int64_t s, uint32_t *x0o) {
    int bad = open_stream(data, bb, s, x0o, &C->rp, &C->rend);
    C->xs = *x0o;
    return bad;
}

int pm_decode(PM_DECODE_PARAMS) {
    Tabs tb = {e_bucket, lom, grad_class, crc, recip, bk, fc};
    int64_t maxh, maxw;
    max_tile_side(boxes, n_tiles, &maxh, &maxw);
    Ctx X[NL]; Ctx *CC[NL];
    for (int l = 0; l < NL; l++) {
        X[l].te = alloc_te(n_ch, maxh, maxw);
        X[l].ek = alloc_ek(maxw);
        CC[l] = &X[l];
    }
    int64_t t = 0;
    while (t < n_tiles) {
        const int64_t *ba = boxes + 4 * t;
        int grp = t + NL <= n_tiles;
        for (int l = 1; l < NL && grp; l++) grp = boxes[4 * (t + l) + 2] == ba[2] && boxes[4 * (t + l) + 3] == ba[3];
        int G = grp ? NL : 1;
        for (int l = 0; l < G; l++) ctx_init(&X[l], ba + 4 * l, n_ch);
        for (int64_t c = 0; c < n_ch; c++) {
            uint32_t x0[NL]; int ee[NL]; int bad = 0;
            for (int l = 0; l < G; l++) {
                int64_t s_ = (t + l) * n_ch + c;
                ee[l] = ctx_stream(&X[l], data, bb, s_, &x0[l]);
                bad |= ee[l];
                X[l].coef = coefs + s_ * 16;
            }
            if (G == NL && !bad) {
                if (c == 0) planeG(CC, NL, planes, H, W, 0, vq, use_vq, prior, &tb, data);
                else if (c == 1) planeG(CC, NL, planes, H, W, 1, vq, use_vq, prior, &tb, data);
                else planeG(CC, NL, planes, H, W, 2, vq, use_vq, prior, &tb, data);
            } else {
                for (int l = 0; l < G; l++) {
                    if (ee[l]) continue;
                    Ctx *one[1] = {&X[l]};
                    if (c == 0) planeG(one, 1, planes, H, W, 0, vq, use_vq, prior, &tb, data);
                    else if (c == 1) planeG(one, 1, planes, H, W, 1, vq, use_vq, prior, &tb, data);
                    else planeG(one, 1, planes, H, W, 2, vq, use_vq, prior, &tb, data);
                }
            }
            for (int l = 0; l < G; l++) {
                int64_t s_ = (t + l) * n_ch + c;
                err[s_] = ee[l] ? ee[l] : status(x0[l], X[l].xs, X[l].rp, X[l].rend);
            }
        }
        t += G;
    }
    for (int l = 0; l < NL; l++) { free(X[l].te); free(X[l].ek); }
    return 0;
}
