// The per-pixel model of one tile (docs/FORMAT.md, "pixel model"): blended prediction, table
// choice and adaptation, fused with rANS decode, and the encoder's per-tile least-squares fit.
// Every function here is built by gcc for the CPU and by NVRTC for the GPU from this one text,
// so both decode the same integers by construction.
//
// A tile's model state (true errors, the 3-row ring of per-predictor errors, bucket sums) is
// addressed as base[index * ls]: the CPU passes ls = 1 (contiguous per tile), the GPU the
// number of threads sharing the arrays, so a warp's threads, at equal indices, read
// consecutive words (coalesced).
#pragma once
#include "pilc_portable.h"
#include "pilc_rans.h"

#define PM_PAD 2         // zero border of the error buffers
#define PM_NPM 11        // predictors at most (3 spatial + 2 x 3 cross-plane + LS + local LS)
#define PM_NTAPS 24      // LS taps at most (the max level's plane 2: 10 own + 2 x 7)
#define PM_NB 96         // buckets: 24 energy x 4 sub
#define PM_NBIAS 192     // max level: bias contexts, 24 energy x 8 texture
#define PM_NC2 96        // max level: second scale contexts, 24 energy x 4 spread
#define PM_NBIAS_FAST 768  // fast level: bias contexts, 12 energy x 64 texture (pilc_fast.h)
#define PM_EMA_FRAC 4    // fast level: bias means in 1/16 of the 1/8 unit
#define PM_EMA_RATE 4    // ... moving 1/16 of the way per sample
// per-plane adaptive sums and counts: the buckets, then the max level's bias and second scale
// contexts, or the fast level's bias contexts, whichever is longer
#define PM_NSTAT (PM_NB + PILC_MAX(PM_NBIAS + PM_NC2, PM_NBIAS_FAST))
#define PM_BIAS_HALVE 128
#define PM_BIAS_START 2
// Effort levels (docs/FORMAT.md, "levels"): one model family, four operating points (fastest,
// fast, default, max) and the earlier max models.
#define PM_LVL_DEFAULT 0
#define PM_LVL_FAST 1    // the LS predictor alone: no blend, no per-predictor errors
#define PM_LVL_MAX 2     // more LS taps (incl. the earlier planes' E and S), bias correction
#define PM_LVL_MAX2 3    // max v2: level 2's model with a wider, 10-tap plane-0 local LS solved
                         // by LDL^T every third sample (docs/FORMAT.md, "level 3")
#define PM_LVL_MAX3 4    // max v3: level 3's model with an NLMS stage correcting the blend, used
                         // per bucket where it has been the better (docs/FORMAT.md, "level 4")
#define PM_LVL_FAST2 5   // fast v2: level 1's model, with LS blended on planes > 0 with plane 0's
                         // three cross-plane predictors (docs/FORMAT.md, "level 5")
#define PM_IS_MAX(lvl) ((lvl) >= PM_LVL_MAX && (lvl) <= PM_LVL_MAX3)
// max v2's local LS and plane-0 adaptation (levels 3 and 4)
#define PM_IS_V2(lvl) ((lvl) >= PM_LVL_MAX2 && (lvl) <= PM_LVL_MAX3)
#define PM_IS_FAST(lvl) ((lvl) == PM_LVL_FAST || (lvl) == PM_LVL_FAST2)  // pilc_fast.h's loop
#define PM_NSUB 4
#define PM_NLEV 40
#define PM_FAR_OFFSETS 199
#define PM_HALVE_AT 256
#define PM_PRIOR_COUNT 4
#define PM_EDGE_ROW_BUCKET 22
#define PM_EDGE_COL_BUCKET 23
#define PM_MEAN_MAX (1 << 15)
#define PM_COEF_ONE 256
#define PM_COEF_MAX 2047
#define PM_EK_CAP 8190   // ring entries saturate here: any sum they join is >= 2 * 4095 anyway
#define PM_GRAD_LAST 12
// Max level, planes > 0: the second scale context's spread classes |local LS - tile LS| (1/8)
// and the weight (in 1/4) of the bucket's mean against it.
#define PM_C2_SP1 8
#define PM_C2_SP2 24
#define PM_C2_SP3 64
#define PM_C2_MW 3
// Max level: the local LS predictor's blend weight counts this many times.
#define PM_LL_WEIGHT 3
// Max level: a per-sample least-squares predictor fitted on a causal window: columns j-R..j+R
// of the rows above (each column's sums decay by 1 - 2^-KV per row) plus row i left of j
// (decaying by 1 - 2^-KH per sample), integer sums; ridge KAPPA x mean diagonal + 1 towards the
// tile's LS coefficients.
#define PM_LL_R 4
#define PM_LL_R2 6       // max v2's window half-width
#define PM_P0_HALVE2 128 // max v2, plane 0: bucket counts halve here (else PM_HALVE_AT)
#define PM_LL_EVERY2 3   // max v2 solves at tile columns j = 0 mod 3 and reuses that solution
#define PM_LL_KAPPA 0.00003
#define PM_LL_KV 2
#define PM_LL_KH 2
#define PM_LL_NT 10                                         // taps at most (max v2, plane 0)
#define PM_LL_NS (PM_LL_NT * (PM_LL_NT + 1) / 2 + PM_LL_NT + 1)  // sums: A, b, count
// Max v3: a normalised LMS stage on the blend (docs/experiments.md entry 25). Its features are
// each predictor's offset from the blend and the true errors N, W, NW, NE, NN, WW (and the
// earlier planes' at the sample), at most PM_NPM + 8; its float64 state per tile plane: the
// weights, the current sample's features, its correction and blend (kept in memory, not in
// registers, across the coding step), then per bucket the moving |error| sums of the blend and
// of the corrected blend that choose between them.
#define PM_NL_NF (PM_NPM + 8)
#define PM_NL_MU 0.006
#define PM_NL_EPS 64.0
#define PM_NL_CLIP 2040.0  // the update's error is clipped to +-this (1/8 units)
#define PM_NL_DMAX 4096.0  // and the correction to +-this (NaN-safe)
#define PM_NL_GATE 256.0   // the bucket sums move 1/256 of the way per sample
#define PM_NL_NS (2 * PM_NL_NF + 2 + 2 * PM_NB)
#define PM_NL_AT (PM_LL_NT * (PM_LL_NT + 1))  // the NLMS state's offset: after the solve scratch
#define PM_LM_N (PM_NL_AT + PM_NL_NS)            // float64 scratch per lane: solve, NLMS

typedef struct {
    const uint8_t *PILC_RESTRICT e_bucket;    // [4096]
    const uint8_t *PILC_RESTRICT lom;         // level of mean [2^15]
    const int64_t *PILC_RESTRICT crc;         // ceil(2^33 / n) [257]
    const int32_t *PILC_RESTRICT recip;       // blend weight of an error sum [4096]
    const uint8_t *PILC_RESTRICT grad_class;  // [13]
    const int64_t *PILC_RESTRICT prior;       // [3 * 96] bucket priors
    RansDecTables rans;
} PmTables;

