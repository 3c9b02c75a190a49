// The fast level on the CPU with AVX2: up to 8 tiles of one plane group coded at once, one per
// 32-bit vector lane, each lane exactly pm_fast_sample's integer steps on its own tile (own
// stream, own statistics), so the bytes are the scalar loop's bit for bit. Why: a tile's samples
// form one serial chain (each waits for its left neighbour and the bucket statistics it just
// updated), and entry 19 of docs/experiments.md found scalar lockstep slower; vector lanes run 8
// chains for about the cost of one (docs/experiments.md entry 27).
//
// Layout: every per-tile array is lane-interleaved ([index][8]), so the neighbours and true
// errors at one tile position are one vector load; only the bucket statistics and the tables
// need gathers. Lanes step through the union of their tiles' shapes in raster order; a lane is
// active at (i, j) when its tile has that sample, and commits nothing elsewhere.
//
// CPU only (pilc_cpu.c); compiled for AVX2 by a target attribute and used only where the CPU
// has it (pilc_lanes_available), so the library still runs on any x86-64.
#pragma once
#if defined(__x86_64__) && !defined(PILC_CUDA)
#include <immintrin.h>
#include <string.h>

#define PL_LANES 8
// A bucket's running sum stays below 2^20 (|t| <= 2040 times a count below 256, plus the
// prior), so it shares one int32 with its count: one gather and one scatter per sample.
#define PL_CNT_AT 21
#define PL_FN static inline __attribute__((always_inline, target("avx2")))
#define PL_OUTER static __attribute__((noinline, target("avx2")))

// One batch of tiles (at most PL_LANES) of a plane group, with its lane-interleaved state.
typedef struct {
    int n;                                // lanes in use
    int64_t h[PL_LANES], w[PL_LANES];     // tile shapes (0 x 0 for unused lanes)
    int64_t y0[PL_LANES], x0[PL_LANES];   // tile origins in the group
    int64_t hmax, wmax, tw, rows;         // union shape; te row length and rows per plane
    uint8_t *pix;   // [n_ch][hmax][wmax][8] pixels
    int16_t *te;    // [n_ch][rows][tw][8] true errors, zero pad (PM_PAD) around each tile
    int32_t *bucket;  // [PM_NB][8] a bucket's running |error| sum | its count << PL_CNT_AT
    int32_t *bias;    // [PM_NBIAS_FAST][8] the bias contexts' moving means
    uint8_t *stage; // encoder: [3][wmax][8] one row's symbols, table ids and buckets
} PlBatch;

// Bytes of a batch's buffers for tiles of at most mh x mw and n_ch planes.
static int64_t pl_bytes(int64_t n_ch, int64_t mh, int64_t mw) {
    const int64_t tw = mw + 2 * PM_PAD, rows = mh + PM_PAD;
    return PL_LANES * (n_ch * mh * mw + 2 * n_ch * rows * tw + 4 * (PM_NB + PM_NBIAS_FAST + 2)
                       + 3 * mw) + 64;
}

static void pl_place(PlBatch *B, void *mem, int64_t n_ch, int64_t mh, int64_t mw) {
    char *m = (char *)mem;
    const int64_t tw = mw + 2 * PM_PAD, rows = mh + PM_PAD;
    B->bucket = (int32_t *)m;
    B->bias = B->bucket + (PM_NB + 1) * PL_LANES;  // each with a spare row (PL_SPARE)
    m += sizeof(int32_t) * (PM_NB + PM_NBIAS_FAST + 2) * PL_LANES;
    B->te = (int16_t *)m;
    m += sizeof(int16_t) * n_ch * rows * tw * PL_LANES;
    B->pix = (uint8_t *)m;
    m += n_ch * mh * mw * PL_LANES;
    B->stage = (uint8_t *)m;
}

// Lanes for tiles t0 .. t0 + n - 1 (boxes (y0, x0, h, w)); the union shape of the batch.
static void pl_open(PlBatch *B, const int64_t *boxes, int64_t t0, int n) {
    B->n = n;
    B->hmax = B->wmax = 0;
    for (int l = 0; l < PL_LANES; l++) {
        const int64_t *bx = boxes + 4 * (t0 + l);
        B->y0[l] = l < n ? bx[0] : 0;
        B->x0[l] = l < n ? bx[1] : 0;
        B->h[l] = l < n ? bx[2] : 0;
        B->w[l] = l < n ? bx[3] : 0;
        B->hmax = PILC_MAX(B->hmax, B->h[l]);
        B->wmax = PILC_MAX(B->wmax, B->w[l]);
    }
    B->tw = B->wmax + 2 * PM_PAD;
    B->rows = B->hmax + PM_PAD;
}

