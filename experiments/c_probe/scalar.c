// Probe: pixelmodel._decode_kernel ported to C (docs/experiments.md entry 14). Built plain, or
// with -DSIMD_BLEND -DNPM=16 -mavx2: the predictor blend in AVX2 lanes, one per predictor.
#ifdef SIMD_BLEND
#include <immintrin.h>
#endif
#include "common.h"

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
            int64_t e, gs;
            model_inputs(planes, hw, W, c, y, x, i, j, w, te, tw, tp, coef, q, &e, &gs);
#ifdef SIMD_BLEND
            __m256i qv0, qv1 = _mm256_setzero_si256();
            if (k == 4) qv0 = _mm256_setr_epi32(q[0], q[1], q[2], q[3], 0, 0, 0, 0);
            else if (k == 7) qv0 = _mm256_setr_epi32(q[0], q[1], q[2], q[3], q[4], q[5], q[6], 0);
            else { qv0 = _mm256_setr_epi32(q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7]); qv1 = _mm256_setr_epi32(q[8], q[9], 0, 0, 0, 0, 0, 0); }
#endif
#ifdef SIMD_BLEND
            // SIMD blend: lanes m < k; LS lane (k-1) counts twice on planes > 0.
            int64_t tot, bl;
            {
                const int nv = k > 8 ? 2 : 1;
                __m256i vtot = _mm256_setzero_si256(), vbl = _mm256_setzero_si256();
                const __m256i cap = _mm256_set1_epi32(4095);
                for (int v = 0; v < nv; v++) {
                    const int o = 8 * v;
                    __m256i s = _mm256_add_epi32(
                        _mm256_add_epi32(_mm256_load_si256((const __m256i *)(er1 + pj * NPM + o)),
                                         _mm256_load_si256((const __m256i *)(er0 + (pj - 1) * NPM + o))),
                        _mm256_add_epi32(_mm256_load_si256((const __m256i *)(er1 + (pj - 1) * NPM + o)),
                                         _mm256_load_si256((const __m256i *)(er1 + (pj + 1) * NPM + o))));
                    s = _mm256_add_epi32(s, _mm256_add_epi32(_mm256_load_si256((const __m256i *)(er2 + pj * NPM + o)),
                                                             _mm256_load_si256((const __m256i *)(er0 + (pj - 2) * NPM + o))));
                    s = _mm256_min_epi32(_mm256_srai_epi32(s, 1), cap);
                    __m256i wt = _mm256_i32gather_epi32(tb->recip, s, 4);
                    // lane multiplier: 0 beyond k, 2 for the LS lane on planes > 0, else 1
                    __m256i lane = _mm256_add_epi32(_mm256_set1_epi32(o), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
                    __m256i live = _mm256_cmpgt_epi32(_mm256_set1_epi32(k), lane);
                    wt = _mm256_and_si256(wt, live);
                    if (c > 0) {
                        __m256i ls = _mm256_cmpeq_epi32(lane, _mm256_set1_epi32(k - 1));
                        wt = _mm256_add_epi32(wt, _mm256_and_si256(wt, ls));
                    }
                    __m256i qv = v ? qv1 : qv0;
                    vtot = _mm256_add_epi32(vtot, wt);
                    __m256i wlo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(wt));
                    __m256i whi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(wt, 1));
                    __m256i qlo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(qv));
                    __m256i qhi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(qv, 1));
                    vbl = _mm256_add_epi64(vbl, _mm256_add_epi64(_mm256_mul_epi32(wlo, qlo), _mm256_mul_epi32(whi, qhi)));
                }
                __m128i t4 = _mm_add_epi32(_mm256_castsi256_si128(vtot), _mm256_extracti128_si256(vtot, 1));
                t4 = _mm_add_epi32(t4, _mm_shuffle_epi32(t4, 0x4E));
                t4 = _mm_add_epi32(t4, _mm_shuffle_epi32(t4, 0xB1));
                tot = _mm_cvtsi128_si32(t4);
                __m128i b2 = _mm_add_epi64(_mm256_castsi256_si128(vbl), _mm256_extracti128_si256(vbl, 1));
                b2 = _mm_add_epi64(b2, _mm_shuffle_epi32(b2, 0x4E));
                bl = _mm_cvtsi128_si64(b2);
            }
#else
            int64_t tot, bl;
            blend_sums(er0, er1, er2, pj, q, k, c, tb, &tot, &bl);
#endif
            int64_t pr = (int64_t)floor((double)(bl + (tot >> 1)) / (double)tot);
            if (pr < 0) pr = 0; else if (pr > 255 * 8) pr = 255 * 8;
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
#ifdef SIMD_BLEND
            {
                __m256i xb = _mm256_set1_epi32((int32_t)(xv << 3));
                _mm256_store_si256((__m256i *)(er0 + pj * NPM), _mm256_abs_epi32(_mm256_sub_epi32(xb, qv0)));
                if (k > 8) _mm256_store_si256((__m256i *)(er0 + pj * NPM + 8), _mm256_abs_epi32(_mm256_sub_epi32(xb, qv1)));
            }
#else
            for (int m = 0; m < k; m++) er0[pj * NPM + m] = (int32_t)i64abs((xv << 3) - q[m]);
#endif
            asum[b] += i64abs(t);
            acnt[b] += 1;
            if (acnt[b] >= HALVE_AT) { asum[b] = (asum[b] + 1) >> 1; acnt[b] >>= 1; }
        }
    }
}


int pm_decode(PM_DECODE_PARAMS) {
    Tabs tb = {e_bucket, lom, grad_class, crc, recip, bk, fc};
    int64_t maxh, maxw;
    max_tile_side(boxes, n_tiles, &maxh, &maxw);
    int32_t *te = alloc_te(n_ch, maxh, maxw);
    int32_t *ek = alloc_ek(maxw);
    int64_t asum[NB], acnt[NB];
    for (int64_t t = 0; t < n_tiles; t++) {
        const int64_t *box = boxes + 4 * t;
        memset(te, 0, sizeof(int32_t) * n_ch * (box[2] + PAD) * (box[3] + 2 * PAD));
        for (int64_t c = 0; c < n_ch; c++) {
            int64_t s = t * n_ch + c;
            uint32_t x0;
            int64_t rp, rend;
            int bad = open_stream(data, bb, s, &x0, &rp, &rend);
            if (bad) { err[s] = bad; continue; }
            uint32_t xs = x0;
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
