"""Multi-stream rANS entropy coder, byte-exact with the bitstream spec in docs/RANS.md; the
loops are C (codec/kernels/pilc_rans.h), shared with the pixel model and the CUDA build.

Why this shape: the image is split into many independent streams so that a GPU runs one thread
per stream and produces the *same bytes*, and the CPU spreads streams over its cores.

Parameters (fixed by the format): 16-bit probability precision, 256-symbol alphabet, 32-bit
state kept in [2^16, 2^32), renormalisation in 16-bit words (at most one word per symbol).

Stream layout: ``uint32 LE initial decoder state`` then ``k`` ``uint16 LE`` words in the order the
decoder consumes them, so a stream is ``4 + 2k`` bytes; an empty stream is the 4 bytes of RANS_L.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from codec import kernels
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
_STREAMS_PER_CLAIM = 16  # RANS_GROUP in codec/kernels/pilc_cpu.c
_ERR_MESSAGES = {
    _ERR_OVERRUN: "decoder needed a word past the end of the stream (truncated or corrupt)",
    _ERR_FINAL_STATE: "final decoder state is not RANS_L (corrupt data or wrong tables)",
    _ERR_UNCONSUMED: "words left unconsumed after the last symbol (corrupt data or bounds)",
    _ERR_INIT_STATE: "initial decoder state is below RANS_L (corrupt header)",
}


# --------------------------------------------------------------------------------------------
# Frequency normalisation
# --------------------------------------------------------------------------------------------


def normalize_freqs(counts: np.ndarray) -> np.ndarray:
    """Turn histogram(s) into rANS frequency tables (uint32 (T,256), rows sum to 2^PREC, >= 1).

    Deterministic across platforms: only IEEE-754 +,-,*,/ in a fixed order (no log/exp, no
    reductions of unspecified order). The code length -sum c_i log f_i is minimised with the
    marginal gain of one more unit for symbol i approximated by c_i / (f_i + 1/2), and unit
    exchanges made until none improves it (pilc_normalize_rows in codec/kernels). An all-zero
    row becomes uniform; zero-count symbols get frequency 1 so any byte stays encodable.
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
    kernels.lib.pilc_normalize_rows(kernels.ptr(c), c.shape[0], c.shape[1], kernels.ptr(out))
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
    #   _inv float64 (T*256,): 1 / freq (exact-division trick in the GPU and AVX-512 encoders)
    #   _rcp uint64 (T*256,): 2^48 // freq + 1 (the CPU encoder's exact integer division)
    #   _bk  uint8 (T*2^(PREC-_BK_SHIFT),): symbol owning slot k << _BK_SHIFT; decode with
    #        s = _bk[t, slot >> 5]; while slot >= cum[s] + freq[s]: s += 1   (see _dec_sym)
    _fc: np.ndarray = field(init=False, repr=False)
    _inv: np.ndarray = field(init=False, repr=False)
    _rcp: np.ndarray = field(init=False, repr=False)
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
        rcp = (np.uint64(1 << 48) // freq.astype(np.uint64) + np.uint64(1)).reshape(-1)
        object.__setattr__(self, "_rcp", _readonly(np.ascontiguousarray(rcp, dtype=np.uint64)))
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
# Public API
# --------------------------------------------------------------------------------------------


def _ro(a: np.ndarray) -> np.ndarray:
    """Read-only view: what the kernels only read cannot be changed by a caller's mistake."""
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
    return encode_kernel_streams(sym, tid, sb, tables)


def encode_kernel_streams(
    sym: np.ndarray, tid: np.ndarray, sb: np.ndarray, tables: RansTables
) -> tuple[np.ndarray, np.ndarray]:
    """encode_streams without its argument checks, for what the pixel kernels wrote: C-contiguous
    uint8 symbols and table ids (< tables.n_tables), int64 bounds from 0 to N, non-decreasing.
    The checks are numpy passes whose cost shows on small images coded one at a time."""
    n, n_streams = sym.shape[0], sb.shape[0] - 1
    buf = np.empty(4 * n_streams + 2 * n, dtype=np.uint8)
    starts = np.empty(n_streams, dtype=np.int64)
    p = kernels.ptr
    kernels.run_shared(
        lambda counter: kernels.lib.pilc_rans_encode(
            p(sym),
            p(tid),
            p(sb),
            n_streams,
            p(buf),
            p(starts),
            p(tables._fc),
            p(tables._inv),
            p(tables._rcp),
            counter,
        ),
        n_streams // _STREAMS_PER_CLAIM + 1,
    )
    ends = 4 * np.arange(1, n_streams + 1, dtype=np.int64) + 2 * sb[1:]
    ob = np.zeros(n_streams + 1, dtype=np.int64)
    np.cumsum(ends - starts, out=ob[1:])
    out = np.empty(int(ob[-1]), dtype=np.uint8)
    kernels.lib.pilc_compact(p(buf), p(starts), n_streams, p(out), p(ob))
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
    p = kernels.ptr
    kernels.run_shared(
        lambda counter: kernels.lib.pilc_rans_decode(
            p(buf),
            p(bb),
            p(sb),
            sb.shape[0] - 1,
            p(tid),
            p(tables._bk),
            p(tables._fc),
            p(out),
            p(err),
            counter,
        ),
        (sb.shape[0] - 1) // _STREAMS_PER_CLAIM + 1,
    )
    badk = np.flatnonzero(err)
    if badk.size:
        s = int(badk[0])
        raise CodecError(f"rANS stream {s}: {_ERR_MESSAGES.get(int(err[s]), 'corrupt')}")
    return out
