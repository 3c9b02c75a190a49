// The fast level's vector-lane kernel, written once over the vector macros of
// pilc_fast_lanes.h and included there once per width (PL_W lanes: 8 with AVX2, 16 with
// AVX-512); its names end in the width (PL_N). No include guard: it is meant to be included
// twice, and it #undefs the includer's macros at its end.

// 8 or 16 lanes' bytes / int16 at p, widened to int32.
PL_FN PV PL_N(pl_u8)(const uint8_t *p) { return P_U8(p); }
PL_FN PV PL_N(pl_i16)(const int16_t *p) { return P_I16(p); }
PL_FN PV PL_N(pl_clamp)(PV v, int32_t lo, int32_t hi) {
    return P_MIN(P_MAX(v, P_K(lo)), P_K(hi));
}
// table[idx] of a uint8 table whose size is a multiple of 4: each lane loads the aligned word
// holding its byte, so no lane reads past the table's end.
PL_FN PV PL_N(pl_gather_u8)(const uint8_t *table, PV idx) {
    const PV v = P_GATHER(table, P_ANDNOT(P_K(3), idx), 1);
    return P_AND(P_SRLV(v, P_SLLI(P_AND(idx, P_K(3)), 3)), P_K(0xFF));
}
// A lane-interleaved int32 array's element idx of each lane: a[idx * PL_W + lane].
PL_FN PV PL_N(pl_lane_index)(PV idx) { return P_ADD(P_SLLI(idx, PL_LOG_W), P_IOTA); }
PL_FN PV PL_N(pl_gather_lane)(const int32_t *a, PV idx) {
    return P_GATHER(a, PL_N(pl_lane_index)(idx), 4);
}
// pm_running_mean: floor(16 sum * ceil(2^33 / cnt) / 2^33) is floor(16 sum / cnt) for
// 16 sum < 2^24 and cnt <= 256 (the reciprocal's excess adds < 2^-9 < 1/cnt to a quotient whose
// fraction is at most 1 - 1/cnt), capped at PM_MEAN_MAX - 1. One float32 division (P_DIV_F32,
// truncated) gives that capped floor too: 16 sum and cnt are exact in float32, and a quotient
// below 2^15 with a fraction in [1/cnt, 1 - 1/cnt] rounds by at most 2^-10 < 1/256, so never
// across an integer; from 2^15 on the cap decides (test_fast_lanes checks every sum and cnt).
PL_FN PV PL_N(pl_running_mean)(PV sum, PV cnt) {
    return P_MIN(P_DIV_F32(P_SLLI(sum, 4), cnt), P_K(PM_MEAN_MAX - 1));
}

// recip[min(s, 4095)] (WEIGHT_OF_ERR: 65535 * 144 // (s + 12)^2 + 1) without a gather: one
// float32 division, truncated; exact for every s in 0..4095 (test_fast_lanes checks them all).
PL_FN PV PL_N(pl_weight)(PV s) {
    const PV d = P_ADD(P_MIN(s, P_K(4095)), P_K(12));
    return P_ADD(P_DIV_F32(P_K(65535 * 144), P_MULLO(d, d)), P_K(1));
}

// pm_neighbours for every lane of plane p (lane-interleaved, row length wmax) at (i, j); wlast:
// the lanes whose tile ends at column j (their NE stands in as N).
PL_FN void PL_N(pl_neighbours)(const uint8_t *p, int64_t wmax, int64_t i, int64_t j, PM wlast,
                               PV *o) {
    const int64_t rs = wmax * PL_W;
    const uint8_t *r = p + (i * wmax + j) * PL_W;
    if (i == 0) {
        if (j == 0) {
            o[0] = o[1] = o[2] = o[3] = o[4] = o[5] = P_K(128);
            return;
        }
        const PV wv = PL_N(pl_u8)(r - PL_W);
        o[0] = o[1] = o[2] = o[3] = o[4] = wv;
        o[5] = j > 1 ? PL_N(pl_u8)(r - 2 * PL_W) : wv;
        return;
    }
    const PV n = PL_N(pl_u8)(r - rs);
    const PV ne = P_SEL(wlast, PL_N(pl_u8)(r - rs + PL_W), n);
    const PV nn = i > 1 ? PL_N(pl_u8)(r - 2 * rs) : n;
    if (j == 0) {
        o[0] = n; o[1] = n; o[2] = n; o[3] = ne; o[4] = nn; o[5] = n;
        return;
    }
    const PV wv = PL_N(pl_u8)(r - PL_W);
    o[0] = n; o[1] = wv; o[2] = PL_N(pl_u8)(r - rs - PL_W); o[3] = ne; o[4] = nn;
    o[5] = j > 1 ? PL_N(pl_u8)(r - 2 * PL_W) : wv;
}

