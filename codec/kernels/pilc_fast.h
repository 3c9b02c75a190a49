// The fast effort levels' per-sample model (docs/FORMAT.md, "levels"): the per-tile LS predictor
// (level 1, "fastest": alone, so no per-predictor errors; level 5, "fast": on planes > 0 blended
// with plane 0's three cross-plane predictors by their recent errors, pm_fast_cross), corrected
// by the moving mean of its error in a context of 12 energy classes x 6 texture bits, then the
// default level's table choice. Its own
// loop, apart from pm_plane's blend, because its point is speed. (Running 2 or 4 tiles of one
// shape in lockstep on a CPU thread, to overlap their serial chains, was 14-16% and 8-13%
// slower than one tile at a time: the loop is throughput-bound; docs/experiments.md entry 19.)
#pragma once
// Included by pilc_model.h after pm_plane: it uses the model's tables, state and helpers.

#define PM_FAST_HALVE_AT 64  // plane 0 bucket means: the count halves here (else at 256)

// One tile plane in flight: where its samples and state are, and its stream or its outputs.
typedef struct {
    uint8_t *PILC_RESTRICT pc;        // plane c at the tile's origin (row stride im->W)
    const uint8_t *PILC_RESTRICT p0;  // plane 0 there (planes > 0)
    const uint8_t *PILC_RESTRICT p1;  // plane 1 there (plane 2)
    PmState st;
    const int64_t *PILC_RESTRICT coef;
    int16_t *PILC_RESTRICT trow;      // this row's true errors of plane c (pad included)
    const int16_t *PILC_RESTRICT t0row, *PILC_RESTRICT t1row;
    uint16_t *PILC_RESTRICT er0;      // level 5: this row's member |errors| in the ek ring,
    const uint16_t *PILC_RESTRICT er1, *PILC_RESTRICT er2;  // and the two rows above
    int64_t xs, rp, rend;             // decoding: rANS state, read position, stream end
    uint8_t *PILC_RESTRICT sym, *PILC_RESTRICT tid, *PILC_RESTRICT bkt;  // encoding
    int64_t pos;
} PmFastPlane;

PILC_FN void pm_fast_open(PmFastPlane *L, const PmImage *im, int c, int64_t y0, int64_t x0,
                          const PmState *st, const int64_t *coef) {
    const int64_t o = y0 * im->W + x0;
    L->pc = im->px + c * im->hw + o;
    L->p0 = im->px + o;
    L->p1 = im->px + im->hw + o;
    L->st = *st;
    L->coef = coef;
    L->pos = 0;
}

PILC_FN void pm_fast_row(PmFastPlane *L, int c, int64_t i) {
    const int64_t pi = i + PM_PAD;
    L->trow = L->st.te + pm_te_index(&L->st, c, pi, 0);
    L->t0row = L->st.te + pm_te_index(&L->st, 0, pi, 0);
    L->t1row = L->st.te + pm_te_index(&L->st, 1, pi, 0);
    L->er0 = pm_ek_row(&L->st, i);
    L->er1 = pm_ek_row(&L->st, i + 2);
    L->er2 = pm_ek_row(&L->st, i + 1);
}

// Level 5's blend on planes > 0 (docs/FORMAT.md, "level 5"): P0 from the clamped LS prediction
// pr (counted twice) and q[0..2], plane 0's three cross-plane predictors, each weighted by
// recip[min(4095, (sum of its |errors| at N, W, NW, NE, NN, WW) >> 1)] as the default level
// weighs its members. Every member lies in 0..2040, so the weighted sum stays below 2^31 (the
// vector lanes sum in int32). The members' |errors| live in the state's ek ring (pm_ek_row,
// the rows pm_fast_row points at).
#define PM_FAST_NX 4  // blend members of level 5: three cross-plane predictors and LS
PILC_FN int32_t pm_fast_cross(const PmFastPlane *L, int64_t pj, const int32_t *q,
                              const PmTables *tb) {
    int32_t tot = 0, wt = 0;
    int32_t bl = 0;
    for (int m = 0; m < PM_FAST_NX; m++) {
        const int32_t s = pm_ek_sum(L->er0, L->er1, L->er2, pj, m, L->st.ls);
        wt = tb->recip[s > 4095 ? 4095 : s];
        tot += wt;
        bl += wt * q[m];
    }
    tot += wt;  // LS (the last member) counts twice
    bl += wt * q[PM_FAST_NX - 1];
    return (bl + (tot >> 1)) / tot;
}

