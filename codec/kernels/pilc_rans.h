// rANS, one stream at a time, exactly as docs/RANS.md specifies it: 16-bit precision, 256
// symbols, 32-bit state in [2^16, 2^32), 16-bit renormalisation words. A stream is a uint32 LE
// initial decoder state followed by the words in the order the decoder reads them.
//
// Packed tables (codec/rans.py builds them): fc[t << 8 | s] = freq | cum << 16;
// bk[t << 11 | slot >> 5] = the symbol owning slot (slot >> 5) << 5; inv[t << 8 | s] = 1 / freq.
#pragma once
#include "pilc_portable.h"

#define RANS_L ((int64_t)1 << 16)
#define RANS_BK_SHIFT 5

// Per-stream status codes (0 = ok), as codec/rans.py names them.
#define RANS_ERR_OVERRUN 1
#define RANS_ERR_FINAL_STATE 2
#define RANS_ERR_UNCONSUMED 3
#define RANS_ERR_INIT_STATE 4
#define RANS_ERR_SHORT 5

typedef struct {
    const uint8_t *PILC_RESTRICT bk;
    const uint32_t *PILC_RESTRICT fc;
} RansDecTables;

// Decode one symbol with table t from state *x; the next word is read branch-free from
// min(rp, rend - 2), always inside the stream, and rp advances whenever a word was needed, so
// a stream overran iff its final rp > rend and corrupt input never reads outside its bytes.
PILC_FN int64_t rans_dec_sym(int64_t *x, int64_t *rp, int64_t rend, int64_t t,
                             RansDecTables tb, const uint8_t *PILC_RESTRICT data) {
    int64_t xs = *x;
    const int64_t slot = xs & 0xFFFF;
    int64_t s = tb.bk[(t << (16 - RANS_BK_SHIFT)) | (slot >> RANS_BK_SHIFT)];
    int64_t e = tb.fc[(t << 8) | s];
    while (slot >= (e >> 16) + (e & 0xFFFF)) {  // ends: cum[256] = 2^16 > slot
        s += 1;
        e = tb.fc[(t << 8) | s];
    }
    xs = (e & 0xFFFF) * (xs >> 16) + slot - (e >> 16);
    const int64_t need = xs < RANS_L;
    const int64_t r = *rp;
    const int64_t rc = r < rend - 2 ? r : rend - 2;
    const int64_t w = (int64_t)data[rc] | ((int64_t)data[rc + 1] << 8);
    const int64_t mask = -need;
    *x = (((xs << 16) | w) & mask) | (xs & ~mask);
    *rp = r + 2 * need;
    return s;
}

// Opens stream s of byte bounds bb: 0 and its initial state and read range, or an error code.
PILC_FN int rans_open(const uint8_t *PILC_RESTRICT data, const int64_t *PILC_RESTRICT bb,
                      int64_t s, int64_t *x0, int64_t *rp, int64_t *rend) {
    *x0 = 0;
    *rp = bb[s];
    *rend = bb[s + 1];
    if (*rend - *rp < 4) return RANS_ERR_SHORT;
    const uint8_t *d = data + *rp;
    *x0 = (int64_t)d[0] | ((int64_t)d[1] << 8) | ((int64_t)d[2] << 16) | ((int64_t)d[3] << 24);
    if (*x0 < RANS_L) return RANS_ERR_INIT_STATE;
    *rp += 4;
    return 0;
}

PILC_FN int rans_status(int64_t x0, int64_t x, int64_t rp, int64_t rend) {
    if (x0 < RANS_L) return RANS_ERR_INIT_STATE;
    if (rp > rend) return RANS_ERR_OVERRUN;
    if (x != RANS_L) return RANS_ERR_FINAL_STATE;
    if (rp != rend) return RANS_ERR_UNCONSUMED;
    return 0;
}

// Encode one symbol (k = table << 8 | symbol) into *x, words going backwards from *wp. The word
// is always stored at wp - 2 and wp only moves when it was needed (that byte pair lies inside
// the stream's worst-case region). floor(x / f) is int((x + 1/2) * (1/f)) in float64: exact for
// x < 2^32 and f < 2^16, as (x + 1/2) / f is >= 1/(2f) away from an integer.
PILC_FN void rans_enc_sym(int64_t *x, int64_t *wp, int64_t k, const uint32_t *PILC_RESTRICT fc,
                          const double *PILC_RESTRICT inv, uint8_t *PILC_RESTRICT buf) {
    const int64_t e = fc[k];
    const int64_t f = e & 0xFFFF;
    int64_t xs = *x;
    const int64_t emit = xs >= (f << 16);
    buf[*wp - 2] = (uint8_t)(xs & 0xFF);
    buf[*wp - 1] = (uint8_t)((xs >> 8) & 0xFF);
    *wp -= 2 * emit;
    xs >>= 16 * emit;
    const int64_t q = (int64_t)(((double)xs + 0.5) * inv[k]);
    *x = (q << 16) + (xs - q * f) + (e >> 16);
}