// A tile's state arrays (already offset to this tile's lane) and their geometry.
typedef struct {
    int16_t *PILC_RESTRICT te;   // [n_ch][rows][tw] true errors, 1/8 units (|t| <= 2040)
    uint16_t *PILC_RESTRICT ek;  // [3][tw][PM_NPM] per-predictor |errors|, capped
    int32_t *PILC_RESTRICT asum; // [PM_NSTAT]: bucket |error| sums, then the levels' contexts
    int32_t *PILC_RESTRICT acnt; // [PM_NSTAT]
    int32_t *PILC_RESTRICT lsum; // max level: [2 tw + 2][PM_LL_NS] V, P, window, row sums; taps
    double *PILC_RESTRICT lmat;  // max level: [PM_LM_N] solve scratch, then max v3's NLMS
    int64_t tw;                  // row length >= w + 2 PAD
    int64_t rows;                // rows per plane >= h + PAD
    int64_t ls;                  // lane stride
} PmState;

// The pixels of the plane group a tile lies in: plane c, row y, column x at
// px[c * hw + y * W + x]; vq the same layout (scale classes) or NULL.
typedef struct {
    uint8_t *PILC_RESTRICT px;
    const uint8_t *PILC_RESTRICT vq;
    int64_t hw, W;
} PmImage;

PILC_FN int64_t pm_te_index(const PmState *st, int64_t c, int64_t pi, int64_t pj) {
    return ((c * st->rows + pi) * st->tw + pj) * st->ls;
}

// N, W, NW, NE, NN, WW of plane p at (y, x), tile coordinates (i, j); tile edges replicate
// inward, and the tile's first sample sees 128.
PILC_FN void pm_neighbours(const uint8_t *PILC_RESTRICT p, int64_t ws, int64_t y, int64_t x,
                           int64_t i, int64_t j, int64_t w, int32_t *o) {
    const uint8_t *r = p + y * ws + x;
    if (i >= 2 && j >= 2 && j + 1 < w) {
        o[0] = r[-ws]; o[1] = r[-1]; o[2] = r[-ws - 1]; o[3] = r[-ws + 1]; o[4] = r[-2 * ws];
        o[5] = r[-2];
        return;
    }
    if (i == 0 && j == 0) { o[0] = o[1] = o[2] = o[3] = o[4] = o[5] = 128; return; }
    if (i == 0) {
        const int32_t wv = r[-1];
        const int32_t ww = j > 1 ? r[-2] : wv;
        o[0] = o[1] = o[2] = o[3] = o[4] = wv; o[5] = ww;
        return;
    }
    const int32_t n = r[-ws];
    const int32_t ne = j + 1 < w ? r[-ws + 1] : n;
    const int32_t nn = i > 1 ? r[-2 * ws] : n;
    if (j == 0) { o[0] = n; o[1] = n; o[2] = n; o[3] = ne; o[4] = nn; o[5] = n; return; }
    const int32_t wv = r[-1];
    const int32_t ww = j > 1 ? r[-2] : wv;
    o[0] = n; o[1] = wv; o[2] = r[-ws - 1]; o[3] = ne; o[4] = nn; o[5] = ww;
}

// LS taps of plane c at a level: 6 own neighbours + 5 per earlier plane, or at the max level
// 10 own + 7 per earlier plane.
PILC_FN int pm_n_taps(int lvl, int c) {
    return PM_IS_MAX(lvl) ? 10 + 7 * PILC_MIN(c, 2) : 6 + 5 * PILC_MIN(c, 2);
}

// The max level's further own taps NNE, NNW, NWW, NEE of the sample at r (tile coordinates
// (i, j), width w); near the tile's edges NN, NN, W, NE stand in.
PILC_FN void pm_far_taps(const uint8_t *PILC_RESTRICT r, int64_t ws, int64_t i, int64_t j,
                         int64_t w, const int32_t *nb, int32_t *o) {
    if (i >= 2 && j >= 2 && j + 2 < w) {
        o[0] = r[-2 * ws + 1]; o[1] = r[-2 * ws - 1]; o[2] = r[-ws - 2]; o[3] = r[-ws + 2];
    } else {
        o[0] = nb[4]; o[1] = nb[4]; o[2] = nb[1]; o[3] = nb[3];
    }
}

// E and S of an earlier plane's sample gx at r: that plane is whole by now (planes of a tile
// run in order), so the max level reads ahead in it; the tile's edges replicate gx.
PILC_FN void pm_ahead_taps(const uint8_t *PILC_RESTRICT r, int64_t ws, int64_t i, int64_t j,
                           int64_t h, int64_t w, int32_t gx, int32_t *o) {
    o[0] = j + 1 < w ? r[1] : gx;
    o[1] = i + 1 < h ? r[ws] : gx;
}

// LS features of plane c at (y, x) into f, in the order the coefficients are sent; returns how
// many (pm_n_taps).
PILC_FN int pm_taps(const PmImage *im, int lvl, int c, int64_t y, int64_t x, int64_t i,
                    int64_t j, int64_t h, int64_t w, int32_t *f) {
    const uint8_t *pc = im->px + c * im->hw;
    pm_neighbours(pc, im->W, y, x, i, j, w, f);
    int k = 6;
    if (PM_IS_MAX(lvl)) {
        pm_far_taps(pc + y * im->W + x, im->W, i, j, w, f, f + 6);
        k = 10;
    }
    for (int r = 0; r < PILC_MIN(c, 2); r++) {
        int32_t g[6];
        const uint8_t *pr = im->px + r * im->hw;
        pm_neighbours(pr, im->W, y, x, i, j, w, g);
        f[k] = pr[y * im->W + x];
        f[k + 1] = g[0]; f[k + 2] = g[1]; f[k + 3] = g[2]; f[k + 4] = g[3];
        k += 5;
        if (PM_IS_MAX(lvl)) {
            pm_ahead_taps(pr + y * im->W + x, im->W, i, j, h, w, f[k - 5], f + k);
            k += 2;
        }
    }
    return k;
}

// The LS fit's sampling step of a tile plane: every 3rd row and column, every 5th in tiles of
// >= 2^15 samples (but the fast level's plane 0: it leans on LS alone, and its 6-tap fit is cheap:
// -0.4% bytes on gray, docs/experiments.md entry 19), every one in tiles of < 1024 (an encoder
// choice, not part of the format).
PILC_FN int64_t pm_fit_step(int lvl, int c, int64_t h, int64_t w) {
    const int dense = PM_IS_FAST(lvl) && c == 0;
    return h * w >= (1 << 15) ? (dense ? 3 : 5) : (h * w >= 1024 ? 3 : 1);
}