// Store level 5's member errors |8 x - q[m]| of column pj in this row's ring row.
PILC_FN void pm_fast_cross_errors(PmFastPlane *L, int64_t pj, const int32_t *q, int32_t x8) {
    const int64_t ls = L->st.ls;
    for (int m = 0; m < PM_FAST_NX; m++)
        L->er0[(pj * PM_NPM + m) * ls] = (uint16_t)pilc_abs32(x8 - q[m]);
}

PILC_FN int32_t pm_clamp_pred(int32_t v) { return v < 0 ? 0 : (v > 255 * 8 ? 255 * 8 : v); }

// Sample (i, j) of lane L's plane c (a literal where inlined): the same model step for the
// encoder (decode = 0: symbol, table id, bucket out) and the fused decoder. x2 (a literal):
// level 5's cross-plane blend on planes > 0.
PILC_FN void pm_fast_sample(PmFastPlane *L, const int c, int64_t i, int64_t j, int64_t w,
                            int64_t W, const PmTables *tb, const int decode, const int x2,
                            const uint8_t *PILC_RESTRICT data) {
    const int kind = PILC_MIN(c, 2);
    const int64_t ls = L->st.ls, tw = L->st.tw, pj = j + PM_PAD;
    const int64_t *PILC_RESTRICT coef = L->coef;
    int16_t *PILC_RESTRICT trow = L->trow;
    int32_t nb[6];
    pm_neighbours(L->pc, W, i, j, i, j, w, nb);
    int32_t acc = (int32_t)coef[0] * nb[0] + (int32_t)coef[1] * nb[1]
                  + (int32_t)coef[2] * nb[2] + (int32_t)coef[3] * nb[3]
                  + (int32_t)coef[4] * nb[4] + (int32_t)coef[5] * nb[5];
    int32_t q[PM_FAST_NX];  // level 5's members (planes > 0)
    for (int r = 0; r < kind; r++) {
        int32_t g[6];
        const uint8_t *pr = r == 0 ? L->p0 : L->p1;
        pm_neighbours(pr, W, i, j, i, j, w, g);
        const int32_t gx = pr[i * W + j];
        const int nt = 6 + 5 * r;
        acc += (int32_t)coef[nt] * gx + (int32_t)coef[nt + 1] * g[0]
               + (int32_t)coef[nt + 2] * g[1] + (int32_t)coef[nt + 3] * g[2]
               + (int32_t)coef[nt + 4] * g[3];
        if (x2 && r == 0) {  // W + g - gW, N + g - gN, N + W - NW + g - (gN + gW - gNW)
            q[0] = pm_clamp_pred(8 * (nb[1] + gx - g[1]));
            q[1] = pm_clamp_pred(8 * (nb[0] + gx - g[0]));
            q[2] = pm_clamp_pred(8 * (nb[0] + nb[1] - nb[2] + gx - (g[0] + g[1] - g[2])));
        }
    }
    int32_t pr = pm_clamp_pred((acc + 16) >> 5);
    if (x2 && c > 0) {
        q[PM_FAST_NX - 1] = pr;
        pr = pm_fast_cross(L, pj, q, tb);
    }
    const int32_t t_w = trow[(pj - 1) * ls], t_n = trow[(pj - tw) * ls];
    const int32_t t_nw = trow[(pj - tw - 1) * ls], t_ne = trow[(pj - tw + 1) * ls];
    const int32_t t_0 = c > 0 ? L->t0row[pj * ls] : 0, t_1 = c == 2 ? L->t1row[pj * ls] : 0;
    const int32_t tprev = c == 1 ? t_0 : t_1;  // the previous plane's error here (planes > 0)
    const int32_t e = pm_energy(c, t_n, t_w, t_nw, t_ne, trow[(pj - 2 * tw) * ls],
                                trow[(pj - 2) * ls], t_0, t_1);
    const int64_t b = pm_bucket(e, pm_grad_sub(nb, tb), i, j, tb);
    const int64_t eb = b / PM_NSUB;
    int32_t *PILC_RESTRICT asum = L->st.asum, *PILC_RESTRICT acnt = L->st.acnt;
    const int64_t sb = asum[b * ls], cb = acnt[b * ls];
    const int64_t lv = tb->lom[pm_running_mean(sb, cb, tb)];
    // bias: 6 texture bits (neighbours and two gradients against P; on planes > 0 the earlier
    // plane's error sign for NW, on plane 2 plane 0's for NE) x 12 energy classes, an
    // exponential moving mean of LS's error
    const int64_t tex = (nb[0] * 8 > pr) | ((nb[1] * 8 > pr) << 1)
                        | ((c > 0 ? tprev > 0 : nb[2] * 8 > pr) << 2)
                        | ((c == 2 ? t_0 > 0 : nb[3] * 8 > pr) << 3)
                        | (((2 * nb[0] - nb[4]) * 8 > pr) << 4)
                        | (((2 * nb[1] - nb[5]) * 8 > pr) << 5);
    const int64_t bi = PM_NB + (eb >> 1) * 64 + tex;
    const int32_t bias = asum[bi * ls];
    int32_t pc = pr + ((bias + (1 << (PM_EMA_FRAC - 1))) >> PM_EMA_FRAC);
    pc = pc < 0 ? 0 : (pc > 255 * 8 ? 255 * 8 : pc);
    const int32_t xv = pm_code_sample(pc, kind, lv, b, decode, L->pc + i * W + j, &L->xs, &L->rp,
                                      L->rend, data, tb, L->sym, L->tid, L->bkt, &L->pos);
    asum[bi * ls] = bias + ((((xv * 8 - pr) << PM_EMA_FRAC) - bias) >> PM_EMA_RATE);
    const int32_t t = xv * 8 - pc;
    trow[pj * ls] = (int16_t)t;
    if (x2 && c > 0) pm_fast_cross_errors(L, pj, q, xv * 8);
    pm_running_add(asum + b * ls, acnt + b * ls, sb, cb, t,
                   c == 0 ? PM_FAST_HALVE_AT : PM_HALVE_AT);
}