// Pixels between the group (plane c at px + c hw, row stride W) and the batch's lanes.
static void pl_copy_in(PlBatch *B, const PmImage *im, int64_t n_ch) {
    for (int64_t c = 0; c < n_ch; c++)
        for (int l = 0; l < B->n; l++)
            for (int64_t i = 0; i < B->h[l]; i++) {
                const uint8_t *src = im->px + c * im->hw + (B->y0[l] + i) * im->W + B->x0[l];
                uint8_t *dst = B->pix + ((c * B->hmax + i) * B->wmax) * PL_LANES + l;
                for (int64_t j = 0; j < B->w[l]; j++) dst[j * PL_LANES] = src[j];
            }
}

static void pl_copy_out(const PlBatch *B, const PmImage *im, int64_t n_ch) {
    for (int64_t c = 0; c < n_ch; c++)
        for (int l = 0; l < B->n; l++)
            for (int64_t i = 0; i < B->h[l]; i++) {
                uint8_t *dst = im->px + c * im->hw + (B->y0[l] + i) * im->W + B->x0[l];
                const uint8_t *src = B->pix + ((c * B->hmax + i) * B->wmax) * PL_LANES + l;
                for (int64_t j = 0; j < B->w[l]; j++) dst[j] = src[j * PL_LANES];
            }
}

// ---- vector helpers -------------------------------------------------------------------------

PL_FN __m256i pl_u8(const uint8_t *p) {  // 8 lanes' bytes -> int32
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
}
PL_FN __m256i pl_i16(const int16_t *p) {  // 8 lanes' int16 -> int32
    return _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)p));
}
PL_FN __m256i pl_k(int32_t v) { return _mm256_set1_epi32(v); }
PL_FN __m256i pl_clamp(__m256i v, int32_t lo, int32_t hi) {
    return _mm256_min_epi32(_mm256_max_epi32(v, pl_k(lo)), pl_k(hi));
}
// table[idx] of a uint8 table whose size is a multiple of 4: each lane loads the aligned word
// holding its byte, so no lane reads past the table's end.
PL_FN __m256i pl_gather_u8(const uint8_t *table, __m256i idx) {
    const __m256i word = _mm256_andnot_si256(pl_k(3), idx);
    const __m256i v = _mm256_i32gather_epi32((const int *)table, word, 1);
    const __m256i shift = _mm256_slli_epi32(_mm256_and_si256(idx, pl_k(3)), 3);
    return _mm256_and_si256(_mm256_srlv_epi32(v, shift), pl_k(0xFF));
}
// A lane-interleaved int32 array's element idx of each lane: a[idx * 8 + lane].
PL_FN __m256i pl_gather_lane(const int32_t *a, __m256i idx) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_i32gather_epi32((const int *)a, _mm256_add_epi32(_mm256_slli_epi32(idx, 3), lane),
                                  4);
}
// a[idx * 8 + lane] = v in the lanes of mask actv; the other lanes write a's spare slot
// (index PL_SPARE), so no branch depends on which lanes are active.
#define PL_SPARE(n) ((n) * PL_LANES)  // an array of n entries per lane has one spare word after
PL_FN void pl_scatter_lane(int32_t *a, int32_t spare, __m256i idx, __m256i v, __m256i actv) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int32_t iv[PL_LANES], vv[PL_LANES];
    _mm256_storeu_si256((__m256i *)iv,
                        _mm256_blendv_epi8(pl_k(spare),
                                           _mm256_add_epi32(_mm256_slli_epi32(idx, 3), lane), actv));
    _mm256_storeu_si256((__m256i *)vv, v);
    for (int l = 0; l < PL_LANES; l++) a[iv[l]] = vv[l];
}
PL_FN void pl_store_u8(uint8_t *p, __m256i v) {  // lanes in 0..255 -> 8 bytes
    const __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_storel_epi64((__m128i *)p, _mm_packus_epi16(w16, w16));
}
PL_FN void pl_store_i16(int16_t *p, __m256i v) {  // lanes in int16 range -> 8 int16
    _mm_storeu_si128((__m128i *)p,
                     _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)));
}
// pm_running_mean: floor(16 sum * ceil(2^33 / cnt) / 2^33) is floor(16 sum / cnt) for
// 16 sum < 2^24 and cnt <= 256 (the reciprocal's excess adds < 2^-9 < 1/cnt to a quotient whose
// fraction is at most 1 - 1/cnt), and float64 division keeps that floor exact; capped.
PL_FN __m256i pl_running_mean(__m256i sum, __m256i cnt) {
    const __m256i s16 = _mm256_slli_epi32(sum, 4);
    const __m256d lo = _mm256_div_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(s16)),
                                     _mm256_cvtepi32_pd(_mm256_castsi256_si128(cnt)));
    const __m256d hi = _mm256_div_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(s16, 1)),
                                     _mm256_cvtepi32_pd(_mm256_extracti128_si256(cnt, 1)));
    const __m256i q = _mm256_set_m128i(_mm256_cvttpd_epi32(hi), _mm256_cvttpd_epi32(lo));
    return _mm256_min_epi32(q, pl_k(PM_MEAN_MAX - 1));
}

