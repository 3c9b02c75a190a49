// CPU entry points of the kernels (called through ctypes, which releases the GIL): the pixel
// model's encode and fused decode over a group's tiles, the multi-stream rANS coder, varints and
// frequency normalisation. Several Python threads may call one entry with the same counter:
// each takes the next unclaimed tile (or stream group) until none is left, so the work spreads
// however uneven the tiles are and the bytes never depend on the thread count.
#include <stdlib.h>
#include <string.h>

#include "pilc_model.h"
#include "pilc_fast_lanes.h"

#define PILC_EXPORT __attribute__((visibility("default")))

#ifndef PILC_SOURCE_HASH
#define PILC_SOURCE_HASH "unknown"
#endif
// The hash of the kernel sources this library was built from (setup.py).
PILC_EXPORT const char *pilc_source_hash(void) { return PILC_SOURCE_HASH; }

static int64_t claim(int64_t *counter) { return __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED); }
static int64_t claim_n(int64_t *counter, int64_t n) {
    return __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

// The fast level's vector lanes (pilc_fast_lanes.h): -1 until first asked, then the widest this
// CPU runs (16, 8, or 0 for none); pilc_set_lanes picks another (tests compare them). Shared
// with pilc_cpu_v3.c's copy of the model entry points.
__attribute__((visibility("hidden"))) int pilc_lanes_width = -1;

// Lanes of `width` (16 or 8; 1: the widest this CPU runs; 0: none, the scalar loop), where this
// CPU runs them; returns the width now in use (0: none).
PILC_EXPORT int64_t pilc_set_lanes(int64_t width) {
    const int cpu = pl_cpu_width();
    int w = 0;
    if (width == 1) w = cpu;
    else if (width == 16 || width == 8) w = width <= cpu ? (int)width : 0;
    __atomic_store_n(&pilc_lanes_width, w, __ATOMIC_RELAXED);
    return w;
}

// The model's entry points, built twice: here for baseline x86-64, and in pilc_cpu_v3.c for
// x86-64-v3 (AVX2, BMI2, FMA; contraction stays off, so every float64 rounds the same: the
// bytes are identical, tests/codec/test_isa.py). Side by side on one core, in one process, the
// v3 build codes the max level 1.03-1.17x faster and the default and fast levels at the same
// speed within noise (benchmarks/results/isa_speed.md; docs/experiments.md entries 32, 33).
#if PILC_HAVE_V3
#define PM_ENTRY(name) name##_base
#define PM_ENTRY_LINKAGE static
#else  // no x86-64-v3 build on this target: the baseline entry points under their own names
#define PM_ENTRY(name) name
#define PM_ENTRY_LINKAGE PILC_EXPORT
#endif
#include "pilc_cpu_model.h"
#undef PM_ENTRY
#undef PM_ENTRY_LINKAGE

#if PILC_HAVE_V3
int pilc_pm_encode_v3(PM_ENCODE_PARAMS);
int pilc_pm_decode_v3(PM_DECODE_PARAMS);

// -1 until first asked, then 1 where the v3 build runs (this CPU runs x86-64-v3), else 0.
static int v3_in_use = -1;

static int v3_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("x86-64-v3") ? 1 : 0;
}

static int use_v3(void) {
    int v = __atomic_load_n(&v3_in_use, __ATOMIC_RELAXED);
    if (v < 0) {
        v = v3_supported();
        __atomic_store_n(&v3_in_use, v, __ATOMIC_RELAXED);
    }
    return v;
}

// 1: the x86-64-v3 build where this CPU runs it (the default); 0: the baseline build. Returns
// whether the v3 build is now in use.
PILC_EXPORT int64_t pilc_set_isa(int64_t v3) {
    const int v = v3 ? v3_supported() : 0;
    __atomic_store_n(&v3_in_use, v, __ATOMIC_RELAXED);
    return v;
}

PILC_EXPORT int pilc_pm_encode(PM_ENCODE_PARAMS) {
    return (use_v3() ? pilc_pm_encode_v3 : pilc_pm_encode_base)(
        level, planes, n_ch, H, W, vq, boxes, n_tiles, e_bucket, lom, crc, recip, grad_class,
        prior, bk, fc, coefs, starts, sym, tid, bkt, counter);
}