// Encode symbols[lo:hi] (tables table_ids[lo:hi]) as one stream ending at byte wend of buf;
// returns the stream's first byte. The region [wend - 4 - 2 (hi - lo), wend) is enough.
PILC_FN int64_t rans_encode_stream(const uint8_t *PILC_RESTRICT symbols,
                                   const uint8_t *PILC_RESTRICT table_ids, int64_t lo, int64_t hi,
                                   uint8_t *PILC_RESTRICT buf, int64_t wend,
                                   const uint32_t *PILC_RESTRICT fc,
                                   const double *PILC_RESTRICT inv) {
    int64_t x = RANS_L, wp = wend;
    for (int64_t i = hi - 1; i >= lo; i--)
        rans_enc_sym(&x, &wp, ((int64_t)table_ids[i] << 8) | symbols[i], fc, inv, buf);
    wp -= 4;
    buf[wp] = (uint8_t)(x & 0xFF);
    buf[wp + 1] = (uint8_t)((x >> 8) & 0xFF);
    buf[wp + 2] = (uint8_t)((x >> 16) & 0xFF);
    buf[wp + 3] = (uint8_t)((x >> 24) & 0xFF);
    return wp;
}

#ifndef PILC_CUDA
// rans_enc_sym on the CPU, the quotient in integers: floor(x / f) = (x rcp[k]) >> 48 with
// rcp = floor(2^48 / f) + 1 (codec/rans.py's _rcp), exact for x < 2^32 and f < 2^16: x rcp / 2^48
// exceeds x / f by less than x / 2^48 < 2^-16 < 1 / f, and x / f's fraction is at most 1 - 1/f.
// The 81-bit product is taken in two 64-bit halves (rcp's top 17 bits and low 32), and whether
// a word goes out is a mask, not a branch (it is unpredictable). Same q, so the same bytes.
PILC_FN void rans_enc_sym_rcp(uint64_t *x, uint8_t **w, int64_t k,
                              const uint32_t *PILC_RESTRICT fc, const uint64_t *PILC_RESTRICT rcp) {
    const uint32_t e = fc[k];
    const uint64_t f = e & 0xFFFF, r = rcp[k];
    uint64_t xs = *x;
    const uint64_t emit = (uint64_t)0 - (uint64_t)(xs >= (f << 16));
    uint8_t *o = *w - 2;
    o[0] = (uint8_t)(xs & 0xFF);
    o[1] = (uint8_t)((xs >> 8) & 0xFF);
    *w -= emit & 2;
    xs >>= emit & 16;
    const uint64_t q = (xs * (r >> 32) + ((xs * (r & 0xFFFFFFFF)) >> 32)) >> 16;
    *x = xs + q * (((uint64_t)1 << 16) - f) + (e >> 16);  // (q << 16) + (xs - q f) + cum
}

// rans_encode_stream for n <= RANS_LANES streams at once (CPU; n a literal where inlined): the
// coder's chain per symbol is serial within a stream, so several streams in one loop overlap
// their chains; each stream's bytes are exactly what rans_encode_stream writes. A stream's
// symbols are read backwards through one pointer (its table ids lie a fixed distance on) and
// its words go out through another, so the loop's state fits the registers.
#define RANS_LANES 4
PILC_FN void rans_encode_lanes(const uint8_t *PILC_RESTRICT symbols,
                               const uint8_t *PILC_RESTRICT table_ids, const int64_t *lo,
                               const int64_t *hi, uint8_t *PILC_RESTRICT buf, const int64_t *wend,
                               const uint32_t *PILC_RESTRICT fc, const uint64_t *PILC_RESTRICT rcp,
                               int64_t *first, const int n) {
    uint64_t x[RANS_LANES];
    uint8_t *w[RANS_LANES];
    const uint8_t *sp[RANS_LANES];
    const int64_t tofs = table_ids - symbols;
    int64_t common = hi[0] - lo[0];
    for (int k = 0; k < n; k++) {
        x[k] = RANS_L;
        w[k] = buf + wend[k];
        sp[k] = symbols + hi[k] - 1;
        common = PILC_MIN(common, hi[k] - lo[k]);
    }
    for (int64_t m = 0; m < common; m++)
        for (int k = 0; k < n; k++) {
            const uint8_t *p = sp[k] - m;
            rans_enc_sym_rcp(&x[k], &w[k], ((int64_t)p[tofs] << 8) | p[0], fc, rcp);
        }
    for (int k = 0; k < n; k++) {
        for (const uint8_t *p = sp[k] - common; p >= symbols + lo[k]; p--)
            rans_enc_sym_rcp(&x[k], &w[k], ((int64_t)p[tofs] << 8) | p[0], fc, rcp);
        uint8_t *o = w[k] - 4;
        o[0] = (uint8_t)(x[k] & 0xFF);
        o[1] = (uint8_t)((x[k] >> 8) & 0xFF);
        o[2] = (uint8_t)((x[k] >> 16) & 0xFF);
        o[3] = (uint8_t)((x[k] >> 24) & 0xFF);
        first[k] = o - buf;
    }
}
#endif

// Decode symbols lo..hi-1 of stream s (its bytes data[bb[s]:bb[s+1]]) into out; returns the
// stream's status code.
PILC_FN int rans_decode_stream(const uint8_t *PILC_RESTRICT data, const int64_t *PILC_RESTRICT bb,
                               int64_t s, const uint8_t *PILC_RESTRICT table_ids, int64_t lo,
                               int64_t hi, RansDecTables tb, uint8_t *PILC_RESTRICT out) {
    int64_t x0, rp, rend;
    const int bad = rans_open(data, bb, s, &x0, &rp, &rend);
    if (bad) return bad;
    int64_t x = x0;
    for (int64_t i = lo; i < hi; i++)
        out[i] = (uint8_t)rans_dec_sym(&x, &rp, rend, table_ids[i], tb, data);
    return rans_status(x0, x, rp, rend);
}