// The fit's solve: from the normal equations' lower triangle a (row stride PM_NTAPS) and b of n
// taps to the quantised coefficients coef[PM_NTAPS] (a and b are overwritten).
PILC_FN void pm_fit_solve(int n, int64_t *coef, double *a, double *b) {
    for (int u = 0; u < n; u++) {
        for (int v = 0; v < u; v++) a[v * PM_NTAPS + u] = a[u * PM_NTAPS + v];
        a[u * PM_NTAPS + u] += 1e-3 * (a[u * PM_NTAPS + u] + 1.0);
    }
    // Gaussian elimination with partial pivoting, then back substitution (in place).
    for (int k = 0; k < n; k++) {
        int piv = k;
        for (int r = k + 1; r < n; r++) {
            if (pilc_fabs(a[r * PM_NTAPS + k]) > pilc_fabs(a[piv * PM_NTAPS + k])) piv = r;
        }
        if (piv != k) {
            for (int cc = 0; cc < n; cc++) {
                const double t = a[k * PM_NTAPS + cc];
                a[k * PM_NTAPS + cc] = a[piv * PM_NTAPS + cc];
                a[piv * PM_NTAPS + cc] = t;
            }
            const double t = b[k];
            b[k] = b[piv];
            b[piv] = t;
        }
        const double akk = a[k * PM_NTAPS + k];
        if (pilc_fabs(akk) < 1e-9) continue;
        for (int r = k + 1; r < n; r++) {
            const double fct = a[r * PM_NTAPS + k] / akk;
            for (int cc = k; cc < n; cc++) a[r * PM_NTAPS + cc] -= fct * a[k * PM_NTAPS + cc];
            b[r] -= fct * b[k];
        }
    }
    double sol[PM_NTAPS];
    for (int k = n - 1; k >= 0; k--) {
        double acc = b[k];
        for (int cc = k + 1; cc < n; cc++) acc -= a[k * PM_NTAPS + cc] * sol[cc];
        const double akk = a[k * PM_NTAPS + k];
        sol[k] = pilc_fabs(akk) >= 1e-9 ? acc / akk : 0.0;
    }
    for (int u = 0; u < PM_NTAPS; u++) coef[u] = 0;
    for (int u = 0; u < n; u++) {
        double v = sol[u] * PM_COEF_ONE;
        int64_t q;
        if (!(v == v)) q = -PM_COEF_MAX;  // NaN: what numpy's int64 cast then the clamp gave
        else {
            v = v > 4096.0 ? 4096.0 : (v < -4096.0 ? -4096.0 : v);
            q = (int64_t)pilc_rint(v);
        }
        coef[u] = q > PM_COEF_MAX ? PM_COEF_MAX : (q < -PM_COEF_MAX ? -PM_COEF_MAX : q);
    }
}

// Least-squares coefficients (1/256, |a| <= 2047) of tile plane c over the samples pm_fit_step
// picks. Float64 in a fixed order with FMA contraction off on both compilers, so CPU and GPU
// pick the same coefficients (the sums are of integer products, exact in float64). a: PM_NTAPS^2
// scratch, b: PM_NTAPS.
PILC_FN void pm_fit_coefs(const PmImage *im, int lvl, int c, int64_t y0, int64_t x0, int64_t h,
                          int64_t w, int64_t *coef, double *a, double *b) {
    int32_t f[PM_NTAPS] = {0};
    const int n = pm_n_taps(lvl, c);
    for (int u = 0; u < PM_NTAPS * PM_NTAPS; u++) a[u] = 0.0;
    for (int u = 0; u < PM_NTAPS; u++) b[u] = 0.0;
    const int64_t step = pm_fit_step(lvl, c, h, w);
    const uint8_t *pc = im->px + c * im->hw;
    for (int64_t i = 0; i < h; i += step) {
        for (int64_t j = 0; j < w; j += step) {
            pm_taps(im, lvl, c, y0 + i, x0 + j, i, j, h, w, f);
            const double xv = (double)pc[(y0 + i) * im->W + x0 + j];
            for (int u = 0; u < n; u++) {
                const double fu = (double)f[u];
                b[u] += fu * xv;
                for (int v = 0; v <= u; v++) a[u * PM_NTAPS + v] += fu * (double)f[v];
            }
        }
    }
    pm_fit_solve(n, coef, a, b);
}

// Max levels, local LS: taps of plane c at tile position (i, j): N, W, NW, NE, NN, WW on plane
// 0 (max v2 adds NNE, NNW, NWW, NEE); N, W, NW, NE and plane 0's X, N, W on planes > 0.
// Returns the count.
PILC_FN int pm_ll_nt(int lvl, int c) { return c == 0 ? (PM_IS_V2(lvl) ? 10 : 6) : 7; }
PILC_FN void pm_ll_feat(const PmImage *im, int lvl, int c, int64_t y0, int64_t x0, int64_t i,
                        int64_t j, int64_t w, int32_t *PILC_RESTRICT f, int64_t ls) {
    const int64_t y = y0 + i, x = x0 + j;
    int32_t nb[6];
    pm_neighbours(im->px + c * im->hw, im->W, y, x, i, j, w, nb);
    f[0] = nb[0]; f[ls] = nb[1]; f[2 * ls] = nb[2]; f[3 * ls] = nb[3];
    if (c == 0) {
        f[4 * ls] = nb[4]; f[5 * ls] = nb[5];
        if (PM_IS_V2(lvl)) {
            int32_t fr[4];
            pm_far_taps(im->px + y * im->W + x, im->W, i, j, w, nb, fr);
            f[6 * ls] = fr[0]; f[7 * ls] = fr[1]; f[8 * ls] = fr[2]; f[9 * ls] = fr[3];
        }
        return;
    }
    pm_neighbours(im->px, im->W, y, x, i, j, w, nb);
    f[4 * ls] = im->px[y * im->W + x]; f[5 * ls] = nb[0]; f[6 * ls] = nb[1];
}

// s += sg * (the sums of one training sample: f f^T upper triangle, f t, 1).
PILC_FN void pm_ll_acc(int32_t *PILC_RESTRICT s, int64_t ls, const int32_t *PILC_RESTRICT f,
                       int nt, int32_t t, int32_t sg) {
    int k = 0;
    PILC_UNROLL_CPU
    for (int u = 0; u < nt; u++)
        PILC_UNROLL_CPU
        for (int v = 0; v <= u; v++) { s[k * ls] += sg * f[u * ls] * f[v * ls]; k++; }
    PILC_UNROLL_CPU
    for (int u = 0; u < nt; u++) { s[k * ls] += sg * f[u * ls] * t; k++; }
    s[k * ls] += sg;
}

// Column x's decayed sums V[x] take in row i-1 (its products P[x], stored when that sample was
// coded); called once per row, when x enters the window.
PILC_FN void pm_ll_fold(int32_t *PILC_RESTRICT v, const int32_t *PILC_RESTRICT pp, int64_t ls,
                        int ns) {
    PILC_UNROLL_CPU
    for (int k = 0; k < ns; k++) v[k * ls] = v[k * ls] - (v[k * ls] >> PM_LL_KV) + pp[k * ls];
}

PILC_FN void pm_ll_add(int32_t *PILC_RESTRICT d, const int32_t *PILC_RESTRICT s, int64_t ls,
                       int ns, int32_t sg) {
    PILC_UNROLL_CPU
    for (int k = 0; k < ns; k++) d[k * ls] += sg * s[k * ls];
}

// The local LS system of plane c from window + row sums into m ([nt][nt + 1], lane stride
// ls): the normal matrix (the whole of it, or only its lower triangle where lower_only), ridge
// lambda = KAPPA x mean diagonal + 1 on the diagonal, and the right-hand side pulled by lambda
// towards the tile's LS coefficients (1/256). Float64, fixed order, no FMA.
PILC_FN void pm_ll_system(const PmState *st, int nt, int c, const int64_t *PILC_RESTRICT coef,
                          int64_t tw, const int lower_only) {
    const int64_t ls = st->ls;
    const int32_t *win = st->lsum + (2 * tw * PM_LL_NS) * ls;
    const int32_t *row = st->lsum + ((2 * tw + 1) * PM_LL_NS) * ls;
    double *m = st->lmat;
    const int n1 = nt + 1;
    int k = 0;
    double tr = 0.0;
    PILC_UNROLL_CPU
    for (int u = 0; u < nt; u++)
        PILC_UNROLL_CPU
        for (int v = 0; v <= u; v++) {
            const double a = (double)(win[k * ls] + row[k * ls]);
            m[(u * n1 + v) * ls] = a;
            if (!lower_only) m[(v * n1 + u) * ls] = a;
            if (u == v) tr += a;
            k++;
        }
    const double lam = PM_LL_KAPPA * tr / (double)nt + 1.0;
    PILC_UNROLL_CPU
    for (int u = 0; u < nt; u++) {
        m[(u * n1 + nt) * ls] = (double)(win[k * ls] + row[k * ls]) + lam * (double)coef[c == 0 || u < 4 ? u : u + 6] / 256.0;
        m[(u * n1 + u) * ls] += lam;
        k++;
    }
}

