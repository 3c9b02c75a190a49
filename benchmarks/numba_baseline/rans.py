# numba baseline (benchmarks only): codec/pixelmodel.py at 29b2273. See __init__.py.
"""Multi-stream rANS entropy coder (numba), byte-exact with the bitstream spec in docs/RANS.md.

Why this shape: the image is split into many independent streams so that a GPU can later run one
thread per stream and produce the *same bytes*, and so the CPU can decode with several streams
interleaved per core (instruction-level parallelism hides table-lookup latency).

Parameters (fixed by the format): 16-bit probability precision, 256-symbol alphabet, 32-bit
state kept in [2^16, 2^32), renormalisation in 16-bit words (at most one word per symbol).

Stream layout: ``uint32 LE initial decoder state`` then ``k`` ``uint16 LE`` words in the order the
decoder consumes them, so a stream is ``4 + 2k`` bytes; an empty stream is the 4 bytes of RANS_L.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit, prange

from codec.errors import CodecError

__all__ = [
    "ALPHABET",
    "PREC",
    "RANS_L",
    "RansTables",
    "decode_streams",
    "encode_streams",
    "normalize_freqs",
]

PREC: int = 16
"""Probability precision in bits: every frequency table sums to ``1 << PREC``."""
RANS_L: int = 1 << 16
"""Lower bound of the normalised state interval [RANS_L, 2^32); also the encoder's start state."""
ALPHABET: int = 256
"""Symbols are bytes."""

_M = 1 << PREC
_MASK = _M - 1
_MAX_TABLES = 256  # table ids are uint8
_BK_SHIFT = 5  # decoder bucket table: one entry per 32 slots (2 KiB per table)

# Per-stream error codes returned by the decode kernel (0 = ok).
_ERR_OK = 0
_ERR_OVERRUN = 1
_ERR_FINAL_STATE = 2
_ERR_UNCONSUMED = 3
_ERR_INIT_STATE = 4
_ERR_MESSAGES = {
    _ERR_OVERRUN: "decoder needed a word past the end of the stream (truncated or corrupt)",
    _ERR_FINAL_STATE: "final decoder state is not RANS_L (corrupt data or wrong tables)",
    _ERR_UNCONSUMED: "words left unconsumed after the last symbol (corrupt data or bounds)",
    _ERR_INIT_STATE: "initial decoder state is below RANS_L (corrupt header)",
}


# --------------------------------------------------------------------------------------------
# Frequency normalisation
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def _normalize_rows(counts: np.ndarray, out: np.ndarray) -> None:
    """Quantise each row of ``counts`` to integer freqs >= 1 summing to 2^PREC.

    Only IEEE-754 +,-,*,/ in a fixed order are used (no log/exp, no reductions of unspecified
    order), so the result is bit-identical on any platform for identical float64 input. The
    cost being minimised is the code length  -sum c_i log f_i ; the marginal gain of one more
    unit for symbol i is approximated by c_i / (f_i + 1/2) (a close, convex proxy of
    c_i * ln((f_i+1)/f_i)), and unit exchanges are made until no exchange improves it.
    """
    n_rows = counts.shape[0]
    m = counts.shape[1]
    for r in range(n_rows):
        # Scale the row by its max first so that the sum can neither overflow nor underflow.
        cmax = 0.0
        for i in range(m):
            cmax = max(cmax, counts[r, i])
        if cmax <= 0.0:
            for i in range(m):
                out[r, i] = _M // m
            continue
        total = 0.0
        for i in range(m):
            counts[r, i] = counts[r, i] / cmax
            total += counts[r, i]
        s = 0
        for i in range(m):
            v = np.int64(counts[r, i] / total * _M + 0.5)
            if v < 1:
                v = 1
            out[r, i] = v
            s += v
        # Fix the sum: add to the best gain / remove from the cheapest loss, one unit at a time.
        while s < _M:
            best = -1
            bg = -1.0
            for i in range(m):
                g = counts[r, i] / (out[r, i] + 0.5)
                if g > bg:
                    bg = g
                    best = i
            out[r, best] += 1
            s += 1
        while s > _M:
            best = -1
            bl = np.inf
            for i in range(m):
                if out[r, i] > 1:
                    lo = counts[r, i] / (out[r, i] - 0.5)
                    if lo < bl:
                        bl = lo
                        best = i
            out[r, best] -= 1
            s -= 1
        # Exchange pass: move a unit from the cheapest donor to the best receiver while it helps.
        for _ in range(4 * _M):  # hard cap; converges in a few hundred steps at most
            bi = -1
            bg = -1.0
            dj = -1
            bl = np.inf
            for i in range(m):
                f = out[r, i]
                g = counts[r, i] / (f + 0.5)
                if g > bg:
                    bg = g
                    bi = i
                if f > 1:
                    lo = counts[r, i] / (f - 0.5)
                    if lo < bl:
                        bl = lo
                        dj = i
            if dj < 0 or bi == dj or not (bg > bl):
                break
            out[r, bi] += 1
            out[r, dj] -= 1