// Per-lane coder state of one plane.
typedef struct {
    PV xs, rp, rend2;            // rANS state (uint32), read position and end - 2, from dbase
    const uint8_t *dbase;        // decoding: the lowest stream start of the batch
    PV coef[16];                 // the lanes' LS coefficients
    int64_t x0[PL_W];            // decoding: initial states (status check)
    uint8_t *sym[PL_W], *tid[PL_W], *bkt[PL_W];  // encoding: plane c's outputs
} PL_N(PlCoder);

// One batch's plane in flight: its buffers at plane c, the lanes' shapes and which code it.
typedef struct {
    PlBatch *B;
    PL_N(PlCoder) K;
    uint8_t *pc;                 // plane c's pixels
    int16_t *te;                 // plane c's true errors
    int64_t plane_px, plane_te;  // plane strides of pix and te
    PV hv, wv;                   // tile heights and widths
    PM live, row;                // lanes that code this plane; of those, the lanes with row i
    int16_t *ek0;                // level 5: row i's member |errors| in B->ek,
    const int16_t *ek1, *ek2;    // and rows i - 1 and i - 2 ([tw][PM_FAST_NX][W] each)
} PL_N(PlPlane);

PL_FN PV PL_N(pl_lane_values)(const int64_t *v) {
    int32_t o[PL_W];
    for (int l = 0; l < PL_W; l++) o[l] = (int32_t)v[l];
    return P_LOADU(o);
}

// Start plane c of batch P->B (pm_reset_plane): zero true errors, buckets at the trained prior,
// bias means at 0. live: the lanes that code this plane as bits (a decoder skips lanes whose
// stream failed to open).
PL_FN void PL_N(pl_plane_open)(PL_N(PlPlane) *P, int c, const PmTables *tb, int live) {
    PlBatch *B = P->B;
    const int kind = PILC_MIN(c, 2);
    P->plane_px = B->hmax * B->wmax * PL_W;
    P->plane_te = B->rows * B->tw * PL_W;
    P->pc = B->pix + c * P->plane_px;
    P->te = B->te + c * P->plane_te;
    memset(P->te, 0, sizeof(int16_t) * P->plane_te);
    for (int u = 0; u < PM_NB; u++) {
        const int32_t v = (int32_t)((tb->prior[kind * PM_NB + u] * PM_PRIOR_COUNT) >> 4)
                          | PM_PRIOR_COUNT << PL_CNT_AT;
        for (int l = 0; l < PL_W; l++) B->bucket[u * PL_W + l] = v;
    }
    memset(B->bias, 0, sizeof(int32_t) * PM_NBIAS_FAST * PL_W);
    memset(B->ek, 0, sizeof(int16_t) * 3 * B->tw * PM_FAST_NX * PL_W);
    P->hv = PL_N(pl_lane_values)(B->h);
    P->wv = PL_N(pl_lane_values)(B->w);
    P->live = P_MASK_OF_BITS(live);
}

// The lanes with row i (0 where none); the error ring's rows for it.
PL_FN int PL_N(pl_row)(PL_N(PlPlane) *P, int64_t i) {
    const int64_t ring = P->B->tw * PM_FAST_NX * PL_W;
    P->ek0 = P->B->ek + (i % 3) * ring;
    P->ek1 = P->B->ek + ((i + 2) % 3) * ring;
    P->ek2 = P->B->ek + ((i + 1) % 3) * ring;
    P->row = P_MAND(P_GT(P->hv, P_K((int32_t)i)), P->live);
    return P_MBITS(P->row);
}

// Level 5's blend (pm_fast_cross) in every lane: the members' |error| sums are vector loads of
// the lane-interleaved ring B->ek ([3][tw][PM_FAST_NX][W], int16), the weights pl_weight's
// float32 divisions (no gathers), P0 one float64 division (exact: the sum is < 2^31).
PL_FN PV PL_N(pl_cross)(const PL_N(PlPlane) *P, int64_t pj, const PV *q) {
    const int16_t *er0 = P->ek0, *er1 = P->ek1, *er2 = P->ek2;
    PV tot = P_K(0), bl = P_K(0), wt = P_K(0);
    for (int m = 0; m < PM_FAST_NX; m++) {
#define PL_EK(row, col) PL_N(pl_i16)(row + ((col) * PM_FAST_NX + m) * PL_W)
        PV s = P_ADD(P_ADD(PL_EK(er1, pj), PL_EK(er0, pj - 1)),
                     P_ADD(PL_EK(er1, pj - 1), PL_EK(er1, pj + 1)));
        s = P_ADD(s, P_ADD(PL_EK(er2, pj), PL_EK(er0, pj - 2)));
#undef PL_EK
        wt = PL_N(pl_weight)(P_SRAI(s, 1));
        tot = P_ADD(tot, wt);
        bl = P_ADD(bl, P_MULLO(wt, q[m]));
    }
    tot = P_ADD(tot, wt);  // LS counts twice
    bl = P_ADD(bl, P_MULLO(wt, q[PM_FAST_NX - 1]));
    return P_DIV_FLOOR(P_ADD(bl, P_SRAI(tot, 1)), tot);
}