// Max level (2): Gaussian elimination of m, the solution into m's last column; returns the
// prediction sol . f.
PILC_FN double pm_ll_solve_ge(double *PILC_RESTRICT m, int nt, const int32_t *PILC_RESTRICT f,
                              int64_t ls) {
    const int n1 = nt + 1;
    PILC_UNROLL_CPU
    for (int p = 0; p < nt; p++) {
        const double inv = 1.0 / m[(p * n1 + p) * ls];
        m[(p * n1 + p) * ls] = inv;
        PILC_UNROLL_CPU
        for (int r = p + 1; r < nt; r++) {
            const double fct = m[(r * n1 + p) * ls] * inv;
            PILC_UNROLL_CPU
            for (int cc = p + 1; cc <= nt; cc++) m[(r * n1 + cc) * ls] -= fct * m[(p * n1 + cc) * ls];
        }
    }
    double pv = 0.0;
    PILC_UNROLL_CPU
    for (int p = nt - 1; p >= 0; p--) {
        double acc = m[(p * n1 + nt) * ls];
        PILC_UNROLL_CPU
        for (int cc = p + 1; cc < nt; cc++) acc -= m[(p * n1 + cc) * ls] * m[(cc * n1 + nt) * ls];
        const double sol = acc * m[(p * n1 + p) * ls];
        m[(p * n1 + nt) * ls] = sol;
        pv += sol * (double)f[p * ls];
    }
    return pv;
}

// Max v2 (level 3): LDL^T of m's lower triangle, right-looking (each pivot's updates are
// independent, so they overlap; a row-by-row Cholesky's dot products are one serial chain and
// were slower), the right-hand side forward-substituted and scaled by 1 / d alongside, then
// the back substitution column by column; the solution ends in m's last column. Rows run from
// the bottom so that the rows above still hold their unscaled column-p entries. Returns sol . f.
PILC_FN double pm_ll_solve_ldl(double *PILC_RESTRICT m, int nt, const int32_t *PILC_RESTRICT f,
                               int64_t ls) {
    const int n1 = nt + 1;
    PILC_UNROLL_CPU
    for (int p = 0; p < nt; p++) {
        const double inv = 1.0 / m[(p * n1 + p) * ls];
        m[(p * n1 + p) * ls] = inv;
        const double bp = m[(p * n1 + nt) * ls];
        PILC_UNROLL_CPU
        for (int r = nt - 1; r > p; r--) {
            const double t = m[(r * n1 + p) * ls];
            const double l = t * inv;
            PILC_UNROLL_CPU
            for (int cc = p + 1; cc < r; cc++) m[(r * n1 + cc) * ls] -= l * m[(cc * n1 + p) * ls];
            m[(r * n1 + r) * ls] -= l * t;
            m[(r * n1 + p) * ls] = l;
            m[(r * n1 + nt) * ls] -= l * bp;
        }
        m[(p * n1 + nt) * ls] = bp * inv;
    }
    double pv = 0.0;
    PILC_UNROLL_CPU
    for (int p = nt - 1; p >= 0; p--) {
        const double x = m[(p * n1 + nt) * ls];
        pv += x * (double)f[p * ls];
        PILC_UNROLL_CPU
        for (int q = 0; q < p; q++) m[(q * n1 + nt) * ls] -= m[(p * n1 + q) * ls] * x;
    }
    return pv;
}

// The local LS prediction (1/8 units) of the sample at tile column j with features f: level 2
// solves at every sample; level 3 at columns j = 0 mod PM_LL_EVERY2 only, the others reusing
// the solution left in m's last column.
PILC_FN int32_t pm_ll_predict(PmState *st, int lvl, int c, const int32_t *PILC_RESTRICT f,
                              const int64_t *PILC_RESTRICT coef, int64_t tw, int64_t j) {
    const int nt = pm_ll_nt(lvl, c);
    const int64_t ls = st->ls;
    double *m = st->lmat;
    double pv = 0.0;
    if (!PM_IS_V2(lvl)) {
        pm_ll_system(st, nt, c, coef, tw, 0);
        pv = pm_ll_solve_ge(m, nt, f, ls);
    } else if (j % PM_LL_EVERY2 != 0) {
        PILC_UNROLL_CPU
        for (int p = 0; p < nt; p++) pv += m[(p * (nt + 1) + nt) * ls] * (double)f[p * ls];
    } else {
#if defined(PILC_CUDA)
        pm_ll_system(st, nt, c, coef, tw, 1);
        pv = pm_ll_solve_ldl(m, nt, f, ls);
#else  // the tap count a literal, so gcc unrolls the solve whole
        if (nt == 10) {
            pm_ll_system(st, 10, c, coef, tw, 1);
            pv = pm_ll_solve_ldl(m, 10, f, ls);
        } else {
            pm_ll_system(st, 7, c, coef, tw, 1);
            pv = pm_ll_solve_ldl(m, 7, f, ls);
        }
#endif
    }
    double v = pv * 8.0;
    if (!(v == v)) return f[0] * 8;  // NaN: N
    v = v > 3072.0 ? 3072.0 : (v < -1024.0 ? -1024.0 : v);
    return (int32_t)pilc_floor(v + 0.5);
}

// Where a sample's residual is coded from: base = P rounded to a whole value, the sign flip
// (neg = -1 where P's rounding offset d = P - 8 base is < 0, so every table sees the residual
// leaning the same way) and the table: the level's second offset class where |d| >= 2.
PILC_FN int64_t pm_coding_frame(int64_t pr, int64_t kind, int64_t lv, int64_t *base,
                                int64_t *neg) {
    *base = (pr + 4) >> 3;
    const int64_t d = pr - (*base << 3);
    *neg = d < 0 ? -1 : 0;
    const int64_t far = (PM_FAR_OFFSETS >> (d + 4)) & 1;
    return ((kind * PM_NLEV + lv) << 1) + far;
}

// Max v3's NLMS state of the tile (PM_NL_NS float64, lane stride ls) in lmat.
PILC_FN double *pm_nl_state(const PmState *st) { return st->lmat + PM_NL_AT * st->ls; }

// The per-predictor |error| ring (PmState.ek: 3 rows of tw columns of PM_NPM predictors): the row
// that holds tile row r (r - 1 is at pm_ek_row(st, r + 2), r - 2 at pm_ek_row(st, r + 1)).
PILC_FN uint16_t *pm_ek_row(const PmState *st, int64_t r) {
    return st->ek + ((r % 3) * st->tw * PM_NPM) * st->ls;
}

