// CUDA entry points: one thread per tile (all its planes in order), thousands of tiles of many
// images of mixed sizes per launch. The same text is built by NVRTC (codec/gpu/cuda.py) and, as
// host loops over the thread indices with pilc_emu.h, by gcc into the CPU extension, where the
// tests run it against the CPU entry points (codec/gpu/emulated.py).
//
// Per-thread model state lives in arrays shared by all threads of a launch, element index times
// the launch's thread count plus the thread's index (PmState.ls): threads of a warp that are at
// the same sample of equal-size tiles (the host sorts tiles by size) touch consecutive words.
// The small model tables are copied into shared memory once per block.
#include "pilc_model.h"

// A tile record (int64): where its group's pixels are and which streams are its planes.
#define TR_PX 0       // byte offset of the group's plane 0 in the pixel buffer
#define TR_VQ 1       // byte offset of its scale map in the VQ buffer, or -1
#define TR_HW 2       // plane size H * W of the group
#define TR_W 3        // row length W
#define TR_Y0 4
#define TR_X0 5
#define TR_H 6
#define TR_WIDTH 7
#define TR_NCH 8      // planes in the group (1..3)
#define TR_STREAM 9   // stream of plane 0; plane c is stream TR_STREAM + c
#define TR_COEF 10    // index of plane 0's first LS coefficient (PM_NTAPS per plane)
#define TR_LEVEL 11   // effort level (PM_LVL_*), the same for every tile of a launch
#define TR_N 12

#define PILC_N_RECIP 4096
#define PILC_N_EBUCKET 4096
#define PILC_N_CRC 257
#define PILC_N_GRAD 13

typedef struct {
    int32_t recip[PILC_N_RECIP];
    int64_t crc[PILC_N_CRC];
    uint8_t e_bucket[PILC_N_EBUCKET];
    uint8_t grad_class[16];
} PilcSharedTables;

// The block copies the small tables into shared memory; every thread then points at them.
PILC_FN PmTables pilc_stage_tables(PilcSharedTables *sh, const uint8_t *e_bucket,
                                   const uint8_t *lom, const int64_t *crc, const int32_t *recip,
                                   const uint8_t *grad_class, const int64_t *prior,
                                   const uint8_t *bk, const uint32_t *fc) {
    PILC_COOP_FOR(i, PILC_N_RECIP) sh->recip[i] = recip[i];
    PILC_COOP_FOR(i, PILC_N_EBUCKET) sh->e_bucket[i] = e_bucket[i];
    PILC_COOP_FOR(i, PILC_N_CRC) sh->crc[i] = crc[i];
    PILC_COOP_FOR(i, PILC_N_GRAD) sh->grad_class[i] = grad_class[i];
    PILC_SYNC();
    PmTables tb;
    tb.e_bucket = sh->e_bucket;
    tb.lom = lom;
    tb.crc = sh->crc;
    tb.recip = sh->recip;
    tb.grad_class = sh->grad_class;
    tb.prior = prior;
    tb.rans.bk = bk;
    tb.rans.fc = fc;
    return tb;
}

// This thread's view of the launch-wide state arrays (rows x tw per plane, n_ch_max planes).
PILC_FN PmState pilc_lane_state(int16_t *te, uint16_t *ek, int32_t *asum, int32_t *acnt,
                                int32_t *lsum, double *lmat, int64_t rows, int64_t tw,
                                int64_t lane, int64_t lanes) {
    PmState st;
    st.te = te + lane;
    st.ek = ek + lane;
    st.asum = asum + lane;
    st.acnt = acnt + lane;
    st.lsum = lsum + lane;  // the max level's local LS sums (a dummy at other levels)
    st.lmat = lmat + lane;
    st.tw = tw;
    st.rows = rows;
    st.ls = lanes;
    return st;
}

