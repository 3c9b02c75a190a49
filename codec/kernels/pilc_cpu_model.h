// The pixel model's CPU entry points over a group's tiles (pilc_pm_encode, pilc_pm_decode) and
// their per-thread state. Included by pilc_cpu.c (the baseline x86-64 build) and by
// pilc_cpu_v3.c (under an x86-64-v3 target), each time with PM_ENTRY naming the pair, so one
// library carries both and pilc_cpu.c picks per call (docs/experiments.md entry 32).
//
// The includer defines PM_ENTRY(name), PM_ENTRY_LINKAGE, and provides claim_n and
// pilc_lanes_width.

static void max_side(const int64_t *boxes, int64_t n, int64_t *mh, int64_t *mw) {
    *mh = *mw = 0;
    for (int64_t t = 0; t < n; t++) {
        if (boxes[4 * t + 2] > *mh) *mh = boxes[4 * t + 2];
        if (boxes[4 * t + 3] > *mw) *mw = boxes[4 * t + 3];
    }
}

// Per-thread tile state sized for the largest tile (contiguous: lane stride 1); the local LS
// sums and the float64 scratch (~140 KB for a 256-wide tile) only at the max levels.
typedef struct {
    PmState st;
    void *mem;
} CpuState;

static int state_alloc(CpuState *cs, int64_t level, int64_t n_ch, int64_t mh, int64_t mw) {
    const int64_t tw = mw + 2 * PM_PAD, rows = mh + PM_PAD;
    const int64_t n_te = n_ch * rows * tw, n_ek = 3 * tw * PM_NPM;
    const int mx = PM_IS_MAX(level);
    const int64_t n_ll = mx ? (2 * tw + 2) * PM_LL_NS + PM_LL_NT : 1, n_lm = mx ? PM_LM_N : 1;
    const size_t bytes = sizeof(double) * n_lm + sizeof(int32_t) * (2 * PM_NSTAT + n_ll)
                         + sizeof(int16_t) * n_te + sizeof(uint16_t) * n_ek;
    char *m = malloc(bytes);
    if (!m) return -1;
    cs->mem = m;
    cs->st.lmat = (double *)m;
    m += sizeof(double) * n_lm;
    cs->st.lsum = (int32_t *)m;
    m += sizeof(int32_t) * n_ll;
    cs->st.asum = (int32_t *)m;
    cs->st.acnt = (int32_t *)m + PM_NSTAT;
    cs->st.te = (int16_t *)(m + sizeof(int32_t) * 2 * PM_NSTAT);
    cs->st.ek = (uint16_t *)(m + sizeof(int32_t) * 2 * PM_NSTAT + sizeof(int16_t) * n_te);
    cs->st.tw = tw;
    cs->st.rows = rows;
    cs->st.ls = 1;
    return 0;
}

// Contiguous state: ls = 1 is a constant here, so the compiler drops the lane multiplies.
static inline __attribute__((always_inline)) PmState contiguous(const PmState *s) {
    PmState o = *s;
    o.ls = 1;
    return o;
}

// Fewer tiles than this run the scalar loop one by one: a lane batch costs about the same
// whatever number of its lanes are live, and 2 tiles of 128 took 1.2x (encode) and 1.33x
// (decode) the scalar loop's time for both, 3 tiles 0.77x and 0.89x (docs/experiments.md
// entry 40). The bytes are the same either way.
#define PL_MIN_TILES 3

#if PILC_HAVE_LANES
static int lanes_enabled(int64_t level) {
    if (!PM_IS_FAST(level)) return 0;
    int w = __atomic_load_n(&pilc_lanes_width, __ATOMIC_RELAXED);
    if (w < 0) {
        w = pl_cpu_width();
        __atomic_store_n(&pilc_lanes_width, w, __ATOMIC_RELAXED);
    }
    return w;
}