// Sample (i, j) of plane c in every lane that has it: pm_fast_sample's steps, lane-parallel
// (x2, a literal: level 5's cross-plane blend on planes > 0).
PL_FN void PL_N(pl_sample)(PL_N(PlPlane) *P, const int c, int64_t i, int64_t j,
                           const PmTables *tb, const int decode, const int x2,
                           const int32_t *gc) {
    const int kind = PILC_MIN(c, 2);
    const int64_t wmax = P->B->wmax, tw = P->B->tw, pi = i + PM_PAD, pj = j + PM_PAD;
    const PM act = P_MAND(P_GT(P->wv, P_K((int32_t)j)), P->row);
    if (P_MNONE(act)) return;
    const PM wlast = P_EQ(P->wv, P_K((int32_t)j + 1));
    PV nb[6];
    PL_N(pl_neighbours)(P->pc, wmax, i, j, wlast, nb);
    PV acc = P_MULLO(P->K.coef[0], nb[0]);
    for (int k = 1; k < 6; k++) acc = P_ADD(acc, P_MULLO(P->K.coef[k], nb[k]));
    PV q[PM_FAST_NX];  // level 5's members (planes > 0)
    for (int r = 0; r < kind; r++) {
        PV g[6];
        const uint8_t *pr = P->B->pix + r * P->plane_px;
        PL_N(pl_neighbours)(pr, wmax, i, j, wlast, g);
        const PV gx = PL_N(pl_u8)(pr + (i * wmax + j) * PL_W);
        const int nt = 6 + 5 * r;
        acc = P_ADD(acc, P_MULLO(P->K.coef[nt], gx));
        for (int k = 0; k < 4; k++) acc = P_ADD(acc, P_MULLO(P->K.coef[nt + 1 + k], g[k]));
        if (x2 && r == 0) {
            q[0] = PL_N(pl_clamp)(P_SLLI(P_SUB(P_ADD(nb[1], gx), g[1]), 3), 0, 255 * 8);
            q[1] = PL_N(pl_clamp)(P_SLLI(P_SUB(P_ADD(nb[0], gx), g[0]), 3), 0, 255 * 8);
            q[2] = PL_N(pl_clamp)(P_SLLI(P_SUB(P_ADD(P_SUB(P_ADD(nb[0], nb[1]), nb[2]), gx),
                                               P_SUB(P_ADD(g[0], g[1]), g[2])), 3),
                                  0, 255 * 8);
        }
    }
    PV pr = PL_N(pl_clamp)(P_SRAI(P_ADD(acc, P_K(16)), 5), 0, 255 * 8);
    if (x2 && c > 0) {
        q[PM_FAST_NX - 1] = pr;
        pr = PL_N(pl_cross)(P, pj, q);
    }
    const int16_t *trow = P->te + pi * tw * PL_W;
    const PV t_w = PL_N(pl_i16)(trow + (pj - 1) * PL_W);
    const PV t_n = PL_N(pl_i16)(trow + (pj - tw) * PL_W);
    const PV t_nw = PL_N(pl_i16)(trow + (pj - tw - 1) * PL_W);
    const PV t_ne = PL_N(pl_i16)(trow + (pj - tw + 1) * PL_W);
    const PV t_nn = PL_N(pl_i16)(trow + (pj - 2 * tw) * PL_W);
    const PV t_ww = PL_N(pl_i16)(trow + (pj - 2) * PL_W);
    const int64_t here = (pi * tw + pj) * PL_W;
    const PV t_0 = c > 0 ? PL_N(pl_i16)(P->B->te + here) : P_K(0);
    const PV t_1 = c == 2 ? PL_N(pl_i16)(P->B->te + P->plane_te + here) : P_K(0);
    // pm_energy
    PV e = P_ADD(P_ABS(t_n), P_ABS(t_w));
    e = P_ADD(e, e);
    e = P_ADD(e, P_ADD(P_ABS(t_nw), P_ABS(t_ne)));
    e = P_ADD(e, P_ADD(P_ABS(t_nn), P_ABS(t_ww)));
    if (c == 1) e = P_ADD(e, P_SLLI(P_ABS(t_0), 1));
    if (c == 2) e = P_ADD(e, P_ADD(P_ABS(t_0), P_ABS(t_1)));
    e = P_MIN(P_SRAI(e, 3), P_K(4095));
    // pm_grad_sub and pm_bucket
    PV gs = P_ADD(P_ABS(P_SUB(nb[0], nb[2])), P_ABS(P_SUB(nb[1], nb[2])));
    gs = P_MIN(P_ADD(gs, P_ABS(P_SUB(nb[3], nb[0]))), P_K(PM_GRAD_LAST));
    const PV sub = P_LOOKUP16(gc, gs);
    const PV eb = i == 0   ? P_K(PM_EDGE_ROW_BUCKET)
                  : j == 0 ? P_K(PM_EDGE_COL_BUCKET)
                           : PL_N(pl_gather_u8)(tb->e_bucket, e);
    const PV b = P_ADD(P_SLLI(eb, 2), sub);
    const PV packed = PL_N(pl_gather_lane)(P->B->bucket, b);
    const PV sb = P_AND(packed, P_K((1 << PL_CNT_AT) - 1));
    const PV cb = P_SRLI(packed, PL_CNT_AT);
    const PV lv = PL_N(pl_gather_u8)(tb->lom, PL_N(pl_running_mean)(sb, cb));
    // the bias context (texture bits x energy class) and its moving mean
#define PL_GT8(a) P_GT(P_SLLI(a, 3), pr)
    const PV tprev = c == 1 ? t_0 : t_1;
    const PM b2 = c > 0 ? P_GT(tprev, P_K(0)) : PL_GT8(nb[2]);
    const PM b3 = c == 2 ? P_GT(t_0, P_K(0)) : PL_GT8(nb[3]);
    PV tex = P_BIT(PL_GT8(nb[0]), 1);
    tex = P_OR(tex, P_BIT(PL_GT8(nb[1]), 2));
    tex = P_OR(tex, P_BIT(b2, 4));
    tex = P_OR(tex, P_BIT(b3, 8));
    tex = P_OR(tex, P_BIT(PL_GT8(P_SUB(P_ADD(nb[0], nb[0]), nb[4])), 16));
    tex = P_OR(tex, P_BIT(PL_GT8(P_SUB(P_ADD(nb[1], nb[1]), nb[5])), 32));
#undef PL_GT8
    const PV bi = P_ADD(P_SLLI(P_SRAI(eb, 1), 6), tex);
    const PV bias = PL_N(pl_gather_lane)(P->B->bias, bi);
    const PV pcv = PL_N(pl_clamp)(
        P_ADD(pr, P_SRAI(P_ADD(bias, P_K(1 << (PM_EMA_FRAC - 1))), PM_EMA_FRAC)), 0, 255 * 8);
    // pm_coding_frame
    const PV base = P_SRAI(P_ADD(pcv, P_K(4)), 3);
    const PV d = P_SUB(pcv, P_SLLI(base, 3));
    const PV neg = P_SRAI(d, 31);
    const PV far = P_AND(P_SRLV(P_K(PM_FAR_OFFSETS), P_ADD(d, P_K(4))), P_K(1));
    const PV t_id = P_ADD(P_SLLI(P_ADD(P_K(kind * PM_NLEV), lv), 1), far);
    uint8_t *at = P->pc + (i * wmax + j) * PL_W;
    PV xv;
    if (decode) {  // rans_dec_sym in every lane
        const PV xs = P->K.xs;
        const PV slot = P_AND(xs, P_K(0xFFFF));
        PV s = PL_N(pl_gather_u8)(tb->rans.bk, P_OR(P_SLLI(t_id, 16 - RANS_BK_SHIFT),
                                                    P_SRLI(slot, RANS_BK_SHIFT)));
        const PV trow8 = P_SLLI(t_id, 8);
        PV ent = P_GATHER(tb->rans.fc, P_OR(trow8, s), 4);
        for (;;) {  // slot >= cum + freq: the symbol lies further on
            const PV end = P_ADD(P_SRLI(ent, 16), P_AND(ent, P_K(0xFFFF)));
            const PM on = P_GT(slot, P_SUB(end, P_K(1)));
            if (P_MNONE(on)) break;
            s = P_ADD_IF(s, on, 1);
            ent = P_MGATHER(ent, tb->rans.fc, P_OR(trow8, s), on, 4);
        }
        PV xn = P_ADD(P_MULLO(P_AND(ent, P_K(0xFFFF)), P_SRLI(xs, 16)),
                      P_SUB(slot, P_SRLI(ent, 16)));
        // no branch on whether any lane renormalises: it is unpredictable
        const PM need = P_MAND(P_EQ(P_SRLI(xn, 16), P_K(0)), act);
        const PV rc = P_MIN(P->K.rp, P->K.rend2);
        const PV word = P_SRLI(P_MGATHER(P_K(0), P->K.dbase, P_SUB(rc, P_K(2)), need, 1), 16);
        xn = P_SEL(need, xn, P_OR(P_SLLI(xn, 16), word));
        P->K.rp = P_ADD_IF(P->K.rp, need, 2);
        P->K.xs = P_SEL(act, xs, xn);
        xv = P_AND(P_ADD(base, P_SUB(P_XOR(s, neg), neg)), P_K(0xFF));
        P_ST_U8(at, xv);  // lanes past their tile write where nothing reads
    } else {
        xv = PL_N(pl_u8)(at);
        const PV sv = P_AND(P_SUB(P_XOR(P_SUB(xv, base), neg), neg), P_K(0xFF));
        uint8_t *st = P->B->stage + j * PL_W;
        P_ST_U8(st, sv);
        P_ST_U8(st + wmax * PL_W, t_id);
        P_ST_U8(st + 2 * wmax * PL_W, b);
    }
    // updates: the bias mean, the true error, the bucket's running sum and count
    const PV x8v = P_SLLI(xv, 3);
    const PV nbias =
        P_ADD(bias, P_SRAI(P_SUB(P_SLLI(P_SUB(x8v, pr), PM_EMA_FRAC), bias), PM_EMA_RATE));
    const PV t = P_MASKZ(P_SUB(x8v, pcv), act);
    P_ST_I16(P->te + here, t);
    if (x2 && c > 0) {
        int16_t *er0 = P->ek0 + pj * PM_FAST_NX * PL_W;
        for (int m = 0; m < PM_FAST_NX; m++)
            P_ST_I16(er0 + m * PL_W, P_MASKZ(P_ABS(P_SUB(x8v, q[m])), act));
    }
    PV s2 = P_ADD(sb, P_ABS(t));
    PV n2 = P_ADD(cb, P_K(1));
    const PM hm = P_GT(n2, P_K((c == 0 ? PM_FAST_HALVE_AT : PM_HALVE_AT) - 1));
    s2 = P_SEL(hm, s2, P_SRAI(P_ADD(s2, P_K(1)), 1));
    n2 = P_SEL(hm, n2, P_SRAI(n2, 1));
    P_SCATTER(P->B->bias, PL_SPARE(PM_NBIAS_FAST), PL_N(pl_lane_index)(bi), nbias, act);
    P_SCATTER(P->B->bucket, PL_SPARE(PM_NB), PL_N(pl_lane_index)(b),
              P_OR(s2, P_SLLI(n2, PL_CNT_AT)), act);
}