def normalize_freqs(counts: np.ndarray) -> np.ndarray:
    """Turn histogram(s) into rANS frequency tables (uint32 (T,256), rows sum to 2^PREC, >= 1).

    Deterministic across platforms (see ``_normalize_rows``); an all-zero row becomes uniform;
    zero-count symbols get frequency 1 so any byte stays encodable.
    """
    c = np.asarray(counts)
    if c.ndim == 1:
        c = c.reshape(1, -1)
    if c.ndim != 2 or c.shape[1] != ALPHABET:
        raise CodecError(f"normalize_freqs: counts must have shape (T, {ALPHABET}), got {c.shape}")
    if not (np.issubdtype(c.dtype, np.integer) or np.issubdtype(c.dtype, np.floating)):
        raise CodecError(f"normalize_freqs: counts must be numeric, got dtype {c.dtype}")
    c = np.array(c, dtype=np.float64, order="C")  # a copy: the kernel rescales rows in place
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise CodecError("normalize_freqs: counts must be finite and non-negative")
    out = np.empty(c.shape, dtype=np.int64)
    _normalize_rows(c, out)
    return out.astype(np.uint32)


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class RansTables:
    """A validated set of T frequency tables plus the derived arrays the kernels need.

    ``freq`` uint32 (T,256); ``cum`` uint32 (T,257) exclusive prefix sums; ``slot2sym`` uint8
    (T, 2^PREC). Arrays are read-only copies, so a table set can be shared between threads.
    """

    freq: np.ndarray
    cum: np.ndarray
    slot2sym: np.ndarray
    # Packed kernel tables, read-only, flattened; layouts are stable for in-package kernels
    # (codec/pixelmodel.py uses _fc and _bk):
    #   _fc  uint32 (T*256,): freq | cum << 16 (cum[s] <= 2^16 - 1 for s < 256 as freqs >= 1)
    #   _inv float64 (T*256,): 1 / freq (exact-division trick in the encoder)
    #   _bk  uint8 (T*2^(PREC-_BK_SHIFT),): symbol owning slot k << _BK_SHIFT; decode with
    #        s = _bk[t, slot >> 5]; while slot >= cum[s] + freq[s]: s += 1   (see _dec_sym)
    _fc: np.ndarray = field(init=False, repr=False)
    _inv: np.ndarray = field(init=False, repr=False)
    _bk: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        freq = _check_freqs(self.freq)
        t = freq.shape[0]
        cum = np.asarray(self.cum)
        s2s = np.asarray(self.slot2sym)
        exp_cum = _cum_of(freq)
        if cum.shape != (t, ALPHABET + 1) or not np.array_equal(cum, exp_cum):
            raise CodecError("RansTables: cum does not match freq")
        exp_s2s = _slot2sym_of(freq)
        if s2s.shape != (t, _M) or not np.array_equal(s2s, exp_s2s):
            raise CodecError("RansTables: slot2sym does not match freq")
        fc = (freq.astype(np.uint32) | (exp_cum[:, :ALPHABET] << np.uint32(16))).reshape(-1)
        inv = (1.0 / freq.astype(np.float64)).reshape(-1)
        object.__setattr__(self, "freq", _readonly(freq))
        object.__setattr__(self, "cum", _readonly(exp_cum))
        object.__setattr__(self, "slot2sym", _readonly(exp_s2s))
        object.__setattr__(self, "_fc", _readonly(np.ascontiguousarray(fc, dtype=np.uint32)))
        object.__setattr__(self, "_inv", _readonly(np.ascontiguousarray(inv)))
        bk = np.ascontiguousarray(exp_s2s[:, :: 1 << _BK_SHIFT]).reshape(-1)
        object.__setattr__(self, "_bk", _readonly(bk))

    @classmethod
    def from_freqs(cls, freqs: np.ndarray) -> RansTables:
        """Build tables from integer freqs (T,256) (or (256,)); raises CodecError if invalid."""
        freq = _check_freqs(freqs)
        return cls(freq, _cum_of(freq), _slot2sym_of(freq))

    def __reduce__(self) -> tuple:
        """Pickle only ``freq`` (a few KiB; Ray ships tables to workers), rebuild the rest."""
        return (RansTables.from_freqs, (np.array(self.freq),))

    @property
    def n_tables(self) -> int:
        """Number of tables T (valid table ids are 0..T-1)."""
        return int(self.freq.shape[0])