// pm_neighbours for every lane of plane p (lane-interleaved, row length wmax) at (i, j); wlast:
// the lanes whose tile ends at column j (their NE stands in as N).
PL_FN void pl_neighbours(const uint8_t *p, int64_t wmax, int64_t i, int64_t j, __m256i wlast,
                         __m256i *o) {
    const int64_t rs = wmax * PL_LANES;
    const uint8_t *r = p + (i * wmax + j) * PL_LANES;
    if (i == 0) {
        if (j == 0) {
            o[0] = o[1] = o[2] = o[3] = o[4] = o[5] = pl_k(128);
            return;
        }
        const __m256i wv = pl_u8(r - PL_LANES);
        o[0] = o[1] = o[2] = o[3] = o[4] = wv;
        o[5] = j > 1 ? pl_u8(r - 2 * PL_LANES) : wv;
        return;
    }
    const __m256i n = pl_u8(r - rs);
    const __m256i ne = _mm256_blendv_epi8(pl_u8(r - rs + PL_LANES), n, wlast);
    const __m256i nn = i > 1 ? pl_u8(r - 2 * rs) : n;
    if (j == 0) {
        o[0] = n; o[1] = n; o[2] = n; o[3] = ne; o[4] = nn; o[5] = n;
        return;
    }
    const __m256i wv = pl_u8(r - PL_LANES);
    o[0] = n; o[1] = wv; o[2] = pl_u8(r - rs - PL_LANES); o[3] = ne; o[4] = nn;
    o[5] = j > 1 ? pl_u8(r - 2 * PL_LANES) : wv;
}

// Per-lane coder state of one plane.
typedef struct {
    __m256i xs, rp, rend2;      // rANS state (uint32), read position and end - 2, from dbase
    const uint8_t *dbase;       // decoding: the lowest stream start of the batch
    __m256i coef[16];           // the lanes' LS coefficients
    int64_t x0[PL_LANES];       // decoding: initial states (status check)
    uint8_t *sym[PL_LANES], *tid[PL_LANES], *bkt[PL_LANES];  // encoding: plane c's outputs
} PlCoder;

// One batch's plane in flight: its buffers at plane c, the lanes' shapes and which code it.
typedef struct {
    PlBatch *B;
    PlCoder K;
    uint8_t *pc;                  // plane c's pixels
    int16_t *te;                  // plane c's true errors
    int64_t plane_px, plane_te;   // plane strides of pix and te
    __m256i hv, wv, livev, rowv;  // tile heights and widths; live lanes; lanes with row i
    int row_act;                  // rowv as bits
} PlPlane;

PL_FN __m256i pl_lane_values(const int64_t *v) {
    int32_t o[PL_LANES];
    for (int l = 0; l < PL_LANES; l++) o[l] = (int32_t)v[l];
    return _mm256_loadu_si256((const __m256i *)o);
}