// Plane c (a literal where inlined) of the tile plane L in raster order, at level 1 or (x2)
// level 5.
PILC_FN void pm_fast_plane(PmFastPlane *L, const int c, int64_t h, int64_t w, int64_t W,
                           const PmTables *tb, const int decode, const int x2,
                           const uint8_t *PILC_RESTRICT data) {
    pm_reset_plane(&L->st, x2 ? PM_LVL_FAST2 : PM_LVL_FAST, c, w, PILC_MIN(c, 2), tb);
    for (int64_t i = 0; i < h; i++) {
        pm_fast_row(L, c, i);
        for (int64_t j = 0; j < w; j++) pm_fast_sample(L, c, i, j, w, W, tb, decode, x2, data);
    }
}

// pm_fast_plane with the plane index and x2 literals (plane 0 is the same at both levels).
PILC_FN void pm_fast_plane_any(PmFastPlane *L, int c, int64_t h, int64_t w, int64_t W,
                               const PmTables *tb, const int decode, const int x2,
                               const uint8_t *data) {
    if (c == 0) pm_fast_plane(L, 0, h, w, W, tb, decode, 0, data);
    else if (c == 1 && x2) pm_fast_plane(L, 1, h, w, W, tb, decode, 1, data);
    else if (c == 1) pm_fast_plane(L, 1, h, w, W, tb, decode, 0, data);
    else if (x2) pm_fast_plane(L, 2, h, w, W, tb, decode, 1, data);
    else pm_fast_plane(L, 2, h, w, W, tb, decode, 0, data);
}