PILC_FN PmImage pilc_tile_image(const int64_t *tr, uint8_t *px, const uint8_t *vq) {
    PmImage im;
    im.px = px + tr[TR_PX];
    im.vq = tr[TR_VQ] >= 0 ? vq + tr[TR_VQ] : 0;
    im.hw = tr[TR_HW];
    im.W = tr[TR_W];
    return im;
}

#define PILC_TABLE_ARGS                                                                       \
    const uint8_t *e_bucket, const uint8_t *lom, const int64_t *crc, const int32_t *recip,    \
        const uint8_t *grad_class, const int64_t *prior, const uint8_t *bk, const uint32_t *fc
#define PILC_STATE_ARGS                                                                       \
    int16_t *te, uint16_t *ek, int32_t *asum, int32_t *acnt, int32_t *lsum, double *lmat,    \
        int64_t rows, int64_t tw

// The start of a per-tile kernel (its arguments named as in PILC_TABLE_ARGS and
// PILC_STATE_ARGS): the block stages the tables; a thread past the last tile leaves; the rest
// get tb, their tile record tr, their state view st and their group's image im.
#define PILC_TILE_THREAD(px_)                                                                  \
    PILC_SHARED PilcSharedTables sh;                                                          \
    const PmTables tb =                                                                       \
        pilc_stage_tables(&sh, e_bucket, lom, crc, recip, grad_class, prior, bk, fc);         \
    const int64_t lane = PILC_THREAD_ID();                                                    \
    if (lane >= n_tiles) return;                                                              \
    const int64_t *tr = tiles + lane * TR_N;                                                  \
    PmState st = pilc_lane_state(te, ek, asum, acnt, lsum, lmat, rows, tw, lane,       \
                                  PILC_N_THREADS());       \
    const PmImage im = pilc_tile_image(tr, (uint8_t *)(px_), vq)

// Encoder, step 1 of 3: the LS coefficients of every tile plane (one thread per tile). A kernel
// of its own: its float64 normal equations need a 2 KiB scratch per thread, which would
// otherwise share registers with the model pass and spill it.
PILC_GLOBAL void pilc_gpu_fit(const uint8_t *px, const int64_t *tiles, int64_t n_tiles,
                              int64_t *coefs) {
    const int64_t lane = PILC_THREAD_ID();
    if (lane >= n_tiles) return;
    const int64_t *tr = tiles + lane * TR_N;
    const PmImage im = pilc_tile_image(tr, (uint8_t *)px, 0);
    double a[PM_NTAPS * PM_NTAPS], b[PM_NTAPS];
    for (int c = 0; c < (int)tr[TR_NCH]; c++)
        pm_fit_coefs(&im, (int)tr[TR_LEVEL], c, tr[TR_Y0], tr[TR_X0], tr[TR_H], tr[TR_WIDTH],
                     coefs + tr[TR_COEF] + c * PM_NTAPS, a, b);
}

// Encoder, step 2 of 3: the model pass over each plane of a tile (one thread per tile): symbol
// and table id of every sample into the scratch, stream s's symbols at sb[s]..sb[s+1]. One
// kernel per effort level, the level a literal: a kernel's registers are those of its costliest
// path, and the max level's (~240) would cut every level's occupancy (the default's is ~166).
#define PILC_MODEL_KERNEL(NAME, LVL)                                                          \
    PILC_GLOBAL void NAME(const uint8_t *px, const uint8_t *vq, const int64_t *tiles,         \
                          int64_t n_tiles, PILC_TABLE_ARGS, PILC_STATE_ARGS,                  \
                          const int64_t *coefs, const int64_t *sb, uint8_t *sym,             \
                          uint8_t *tid) {                                                     \
        PILC_TILE_THREAD(px);                                                                 \
        for (int c = 0; c < (int)tr[TR_NCH]; c++) {                                           \
            const int64_t s0 = sb[tr[TR_STREAM] + c];                                         \
            pm_plane_any(&im, LVL, c, tr[TR_Y0], tr[TR_X0], tr[TR_H], tr[TR_WIDTH], &st,      \
                         coefs + tr[TR_COEF] + c * PM_NTAPS, &tb, 0, sym + s0, tid + s0, 0,   \
                         0, 0, 0, 0);                                                         \
        }                                                                                     \
    }