// The encoder's row i of every lane: symbols, table ids and buckets (where asked for: no lane
// has an output then) from the stage to each lane's outputs.
PL_FN void PL_N(pl_row_out)(PL_N(PlPlane) *P, int64_t i) {
    const PlBatch *B = P->B;
    const int row = P_MBITS(P->row);
    for (int a = 0; a < (P->K.bkt[0] ? 3 : 2); a++)
        for (int g = 0; g < PL_W; g += 8) {
            uint8_t *out[8];
            int64_t n[8];
            for (int k = 0; k < 8; k++) {
                const int l = g + k;
                uint8_t *o = a == 0 ? P->K.sym[l] : a == 1 ? P->K.tid[l] : P->K.bkt[l];
                const int has = (row >> l & 1) && o;
                out[k] = has ? o + i * B->w[l] : 0;
                n[k] = has ? B->w[l] : 0;
            }
            pl_transpose_row(out, n, B->stage + a * B->wmax * PL_W, PL_W, g, B->wmax, 0);
        }
}

// Plane c (a literal where inlined) of every lane, in raster order over the lanes' union shape.
// (Two 8-lane batches in lockstep, to overlap their chains, measured no faster: entry 27.)
PL_FN void PL_N(pl_plane)(PL_N(PlPlane) *P, const int c, const PmTables *tb, const int decode,
                          const int x2) {
    int32_t gc[16] = {0};
    for (int g = 0; g <= PM_GRAD_LAST; g++) gc[g] = tb->grad_class[g];
    for (int64_t i = 0; i < P->B->hmax; i++) {
        if (!PL_N(pl_row)(P, i)) continue;
        for (int64_t j = 0; j < P->B->wmax; j++) PL_N(pl_sample)(P, c, i, j, tb, decode, x2, gc);
        if (!decode) PL_N(pl_row_out)(P, i);
    }
}