PILC_EXPORT int pilc_pm_decode(PM_DECODE_PARAMS) {
    return (use_v3() ? pilc_pm_decode_v3 : pilc_pm_decode_base)(
        level, data, bb, planes, n_ch, H, W, vq, boxes, n_tiles, coefs, e_bucket, lom, crc,
        recip, grad_class, prior, bk, fc, err, counter);
}
#else
PILC_EXPORT int64_t pilc_set_isa(int64_t v3) {
    (void)v3;
    return 0;
}
#endif


#define RANS_GROUP 16  // streams claimed at a time

// Encode stream s (symbols sb[s]..sb[s+1]) into its worst-case region of buf, which ends at
// 4 (s + 1) + 2 sb[s + 1]; starts[s] = its first byte.
PILC_EXPORT void pilc_rans_encode(const uint8_t *symbols, const uint8_t *table_ids,
                                  const int64_t *sb, int64_t n_streams, uint8_t *buf,
                                  int64_t *starts, const uint32_t *fc, const double *inv,
                                  const uint64_t *rcp, int64_t *counter) {
    (void)inv;  // read by the AVX-512 coder only
    // 16 streams in one vector (pilc_fast_lanes_body.h) where the CPU runs AVX-512 and offsets
    // fit int32
    const int vec = sb[n_streams] >= 4 && 4 * n_streams + 2 * sb[n_streams] < ((int64_t)1 << 31)
                    && __atomic_load_n(&pilc_lanes_width, __ATOMIC_RELAXED) == 16;
    for (int64_t g = claim(counter); g * RANS_GROUP < n_streams; g = claim(counter)) {
        const int64_t end = PILC_MIN(n_streams, (g + 1) * RANS_GROUP);
        int64_t s = g * RANS_GROUP;
        if (vec) {
            pl_rans_encode_16(symbols, table_ids, sb, s, (int)(end - s), buf, fc, inv, starts);
            continue;
        }
        for (; s < end; s += RANS_LANES) {
            int64_t wend[RANS_LANES];
            const int n = (int)PILC_MIN(RANS_LANES, end - s);
            for (int k = 0; k < n; k++) wend[k] = 4 * (s + k + 1) + 2 * sb[s + k + 1];
            if (n == RANS_LANES)
                rans_encode_lanes(symbols, table_ids, sb + s, sb + s + 1, buf, wend, fc, rcp,
                                  starts + s, RANS_LANES);
            else
                for (int k = 0; k < n; k++)
                    rans_encode_lanes(symbols, table_ids, sb + s + k, sb + s + k + 1, buf,
                                      wend + k, fc, rcp, starts + s + k, 1);
        }
    }
}

// Decode every stream; err[s] = its status (0 = ok).
PILC_EXPORT void pilc_rans_decode(const uint8_t *data, const int64_t *bb, const int64_t *sb,
                                  int64_t n_streams, const uint8_t *table_ids, const uint8_t *bk,
                                  const uint32_t *fc, uint8_t *out, int64_t *err,
                                  int64_t *counter) {
    const RansDecTables tb = {bk, fc};
    for (int64_t g = claim(counter); g * RANS_GROUP < n_streams; g = claim(counter)) {
        const int64_t end = PILC_MIN(n_streams, (g + 1) * RANS_GROUP);
        for (int64_t s = g * RANS_GROUP; s < end; s++)
            err[s] = rans_decode_stream(data, bb, s, table_ids, sb[s], sb[s + 1], tb, out);
    }
}

// Copy stream s from buf[starts[s]:] to out[ob[s]:ob[s+1]] (gap-free).
PILC_EXPORT void pilc_compact(const uint8_t *buf, const int64_t *starts, int64_t n_streams,
                              uint8_t *out, const int64_t *ob) {
    for (int64_t s = 0; s < n_streams; s++) memcpy(out + ob[s], buf + starts[s], ob[s + 1] - ob[s]);
}

// The coding frame of one sample (pm_coding_frame), for the format's conformance tests:
// out = (base, neg, table id).
PILC_EXPORT void pilc_coding_frame(int64_t pr, int64_t kind, int64_t lv, int64_t *out) {
    out[2] = pm_coding_frame(pr, kind, lv, &out[0], &out[1]);
}

// Unsigned LEB128 of every value (all >= 0) into out; returns the byte count.
PILC_EXPORT int64_t pilc_varint_write(const int64_t *values, int64_t n, uint8_t *out) {
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        uint64_t v = (uint64_t)values[i];
        while (v >= 0x80) { out[k++] = (uint8_t)((v & 0x7F) | 0x80); v >>= 7; }
        out[k++] = (uint8_t)v;
    }
    return k;
}