// A thread's vector-lane buffers; step: tiles claimed at a time (1 without lanes).
typedef struct {
    PlBatch B;
    void *mem;
    int64_t step, n_ch, mh, mw;
} Lanes;

static int lanes_open(Lanes *L, int64_t level, int64_t n_ch, int64_t mh, int64_t mw) {
    L->mem = 0;
    L->step = 1;
    const int W = lanes_enabled(level);
    if (!W) return 0;
    L->mem = malloc(pl_bytes(W, n_ch, mh, mw));
    if (!L->mem) return -1;
    L->n_ch = n_ch;
    L->mh = mh;
    L->mw = mw;
    pl_place(&L->B, L->mem, W, n_ch, mh, mw);
    L->step = W;
    return 0;
}

// Batch tiles t0 .. t0 + n - 1: 16 lanes, or 8 where that holds them (a narrower step costs
// less, and a remainder of <= 8 tiles would leave half the 16 lanes idle anyway).
static void lanes_batch(Lanes *L, const int64_t *boxes, int64_t t0, int64_t n) {
    const int W = n <= 8 ? 8 : (int)L->step;
    if (L->B.W != W) pl_place(&L->B, L->mem, W, L->n_ch, L->mh, L->mw);
    pl_open(&L->B, boxes, t0, (int)n);
}
#else  // no vector lanes on this target: every tile runs the scalar loop (step 1)
typedef struct {
    int W;
} PlBatch;
typedef struct {
    PlBatch B;
    void *mem;
    int64_t step;
} Lanes;
static int lanes_open(Lanes *L, int64_t level, int64_t n_ch, int64_t mh, int64_t mw) {
    (void)level, (void)n_ch, (void)mh, (void)mw;
    L->mem = 0;
    L->step = 1;
    return 0;
}
static void lanes_batch(Lanes *L, const int64_t *boxes, int64_t t0, int64_t n) {
    (void)L, (void)boxes, (void)t0, (void)n;
}
#define pl_encode_batch_16(...) ((void)0)
#define pl_encode_batch_8(...) ((void)0)
#define pl_decode_batch_16(...) (-1)
#define pl_decode_batch_8(...) (-1)
#define pl_rans_encode_16(...) ((void)0)
#endif

// A kernel call's per-thread state: the tile state sized for the call's largest tile, and the
// vector-lane buffers where the level runs in lanes. Returns 0, or -1 if memory ran out.
static int thread_open(CpuState *cs, Lanes *L, int64_t level, int64_t n_ch, const int64_t *boxes,
                       int64_t n_tiles) {
    int64_t mh, mw;
    max_side(boxes, n_tiles, &mh, &mw);
    if (state_alloc(cs, level, n_ch, mh, mw)) return -1;
    if (lanes_open(L, level, n_ch, mh, mw)) {
        free(cs->mem);
        return -1;
    }
    return 0;
}

static void thread_close(CpuState *cs, Lanes *L) {
    free(L->mem);
    free(cs->mem);
}

// Each level's tile loop in a function of its own (noinline), with the level a literal there:
// one level's code then cannot change another's layout or register allocation (unrolling the
// max levels' local LS made the default level 5-8% slower while all levels shared one function;
// docs/experiments.md entry 33). Each takes the tile's state and makes it contiguous (lane
// stride 1, a constant the compiler folds).
#define PM_TILE_FNS(NAME, LVL)                                                                 \
    static __attribute__((noinline)) void encode_tile_##NAME(                                 \
        const PmImage *im, int n_ch, const int64_t *box, const PmState *st, const PmTables *tb, \
        int64_t *coef, const int64_t *starts, uint8_t *sym, uint8_t *tid, uint8_t *bkt,         \
        double *a, double *b) {                                                                \
        PmState s = contiguous(st);                                                            \
        pm_encode_tile(im, LVL, n_ch, box, &s, tb, coef, starts, sym, tid, bkt, a, b);         \
    }                                                                                          \
    static __attribute__((noinline)) void decode_tile_##NAME(                                 \
        const PmImage *im, int n_ch, const int64_t *box, const PmState *st, const PmTables *tb, \
        const int64_t *coef, const uint8_t *data, const int64_t *bb, int64_t first_stream,     \
        int64_t *err) {                                                                        \
        PmState s = contiguous(st);                                                            \
        pm_decode_tile(im, LVL, n_ch, box, &s, tb, coef, data, bb, first_stream, err);         \
    }