PL_OUTER void PL_N(pl_plane_any)(PL_N(PlPlane) *P, int c, const PmTables *tb, const int decode,
                                  const int x2) {
    if (c == 0) PL_N(pl_plane)(P, 0, tb, decode, 0);
    else if (c == 1 && x2) PL_N(pl_plane)(P, 1, tb, decode, 1);
    else if (c == 1) PL_N(pl_plane)(P, 1, tb, decode, 0);
    else if (x2) PL_N(pl_plane)(P, 2, tb, decode, 1);
    else PL_N(pl_plane)(P, 2, tb, decode, 0);
}

PL_FN void PL_N(pl_coefs)(PL_N(PlCoder) *K, const PlBatch *B, const int64_t *coef, int64_t n_ch,
                          int c) {
    for (int k = 0; k < 16; k++) {
        int32_t v[PL_W] = {0};
        for (int l = 0; l < B->n; l++) v[l] = (int32_t)coef[(l * n_ch + c) * PM_NTAPS + k];
        K->coef[k] = P_LOADU(v);
    }
}

// pm_taps of plane c at (i, j) in every lane (f[0 .. n_taps - 1]) and the sample itself
// (f[PM_NTAPS]).
PL_FN void PL_N(pl_fit_taps)(const PlBatch *B, int c, int kind, int64_t i, int64_t j, PV wv,
                             PV *f) {
    const int64_t wmax = B->wmax, plane_px = B->hmax * wmax * PL_W;
    const PM wlast = P_EQ(wv, P_K((int32_t)j + 1));
    PL_N(pl_neighbours)(B->pix + c * plane_px, wmax, i, j, wlast, f);
    for (int r = 0; r < kind; r++) {  // pm_taps' earlier-plane taps
        PV g[6];
        const uint8_t *pr = B->pix + r * plane_px;
        PL_N(pl_neighbours)(pr, wmax, i, j, wlast, g);
        f[6 + 5 * r] = PL_N(pl_u8)(pr + (i * wmax + j) * PL_W);
        for (int k = 0; k < 4; k++) f[7 + 5 * r + k] = g[k];
    }
    f[PM_NTAPS] = PL_N(pl_u8)(B->pix + c * plane_px + (i * wmax + j) * PL_W);
}