// Predictor m's blend sum at column pj of row i: its |errors| at N, W, NW, NE, NN, WW, halved
// (er0, er1, er2: the ring rows of i, i - 1 and i - 2).
PILC_FN int32_t pm_ek_sum(const uint16_t *PILC_RESTRICT er0, const uint16_t *PILC_RESTRICT er1,
                          const uint16_t *PILC_RESTRICT er2, int64_t pj, int m, int64_t ls) {
    return ((int32_t)er1[(pj * PM_NPM + m) * ls] + er0[((pj - 1) * PM_NPM + m) * ls]
            + er1[((pj - 1) * PM_NPM + m) * ls] + er1[((pj + 1) * PM_NPM + m) * ls]
            + er2[(pj * PM_NPM + m) * ls] + er0[((pj - 2) * PM_NPM + m) * ls])
           >> 1;
}

// Zero what a tile plane reads before writing it: the pad rows and columns of its true errors
// and the whole per-predictor ring; start every bucket from the trained prior.
PILC_FN void pm_reset_plane(PmState *st, int lvl, int c, int64_t w, int kind,
                            const PmTables *tb) {
    const int64_t ls = st->ls;
    for (int64_t pi = 0; pi < st->rows; pi++) {
        if (pi < PM_PAD) {
            for (int64_t pj = 0; pj < w + 2 * PM_PAD; pj++) st->te[pm_te_index(st, c, pi, pj)] = 0;
        } else {
            st->te[pm_te_index(st, c, pi, 0)] = 0;
            st->te[pm_te_index(st, c, pi, 1)] = 0;
            st->te[pm_te_index(st, c, pi, w + PM_PAD)] = 0;
            st->te[pm_te_index(st, c, pi, w + PM_PAD + 1)] = 0;
        }
    }
    if (lvl != PM_LVL_FAST)
        for (int64_t u = 0; u < 3 * st->tw * PM_NPM; u++) st->ek[u * ls] = 0;
    for (int u = 0; u < PM_NB; u++) {
        st->acnt[u * ls] = PM_PRIOR_COUNT;
        st->asum[u * ls] = (int32_t)((tb->prior[kind * PM_NB + u] * PM_PRIOR_COUNT) >> 4);
    }
    if (PM_IS_MAX(lvl)) {
        for (int64_t u = 0; u < (2 * st->tw + 2) * PM_LL_NS; u++) st->lsum[u * ls] = 0;
        for (int u = PM_NB + PM_NBIAS; u < PM_NSTAT; u++) {
            st->acnt[u * ls] = 0;
            st->asum[u * ls] = 0;
        }
    }
    if (PM_IS_MAX(lvl))
        for (int u = PM_NB; u < PM_NB + PM_NBIAS; u++) {
            st->acnt[u * ls] = PM_BIAS_START;
            st->asum[u * ls] = 0;
        }
    if (lvl == PM_LVL_MAX3)
        for (int u = 0; u < PM_NL_NS; u++) pm_nl_state(st)[u * ls] = 0;
    if (PM_IS_FAST(lvl))  // moving means: no counts
        for (int u = PM_NB; u < PM_NB + PM_NBIAS_FAST; u++) st->asum[u * ls] = 0;
}

// floor(|v| / n + 1/2) with v's sign, by the reciprocal multiply (|v| < 2^21, n in 1..256).
PILC_FN int32_t pm_round_div(int64_t v, int64_t n, const int64_t *PILC_RESTRICT crc) {
    const int64_t m = ((pilc_abs(v) + (n >> 1)) * crc[n]) >> 33;
    return (int32_t)(v < 0 ? -m : m);
}

// The steps every level's sample shares (docs/FORMAT.md, "pixel model"): table-choice energy,
// bucket, the bucket's running mean and its update, and coding the sample in its frame.

// Energy E of a sample from the true errors around it (1/8 units): own plane N, W (twice), NW,
// NE, NN, WW; plane 1 adds plane 0's at the same place twice, plane 2 planes 0's and 1's.
PILC_FN int32_t pm_energy(int c, int32_t t_n, int32_t t_w, int32_t t_nw, int32_t t_ne,
                          int32_t t_nn, int32_t t_ww, int32_t t_0, int32_t t_1) {
    int32_t e = 2 * pilc_abs32(t_n) + 2 * pilc_abs32(t_w) + pilc_abs32(t_nw) + pilc_abs32(t_ne);
    e += pilc_abs32(t_nn) + pilc_abs32(t_ww);
    if (c == 1) e += 2 * pilc_abs32(t_0);
    else if (c == 2) e += pilc_abs32(t_0) + pilc_abs32(t_1);
    e >>= 3;
    return e > 4095 ? 4095 : e;
}

// The gradient sub-bucket of neighbours nb (N, W, NW, NE, ...).
PILC_FN int64_t pm_grad_sub(const int32_t *nb, const PmTables *tb) {
    const int32_t gs = pilc_abs32(nb[0] - nb[2]) + pilc_abs32(nb[1] - nb[2])
                       + pilc_abs32(nb[3] - nb[0]);
    return tb->grad_class[gs < PM_GRAD_LAST ? gs : PM_GRAD_LAST];
}

// Bucket of energy e and sub-bucket sub at tile position (i, j): the tile's first row and
// first column have energy buckets of their own.
PILC_FN int64_t pm_bucket(int32_t e, int64_t sub, int64_t i, int64_t j, const PmTables *tb) {
    int64_t eb = tb->e_bucket[e];
    if (i == 0) eb = PM_EDGE_ROW_BUCKET;
    else if (j == 0) eb = PM_EDGE_COL_BUCKET;
    return eb * PM_NSUB + sub;
}

// A running |error| mean (1/8 units x 16, capped) from its sum and count.
PILC_FN int64_t pm_running_mean(int64_t sum, int64_t cnt, const PmTables *tb) {
    const int64_t mean = ((sum << 4) * tb->crc[cnt]) >> 33;
    return mean >= PM_MEAN_MAX ? PM_MEAN_MAX - 1 : mean;
}

// Add |t| to a running sum and count, halving both when the count reaches halve_at.
PILC_FN void pm_running_add(int32_t *PILC_RESTRICT sum, int32_t *PILC_RESTRICT cnt, int64_t s,
                            int64_t n, int32_t t, int64_t halve_at) {
    s += pilc_abs32(t);
    n += 1;
    if (n >= halve_at) { s = (s + 1) >> 1; n >>= 1; }
    *sum = (int32_t)s;
    *cnt = (int32_t)n;
}

// Code the sample at *at with prediction pr (1/8 units) and table level lv: decoding, its
// residual from the stream (state *xs, read position *rp, end rend) gives the pixel, written to
// *at; encoding, the residual, table id and bucket b go to sym/tid/bkt[*pos] (bkt may be NULL).
// Returns the pixel.
PILC_FN int32_t pm_code_sample(int64_t pr, int kind, int64_t lv, int64_t b, const int decode,
                               uint8_t *PILC_RESTRICT at, int64_t *xs, int64_t *rp,
                               int64_t rend, const uint8_t *PILC_RESTRICT data,
                               const PmTables *tb, uint8_t *PILC_RESTRICT sym,
                               uint8_t *PILC_RESTRICT tid, uint8_t *PILC_RESTRICT bkt,
                               int64_t *pos) {
    int64_t base, neg;
    const int64_t t_id = pm_coding_frame(pr, kind, lv, &base, &neg);
    if (decode) {
        const int64_t sv = rans_dec_sym(xs, rp, rend, t_id, tb->rans, data);
        const int32_t xv = (int32_t)((base + ((sv ^ neg) - neg)) & 0xFF);
        *at = (uint8_t)xv;
        return xv;
    }
    const int32_t xv = *at;
    sym[*pos] = (uint8_t)((((xv - base) ^ neg) - neg) & 0xFF);
    tid[*pos] = (uint8_t)t_id;
    if (bkt) bkt[*pos] = (uint8_t)b;
    *pos += 1;
    return xv;
}