// Start plane c of batch P->B (pm_reset_plane): zero true errors, buckets at the trained prior,
// bias means at 0. live: the lanes that code this plane (a decoder skips lanes whose stream
// failed to open).
PL_FN void pl_plane_open(PlPlane *P, int c, const PmTables *tb, int live) {
    PlBatch *B = P->B;
    const int kind = PILC_MIN(c, 2);
    P->plane_px = B->hmax * B->wmax * PL_LANES;
    P->plane_te = B->rows * B->tw * PL_LANES;
    P->pc = B->pix + c * P->plane_px;
    P->te = B->te + c * P->plane_te;
    memset(P->te, 0, sizeof(int16_t) * P->plane_te);
    for (int u = 0; u < PM_NB; u++) {
        const int32_t v = (int32_t)((tb->prior[kind * PM_NB + u] * PM_PRIOR_COUNT) >> 4)
                          | PM_PRIOR_COUNT << PL_CNT_AT;
        for (int l = 0; l < PL_LANES; l++) B->bucket[u * PL_LANES + l] = v;
    }
    memset(B->bias, 0, sizeof(int32_t) * PM_NBIAS_FAST * PL_LANES);
    P->hv = pl_lane_values(B->h);
    P->wv = pl_lane_values(B->w);
    P->livev = _mm256_cmpgt_epi32(
        _mm256_and_si256(pl_k(live), _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128)),
        _mm256_setzero_si256());
}

// The lanes with row i (0 where none).
PL_FN int pl_row(PlPlane *P, int64_t i) {
    P->rowv = _mm256_and_si256(_mm256_cmpgt_epi32(P->hv, pl_k((int32_t)i)), P->livev);
    P->row_act = _mm256_movemask_ps(_mm256_castsi256_ps(P->rowv));
    return P->row_act;
}