// pm_fit_coefs of plane c in every lane (coefs: tile t0's, [lane][n_ch][PM_NTAPS]), its sums
// accumulated lane-parallel: they are sums of products of 8-bit samples, so int32 holds them
// exactly (at most 86^2 samples x 255^2 < 2^31) and they convert to the float64 sums the scalar
// fit adds up; pm_fit_solve then runs per lane. Lanes are grouped by their sampling step.
PL_FN void PL_N(pl_fit)(PlBatch *B, int64_t n_ch, int c, int64_t *coefs, double *a, double *b) {
    const int n = pm_n_taps(PM_LVL_FAST, c), kind = PILC_MIN(c, 2);
    const int n_acc = n * (n + 1) / 2 + n;  // a's lower triangle row by row, then b
    PV acc[PM_NTAPS * (PM_NTAPS + 1) / 2 + PM_NTAPS];
    const PV hv = PL_N(pl_lane_values)(B->h), wv = PL_N(pl_lane_values)(B->w);
    int done = 0;
    for (int l = 0; l < B->n; l++) {
        if (done >> l & 1) continue;
        const int64_t step = pm_fit_step(PM_LVL_FAST, c, B->h[l], B->w[l]);
        int group = 0;
        int64_t gh = 0, gw = 0;
        for (int k = l; k < B->n; k++)
            if (!(done >> k & 1) && pm_fit_step(PM_LVL_FAST, c, B->h[k], B->w[k]) == step) {
                group |= 1 << k;
                gh = PILC_MAX(gh, B->h[k]);
                gw = PILC_MAX(gw, B->w[k]);
            }
        done |= group;
        for (int q = 0; q < n_acc; q++) acc[q] = P_K(0);
        const PM gm = P_MASK_OF_BITS(group);
        for (int64_t i = 0; i < gh; i += step) {
            const PM rm = P_MAND(P_GT(hv, P_K((int32_t)i)), gm);
            if (P_MNONE(rm)) continue;
#ifdef P_MADD16
            // two samples (j, j + step) a lane at once, as the int16 halves of each lane's word:
            // one multiply-add of pairs gives both products, summed (exact: 255^2 < 2^16)
            for (int64_t j = 0; j < gw; j += 2 * step) {
                const PM m0 = P_MAND(P_GT(wv, P_K((int32_t)j)), rm);
                if (P_MNONE(m0)) break;
                const PM m1 = P_MAND(P_GT(wv, P_K((int32_t)(j + step))), rm);
                PV f[PM_NTAPS + 1], g[PM_NTAPS + 1];
                PL_N(pl_fit_taps)(B, c, kind, i, j, wv, f);
                const int two = !P_MNONE(m1);
                if (two) PL_N(pl_fit_taps)(B, c, kind, i, j + step, wv, g);
                for (int u = 0; u <= n; u++) {
                    const PV lo = P_MASKZ(f[u == n ? PM_NTAPS : u], m0);
                    f[u] = two ? P_OR(lo, P_SLLI(P_MASKZ(g[u == n ? PM_NTAPS : u], m1), 16)) : lo;
                }
                int q = 0;
                for (int u = 0; u < n; u++)
                    for (int v = 0; v <= u; v++, q++) acc[q] = P_ADD(acc[q], P_MADD16(f[u], f[v]));
                for (int u = 0; u < n; u++, q++) acc[q] = P_ADD(acc[q], P_MADD16(f[u], f[n]));
            }
#else  // AVX-512F has no 16-bit multiply-add (that is AVX512BW): one sample a lane
            for (int64_t j = 0; j < gw; j += step) {
                const PM m = P_MAND(P_GT(wv, P_K((int32_t)j)), rm);
                if (P_MNONE(m)) break;
                PV f[PM_NTAPS + 1];
                PL_N(pl_fit_taps)(B, c, kind, i, j, wv, f);
                const PV xv = f[PM_NTAPS];
                int q = 0;
                for (int u = 0; u < n; u++)
                    for (int v = 0; v <= u; v++, q++)
                        acc[q] = P_ADD_MASKED(acc[q], m, P_MULLO(f[u], f[v]));
                for (int u = 0; u < n; u++, q++)
                    acc[q] = P_ADD_MASKED(acc[q], m, P_MULLO(f[u], xv));
            }
#endif
        }
        int32_t sums[PM_NTAPS * (PM_NTAPS + 1) / 2 + PM_NTAPS][PL_W];
        for (int q = 0; q < n_acc; q++) P_STOREU(sums[q], acc[q]);
        for (int k = l; k < B->n; k++) {
            if (!(group >> k & 1)) continue;
            for (int u = 0; u < PM_NTAPS * PM_NTAPS; u++) a[u] = 0.0;
            for (int u = 0; u < PM_NTAPS; u++) b[u] = 0.0;
            int q = 0;
            for (int u = 0; u < n; u++)
                for (int v = 0; v <= u; v++, q++) a[u * PM_NTAPS + v] = (double)sums[q][k];
            for (int u = 0; u < n; u++, q++) b[u] = (double)sums[q][k];
            pm_fit_solve(n, coefs + (k * n_ch + c) * PM_NTAPS, a, b);
        }
    }
}