def _check_freqs(freqs: np.ndarray) -> np.ndarray:
    """Validate a freq array and return a fresh uint32 (T,256) copy."""
    f = np.asarray(freqs)
    if f.ndim == 1:
        f = f.reshape(1, -1)
    if f.ndim != 2 or f.shape[1] != ALPHABET:
        raise CodecError(f"freq tables must have shape (T, {ALPHABET}), got {f.shape}")
    if not 1 <= f.shape[0] <= _MAX_TABLES:
        raise CodecError(f"need 1..{_MAX_TABLES} tables (table ids are uint8), got {f.shape[0]}")
    if not np.issubdtype(f.dtype, np.integer):
        raise CodecError(f"freq tables must be integers, got dtype {f.dtype}")
    if np.any(f < 1) or np.any(f > _M):
        raise CodecError("every frequency must be >= 1 (and <= 2^PREC)")
    f = f.astype(np.uint32)
    sums = f.sum(axis=1, dtype=np.int64)
    bad = np.flatnonzero(sums != _M)
    if bad.size:
        raise CodecError(f"freq table {int(bad[0])} sums to {int(sums[bad[0]])}, expected {_M}")
    return np.ascontiguousarray(f)


def _cum_of(freq: np.ndarray) -> np.ndarray:
    cum = np.zeros((freq.shape[0], ALPHABET + 1), dtype=np.uint32)
    np.cumsum(freq, axis=1, dtype=np.uint32, out=cum[:, 1:])
    return cum


def _slot2sym_of(freq: np.ndarray) -> np.ndarray:
    syms = np.arange(ALPHABET, dtype=np.uint8)
    return np.stack([np.repeat(syms, row.astype(np.int64)) for row in freq]).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------
#
# Layout of the work: streams are taken in groups of 4 ("lanes"). A group is coded in lock-step
# over the common length of its 4 streams, so the 4 independent state-dependency chains overlap
# in the out-of-order core; whatever is left of each stream is then coded on its own. The step
# helpers are branch-free where the branch would be unpredictable (renormalisation happens on
# ~30 % of symbols at random). Grouping never changes the bytes: every stream is coded exactly
# as the spec says, independently of all others, so the output does not depend on the thread
# count or on the lane count.


@njit(cache=True, inline="always")
def _u(i):  # noqa: ANN001, ANN202
    """Index as uint64: numba then skips the negative-index wraparound code in the hot loops."""
    return np.uint64(i)


@njit(cache=True)
def _enc_sym(x, wp, k, fc, inv, buf):  # noqa: ANN001, ANN202
    """Encode one symbol (k = table << 8 | symbol) into state x; words go backwards from wp.

    Renormalise: if x >= f << 16, emit the low 16 bits (LE) and shift (at most once, as f >= 1
    and x < 2^32). The word is always stored at wp-2 and wp only moves if it was needed; that
    byte pair lies inside the stream's own worst-case region (see _encode_kernel), so the
    speculative store is harmless. Then x = (x // f) << 16 + x % f + c with floor(x / f)
    computed as int((x + 1/2) * (1/f)) in float64: exact for x < 2^32 and f < 2^16, because
    (x + 1/2)/f is at least 1/(2f) away from an integer while the rounding error is below
    2^-20/f; it is much faster than integer division.
    """
    e = np.int64(fc[_u(k)])
    f = e & 0xFFFF
    emit = np.int64(x >= (f << 16))
    buf[_u(wp - 2)] = x & 0xFF
    buf[_u(wp - 1)] = (x >> 8) & 0xFF
    wp -= 2 * emit
    x >>= 16 * emit
    q = np.int64((np.float64(x) + 0.5) * inv[_u(k)])
    return (q << 16) + (x - q * f) + (e >> 16), wp