// Sample (i, j) of plane c in every lane that has it: pm_fast_sample's steps, lane-parallel.
PL_FN void pl_sample(PlPlane *P, const int c, int64_t i, int64_t j, const PmTables *tb,
                     const int decode, __m256i gc_lo, __m256i gc_hi) {
    const int kind = PILC_MIN(c, 2);
    const int64_t wmax = P->B->wmax, tw = P->B->tw, pi = i + PM_PAD, pj = j + PM_PAD;
    const __m256i actv = _mm256_and_si256(_mm256_cmpgt_epi32(P->wv, pl_k((int32_t)j)), P->rowv);
    const int act = _mm256_movemask_ps(_mm256_castsi256_ps(actv));
    if (!act) return;
    const __m256i wv = P->wv;
    const __m256i wlast = _mm256_cmpeq_epi32(wv, pl_k((int32_t)j + 1));
    __m256i nb[6];
    pl_neighbours(P->pc, wmax, i, j, wlast, nb);
    __m256i acc = _mm256_mullo_epi32(P->K.coef[0], nb[0]);
    for (int k = 1; k < 6; k++)
        acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(P->K.coef[k], nb[k]));
    for (int r = 0; r < kind; r++) {
        __m256i g[6];
        const uint8_t *pr = P->B->pix + r * P->plane_px;
        pl_neighbours(pr, wmax, i, j, wlast, g);
        const __m256i gx = pl_u8(pr + (i * wmax + j) * PL_LANES);
        const int nt = 6 + 5 * r;
        acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(P->K.coef[nt], gx));
        for (int k = 0; k < 4; k++)
            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(P->K.coef[nt + 1 + k], g[k]));
    }
    const __m256i pr = pl_clamp(_mm256_srai_epi32(_mm256_add_epi32(acc, pl_k(16)), 5), 0,
                                255 * 8);
    const int16_t *trow = P->te + pi * tw * PL_LANES;
    const __m256i t_w = pl_i16(trow + (pj - 1) * PL_LANES);
    const __m256i t_n = pl_i16(trow + (pj - tw) * PL_LANES);
    const __m256i t_nw = pl_i16(trow + (pj - tw - 1) * PL_LANES);
    const __m256i t_ne = pl_i16(trow + (pj - tw + 1) * PL_LANES);
    const __m256i t_nn = pl_i16(trow + (pj - 2 * tw) * PL_LANES);
    const __m256i t_ww = pl_i16(trow + (pj - 2) * PL_LANES);
    const int64_t here = (pi * tw + pj) * PL_LANES;
    const __m256i t_0 = c > 0 ? pl_i16(P->B->te + here) : _mm256_setzero_si256();
    const __m256i t_1 = c == 2 ? pl_i16(P->B->te + P->plane_te + here) : _mm256_setzero_si256();
    // pm_energy
    __m256i e = _mm256_add_epi32(_mm256_abs_epi32(t_n), _mm256_abs_epi32(t_w));
    e = _mm256_add_epi32(e, e);
    e = _mm256_add_epi32(e, _mm256_add_epi32(_mm256_abs_epi32(t_nw), _mm256_abs_epi32(t_ne)));
    e = _mm256_add_epi32(e, _mm256_add_epi32(_mm256_abs_epi32(t_nn), _mm256_abs_epi32(t_ww)));
    if (c == 1) e = _mm256_add_epi32(e, _mm256_slli_epi32(_mm256_abs_epi32(t_0), 1));
    if (c == 2)
        e = _mm256_add_epi32(e, _mm256_add_epi32(_mm256_abs_epi32(t_0), _mm256_abs_epi32(t_1)));
    e = _mm256_min_epi32(_mm256_srai_epi32(e, 3), pl_k(4095));
    // pm_grad_sub and pm_bucket
    __m256i gs = _mm256_add_epi32(_mm256_abs_epi32(_mm256_sub_epi32(nb[0], nb[2])),
                                  _mm256_abs_epi32(_mm256_sub_epi32(nb[1], nb[2])));
    gs = _mm256_add_epi32(gs, _mm256_abs_epi32(_mm256_sub_epi32(nb[3], nb[0])));
    gs = _mm256_min_epi32(gs, pl_k(PM_GRAD_LAST));
    const __m256i sub = _mm256_blendv_epi8(_mm256_permutevar8x32_epi32(gc_lo, gs),
                                           _mm256_permutevar8x32_epi32(gc_hi, gs),
                                           _mm256_cmpgt_epi32(gs, pl_k(7)));
    const __m256i eb = i == 0   ? pl_k(PM_EDGE_ROW_BUCKET)
                       : j == 0 ? pl_k(PM_EDGE_COL_BUCKET)
                                : pl_gather_u8(tb->e_bucket, e);
    const __m256i b = _mm256_add_epi32(_mm256_slli_epi32(eb, 2), sub);
    const __m256i packed = pl_gather_lane(P->B->bucket, b);
    const __m256i sb = _mm256_and_si256(packed, pl_k((1 << PL_CNT_AT) - 1));
    const __m256i cb = _mm256_srli_epi32(packed, PL_CNT_AT);
    const __m256i lv = pl_gather_u8(tb->lom, pl_running_mean(sb, cb));
    // the bias context (texture bits x energy class) and its moving mean
#define PL_GT(a) _mm256_cmpgt_epi32(_mm256_slli_epi32(a, 3), pr)
    const __m256i tprev = c == 1 ? t_0 : t_1;
    const __m256i b2 = c > 0 ? _mm256_cmpgt_epi32(tprev, _mm256_setzero_si256()) : PL_GT(nb[2]);
    const __m256i b3 = c == 2 ? _mm256_cmpgt_epi32(t_0, _mm256_setzero_si256()) : PL_GT(nb[3]);
    const __m256i b4 = PL_GT(_mm256_sub_epi32(_mm256_add_epi32(nb[0], nb[0]), nb[4]));
    const __m256i b5 = PL_GT(_mm256_sub_epi32(_mm256_add_epi32(nb[1], nb[1]), nb[5]));
    __m256i tex = _mm256_and_si256(PL_GT(nb[0]), pl_k(1));
    tex = _mm256_or_si256(tex, _mm256_and_si256(PL_GT(nb[1]), pl_k(2)));