// Max v3's NLMS stage, prediction: the features of the sample (each of the k predictors' q[m]
// minus the blend pr, then the true errors N, W, NW, NE, NN, WW of its plane and, on planes
// > 0, the earlier planes' at the sample) into f, their count into *nf; returns the correction
// w . f, clamped to +-PM_NL_DMAX (NaN to -PM_NL_DMAX), also kept after the features with pr.
// Float64, summed in feature order.
PILC_FN double pm_nl_predict(const double *PILC_RESTRICT w, double *PILC_RESTRICT f, int64_t ls,
                             const int32_t *q, int k, int64_t pr,
                             const int16_t *PILC_RESTRICT trow,
                             const int16_t *PILC_RESTRICT t0row,
                             const int16_t *PILC_RESTRICT t1row, int c, int64_t pj, int64_t tw,
                             int *nf) {
    int n = 0;
    for (int m = 0; m < k; m++) f[(n++) * ls] = (double)(q[m] - pr);
    f[(n++) * ls] = (double)trow[(pj - tw) * ls];
    f[(n++) * ls] = (double)trow[(pj - 1) * ls];
    f[(n++) * ls] = (double)trow[(pj - tw - 1) * ls];
    f[(n++) * ls] = (double)trow[(pj - tw + 1) * ls];
    f[(n++) * ls] = (double)trow[(pj - 2 * tw) * ls];
    f[(n++) * ls] = (double)trow[(pj - 2) * ls];
    if (c > 0) f[(n++) * ls] = (double)t0row[pj * ls];
    if (c == 2) f[(n++) * ls] = (double)t1row[pj * ls];
    double d = 0;
    PILC_ROLLED
    for (int m = 0; m < n; m++) d += w[m * ls] * f[m * ls];
    *nf = n;
    d = d > -PM_NL_DMAX ? (d < PM_NL_DMAX ? d : PM_NL_DMAX) : -PM_NL_DMAX;
    f[PM_NL_NF * ls] = d;
    f[(PM_NL_NF + 1) * ls] = (double)pr;
    return d;
}

// Max v3's NLMS stage, update with the sample's value x8 (1/8 units): with eb its error against
// the blend, the weights move by MU e f / (EPS + |f|^2), e = eb - d clipped to +-CLIP; the
// bucket's moving sums g[0] (the blend's |error|) and g[ls] (the corrected blend's) move 1/GATE
// of the way.
PILC_FN void pm_nl_update(double *PILC_RESTRICT w, const double *PILC_RESTRICT f,
                          double *PILC_RESTRICT g, int64_t ls, int nf, int32_t x8) {
    const double d = f[PM_NL_NF * ls];
    const int32_t eb = x8 - (int32_t)f[(PM_NL_NF + 1) * ls];
    double nn = PM_NL_EPS;
    PILC_ROLLED
    for (int m = 0; m < nf; m++) nn += f[m * ls] * f[m * ls];
    double e = (double)eb - d;
    e = e > PM_NL_CLIP ? PM_NL_CLIP : (e < -PM_NL_CLIP ? -PM_NL_CLIP : e);
    const double s = PM_NL_MU * e / nn;
    PILC_ROLLED
    for (int m = 0; m < nf; m++) w[m * ls] += s * f[m * ls];
    const double ae = pilc_fabs((double)eb - d), ab = pilc_fabs((double)eb);
    g[0] += ab - g[0] / PM_NL_GATE;
    g[ls] += ae - g[ls] / PM_NL_GATE;
}

