// The fast level on the CPU in vector lanes: up to 8 (AVX2) or 16 (AVX-512) tiles of one plane
// group coded at once, one per 32-bit lane, each lane exactly pm_fast_sample's integer steps on
// its own tile (own stream, own statistics), so the bytes are the scalar loop's bit for bit.
// Why: a tile's samples form one serial chain (each waits for its left neighbour and the bucket
// statistics it just updated), and entry 19 of docs/experiments.md found scalar lockstep slower;
// vector lanes run 8 or 16 chains in one instruction stream (docs/experiments.md entry 27).
//
// Layout: every per-tile array is lane-interleaved ([index][lanes]), so the neighbours and true
// errors at one tile position are one vector load; only the bucket statistics and the tables
// need gathers. Lanes step through the union of their tiles' shapes in raster order; a lane is
// active at (i, j) when its tile has that sample, and commits nothing elsewhere.
//
// CPU only (pilc_cpu.c). The kernel is written once (pilc_fast_lanes_body.h) over the vector
// macros below and compiled for AVX2 and for AVX-512 by target attributes; pl_cpu_width says
// which this CPU runs, so the library still runs on any x86-64 (the scalar loop elsewhere).
#pragma once
#if defined(__x86_64__) && !defined(PILC_CUDA) && !defined(PILC_NO_LANES)  // a build switch
#define PILC_HAVE_LANES 1
#include <immintrin.h>
#include <string.h>

#define PL_MAX_W 16
// A bucket's running sum stays below 2^20 (|t| <= 2040 times a count below 256, plus the
// prior), so it shares one int32 with its count: one gather and one scatter per sample.
#define PL_CNT_AT 21

// One batch of tiles (at most W lanes) of a plane group, with its lane-interleaved state.
typedef struct {
    int n, W;                             // lanes in use; lanes of the vectors (8 or 16)
    int64_t h[PL_MAX_W], w[PL_MAX_W];     // tile shapes (0 x 0 for unused lanes)
    int64_t y0[PL_MAX_W], x0[PL_MAX_W];   // tile origins in the group
    int64_t hmax, wmax, tw, rows;         // union shape; te row length and rows per plane
    uint8_t *pix;     // [n_ch][hmax][wmax][W] pixels
    int16_t *te;      // [n_ch][rows][tw][W] true errors, zero pad (PM_PAD) around each tile
    int32_t *bucket;  // [PM_NB + 1][W] a bucket's running |error| sum | its count << PL_CNT_AT
    int32_t *bias;    // [PM_NBIAS_FAST + 1][W] the bias contexts' moving means
    uint8_t *stage;   // encoder: [3][wmax][W] one row's symbols, table ids and buckets
    int16_t *ek;      // level 5: [3][tw][PM_FAST_NX][W] the blend members' |errors|, 3 rows
} PlBatch;

// Bytes of a batch's buffers for W lanes, tiles of at most mh x mw and n_ch planes.
static int64_t pl_bytes(int W, int64_t n_ch, int64_t mh, int64_t mw) {
    const int64_t tw = mw + 2 * PM_PAD, rows = mh + PM_PAD;
    return W * (n_ch * mh * mw + 2 * n_ch * rows * tw + 4 * (PM_NB + PM_NBIAS_FAST + 2) + 3 * mw
                + 2 * 3 * tw * PM_FAST_NX)
           + 64;
}

static void pl_place(PlBatch *B, void *mem, int W, int64_t n_ch, int64_t mh, int64_t mw) {
    char *m = (char *)mem;
    const int64_t tw = mw + 2 * PM_PAD, rows = mh + PM_PAD;
    B->W = W;
    B->bucket = (int32_t *)m;
    B->bias = B->bucket + (PM_NB + 1) * W;  // each with a spare row (PL_SPARE)
    m += sizeof(int32_t) * (PM_NB + PM_NBIAS_FAST + 2) * W;
    B->te = (int16_t *)m;
    m += sizeof(int16_t) * n_ch * rows * tw * W;
    B->pix = (uint8_t *)m;
    m += n_ch * mh * mw * W;
    B->stage = (uint8_t *)m;
    m += 3 * mw * W;
    B->ek = (int16_t *)(((uintptr_t)m + 1) & ~(uintptr_t)1);  // int16-aligned (a spare byte)
}