#undef PL_GT
    tex = _mm256_or_si256(tex, _mm256_and_si256(b2, pl_k(4)));
    tex = _mm256_or_si256(tex, _mm256_and_si256(b3, pl_k(8)));
    tex = _mm256_or_si256(tex, _mm256_and_si256(b4, pl_k(16)));
    tex = _mm256_or_si256(tex, _mm256_and_si256(b5, pl_k(32)));
    const __m256i bi = _mm256_add_epi32(_mm256_slli_epi32(_mm256_srai_epi32(eb, 1), 6), tex);
    const __m256i bias = pl_gather_lane(P->B->bias, bi);
    const __m256i pcv = pl_clamp(
        _mm256_add_epi32(pr, _mm256_srai_epi32(
                                 _mm256_add_epi32(bias, pl_k(1 << (PM_EMA_FRAC - 1))),
                                 PM_EMA_FRAC)),
        0, 255 * 8);
    // pm_coding_frame
    const __m256i base = _mm256_srai_epi32(_mm256_add_epi32(pcv, pl_k(4)), 3);
    const __m256i d = _mm256_sub_epi32(pcv, _mm256_slli_epi32(base, 3));
    const __m256i neg = _mm256_srai_epi32(d, 31);
    const __m256i far = _mm256_and_si256(
        _mm256_srlv_epi32(pl_k(PM_FAR_OFFSETS), _mm256_add_epi32(d, pl_k(4))), pl_k(1));
    const __m256i t_id = _mm256_add_epi32(
        _mm256_slli_epi32(_mm256_add_epi32(pl_k(kind * PM_NLEV), lv), 1), far);
    uint8_t *at = P->pc + (i * wmax + j) * PL_LANES;
    __m256i xv;
    if (decode) {  // rans_dec_sym in every lane
        const __m256i xs = P->K.xs;
        const __m256i slot = _mm256_and_si256(xs, pl_k(0xFFFF));
        __m256i s = pl_gather_u8(
            tb->rans.bk, _mm256_or_si256(_mm256_slli_epi32(t_id, 16 - RANS_BK_SHIFT),
                                         _mm256_srli_epi32(slot, RANS_BK_SHIFT)));
        const __m256i trow8 = _mm256_slli_epi32(t_id, 8);
        __m256i ent = _mm256_i32gather_epi32((const int *)tb->rans.fc,
                                             _mm256_or_si256(trow8, s), 4);
        for (;;) {  // slot >= cum + freq: the symbol lies further on
            const __m256i end = _mm256_add_epi32(_mm256_srli_epi32(ent, 16),
                                                 _mm256_and_si256(ent, pl_k(0xFFFF)));
            const __m256i on = _mm256_cmpgt_epi32(slot, _mm256_sub_epi32(end, pl_k(1)));
            if (_mm256_testz_si256(on, on)) break;
            s = _mm256_sub_epi32(s, on);
            ent = _mm256_mask_i32gather_epi32(ent, (const int *)tb->rans.fc,
                                              _mm256_or_si256(trow8, s), on, 4);
        }
        __m256i xn = _mm256_add_epi32(
            _mm256_mullo_epi32(_mm256_and_si256(ent, pl_k(0xFFFF)), _mm256_srli_epi32(xs, 16)),
            _mm256_sub_epi32(slot, _mm256_srli_epi32(ent, 16)));
        const __m256i need = _mm256_and_si256(
            _mm256_cmpeq_epi32(_mm256_srli_epi32(xn, 16), _mm256_setzero_si256()), actv);
        {  // no branch: whether any lane renormalises is unpredictable
            const __m256i rc = _mm256_min_epi32(P->K.rp, P->K.rend2);
            const __m256i word = _mm256_srli_epi32(
                _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), (const int *)P->K.dbase,
                                            _mm256_sub_epi32(rc, pl_k(2)), need, 1),
                16);
            xn = _mm256_blendv_epi8(xn, _mm256_or_si256(_mm256_slli_epi32(xn, 16), word), need);
            P->K.rp = _mm256_sub_epi32(P->K.rp, _mm256_add_epi32(need, need));
        }
        P->K.xs = _mm256_blendv_epi8(xs, xn, actv);
        xv = _mm256_and_si256(
            _mm256_add_epi32(base, _mm256_sub_epi32(_mm256_xor_si256(s, neg), neg)),
            pl_k(0xFF));
        pl_store_u8(at, xv);  // lanes past their tile write where nothing reads
    } else {
        xv = pl_u8(at);
        const __m256i sv = _mm256_and_si256(
            _mm256_sub_epi32(_mm256_xor_si256(_mm256_sub_epi32(xv, base), neg), neg),
            pl_k(0xFF));
        uint8_t *st = P->B->stage + j * PL_LANES;
        pl_store_u8(st, sv);
        pl_store_u8(st + wmax * PL_LANES, t_id);
        pl_store_u8(st + 2 * wmax * PL_LANES, b);
    }
    // updates: the bias mean, the true error, the bucket's running sum and count
    const __m256i x8v = _mm256_slli_epi32(xv, 3);
    const __m256i nbias = _mm256_add_epi32(
        bias, _mm256_srai_epi32(
                  _mm256_sub_epi32(_mm256_slli_epi32(_mm256_sub_epi32(x8v, pr), PM_EMA_FRAC),
                                   bias),
                  PM_EMA_RATE));
    const __m256i t = _mm256_and_si256(_mm256_sub_epi32(x8v, pcv), actv);
    pl_store_i16(P->te + here, t);
    __m256i s2 = _mm256_add_epi32(sb, _mm256_abs_epi32(t));
    __m256i n2 = _mm256_add_epi32(cb, pl_k(1));
    const __m256i hm = _mm256_cmpgt_epi32(n2, pl_k((c == 0 ? PM_FAST_HALVE_AT : PM_HALVE_AT) - 1));
    s2 = _mm256_blendv_epi8(s2, _mm256_srai_epi32(_mm256_add_epi32(s2, pl_k(1)), 1), hm);
    n2 = _mm256_blendv_epi8(n2, _mm256_srai_epi32(n2, 1), hm);
    pl_scatter_lane(P->B->bias, PL_SPARE(PM_NBIAS_FAST), bi, nbias, actv);
    pl_scatter_lane(P->B->bucket, PL_SPARE(PM_NB), b,
                    _mm256_or_si256(s2, _mm256_slli_epi32(n2, PL_CNT_AT)), actv);
}