// One tile plane c (a compile-time constant where inlined) in raster order. Encoding
// (decode = 0): symbol, table id and bucket of every sample into sym/tid/bkt (bkt may be NULL).
// Decoding: each sample's residual from the stream (state *xs, read position *rp, end rend)
// and the reconstructed pixel into the image. Both run the same model step and update.
PILC_FN void pm_plane(const PmImage *im, const int lvl, const int c, int64_t y0, int64_t x0,
                      int64_t h, int64_t w, PmState *st, const int64_t *PILC_RESTRICT coef,
                      const PmTables *tb, const int decode, uint8_t *PILC_RESTRICT sym,
                      uint8_t *PILC_RESTRICT tid, uint8_t *PILC_RESTRICT bkt, int64_t *xs,
                      int64_t *rp, int64_t rend, const uint8_t *PILC_RESTRICT data) {
    const int kind = PILC_MIN(c, 2);
    const int np = 3 + 3 * kind;  // cross-plane predictors use planes 0..kind-1
    const int mx = PM_IS_MAX(lvl);  // pm_plane runs the default and every max level
    const int v2 = PM_IS_V2(lvl);
    const int nl = lvl == PM_LVL_MAX3;  // max v3's NLMS stage
    const int k = np + 1 + mx;  // the max levels add the local LS predictor q[np + 1]
    const int64_t llr = v2 ? PM_LL_R2 : PM_LL_R;
    const int64_t halve_at = v2 && c == 0 ? PM_P0_HALVE2 : PM_HALVE_AT;
    const int nown = mx ? 10 : 6, ncross = mx ? 7 : 5;
    // bias correction: the max level's blend gains from it on planes > 0 and loses on gray
    // (docs/experiments.md entry 19)
    const int corr = mx && c > 0;
    const int64_t ls = st->ls;
    const int64_t tw = st->tw;
    const int64_t hw = im->hw, W = im->W;
    // max v3's NLMS state (lmat after the solve scratch): weights, features, bucket sums
    double *PILC_RESTRICT nlw = nl ? pm_nl_state(st) : 0;
    double *PILC_RESTRICT nlf = nl ? nlw + PM_NL_NF * ls : 0;
    double *PILC_RESTRICT nlg = nl ? nlf + (PM_NL_NF + 2) * ls : 0;
    uint8_t *PILC_RESTRICT pc = im->px + c * hw;
    const int use_vq = im->vq != 0;
    pm_reset_plane(st, lvl, c, w, kind, tb);
    int64_t pos = 0;
    for (int64_t i = 0; i < h; i++) {
        const int64_t y = y0 + i;
        const int64_t pi = i + PM_PAD;
        uint16_t *PILC_RESTRICT er0 = pm_ek_row(st, i);
        const uint16_t *PILC_RESTRICT er1 = pm_ek_row(st, i + 2);
        const uint16_t *PILC_RESTRICT er2 = pm_ek_row(st, i + 1);
        int16_t *PILC_RESTRICT trow = st->te + pm_te_index(st, c, pi, 0);
        const int16_t *PILC_RESTRICT t0row = st->te + pm_te_index(st, 0, pi, 0);
        const int16_t *PILC_RESTRICT t1row = st->te + pm_te_index(st, 1, pi, 0);
        int32_t *PILC_RESTRICT llv = st->lsum;
        int32_t *PILC_RESTRICT llp = st->lsum + (tw * PM_LL_NS) * ls;
        int32_t *PILC_RESTRICT llwin = st->lsum + (2 * tw * PM_LL_NS) * ls;
        int32_t *PILC_RESTRICT llrow = st->lsum + ((2 * tw + 1) * PM_LL_NS) * ls;
        int32_t *PILC_RESTRICT llf = st->lsum + ((2 * tw + 2) * PM_LL_NS) * ls;  // features
        const int llnt = pm_ll_nt(lvl, c);
        const int llns = (llnt * (llnt + 3)) / 2 + 1;
        if (mx) {
            PILC_ROLLED
            for (int u = 0; u < llns; u++) { llwin[u * ls] = 0; llrow[u * ls] = 0; }
            PILC_ROLLED
            for (int64_t xx = 0; xx <= llr && xx < w; xx++) {
                if (i > 0) pm_ll_fold(llv + (xx * PM_LL_NS) * ls, llp + (xx * PM_LL_NS) * ls, ls, llns);
                pm_ll_add(llwin, llv + (xx * PM_LL_NS) * ls, ls, llns, 1);
            }
        }
        for (int64_t j = 0; j < w; j++) {
            const int64_t x = x0 + j;
            const int64_t pj = j + PM_PAD;
            // predictions (every value here fits int32: |LS sum| <= 24 * 2047 * 255)
            int32_t nb[6], q[PM_NPM];
            pm_neighbours(pc, W, y, x, i, j, w, nb);
            int32_t acc = (int32_t)coef[0] * nb[0] + (int32_t)coef[1] * nb[1]
                          + (int32_t)coef[2] * nb[2] + (int32_t)coef[3] * nb[3]
                          + (int32_t)coef[4] * nb[4] + (int32_t)coef[5] * nb[5];
            if (mx) {
                int32_t far[4];
                pm_far_taps(pc + y * W + x, W, i, j, w, nb, far);
                acc += (int32_t)coef[6] * far[0] + (int32_t)coef[7] * far[1]
                       + (int32_t)coef[8] * far[2] + (int32_t)coef[9] * far[3];
            }
            const int32_t t_w = trow[(pj - 1) * ls], t_n = trow[(pj - tw) * ls];
            const int32_t t_nw = trow[(pj - tw - 1) * ls], t_ne = trow[(pj - tw + 1) * ls];
            q[0] = (nb[1] + nb[3] - nb[0]) * 8;
            q[1] = nb[0] * 8 + (((t_nw + t_n + t_ne) * 7) >> 5);
            q[2] = nb[1] * 8 + (((t_w + t_n + t_nw) * 10) >> 5);
            for (int r = 0; r < kind; r++) {
                int32_t g[6];
                const uint8_t *pr = im->px + r * hw;
                pm_neighbours(pr, W, y, x, i, j, w, g);
                const int32_t gx = pr[y * W + x];
                const int nt = nown + ncross * r;
                acc += (int32_t)coef[nt] * gx + (int32_t)coef[nt + 1] * g[0]
                       + (int32_t)coef[nt + 2] * g[1] + (int32_t)coef[nt + 3] * g[2]
                       + (int32_t)coef[nt + 4] * g[3];
                if (mx) {
                    int32_t ah[2];
                    pm_ahead_taps(pr + y * W + x, W, i, j, h, w, gx, ah);
                    acc += (int32_t)coef[nt + 5] * ah[0] + (int32_t)coef[nt + 6] * ah[1];
                }
                q[3 + 3 * r] = (nb[1] + gx - g[1]) * 8;
                q[4 + 3 * r] = (nb[0] + gx - g[0]) * 8;
                q[5 + 3 * r] = (nb[0] + nb[1] - nb[2] + gx - (g[0] + g[1] - g[2])) * 8;
            }
            q[np] = (acc + 16) >> 5;
            if (mx) {
                if (j > 0) {
                    const int64_t xin = j + llr, xout = j - llr - 1;
                    if (xin < w) {
                        if (i > 0) pm_ll_fold(llv + (xin * PM_LL_NS) * ls, llp + (xin * PM_LL_NS) * ls, ls, llns);
                        pm_ll_add(llwin, llv + (xin * PM_LL_NS) * ls, ls, llns, 1);
                    }
                    if (xout >= 0) pm_ll_add(llwin, llv + (xout * PM_LL_NS) * ls, ls, llns, -1);
                }
                pm_ll_feat(im, lvl, c, y0, x0, i, j, w, llf, ls);
                q[np + 1] = pm_ll_predict(st, lvl, c, llf, coef, tw, j);
            }
            int64_t pr;
            int32_t sll = 0;  // max level: the local LS predictor's neighbourhood error sum
            // blend: weights ~ 1 / (recent |error| + 12)^2; the LS predictor counts twice
            // on planes > 0
            int32_t tot = 0, wt = 0, wls = 0;
            int64_t bl = 0;  // up to 11 * 2^16 * 2^19: the one 64-bit sum
            for (int m = 0; m < k; m++) {
                int32_t s = pm_ek_sum(er0, er1, er2, pj, m, ls);
                if (mx && c == 0) s <<= 1;  // max level, plane 0: sharper weights
                if (s > 4095) s = 4095;
                wt = tb->recip[s];
                if (m == np) wls = wt;
                if (m == np + 1) sll = s;
                tot += wt;
                bl += (int64_t)wt * q[m];
            }
            if (c > 0) { tot += wls; bl += (int64_t)wls * q[np]; }
            if (mx) {  // the local LS predictor's weight counts PM_LL_WEIGHT times
                tot += (PM_LL_WEIGHT - 1) * wt;
                bl += (int64_t)((PM_LL_WEIGHT - 1) * wt) * q[np + 1];
            }
            pr = pilc_floor((double)(bl + (tot >> 1)) / (double)tot);
            pr = pr < 0 ? 0 : (pr > 255 * 8 ? 255 * 8 : pr);
            // table choice: error energy bucket (own bucket on tile edges), its running mean
            const int32_t e = pm_energy(c, t_n, t_w, t_nw, t_ne, trow[(pj - 2 * tw) * ls],
                                        trow[(pj - 2) * ls], c > 0 ? t0row[pj * ls] : 0,
                                        c == 2 ? t1row[pj * ls] : 0);
            const int64_t sub = use_vq ? (im->vq[c * hw + y * W + x] >> 4) : pm_grad_sub(nb, tb);
            const int64_t b = pm_bucket(e, sub, i, j, tb);
            const int64_t asum = st->asum[b * ls], acnt = st->acnt[b * ls];
            int64_t mean = pm_running_mean(asum, acnt, tb);
            int64_t c2 = 0;
            if (mx) {
                // a second scale estimate: the running mean |error| of a context from the local
                // LS predictor's recent errors and its distance to the tile LS; on planes > 0
                // the level comes from the weighted mean of both estimates (on gray it lost)
                int32_t e2 = (sll * 11) >> 5;
                if (e2 > 4095) e2 = 4095;
                const int32_t sp = pilc_abs32(q[np + 1] - q[np]);
                const int64_t spc = sp < PM_C2_SP1 ? 0 : (sp < PM_C2_SP2 ? 1 : (sp < PM_C2_SP3 ? 2 : 3));
                c2 = PM_NB + PM_NBIAS + (int64_t)tb->e_bucket[e2] * 4 + spc;
                const int64_t n2 = st->acnt[c2 * ls];
                if (n2 >= 2 && c > 0) {
                    const int64_t m2 = pm_running_mean(st->asum[c2 * ls], n2, tb);
                    mean = (PM_C2_MW * mean + (4 - PM_C2_MW) * m2 + 2) >> 2;
                }
            }
            const int64_t lv = tb->lom[mean];
            // max v3: the NLMS stage's correction of the blend, where this bucket's corrected
            // predictions have erred less than the blend's
            int nf = 0;
            if (nl) {
                const double nld =
                    pm_nl_predict(nlw, nlf, ls, q, k, pr, trow, t0row, t1row, c, pj, tw, &nf);
                if (nlg[(2 * b + 1) * ls] < nlg[2 * b * ls]) {
                    pr = pilc_floor((double)pr + nld + 0.5);
                    pr = pr < 0 ? 0 : (pr > 255 * 8 ? 255 * 8 : pr);
                }
            }
            // max, planes > 0: the blend's mean error in this context (energy x texture)
            // corrects it
            const int64_t praw = pr;
            int64_t bi = 0;
            if (corr) {
                const int32_t tprev = c == 1 ? t0row[pj * ls] : (c == 2 ? t1row[pj * ls] : 0);
                const int64_t tex = (nb[0] * 8 > pr) | ((nb[1] * 8 > pr) << 1)
                                    | ((c > 0 ? tprev > 0 : nb[3] * 8 > pr) << 2);
                bi = PM_NB + (b / PM_NSUB) * 8 + tex;
                pr += pm_round_div(st->asum[bi * ls], st->acnt[bi * ls], tb->crc);
                pr = pr < 0 ? 0 : (pr > 255 * 8 ? 255 * 8 : pr);
            }
            const int32_t xv = pm_code_sample(pr, kind, lv, b, decode, pc + y * W + x, xs, rp,
                                              rend, data, tb, sym, tid, bkt, &pos);
            if (mx) {
                int32_t *PILC_RESTRICT pj_ = llp + (j * PM_LL_NS) * ls;
                PILC_ROLLED
                for (int u = 0; u < llns; u++) pj_[u * ls] = 0;
                pm_ll_acc(pj_, ls, llf, llnt, xv, 1);
                PILC_ROLLED
                for (int u = 0; u < llns; u++)
                    llrow[u * ls] = llrow[u * ls] - (llrow[u * ls] >> PM_LL_KH) + pj_[u * ls];
            }
            if (corr) {
                int64_t bs = st->asum[bi * ls] + (xv * 8 - praw), bc = st->acnt[bi * ls] + 1;
                if (bc >= PM_BIAS_HALVE) {
                    bs = bs < 0 ? -((1 - bs) >> 1) : (bs + 1) >> 1;
                    bc >>= 1;
                }
                st->asum[bi * ls] = (int32_t)bs;
                st->acnt[bi * ls] = (int32_t)bc;
            }
            if (nl) pm_nl_update(nlw, nlf, nlg + 2 * b * ls, ls, nf, xv * 8);
            // update
            const int32_t t = xv * 8 - (int32_t)pr;
            trow[pj * ls] = (int16_t)t;
            for (int m = 0; m < k; m++) {
                const int32_t em = pilc_abs32(xv * 8 - q[m]);
                er0[(pj * PM_NPM + m) * ls] = (uint16_t)(em < PM_EK_CAP ? em : PM_EK_CAP);
            }
            if (mx)
                pm_running_add(st->asum + c2 * ls, st->acnt + c2 * ls, st->asum[c2 * ls],
                               st->acnt[c2 * ls], t, PM_HALVE_AT);
            pm_running_add(st->asum + b * ls, st->acnt + b * ls, asum, acnt, t, halve_at);
        }
    }
}