PM_TILE_FNS(default, PM_LVL_DEFAULT)
PM_TILE_FNS(fast, PM_LVL_FAST)
PM_TILE_FNS(max, PM_LVL_MAX)
PM_TILE_FNS(max2, PM_LVL_MAX2)
PM_TILE_FNS(max3, PM_LVL_MAX3)
PM_TILE_FNS(fast2, PM_LVL_FAST2)
#undef PM_TILE_FNS

// The tile functions by level (PM_LVL_DEFAULT 0 .. PM_LVL_FAST2 5).
typedef void EncodeTileFn(const PmImage *, int, const int64_t *, const PmState *,
                          const PmTables *, int64_t *, const int64_t *, uint8_t *, uint8_t *,
                          uint8_t *, double *, double *);
typedef void DecodeTileFn(const PmImage *, int, const int64_t *, const PmState *,
                          const PmTables *, const int64_t *, const uint8_t *, const int64_t *,
                          int64_t, int64_t *);
static EncodeTileFn *const encode_tile[] = {encode_tile_default, encode_tile_fast,
                                            encode_tile_max,     encode_tile_max2,
                                            encode_tile_max3,    encode_tile_fast2};
static DecodeTileFn *const decode_tile[] = {decode_tile_default, decode_tile_fast,
                                            decode_tile_max,     decode_tile_max2,
                                            decode_tile_max3,    decode_tile_fast2};
// A level outside them runs the default level's loop, as pm_plane_any does (the callers only
// pass the levels the header can name).
static int64_t tile_level(int64_t level) {
    return level >= 0 && level <= PM_LVL_FAST2 ? level : PM_LVL_DEFAULT;
}
_Static_assert(PM_LVL_DEFAULT == 0 && PM_LVL_FAST == 1 && PM_LVL_MAX == 2 && PM_LVL_MAX2 == 3
                   && PM_LVL_MAX3 == 4 && PM_LVL_FAST2 == 5,
               "encode_tile and decode_tile list the levels in this order");

#define PM_TABLE_PARAMS                                                                       \
    const uint8_t *e_bucket, const uint8_t *lom, const int64_t *crc, const int32_t *recip,    \
        const uint8_t *grad_class, const int64_t *prior, const uint8_t *bk, const uint32_t *fc
#define PM_TABLES {e_bucket, lom, crc, recip, grad_class, prior, {bk, fc}}
// The entry points' parameters, for their definitions here and pilc_cpu.c's dispatch.
#define PM_ENCODE_PARAMS                                                                      \
    int64_t level, const uint8_t *planes, int64_t n_ch, int64_t H, int64_t W, const uint8_t *vq, \
        const int64_t *boxes, int64_t n_tiles, PM_TABLE_PARAMS, int64_t *coefs,               \
        const int64_t *starts, uint8_t *sym, uint8_t *tid, uint8_t *bkt, int64_t *counter
#define PM_DECODE_PARAMS                                                                      \
    int64_t level, const uint8_t *data, const int64_t *bb, uint8_t *planes, int64_t n_ch,     \
        int64_t H, int64_t W, const uint8_t *vq, const int64_t *boxes, int64_t n_tiles,       \
        const int64_t *coefs, PM_TABLE_PARAMS, int64_t *err, int64_t *counter