// Lanes for tiles t0 .. t0 + n - 1 (boxes (y0, x0, h, w)); the union shape of the batch.
static void pl_open(PlBatch *B, const int64_t *boxes, int64_t t0, int n) {
    B->n = n;
    B->hmax = B->wmax = 0;
    for (int l = 0; l < PL_MAX_W; l++) {
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

// out[c][l] = in[l][c] for an 8 x 8 block of bytes (SSE2 unpacks): the lane layout's
// transposes, 8 lanes x 8 columns a step where single-byte moves cost one load and one store
// each (those copies were ~14% of the fast level's encode).
static inline void pl_transpose8(const uint8_t *const in[8], uint8_t *const out[8]) {
    __m128i t[4];
    for (int k = 0; k < 4; k++)
        t[k] = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)in[2 * k]),
                                 _mm_loadl_epi64((const __m128i *)in[2 * k + 1]));
    const __m128i u0 = _mm_unpacklo_epi16(t[0], t[1]), u1 = _mm_unpackhi_epi16(t[0], t[1]);
    const __m128i u2 = _mm_unpacklo_epi16(t[2], t[3]), u3 = _mm_unpackhi_epi16(t[2], t[3]);
    const __m128i v[4] = {_mm_unpacklo_epi32(u0, u2), _mm_unpackhi_epi32(u0, u2),
                          _mm_unpacklo_epi32(u1, u3), _mm_unpackhi_epi32(u1, u3)};
    for (int k = 0; k < 4; k++) {
        _mm_storel_epi64((__m128i *)out[2 * k], v[k]);
        _mm_storel_epi64((__m128i *)out[2 * k + 1], _mm_unpackhi_epi64(v[k], v[k]));
    }
}

// Row i of lanes g .. g + 7 between their own rows (row[k], n[k] bytes; n[k] = 0 where a lane
// has none) and the lane-interleaved row il (lane l's byte j at il[j W + l], wmax columns):
// whole 8 x 8 blocks through pl_transpose8, each lane's last n[k] mod 8 bytes one at a time.
// Into the lanes (to_lanes), a lane's block beyond its row gets zeros, and out of them, goes to
// a scratch block: no lane reads or commits a byte outside its tile (pilc_fast_lanes_body.h).
static void pl_transpose_row(uint8_t *const row[8], const int64_t n[8], uint8_t *il, int64_t W,
                             int g, int64_t wmax, int to_lanes) {
    static const uint8_t zeros[8] = {0};
    uint8_t scratch[8];
    for (int64_t j0 = 0; j0 + 8 <= wmax; j0 += 8) {
        const uint8_t *in[8];
        uint8_t *out[8];
        for (int k = 0; k < 8; k++) {
            const int whole = j0 + 8 <= n[k];
            uint8_t *lane = il + (j0 + k) * W + g;
            if (to_lanes) {
                in[k] = whole ? row[k] + j0 : zeros;
                out[k] = lane;
            } else {
                in[k] = lane;
                out[k] = whole ? row[k] + j0 : scratch;
            }
        }
        pl_transpose8(in, out);
    }
    for (int k = 0; k < 8; k++)
        for (int64_t j = n[k] & ~(int64_t)7; j < n[k]; j++) {
            uint8_t *lane = il + j * W + g + k;
            if (to_lanes) *lane = row[k][j];
            else row[k][j] = *lane;
        }
}

// Pixels between the group (plane c at px + c hw, row stride W) and the batch's lanes.
static void pl_copy_pixels(PlBatch *B, const PmImage *im, int64_t n_ch, int to_lanes) {
    for (int64_t c = 0; c < n_ch; c++)
        for (int64_t i = 0; i < B->hmax; i++)
            for (int g = 0; g < B->W; g += 8) {
                uint8_t *row[8];
                int64_t n[8];
                for (int k = 0; k < 8; k++) {
                    const int l = g + k, has = l < B->n && i < B->h[l];
                    row[k] = has ? im->px + c * im->hw + (B->y0[l] + i) * im->W + B->x0[l] : 0;
                    n[k] = has ? B->w[l] : 0;
                }
                pl_transpose_row(row, n, B->pix + ((c * B->hmax + i) * B->wmax) * B->W, B->W, g,
                                 B->wmax, to_lanes);
            }
}