#include "pilc_fast.h"

// Plane c of a tile at level lvl: the fast level's own loop, else pm_plane with the level and c
// literals, so each (level, plane) pair's predictor count and branches are constants.
#define PM_PLANE_AT(L, C) \
    pm_plane(im, L, C, y0, x0, h, w, st, coef, tb, decode, sym, tid, bkt, xs, rp, rend, data)
#define PM_PLANE_LEVEL(L) \
    do { \
        if (c == 0) PM_PLANE_AT(L, 0); \
        else if (c == 1) PM_PLANE_AT(L, 1); \
        else PM_PLANE_AT(L, 2); \
    } while (0)
PILC_FN void pm_plane_any(const PmImage *im, int lvl, int c, int64_t y0, int64_t x0, int64_t h,
                          int64_t w, PmState *st, const int64_t *coef, const PmTables *tb,
                          const int decode, uint8_t *sym, uint8_t *tid, uint8_t *bkt,
                          int64_t *xs, int64_t *rp, int64_t rend, const uint8_t *data) {
    if (PM_IS_FAST(lvl)) {
        PmFastPlane L;
        pm_fast_open(&L, im, c, y0, x0, st, coef);
        L.sym = sym; L.tid = tid; L.bkt = bkt;
        if (decode) { L.xs = *xs; L.rp = *rp; L.rend = rend; }
        pm_fast_plane_any(&L, c, h, w, im->W, tb, decode, lvl == PM_LVL_FAST2, data);
        if (decode) { *xs = L.xs; *rp = L.rp; }
    } else if (lvl == PM_LVL_MAX3) PM_PLANE_LEVEL(PM_LVL_MAX3);
    else if (lvl == PM_LVL_MAX2) PM_PLANE_LEVEL(PM_LVL_MAX2);
    else if (lvl == PM_LVL_MAX) PM_PLANE_LEVEL(PM_LVL_MAX);
    else PM_PLANE_LEVEL(PM_LVL_DEFAULT);
}
#undef PM_PLANE_LEVEL
#undef PM_PLANE_AT

// Encoder, one tile (all n_ch planes in order) at level lvl: LS coefficients into
// coef[c * PM_NTAPS ..], then the symbols, table ids and buckets of plane c from sym[starts[c]]
// on. a, b: LS scratch.
PILC_FN void pm_encode_tile(const PmImage *im, int lvl, int n_ch, const int64_t *box, PmState *st,
                            const PmTables *tb, int64_t *coef, const int64_t *starts,
                            uint8_t *sym, uint8_t *tid, uint8_t *bkt, double *a, double *b) {
    for (int c = 0; c < n_ch; c++) {
        int64_t *cf = coef + c * PM_NTAPS;
        pm_fit_coefs(im, lvl, c, box[0], box[1], box[2], box[3], cf, a, b);
        const int64_t s = starts[c];
        pm_plane_any(im, lvl, c, box[0], box[1], box[2], box[3], st, cf, tb, 0, sym + s, tid + s,
                     bkt ? bkt + s : 0, 0, 0, 0, 0);
    }
}

// Decoder, one tile: plane c from stream first_stream + c of (data, bb); err[c] gets each
// stream's status (a plane whose stream header is bad is skipped).
PILC_FN void pm_decode_tile(const PmImage *im, int lvl, int n_ch, const int64_t *box, PmState *st,
                            const PmTables *tb, const int64_t *coef, const uint8_t *data,
                            const int64_t *bb, int64_t first_stream, int64_t *err) {
    for (int c = 0; c < n_ch; c++) {
        int64_t x0, rp, rend;
        const int bad = rans_open(data, bb, first_stream + c, &x0, &rp, &rend);
        if (bad) { err[c] = bad; continue; }
        int64_t xs = x0;
        pm_plane_any(im, lvl, c, box[0], box[1], box[2], box[3], st, coef + c * PM_NTAPS, tb, 1, 0,
                     0, 0, &xs, &rp, rend, data);
        err[c] = rans_status(x0, xs, rp, rend);
    }
}