// Parse n varints of at most 9 bytes from buf[pos:size], value i at most maxima[i]; returns the
// next position and *bad = -1, or, at the first truncated, too long or too large varint, its
// start and *bad = its index.
PILC_EXPORT int64_t pilc_varint_read(const uint8_t *buf, int64_t size, int64_t pos,
                                     const int64_t *maxima, int64_t n, int64_t *out, int64_t *bad) {
    for (int64_t i = 0; i < n; i++) {
        const int64_t start = pos;
        uint64_t value = 0;
        int shift = 0, ok = 0;
        for (int b = 0; b < 9; b++) {
            if (pos >= size) break;
            const uint64_t byte = buf[pos++];
            value |= (byte & 0x7F) << shift;
            if (byte < 0x80) { ok = 1; break; }
            shift += 7;
        }
        if (!ok || value > (uint64_t)maxima[i]) { *bad = i; return start; }
        out[i] = (int64_t)value;
    }
    *bad = -1;
    return pos;
}

// Quantise each row of counts (n_rows x m, float64, rescaled in place) to integer frequencies
// >= 1 summing to 2^16 (codec/rans.py, normalize_freqs, says why this way). Only IEEE +, -, *, /
// in a fixed order: the same tables on every machine.
PILC_EXPORT void pilc_normalize_rows(double *counts, int64_t n_rows, int64_t m, int64_t *out) {
    const int64_t M = 1 << 16;
    for (int64_t r = 0; r < n_rows; r++) {
        double *c = counts + r * m;
        int64_t *o = out + r * m;
        double cmax = 0.0;
        for (int64_t i = 0; i < m; i++) cmax = c[i] > cmax ? c[i] : cmax;
        if (cmax <= 0.0) {
            for (int64_t i = 0; i < m; i++) o[i] = M / m;
            continue;
        }
        double total = 0.0;
        for (int64_t i = 0; i < m; i++) { c[i] = c[i] / cmax; total += c[i]; }
        int64_t s = 0;
        for (int64_t i = 0; i < m; i++) {
            int64_t v = (int64_t)(c[i] / total * M + 0.5);
            if (v < 1) v = 1;
            o[i] = v;
            s += v;
        }
        while (s < M) {
            int64_t best = -1;
            double bg = -1.0;
            for (int64_t i = 0; i < m; i++) {
                const double g = c[i] / (o[i] + 0.5);
                if (g > bg) { bg = g; best = i; }
            }
            o[best] += 1;
            s += 1;
        }
        while (s > M) {
            int64_t best = -1;
            double bl = __builtin_inf();
            for (int64_t i = 0; i < m; i++) {
                if (o[i] > 1) {
                    const double lo = c[i] / (o[i] - 0.5);
                    if (lo < bl) { bl = lo; best = i; }
                }
            }
            o[best] -= 1;
            s -= 1;
        }
        for (int64_t it = 0; it < 4 * M; it++) {
            int64_t bi = -1, dj = -1;
            double bg = -1.0, bl = __builtin_inf();
            for (int64_t i = 0; i < m; i++) {
                const int64_t f = o[i];
                const double g = c[i] / (f + 0.5);
                if (g > bg) { bg = g; bi = i; }
                if (f > 1) {
                    const double lo = c[i] / (f - 0.5);
                    if (lo < bl) { bl = lo; dj = i; }
                }
            }
            if (dj < 0 || bi == dj || !(bg > bl)) break;
            o[bi] += 1;
            o[dj] -= 1;
        }
    }
}

// Pixels of h rows x w pixels x c bytes (contiguous; c 3 or 4) equal in every byte to their left
// neighbour: codec.api.repeat_share's count in one pass, where numpy's per-channel compares took
// 2.6x as long on RGB (gray stays in numpy, which is faster there).
PILC_EXPORT int64_t pilc_repeat_count(const uint8_t *px, int64_t h, int64_t w, int64_t c) {
    int64_t count = 0;
    for (int64_t i = 0; i < h; i++) {
        const uint8_t *r = px + i * w * c;
        int64_t n = 0;
        if (c == 3) {
            for (int64_t j = 3; j < 3 * w; j += 3)
                n += (r[j] == r[j - 3]) & (r[j + 1] == r[j - 2]) & (r[j + 2] == r[j - 1]);
        } else {
            for (int64_t j = 1; j < w; j++) {
                uint32_t a, b;
                memcpy(&a, r + 4 * (j - 1), 4);
                memcpy(&b, r + 4 * j, 4);
                n += a == b;
            }
        }
        count += n;
    }
    return count;
}