@njit(cache=True)
def _put_state(buf, wp, x):  # noqa: ANN001, ANN202
    """Write the final encoder state (= initial decoder state) as uint32 LE before wp."""
    wp -= 4
    buf[wp] = x & 0xFF
    buf[wp + 1] = (x >> 8) & 0xFF
    buf[wp + 2] = (x >> 16) & 0xFF
    buf[wp + 3] = (x >> 24) & 0xFF
    return wp


@njit(cache=True)
def _enc_rest(symbols, table_ids, lo, hi, buf, wp, x, fc, inv):  # noqa: ANN001, ANN202
    """Encode symbols[lo:hi] in reverse from state x, then write the state; return start."""
    for i in range(hi - 1, lo - 1, -1):
        k = (np.int64(table_ids[_u(i)]) << 8) | np.int64(symbols[_u(i)])
        x, wp = _enc_sym(x, wp, k, fc, inv, buf)
    return _put_state(buf, wp, x)


@njit(cache=True, parallel=True)
def _encode_kernel(symbols, table_ids, sb, buf, starts, fc, inv):  # noqa: ANN001, ANN202
    """Encode every stream into its worst-case region of ``buf``; ``starts[s]`` = first byte.

    Stream s owns buf[4*s + 2*sb[s] : 4*(s+1) + 2*sb[s+1]] (4 + 2 n_s bytes) and fills it
    from the end; with r symbols still to code at most n_s - r words are out, so the write
    pointer stays >= region start + 4 + 2r.
    """
    n_streams = sb.shape[0] - 1
    n_groups = (n_streams + 3) // 4
    for g in prange(n_groups):
        s0 = 4 * g
        if s0 + 4 > n_streams:
            for s in range(s0, n_streams):
                wend = 4 * (s + 1) + 2 * sb[s + 1]
                starts[s] = _enc_rest(
                    symbols, table_ids, sb[s], sb[s + 1], buf, wend, np.int64(RANS_L), fc, inv
                )
            continue
        e0 = sb[s0 + 1]
        e1 = sb[s0 + 2]
        e2 = sb[s0 + 3]
        e3 = sb[s0 + 4]
        m = min(min(e0 - sb[s0], e1 - e0), min(e2 - e1, e3 - e2))
        w0 = 4 * (s0 + 1) + 2 * e0
        w1 = 4 * (s0 + 2) + 2 * e1
        w2 = 4 * (s0 + 3) + 2 * e2
        w3 = 4 * (s0 + 4) + 2 * e3
        x0 = x1 = x2 = x3 = np.int64(RANS_L)
        for t in range(1, m + 1):  # the last m symbols of each lane, in lock-step
            i = e0 - t
            k = (np.int64(table_ids[_u(i)]) << 8) | np.int64(symbols[_u(i)])
            x0, w0 = _enc_sym(x0, w0, k, fc, inv, buf)
            i = e1 - t
            k = (np.int64(table_ids[_u(i)]) << 8) | np.int64(symbols[_u(i)])
            x1, w1 = _enc_sym(x1, w1, k, fc, inv, buf)
            i = e2 - t
            k = (np.int64(table_ids[_u(i)]) << 8) | np.int64(symbols[_u(i)])
            x2, w2 = _enc_sym(x2, w2, k, fc, inv, buf)
            i = e3 - t
            k = (np.int64(table_ids[_u(i)]) << 8) | np.int64(symbols[_u(i)])
            x3, w3 = _enc_sym(x3, w3, k, fc, inv, buf)
        starts[s0] = _enc_rest(symbols, table_ids, sb[s0], e0 - m, buf, w0, x0, fc, inv)
        starts[s0 + 1] = _enc_rest(symbols, table_ids, e0, e1 - m, buf, w1, x1, fc, inv)
        starts[s0 + 2] = _enc_rest(symbols, table_ids, e1, e2 - m, buf, w2, x2, fc, inv)
        starts[s0 + 3] = _enc_rest(symbols, table_ids, e2, e3 - m, buf, w3, x3, fc, inv)