// The encoder's row i of every lane: symbols, table ids and buckets from the stage to each
// lane's outputs.
PL_FN void pl_row_out(PlPlane *P, int64_t i) {
    const PlBatch *B = P->B;
    for (int l = 0; l < B->n; l++) {
        if (!(P->row_act >> l & 1)) continue;
        const int64_t o = i * B->w[l];
        for (int64_t j = 0; j < B->w[l]; j++) {
            const uint8_t *st = B->stage + j * PL_LANES + l;
            P->K.sym[l][o + j] = st[0];
            P->K.tid[l][o + j] = st[B->wmax * PL_LANES];
            if (P->K.bkt[l]) P->K.bkt[l][o + j] = st[2 * B->wmax * PL_LANES];
        }
    }
}

// Plane c (a literal where inlined) of every lane, in raster order over the lanes' union shape.
// (Two batches in lockstep, to overlap their chains, measured no faster: entry 27.)
PL_FN void pl_plane(PlPlane *P, const int c, const PmTables *tb, const int decode) {
    int32_t gc[16] = {0};
    for (int g = 0; g <= PM_GRAD_LAST; g++) gc[g] = tb->grad_class[g];
    const __m256i gc_lo = _mm256_loadu_si256((const __m256i *)gc);
    const __m256i gc_hi = _mm256_loadu_si256((const __m256i *)(gc + 8));
    for (int64_t i = 0; i < P->B->hmax; i++) {
        if (!pl_row(P, i)) continue;
        for (int64_t j = 0; j < P->B->wmax; j++) pl_sample(P, c, i, j, tb, decode, gc_lo, gc_hi);
        if (!decode) pl_row_out(P, i);
    }
}

PL_OUTER void pl_plane_any(PlPlane *P, int c, const PmTables *tb, const int decode) {
    if (c == 0) pl_plane(P, 0, tb, decode);
    else if (c == 1) pl_plane(P, 1, tb, decode);
    else pl_plane(P, 2, tb, decode);
}

PL_FN void pl_coefs(PlCoder *K, const PlBatch *B, const int64_t *coef, int64_t n_ch, int c) {
    for (int k = 0; k < 16; k++) {
        int32_t v[PL_LANES] = {0};
        for (int l = 0; l < B->n; l++) v[l] = (int32_t)coef[(l * n_ch + c) * PM_NTAPS + k];
        K->coef[k] = _mm256_loadu_si256((const __m256i *)v);
    }
}