// Encoder forward pass over the tiles of one plane group (C, H, W): LS coefficients into
// coefs[t][c][PM_NTAPS]; symbols, table ids and buckets (bkt may be NULL) of stream
// t * n_ch + c from starts[t * n_ch + c] on. Returns 0, or -1 if memory ran out.
PM_ENTRY_LINKAGE int PM_ENTRY(pilc_pm_encode)(PM_ENCODE_PARAMS) {
    const PmTables tb = PM_TABLES;
    const PmImage im = {(uint8_t *)planes, vq, H * W, W};
    CpuState cs;
    Lanes L;
    if (thread_open(&cs, &L, level, n_ch, boxes, n_tiles)) return -1;
    PmState st = cs.st;  // each tile's tw and rows set below
    EncodeTileFn *const encode = encode_tile[tile_level(level)];
    const int x2 = level == PM_LVL_FAST2;  // the lanes' level-5 blend
    (void)x2;                              // (unused where there are no lanes)
    double a[PM_NTAPS * PM_NTAPS], b[PM_NTAPS];
    for (int64_t t0 = claim_n(counter, L.step); t0 < n_tiles; t0 = claim_n(counter, L.step)) {
        const int64_t n = PILC_MIN(L.step, n_tiles - t0);
        if (n >= PL_MIN_TILES) {  // vector lanes
            lanes_batch(&L, boxes, t0, n);
            if (L.B.W == 16)
                pl_encode_batch_16(&L.B, &im, n_ch, t0, &tb, x2, coefs, starts, sym, tid, bkt, a,
                                   b);
            else pl_encode_batch_8(&L.B, &im, n_ch, t0, &tb, x2, coefs, starts, sym, tid, bkt, a,
                                   b);
            continue;
        }
        for (int64_t t = t0; t < t0 + n; t++) {
            st.tw = boxes[4 * t + 3] + 2 * PM_PAD;
            st.rows = boxes[4 * t + 2] + PM_PAD;
            encode(&im, (int)n_ch, boxes + 4 * t, &st, &tb, coefs + t * n_ch * PM_NTAPS,
                   starts + t * n_ch, sym, tid, bkt, a, b);
        }
    }
    thread_close(&cs, &L);
    return 0;
}

// Fused decode of the tiles of one plane group into planes (C, H, W); err[t * n_ch + c] gets
// each stream's status. Returns 0, or -1 if memory ran out.
PM_ENTRY_LINKAGE int PM_ENTRY(pilc_pm_decode)(PM_DECODE_PARAMS) {
    const PmTables tb = PM_TABLES;
    const PmImage im = {planes, vq, H * W, W};
    CpuState cs;
    Lanes L;
    if (thread_open(&cs, &L, level, n_ch, boxes, n_tiles)) return -1;
    PmState st = cs.st;  // each tile's tw and rows set below
    DecodeTileFn *const decode = decode_tile[tile_level(level)];
    const int x2 = level == PM_LVL_FAST2;
    (void)x2;
    for (int64_t t0 = claim_n(counter, L.step); t0 < n_tiles; t0 = claim_n(counter, L.step)) {
        const int64_t n = PILC_MIN(L.step, n_tiles - t0);
        if (n >= PL_MIN_TILES) {
            lanes_batch(&L, boxes, t0, n);
            const int fell_back =
                L.B.W == 16 ? pl_decode_batch_16(&L.B, &im, n_ch, t0, &tb, x2, coefs, data, bb, err)
                            : pl_decode_batch_8(&L.B, &im, n_ch, t0, &tb, x2, coefs, data, bb, err);
            if (!fell_back) continue;
        }
        for (int64_t t = t0; t < t0 + n; t++) {  // one tile, or streams too far apart for lanes
            st.tw = boxes[4 * t + 3] + 2 * PM_PAD;
            st.rows = boxes[4 * t + 2] + PM_PAD;
            decode(&im, (int)n_ch, boxes + 4 * t, &st, &tb, coefs + t * n_ch * PM_NTAPS, data,
                   bb, t * n_ch, err + t * n_ch);
        }
    }
    thread_close(&cs, &L);
    return 0;
}