@njit(cache=True, parallel=True)
def _compact_kernel(buf, starts, out, ob):  # noqa: ANN001, ANN202
    """Copy each stream from its worst-case region to its final, gap-free place."""
    for s in prange(starts.shape[0]):
        a = starts[s]
        n = ob[s + 1] - ob[s]
        out[ob[s] : ob[s] + n] = buf[a : a + n]


@njit(cache=True)
def _get_state(data, rp):  # noqa: ANN001, ANN202
    """Read the uint32 LE initial state at byte rp."""
    return (
        np.int64(data[rp])
        | (np.int64(data[rp + 1]) << 8)
        | (np.int64(data[rp + 2]) << 16)
        | (np.int64(data[rp + 3]) << 24)
    )


@njit(cache=True)
def _dec_sym(x, rp, rend, t, bk, fc, data):  # noqa: ANN001, ANN202
    """Decode one symbol with table t; returns (symbol, x, rp).

    slot = x & 0xFFFF; the symbol is found from a coarse slot->symbol table (one entry per
    2^_BK_SHIFT slots: the symbol owning the bucket's first slot; 2 KiB per table, so 64
    tables stay in L2, unlike the 64 KiB-per-table slot2sym) plus a short forward walk over
    cum (rarely taken: only in buckets that straddle a symbol boundary). Then
    x = f * (x >> 16) + slot - c and, if x < RANS_L, x = x << 16 | next word.

    The word is read branch-free from min(rp, rend - 2), always inside the stream (streams
    are >= 4 bytes), and rp advances by 2 whenever a word is needed, available or not: so a
    stream overran iff its final rp > rend, and corrupt input costs bounded work and never
    reads outside its bytes. Every state stays < 2^32 (even from a bad initial state) and
    every table index stays in range.
    """
    slot = x & _MASK
    s = np.int64(bk[_u((t << (PREC - _BK_SHIFT)) | (slot >> _BK_SHIFT))])
    e = np.int64(fc[_u((t << 8) | s)])
    while slot >= (e >> 16) + (e & 0xFFFF):  # terminates: cum[256] = 2^16 > slot
        s += 1
        e = np.int64(fc[_u((t << 8) | s)])
    x = (e & 0xFFFF) * (x >> 16) + slot - (e >> 16)
    need = np.int64(x < RANS_L)
    rc = min(rp, rend - 2)
    w = np.int64(data[_u(rc)]) | (np.int64(data[_u(rc + 1)]) << 8)
    mask = -need
    x = (((x << 16) | w) & mask) | (x & ~mask)
    return s, x, rp + 2 * need


@njit(cache=True)
def _status(x0, x, rp, rend):  # noqa: ANN001, ANN202
    """Error code of a fully decoded stream (initial state x0, final state x, read ptr rp)."""
    if x0 < RANS_L:
        return _ERR_INIT_STATE
    if rp > rend:
        return _ERR_OVERRUN
    if x != RANS_L:
        return _ERR_FINAL_STATE
    if rp != rend:
        return _ERR_UNCONSUMED
    return _ERR_OK


@njit(cache=True)
def _dec_rest(data, rp, rend, x0, x, table_ids, lo, hi, bk, fc, out):  # noqa: ANN001, ANN202
    """Decode symbols lo..hi-1 of one stream from state x / read pointer rp; return err code."""
    for i in range(lo, hi):
        s, x, rp = _dec_sym(x, rp, rend, np.int64(table_ids[_u(i)]), bk, fc, data)
        out[_u(i)] = s
    return _status(x0, x, rp, rend)