// Encoder forward pass of batch B (tiles t0 .. t0 + B->n - 1): pm_encode_tile per lane.
PL_OUTER void PL_N(pl_encode_batch)(PlBatch *B, const PmImage *im, int64_t n_ch, int64_t t0,
                                    const PmTables *tb, int x2, int64_t *coefs,
                                    const int64_t *starts,
                                    uint8_t *sym, uint8_t *tid, uint8_t *bkt, double *a,
                                    double *b) {
    pl_copy_in(B, im, n_ch);
    for (int c = 0; c < n_ch; c++) PL_N(pl_fit)(B, n_ch, c, coefs + t0 * n_ch * PM_NTAPS, a, b);
    PL_N(PlPlane) P;
    P.B = B;
    for (int c = 0; c < n_ch; c++) {
        PL_N(pl_coefs)(&P.K, B, coefs + t0 * n_ch * PM_NTAPS, n_ch, c);
        for (int l = 0; l < PL_W; l++) {
            const int64_t s = l < B->n ? starts[(t0 + l) * n_ch + c] : 0;
            P.K.sym[l] = sym + s;
            P.K.tid[l] = tid + s;
            P.K.bkt[l] = bkt ? bkt + s : 0;
        }
        PL_N(pl_plane_open)(&P, c, tb, (1 << B->n) - 1);
        PL_N(pl_plane_any)(&P, c, tb, 0, x2);
    }
}

