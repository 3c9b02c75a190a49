// Host emulation of the CUDA entry points (pilc_cuda.cu): the same text compiled by gcc, each
// launch run as a loop over blocks and threads on the calling thread. Shared memory is one
// static copy and every emulated thread stages the whole table (PILC_COOP_FOR runs the full
// range), so running threads one after another computes what the block computes on the GPU.
// codec/gpu/emulated.py drives these through the same batching code as the CuPy backend.
#include <stdint.h>

typedef struct {
    int64_t x;
} PilcDim;
static __thread PilcDim threadIdx, blockIdx, blockDim, gridDim;
#define PILC_GLOBAL static
#define PILC_SHARED static __thread
#define PILC_THREAD_ID() (blockIdx.x * blockDim.x + threadIdx.x)
#define PILC_N_THREADS() (gridDim.x * blockDim.x)
#define PILC_SYNC() ((void)0)
#define PILC_COOP_FOR(i, n) for (int64_t i = 0; i < (n); i++)

#include "pilc_cuda.cu"

#define PILC_EXPORT __attribute__((visibility("default")))
#define EMU_LAUNCH(grid, block, call)                                                         \
    do {                                                                                      \
        gridDim.x = (grid);                                                                   \
        blockDim.x = (block);                                                                 \
        for (int64_t bi = 0; bi < (grid); bi++)                                               \
            for (int64_t ti = 0; ti < (block); ti++) {                                        \
                blockIdx.x = bi;                                                              \
                threadIdx.x = ti;                                                             \
                call;                                                                         \
            }                                                                                 \
    } while (0)

PILC_EXPORT void pilc_emu_fit(int64_t grid, int64_t block, const uint8_t *px,
                              const int64_t *tiles, int64_t n_tiles, int64_t *coefs) {
    EMU_LAUNCH(grid, block, pilc_gpu_fit(px, tiles, n_tiles, coefs));
}

#define EMU_MODEL(NAME, KERNEL)                                                               \
    PILC_EXPORT void NAME(int64_t grid, int64_t block, const uint8_t *px, const uint8_t *vq,  \
                          const int64_t *tiles, int64_t n_tiles, PILC_TABLE_ARGS,              \
                          PILC_STATE_ARGS, const int64_t *coefs, const int64_t *sb,           \
                          uint8_t *sym, uint8_t *tid) {                                        \
        EMU_LAUNCH(grid, block,                                                                \
                   KERNEL(px, vq, tiles, n_tiles, e_bucket, lom, crc, recip, grad_class,      \
                          prior, bk, fc, te, ek, asum, acnt, lsum, lmat, rows, tw, coefs, sb, \
                          sym, tid));                                                          \
    }
EMU_MODEL(pilc_emu_model, pilc_gpu_model)
EMU_MODEL(pilc_emu_model_fast, pilc_gpu_model_fast)
EMU_MODEL(pilc_emu_model_max, pilc_gpu_model_max)
EMU_MODEL(pilc_emu_model_max2, pilc_gpu_model_max2)
EMU_MODEL(pilc_emu_model_max3, pilc_gpu_model_max3)
EMU_MODEL(pilc_emu_model_fast2, pilc_gpu_model_fast2)

PILC_EXPORT void pilc_emu_rans_encode(int64_t grid, int64_t block, const uint8_t *sym,
                                      const uint8_t *tid, const int64_t *sb, int64_t n_streams,
                                      const uint32_t *fc, const double *inv, uint8_t *buf,
                                      int64_t *starts) {
    EMU_LAUNCH(grid, block, pilc_gpu_rans_encode(sym, tid, sb, n_streams, fc, inv, buf, starts));
}

PILC_EXPORT void pilc_emu_compact(int64_t grid, int64_t block, const uint8_t *buf,
                                  const int64_t *starts, const int64_t *ob, int64_t n_streams,
                                  uint8_t *out) {
    EMU_LAUNCH(grid, block, pilc_gpu_compact(buf, starts, ob, n_streams, out));
}

#define EMU_DECODE(NAME, KERNEL)                                                              \
    PILC_EXPORT void NAME(int64_t grid, int64_t block, uint8_t *px, const uint8_t *vq,        \
                          const int64_t *tiles, int64_t n_tiles, PILC_TABLE_ARGS,              \
                          PILC_STATE_ARGS, const int64_t *coefs, const uint8_t *data,         \
                          const int64_t *bb, int64_t *err) {                                   \
        EMU_LAUNCH(grid, block,                                                                \
                   KERNEL(px, vq, tiles, n_tiles, e_bucket, lom, crc, recip, grad_class,      \
                          prior, bk, fc, te, ek, asum, acnt, lsum, lmat, rows, tw, coefs,     \
                          data, bb, err));                                                     \
    }
EMU_DECODE(pilc_emu_decode, pilc_gpu_decode)
EMU_DECODE(pilc_emu_decode_fast, pilc_gpu_decode_fast)
EMU_DECODE(pilc_emu_decode_max, pilc_gpu_decode_max)
EMU_DECODE(pilc_emu_decode_max2, pilc_gpu_decode_max2)
EMU_DECODE(pilc_emu_decode_max3, pilc_gpu_decode_max3)
EMU_DECODE(pilc_emu_decode_fast2, pilc_gpu_decode_fast2)