PILC_MODEL_KERNEL(pilc_gpu_model, PM_LVL_DEFAULT)
PILC_MODEL_KERNEL(pilc_gpu_model_fast, PM_LVL_FAST)
PILC_MODEL_KERNEL(pilc_gpu_model_max, PM_LVL_MAX)
PILC_MODEL_KERNEL(pilc_gpu_model_max2, PM_LVL_MAX2)
PILC_MODEL_KERNEL(pilc_gpu_model_max3, PM_LVL_MAX3)
PILC_MODEL_KERNEL(pilc_gpu_model_fast2, PM_LVL_FAST2)

// Encoder, step 3 of 3: rANS, one thread per stream, backwards into the stream's worst-case
// region of buf (ending at 4 (s + 1) + 2 sb[s + 1]); starts[s] = its first byte there.
PILC_GLOBAL void pilc_gpu_rans_encode(const uint8_t *sym, const uint8_t *tid, const int64_t *sb,
                                      int64_t n_streams, const uint32_t *fc, const double *inv,
                                      uint8_t *buf, int64_t *starts) {
    const int64_t s = PILC_THREAD_ID();
    if (s >= n_streams) return;
    starts[s] = rans_encode_stream(sym, tid, sb[s], sb[s + 1], buf, 4 * (s + 1) + 2 * sb[s + 1],
                                   fc, inv);
}

// Copy each stream from its worst-case region to its gap-free place out[ob[s]:ob[s+1]]
// (ob: the exclusive prefix sum of the stream sizes, computed on the device).
PILC_GLOBAL void pilc_gpu_compact(const uint8_t *buf, const int64_t *starts, const int64_t *ob,
                                  int64_t n_streams, uint8_t *out) {
    const int64_t s = PILC_THREAD_ID();
    if (s >= n_streams) return;
    const uint8_t *src = buf + starts[s];
    uint8_t *dst = out + ob[s];
    const int64_t n = ob[s + 1] - ob[s];
    for (int64_t i = 0; i < n; i++) dst[i] = src[i];
}

// Fused decode: per tile, per plane, model the next sample, rANS-decode it, reconstruct it into
// the pixel buffer; err[s] = stream s's status. One kernel per effort level, as for the model
// pass.
#define PILC_DECODE_KERNEL(NAME, LVL)                                                         \
    PILC_GLOBAL void NAME(uint8_t *px, const uint8_t *vq, const int64_t *tiles,               \
                          int64_t n_tiles, PILC_TABLE_ARGS, PILC_STATE_ARGS,                  \
                          const int64_t *coefs, const uint8_t *data, const int64_t *bb,      \
                          int64_t *err) {                                                     \
        PILC_TILE_THREAD(px);                                                                 \
        pm_decode_tile(&im, LVL, (int)tr[TR_NCH], tr + TR_Y0, &st, &tb, coefs + tr[TR_COEF],  \
                       data, bb, tr[TR_STREAM], err + tr[TR_STREAM]);                         \
    }
PILC_DECODE_KERNEL(pilc_gpu_decode, PM_LVL_DEFAULT)
PILC_DECODE_KERNEL(pilc_gpu_decode_fast, PM_LVL_FAST)
PILC_DECODE_KERNEL(pilc_gpu_decode_max, PM_LVL_MAX)
PILC_DECODE_KERNEL(pilc_gpu_decode_max2, PM_LVL_MAX2)
PILC_DECODE_KERNEL(pilc_gpu_decode_max3, PM_LVL_MAX3)
PILC_DECODE_KERNEL(pilc_gpu_decode_fast2, PM_LVL_FAST2)