static void pl_copy_in(PlBatch *B, const PmImage *im, int64_t n_ch) {
    pl_copy_pixels(B, im, n_ch, 1);
}

static void pl_copy_out(PlBatch *B, const PmImage *im, int64_t n_ch) {
    pl_copy_pixels(B, im, n_ch, 0);
}

#define PL_CAT(a, b) a##_##b
#define PL_XCAT(a, b) PL_CAT(a, b)
#define PL_N(name) PL_XCAT(name, PL_W)  // pl_sample -> pl_sample_8 / pl_sample_16
#define PL_SPARE(n) ((n) * PL_W)         // the spare word of an array of n entries per lane

// ---- AVX2: 8 lanes; masks are vectors (all ones where set) --------------------------------
#define PL_W 8
#define PL_LOG_W 3
#define PL_FN static inline __attribute__((always_inline, target("avx2")))
#define PL_OUTER static __attribute__((noinline, target("avx2")))
PL_FN void pl_store_u8_8(uint8_t *p, __m256i v) {  // lanes in 0..255 -> 8 bytes
    const __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_storel_epi64((__m128i *)p, _mm_packus_epi16(w16, w16));
}
PL_FN void pl_store_i16_8(int16_t *p, __m256i v) {  // lanes in int16 range -> 8 int16
    _mm_storeu_si128((__m128i *)p,
                     _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)));
}
// a[lidx] = v in the lanes of mask m; the other lanes write the spare slot, so no branch
// depends on which lanes are active (AVX2 has no scatter).
PL_FN void pl_scatter_8(int32_t *a, int32_t spare, __m256i lidx, __m256i v, __m256i m) {
    int32_t iv[8], vv[8];
    _mm256_storeu_si256((__m256i *)iv, _mm256_blendv_epi8(_mm256_set1_epi32(spare), lidx, m));
    _mm256_storeu_si256((__m256i *)vv, v);
    for (int l = 0; l < 8; l++) a[iv[l]] = vv[l];
}
PL_FN __m256i pl_div_floor_8(__m256i s, __m256i c) {  // floor(s / c), s, c >= 0, s < 2^31
    const __m256d lo = _mm256_div_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(s)),
                                     _mm256_cvtepi32_pd(_mm256_castsi256_si128(c)));
    const __m256d hi = _mm256_div_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(s, 1)),
                                     _mm256_cvtepi32_pd(_mm256_extracti128_si256(c, 1)));
    return _mm256_set_m128i(_mm256_cvttpd_epi32(hi), _mm256_cvttpd_epi32(lo));
}
PL_FN __m256i pl_lookup16_8(const int32_t *t, __m256i i) {  // t[i], i in 0..15
    return _mm256_blendv_epi8(
        _mm256_permutevar8x32_epi32(_mm256_loadu_si256((const __m256i *)t), i),
        _mm256_permutevar8x32_epi32(_mm256_loadu_si256((const __m256i *)(t + 8)), i),
        _mm256_cmpgt_epi32(i, _mm256_set1_epi32(7)));
}
#define PV __m256i
#define PM __m256i
#define P_K(c) _mm256_set1_epi32(c)
#define P_ADD(a, b) _mm256_add_epi32(a, b)
#define P_SUB(a, b) _mm256_sub_epi32(a, b)
#define P_AND(a, b) _mm256_and_si256(a, b)
#define P_ANDNOT(a, b) _mm256_andnot_si256(a, b)  // ~a & b
#define P_OR(a, b) _mm256_or_si256(a, b)
#define P_XOR(a, b) _mm256_xor_si256(a, b)
#define P_SLLI(a, n) _mm256_slli_epi32(a, n)
#define P_SRLI(a, n) _mm256_srli_epi32(a, n)
#define P_SRAI(a, n) _mm256_srai_epi32(a, n)
#define P_SRLV(a, b) _mm256_srlv_epi32(a, b)
#define P_MULLO(a, b) _mm256_mullo_epi32(a, b)
#define P_MADD16(a, b) _mm256_madd_epi16(a, b)  // per lane: lo(a) lo(b) + hi(a) hi(b), int16
#define P_ABS(a) _mm256_abs_epi32(a)
#define P_MIN(a, b) _mm256_min_epi32(a, b)
#define P_MAX(a, b) _mm256_max_epi32(a, b)
#define P_GT(a, b) _mm256_cmpgt_epi32(a, b)
#define P_EQ(a, b) _mm256_cmpeq_epi32(a, b)
#define P_SEL(m, a, b) _mm256_blendv_epi8(a, b, m)  // m ? b : a
#define P_MASKZ(v, m) _mm256_and_si256(v, m)       // m ? v : 0
#define P_BIT(m, k) _mm256_and_si256(m, _mm256_set1_epi32(k))
#define P_ADD_IF(v, m, k) _mm256_add_epi32(v, _mm256_and_si256(m, _mm256_set1_epi32(k)))
#define P_ADD_MASKED(a, m, v) _mm256_add_epi32(a, _mm256_and_si256(v, m))  // m ? a + v : a
#define P_MAND(a, b) _mm256_and_si256(a, b)
#define P_MBITS(m) _mm256_movemask_ps(_mm256_castsi256_ps(m))
#define P_MNONE(m) _mm256_testz_si256(m, m)
#define P_MASK_OF_BITS(bits)                                                                  \
    _mm256_cmpgt_epi32(_mm256_and_si256(_mm256_set1_epi32(bits),                              \
                                        _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128)),      \
                       _mm256_setzero_si256())