// Fused decode of batch B: pm_decode_tile per lane; err[(t0 + l) n_ch + c] the statuses.
// Returns 0, or -1 (nothing decoded) where its streams lie too far apart for 32-bit offsets:
// the caller then decodes those tiles one at a time.
PL_OUTER int PL_N(pl_decode_batch)(PlBatch *B, const PmImage *im, int64_t n_ch, int64_t t0,
                                   const PmTables *tb, int x2, const int64_t *coefs,
                                   const uint8_t *data, const int64_t *bb, int64_t *err) {
    const int64_t first = t0 * n_ch;
    if (bb[(t0 + B->n) * n_ch] - bb[first] >= ((int64_t)1 << 30)) return -1;
    PL_N(PlPlane) P;
    P.B = B;
    P.K.dbase = data + bb[first];
    for (int c = 0; c < n_ch; c++) {
        PL_N(pl_coefs)(&P.K, B, coefs + t0 * n_ch * PM_NTAPS, n_ch, c);
        int32_t xs[PL_W], rp[PL_W] = {0}, re[PL_W] = {0};
        int live = 0;
        for (int l = 0; l < PL_W; l++) {
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
        for (int l = 0; l < PL_W && live; l++)  // dead lanes: a word inside a live stream
            if (!(live >> l & 1)) rp[l] = re[l] = rp[__builtin_ctz(live)] - 2;
        P.K.xs = P_LOADU(xs);
        P.K.rp = P_LOADU(rp);
        P.K.rend2 = P_LOADU(re);
        PL_N(pl_plane_open)(&P, c, tb, live);
        PL_N(pl_plane_any)(&P, c, tb, 1, x2);
        P_STOREU(xs, P.K.xs);
        P_STOREU(rp, P.K.rp);
        for (int l = 0; l < B->n; l++) {
            if (!(live >> l & 1)) continue;
            const int64_t s = (t0 + l) * n_ch + c;
            err[s] = rans_status(P.K.x0[l], (int64_t)(uint32_t)xs[l], bb[first] + rp[l], bb[s + 1]);
        }
    }
    pl_copy_out(B, im, n_ch);
    return 0;
}

// ---- rANS encoder, PL_W streams at once (every level's coder; pilc_rans.h) ----------------

// data[p] of each lane's position p >= 0 (clamped) in an array of >= 4 bytes: the 4-byte word
// ending at p (or starting at 0), so no lane reads outside the array.
PL_FN PV PL_N(pl_byte_at)(const uint8_t *data, PV p) {
    p = P_MAX(p, P_K(0));
    const PV w = P_MAX(P_SUB(p, P_K(3)), P_K(0));
    return P_AND(P_SRLV(P_GATHER(data, w, 1), P_SLLI(P_SUB(p, w), 3)), P_K(0xFF));
}

#if PL_W == 16
// rans_encode_stream for streams s0 .. s0 + nl - 1 (nl <= PL_W; stream s's symbols are
// sb[s] .. sb[s + 1] - 1, its region of buf ends at 4 (s + 1) + 2 sb[s + 1]), one per lane:
// each lane runs rans_enc_sym's integer and float64 steps, so each stream's bytes are the scalar
// coder's. A word goes out as a 4-byte store ending at the stream's write position: its low half
// lands where the next word or the final state is written anyway. The caller checks that symbol
// counts and buffer offsets fit int32 and that there are >= 4 symbols. 1.7 ns a symbol against
// the scalar 4-stream coder's 2.7 (its 5 gathers and a scatter per 16 symbols bound it: two
// vectors in flight were no faster); with AVX2's 8 lanes, no scatter and 4-wide float64 it ran
// at half the scalar coder's speed, so it is not built there (docs/experiments.md entry 27).
// Unused in pilc_cpu_v3.c, which includes these lanes for the model alone.
PL_OUTER __attribute__((unused)) void PL_N(pl_rans_encode)(const uint8_t *symbols, const uint8_t *table_ids,
                                   const int64_t *sb, int64_t s0, int nl, uint8_t *buf,
                                   const uint32_t *fc, const double *inv, int64_t *starts) {
    int32_t pos[PL_W], lo[PL_W], wp[PL_W], xs[PL_W];
    for (int l = 0; l < PL_W; l++) {
        const int64_t s = s0 + l;
        lo[l] = l < nl ? (int32_t)sb[s] : 0;
        pos[l] = l < nl ? (int32_t)sb[s + 1] - 1 : -1;
        wp[l] = l < nl ? (int32_t)(4 * (s + 1) + 2 * sb[s + 1]) : 0;
    }
    PV x = P_K((int32_t)RANS_L), p = P_LOADU(pos), vwp = P_LOADU(wp);
    const PV vlo = P_LOADU(lo);
    for (;;) {
        const PM m = P_GT(P_ADD(p, P_K(1)), vlo);  // lanes with symbols left (p >= lo)
        if (P_MNONE(m)) break;
        const PV k = P_OR(P_SLLI(PL_N(pl_byte_at)(table_ids, p), 8), PL_N(pl_byte_at)(symbols, p));
        const PV e = P_GATHER(fc, k, 4);
        const PV f = P_AND(e, P_K(0xFFFF));
        const PM emit = P_MAND(P_GT(P_SRLI(x, 16), P_SUB(f, P_K(1))), m);  // x >= f << 16
        P_SCATTER_BYTES(buf, P_SUB(vwp, P_K(4)), P_SLLI(x, 16), emit);
        vwp = P_ADD_IF(vwp, emit, -2);
        const PV xe = P_SEL(emit, x, P_SRLI(x, 16));
        const PV q = P_RANS_QUOT(xe, inv, k);
        const PV xn = P_ADD(P_ADD(P_SLLI(q, 16), P_SUB(xe, P_MULLO(q, f))), P_SRLI(e, 16));
        x = P_SEL(m, x, xn);
        p = P_ADD_IF(p, m, -1);
    }
    P_STOREU(xs, x);
    P_STOREU(wp, vwp);
    for (int l = 0; l < nl; l++) {
        uint8_t *o = buf + wp[l] - 4;
        const uint32_t v = (uint32_t)xs[l];
        o[0] = (uint8_t)(v & 0xFF);
        o[1] = (uint8_t)((v >> 8) & 0xFF);
        o[2] = (uint8_t)((v >> 16) & 0xFF);
        o[3] = (uint8_t)((v >> 24) & 0xFF);
        starts[s0 + l] = wp[l] - 4;
    }
}
#endif

// The includer defines these afresh for the next width.
#undef PL_W
#undef PL_LOG_W
#undef PL_FN
#undef PL_OUTER
#undef PV
#undef PM
#undef P_K
#undef P_ADD
#undef P_SUB
#undef P_AND
#undef P_ANDNOT
#undef P_OR
#undef P_XOR
#undef P_SLLI
#undef P_SRLI
#undef P_SRAI
#undef P_SRLV
#undef P_MULLO
#undef P_ABS
#undef P_MIN
#undef P_MAX
#undef P_GT
#undef P_EQ
#undef P_SEL
#undef P_MASKZ
#undef P_BIT
#undef P_ADD_IF
#undef P_ADD_MASKED
#undef P_MADD16
#undef P_MAND
#undef P_MBITS
#undef P_MNONE
#undef P_MASK_OF_BITS
#undef P_IOTA
#undef P_U8
#undef P_I16
#undef P_ST_U8
#undef P_ST_I16
#undef P_LOADU
#undef P_STOREU
#undef P_GATHER
#undef P_MGATHER
#undef P_SCATTER
#undef P_DIV_FLOOR
#undef P_DIV_F32
#undef P_SCATTER_BYTES
#undef P_RANS_QUOT
#undef P_LOOKUP16