@njit(cache=True, parallel=True)
def _decode_kernel(data, bb, sb, table_ids, bk, fc, out, err):  # noqa: ANN001, ANN202
    """Decode all streams; err[s] receives the per-stream error code (0 = ok)."""
    n_streams = sb.shape[0] - 1
    n_groups = (n_streams + 3) // 4
    for g in prange(n_groups):
        s0 = 4 * g
        if s0 + 4 > n_streams:
            for s in range(s0, n_streams):
                x = _get_state(data, bb[s])
                err[s] = _dec_rest(
                    data, bb[s] + 4, bb[s + 1], x, x, table_ids, sb[s], sb[s + 1], bk, fc, out
                )
            continue
        lo0 = sb[s0]
        lo1 = sb[s0 + 1]
        lo2 = sb[s0 + 2]
        lo3 = sb[s0 + 3]
        m = min(min(lo1 - lo0, lo2 - lo1), min(lo3 - lo2, sb[s0 + 4] - lo3))
        re0 = bb[s0 + 1]
        re1 = bb[s0 + 2]
        re2 = bb[s0 + 3]
        re3 = bb[s0 + 4]
        rp0 = bb[s0] + 4
        rp1 = re0 + 4
        rp2 = re1 + 4
        rp3 = re2 + 4
        i0 = x0 = _get_state(data, bb[s0])
        i1 = x1 = _get_state(data, re0)
        i2 = x2 = _get_state(data, re1)
        i3 = x3 = _get_state(data, re2)
        for t in range(m):  # the first m symbols of each lane, in lock-step
            i = lo0 + t
            s, x0, rp0 = _dec_sym(x0, rp0, re0, np.int64(table_ids[_u(i)]), bk, fc, data)
            out[_u(i)] = s
            i = lo1 + t
            s, x1, rp1 = _dec_sym(x1, rp1, re1, np.int64(table_ids[_u(i)]), bk, fc, data)
            out[_u(i)] = s
            i = lo2 + t
            s, x2, rp2 = _dec_sym(x2, rp2, re2, np.int64(table_ids[_u(i)]), bk, fc, data)
            out[_u(i)] = s
            i = lo3 + t
            s, x3, rp3 = _dec_sym(x3, rp3, re3, np.int64(table_ids[_u(i)]), bk, fc, data)
            out[_u(i)] = s
        err[s0] = _dec_rest(data, rp0, re0, i0, x0, table_ids, lo0 + m, lo1, bk, fc, out)
        err[s0 + 1] = _dec_rest(data, rp1, re1, i1, x1, table_ids, lo1 + m, lo2, bk, fc, out)
        err[s0 + 2] = _dec_rest(data, rp2, re2, i2, x2, table_ids, lo2 + m, lo3, bk, fc, out)
        err[s0 + 3] = _dec_rest(data, rp3, re3, i3, x3, table_ids, lo3 + m, sb[s0 + 4], bk, fc, out)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _ro(a: np.ndarray) -> np.ndarray:
    """Read-only view: kernels always see read-only inputs, so each compiles exactly once
    (numba specialises on writability, and bytes/np.load/frombuffer inputs are read-only)."""
    v = a.view()
    v.setflags(write=False)
    return v