// Encoder forward pass of batch B (tiles t0 .. t0 + B->n - 1): pm_encode_tile per lane.
PL_OUTER void pl_encode_batch(PlBatch *B, const PmImage *im, int64_t n_ch, int64_t t0,
                              const PmTables *tb, int64_t *coefs, const int64_t *starts,
                              uint8_t *sym, uint8_t *tid, uint8_t *bkt, double *a, double *b) {
    for (int l = 0; l < B->n; l++)
        for (int c = 0; c < n_ch; c++)
            pm_fit_coefs(im, PM_LVL_FAST, c, B->y0[l], B->x0[l], B->h[l], B->w[l],
                         coefs + ((t0 + l) * n_ch + c) * PM_NTAPS, a, b);
    pl_copy_in(B, im, n_ch);
    PlPlane P;
    P.B = B;
    for (int c = 0; c < n_ch; c++) {
        pl_coefs(&P.K, B, coefs + t0 * n_ch * PM_NTAPS, n_ch, c);
        for (int l = 0; l < PL_LANES; l++) {
            const int64_t s = l < B->n ? starts[(t0 + l) * n_ch + c] : 0;
            P.K.sym[l] = sym + s;
            P.K.tid[l] = tid + s;
            P.K.bkt[l] = bkt ? bkt + s : 0;
        }
        pl_plane_open(&P, c, tb, (1 << B->n) - 1);
        pl_plane_any(&P, c, tb, 0);
    }
}

// Fused decode of batch B: pm_decode_tile per lane; err[(t0 + l) n_ch + c] the statuses.
// Returns 0, or -1 (nothing decoded) where its streams lie too far apart for 32-bit offsets:
// the caller then decodes those tiles one at a time.
PL_OUTER int pl_decode_batch(PlBatch *B, const PmImage *im, int64_t n_ch, int64_t t0,
                             const PmTables *tb, const int64_t *coefs, const uint8_t *data,
                             const int64_t *bb, int64_t *err) {
    const int64_t first = t0 * n_ch;
    if (bb[(t0 + B->n) * n_ch] - bb[first] >= ((int64_t)1 << 30)) return -1;
    PlPlane P;
    P.B = B;
    P.K.dbase = data + bb[first];
    for (int c = 0; c < n_ch; c++) {
        pl_coefs(&P.K, B, coefs + t0 * n_ch * PM_NTAPS, n_ch, c);
        int32_t xs[PL_LANES], rp[PL_LANES] = {0}, re[PL_LANES] = {0};
        int live = 0;
        for (int l = 0; l < PL_LANES; l++) {
            xs[l] = (int32_t)RANS_L;
            if (l >= B->n) continue;
            const int64_t s = (t0 + l) * n_ch + c;
            int64_t x0, r, e;
            const int bad = rans_open(data, bb, s, &x0, &r, &e);
            P.K.x0[l] = x0;
            err[s] = bad;
            if (bad) continue;
            xs[l] = (int32_t)(uint32_t)x0;
            rp[l] = (int32_t)(r - bb[first]);
            re[l] = (int32_t)(e - 2 - bb[first]);
            live |= 1 << l;
        }
        for (int l = 0; l < PL_LANES && live; l++)  // dead lanes: a word inside a live stream
            if (!(live >> l & 1)) rp[l] = re[l] = rp[__builtin_ctz(live)] - 2;
        P.K.xs = _mm256_loadu_si256((const __m256i *)xs);
        P.K.rp = _mm256_loadu_si256((const __m256i *)rp);
        P.K.rend2 = _mm256_loadu_si256((const __m256i *)re);
        pl_plane_open(&P, c, tb, live);
        pl_plane_any(&P, c, tb, 1);
        _mm256_storeu_si256((__m256i *)xs, P.K.xs);
        _mm256_storeu_si256((__m256i *)rp, P.K.rp);
        for (int l = 0; l < B->n; l++) {
            if (!(live >> l & 1)) continue;
            const int64_t s = (t0 + l) * n_ch + c;
            err[s] = rans_status(P.K.x0[l], (int64_t)(uint32_t)xs[l], bb[first] + rp[l], bb[s + 1]);
        }
    }
    pl_copy_out(B, im, n_ch);
    return 0;
}

// Whether this CPU runs the lanes.
static int pl_cpu_ok(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}
#endif