#define P_IOTA _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)
#define P_U8(p) _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p)))
#define P_I16(p) _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)(p)))
#define P_ST_U8(p, v) pl_store_u8_8(p, v)
#define P_ST_I16(p, v) pl_store_i16_8(p, v)
#define P_LOADU(p) _mm256_loadu_si256((const __m256i *)(p))
#define P_STOREU(p, v) _mm256_storeu_si256((__m256i *)(p), v)
#define P_GATHER(base, idx, scale) _mm256_i32gather_epi32((const int *)(base), idx, scale)
#define P_MGATHER(src, base, idx, m, scale)                                                   \
    _mm256_mask_i32gather_epi32(src, (const int *)(base), idx, m, scale)
#define P_SCATTER(a, spare, lidx, v, m) pl_scatter_8(a, spare, lidx, v, m)
#define P_DIV_FLOOR(s, c) pl_div_floor_8(s, c)
#define P_DIV_F32(s, c) /* truncated float32 quotient (exact where its callers say) */       \
    _mm256_cvttps_epi32(_mm256_div_ps(_mm256_cvtepi32_ps(s), _mm256_cvtepi32_ps(c)))
#define P_LOOKUP16(t, i) pl_lookup16_8(t, i)
#include "pilc_fast_lanes_body.h"  // which #undefs PL_W, PL_FN, PV, P_* ...