def _as_u8_1d(a: object, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype != np.uint8:
        raise CodecError(f"{name} must be a uint8 array, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise CodecError(f"{name} must be 1-D, got shape {arr.shape}")
    return _ro(np.ascontiguousarray(arr))


def _as_bounds(a: object, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1 or arr.shape[0] < 1:
        raise CodecError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise CodecError(f"{name} must be integers, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise CodecError(f"{name} has values out of range")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    d = np.diff(arr)
    bad = np.flatnonzero(d < 0)
    if bad.size:
        raise CodecError(f"{name} not monotone at stream {int(bad[0])}")
    return _ro(arr)


def _check_stream_bounds(sb: np.ndarray, n: int) -> None:
    if sb[0] != 0 or sb[-1] != n:
        raise CodecError(
            f"stream_bounds must start at 0 and end at N={n}, got {int(sb[0])}..{int(sb[-1])}"
        )


def _check_table_ids(table_ids: np.ndarray, sb: np.ndarray, n_tables: int) -> None:
    if table_ids.size and int(table_ids.max()) >= n_tables:
        i = int(np.argmax(table_ids >= n_tables))
        s = int(np.searchsorted(sb, i, side="right")) - 1
        raise CodecError(
            f"stream {s}: table id {int(table_ids[i])} at symbol {i} >= n_tables={n_tables}"
        )


def encode_streams(
    symbols: np.ndarray, table_ids: np.ndarray, stream_bounds: np.ndarray, tables: RansTables
) -> tuple[np.ndarray, np.ndarray]:
    """rANS-encode ``symbols[b[s]:b[s+1]]`` as stream s for every s, each with its own state.

    Returns ``(data, byte_bounds)``: stream s is ``data[byte_bounds[s]:byte_bounds[s+1]]``,
    streams concatenated without gaps. Memory is O(N + S): one worst-case buffer of
    4 + 2 n_s bytes per stream, then a compacting copy.
    """
    if not isinstance(tables, RansTables):
        raise CodecError("tables must be a RansTables")
    sym = _as_u8_1d(symbols, "symbols")
    tid = _as_u8_1d(table_ids, "table_ids")
    n = sym.shape[0]
    if tid.shape[0] != n:
        raise CodecError(f"table_ids has {tid.shape[0]} entries, symbols has {n}")
    sb = _as_bounds(stream_bounds, "stream_bounds")
    _check_stream_bounds(sb, n)
    _check_table_ids(tid, sb, tables.n_tables)
    n_streams = sb.shape[0] - 1
    buf = np.empty(4 * n_streams + 2 * n, dtype=np.uint8)
    starts = np.empty(n_streams, dtype=np.int64)
    _encode_kernel(sym, tid, sb, buf, starts, _ro(tables._fc), _ro(tables._inv))
    ends = 4 * np.arange(1, n_streams + 1, dtype=np.int64) + 2 * sb[1:]
    ob = np.zeros(n_streams + 1, dtype=np.int64)
    np.cumsum(ends - starts, out=ob[1:])
    out = np.empty(int(ob[-1]), dtype=np.uint8)
    _compact_kernel(buf, starts, out, ob)
    return out, ob


def decode_streams(
    data: bytes | bytearray | memoryview | np.ndarray,
    byte_bounds: np.ndarray,
    stream_bounds: np.ndarray,
    table_ids: np.ndarray,
    tables: RansTables,
) -> np.ndarray:
    """Decode the streams written by ``encode_streams``; returns uint8 symbols [N].

    Every stream is checked (never read past its end, final state == RANS_L, every word
    consumed); any violation raises CodecError naming the first bad stream.
    """
    if not isinstance(tables, RansTables):
        raise CodecError("tables must be a RansTables")
    if isinstance(data, np.ndarray):
        buf = _as_u8_1d(data, "data")
    else:
        try:
            buf = _ro(np.frombuffer(data, dtype=np.uint8))
        except (TypeError, ValueError) as exc:
            raise CodecError(f"data must be a bytes-like object: {exc}") from None
    tid = _as_u8_1d(table_ids, "table_ids")
    n = tid.shape[0]
    sb = _as_bounds(stream_bounds, "stream_bounds")
    bb = _as_bounds(byte_bounds, "byte_bounds")
    if bb.shape[0] != sb.shape[0]:
        raise CodecError(
            f"byte_bounds describes {bb.shape[0] - 1} streams, stream_bounds {sb.shape[0] - 1}"
        )
    _check_stream_bounds(sb, n)
    if bb[0] < 0 or bb[-1] > buf.shape[0]:
        raise CodecError(
            f"byte_bounds [{int(bb[0])}, {int(bb[-1])}] outside data of {buf.shape[0]} bytes"
        )
    nbytes = np.diff(bb)
    nsym = np.diff(sb)
    # A stream of n symbols has >= 4 and <= 4 + 2n bytes, an even number.
    bad = np.flatnonzero((nbytes < 4) | ((nbytes & 1) != 0) | (nbytes > 4 + 2 * nsym))
    if bad.size:
        s = int(bad[0])
        raise CodecError(
            f"stream {s}: {int(nbytes[s])} bytes is impossible for {int(nsym[s])} symbols"
        )
    _check_table_ids(tid, sb, tables.n_tables)
    out = np.empty(n, dtype=np.uint8)
    err = np.zeros(sb.shape[0] - 1, dtype=np.int64)
    _decode_kernel(buf, bb, sb, tid, _ro(tables._bk), _ro(tables._fc), out, err)
    badk = np.flatnonzero(err)
    if badk.size:
        s = int(badk[0])
        raise CodecError(f"rANS stream {s}: {_ERR_MESSAGES.get(int(err[s]), 'corrupt')}")
    return out