// ---- AVX-512: 16 lanes; masks are __mmask16 ----------------------------------------------
#define PL_W 16
#define PL_LOG_W 4
#define PL_FN static inline __attribute__((always_inline, target("avx512f")))
#define PL_OUTER static __attribute__((noinline, target("avx512f")))
PL_FN __m512i pl_div_floor_16(__m512i s, __m512i c) {  // floor(s / c), s, c >= 0, s < 2^31
    const __m512d lo = _mm512_div_pd(_mm512_cvtepi32_pd(_mm512_castsi512_si256(s)),
                                     _mm512_cvtepi32_pd(_mm512_castsi512_si256(c)));
    const __m512d hi = _mm512_div_pd(_mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(s, 1)),
                                     _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(c, 1)));
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvttpd_epi32(lo)),
                              _mm512_cvttpd_epi32(hi), 1);
}
// rans_enc_sym's quotient int(((double)x + 1/2) * inv[k]) of uint32 states x, in the scalar
// coder's operations.
PL_FN __m512i pl_rans_quot_16(__m512i x, const double *inv, __m512i k) {
    __m256i q[2];
    for (int h = 0; h < 2; h++) {
        const __m256i xh = h ? _mm512_extracti64x4_epi64(x, 1) : _mm512_castsi512_si256(x);
        const __m256i kh = h ? _mm512_extracti64x4_epi64(k, 1) : _mm512_castsi512_si256(k);
        const __m512d xd = _mm512_cvtepu32_pd(xh);  // exact
        const __m512d iv = _mm512_i32gather_pd(kh, inv, 8);
        q[h] = _mm512_cvttpd_epi32(_mm512_mul_pd(_mm512_add_pd(xd, _mm512_set1_pd(0.5)), iv));
    }
    return _mm512_inserti64x4(_mm512_castsi256_si512(q[0]), q[1], 1);
}
#define PV __m512i
#define PM __mmask16
#define P_K(c) _mm512_set1_epi32(c)
#define P_ADD(a, b) _mm512_add_epi32(a, b)
#define P_SUB(a, b) _mm512_sub_epi32(a, b)
#define P_AND(a, b) _mm512_and_si512(a, b)
#define P_ANDNOT(a, b) _mm512_andnot_si512(a, b)  // ~a & b
#define P_OR(a, b) _mm512_or_si512(a, b)
#define P_XOR(a, b) _mm512_xor_si512(a, b)
#define P_SLLI(a, n) _mm512_slli_epi32(a, n)
#define P_SRLI(a, n) _mm512_srli_epi32(a, n)
#define P_SRAI(a, n) _mm512_srai_epi32(a, n)
#define P_SRLV(a, b) _mm512_srlv_epi32(a, b)
#define P_MULLO(a, b) _mm512_mullo_epi32(a, b)
#define P_ABS(a) _mm512_abs_epi32(a)
#define P_MIN(a, b) _mm512_min_epi32(a, b)
#define P_MAX(a, b) _mm512_max_epi32(a, b)
#define P_GT(a, b) _mm512_cmpgt_epi32_mask(a, b)
#define P_EQ(a, b) _mm512_cmpeq_epi32_mask(a, b)
#define P_SEL(m, a, b) _mm512_mask_blend_epi32(m, a, b)  // m ? b : a
#define P_MASKZ(v, m) _mm512_maskz_mov_epi32(m, v)      // m ? v : 0
#define P_BIT(m, k) _mm512_maskz_mov_epi32(m, _mm512_set1_epi32(k))
#define P_ADD_IF(v, m, k) _mm512_mask_add_epi32(v, m, v, _mm512_set1_epi32(k))
#define P_ADD_MASKED(a, m, v) _mm512_mask_add_epi32(a, m, a, v)  // m ? a + v : a
#define P_MAND(a, b) ((__mmask16)((a) & (b)))
#define P_MBITS(m) ((int)(m))
#define P_MNONE(m) ((m) == 0)
#define P_MASK_OF_BITS(bits) ((__mmask16)(bits))
#define P_IOTA _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
#define P_U8(p) _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p)))
#define P_I16(p) _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)(p)))
#define P_ST_U8(p, v) _mm_storeu_si128((__m128i *)(p), _mm512_cvtepi32_epi8(v))
#define P_ST_I16(p, v) _mm256_storeu_si256((__m256i *)(p), _mm512_cvtepi32_epi16(v))
#define P_LOADU(p) _mm512_loadu_si512((const void *)(p))
#define P_STOREU(p, v) _mm512_storeu_si512((void *)(p), v)
#define P_GATHER(base, idx, scale) _mm512_i32gather_epi32(idx, (const void *)(base), scale)
#define P_MGATHER(src, base, idx, m, scale)                                                   \
    _mm512_mask_i32gather_epi32(src, m, idx, (const void *)(base), scale)
#define P_SCATTER(a, spare, lidx, v, m) _mm512_mask_i32scatter_epi32((void *)(a), m, lidx, v, 4)
#define P_SCATTER_BYTES(buf, off, v, m) _mm512_mask_i32scatter_epi32((void *)(buf), m, off, v, 1)
#define P_RANS_QUOT(x, inv, k) pl_rans_quot_16(x, inv, k)
#define P_DIV_FLOOR(s, c) pl_div_floor_16(s, c)
#define P_DIV_F32(s, c) \
    _mm512_cvttps_epi32(_mm512_div_ps(_mm512_cvtepi32_ps(s), _mm512_cvtepi32_ps(c)))
#define P_LOOKUP16(t, i) _mm512_permutexvar_epi32(i, _mm512_loadu_si512((const void *)(t)))
#include "pilc_fast_lanes_body.h"

// The widest lanes this CPU runs: 16 (AVX-512F), 8 (AVX2) or 0.
static int pl_cpu_width(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 16 : __builtin_cpu_supports("avx2") ? 8 : 0;
}
#else  // no vector lanes on this target (pilc_cpu.c then runs every tile in the scalar loop)
#define PILC_HAVE_LANES 0
static int pl_cpu_width(void) { return 0; }
#endif
