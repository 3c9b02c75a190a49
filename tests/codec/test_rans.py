"""Tests for codec/rans.py: spec oracle equality, round trips, golden bytes, corruption, fuzz."""

from __future__ import annotations

import heapq
import math
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec import kernels
from codec.errors import CodecError
from codec.rans import (
    ALPHABET,
    PREC,
    RANS_L,
    RansTables,
    decode_streams,
    encode_streams,
    normalize_freqs,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "rans_vectors.npz"
M = 1 << PREC
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------
# Spec oracle: a literal, slow, pure-Python transcription of docs/RANS.md.
# ---------------------------------------------------------------------------------------------


def ref_encode_stream(symbols: list[int], tids: list[int], freq: list[list[int]]) -> bytes:
    """Encode one stream exactly as the spec says."""
    x = RANS_L
    words = []
    for s, t in zip(reversed(symbols), reversed(tids), strict=True):
        f = freq[t][s]
        c = sum(freq[t][:s])
        while x >= (f << 16):
            words.append(x & 0xFFFF)
            x >>= 16
        x = ((x // f) << 16) + (x % f) + c
    words.reverse()
    return struct.pack("<I", x) + struct.pack(f"<{len(words)}H", *words)


def ref_decode_stream(blob: bytes, tids: list[int], freq: list[list[int]]) -> list[int]:
    """Decode one stream exactly as the spec says; ValueError on any corruption."""
    if len(blob) < 4 or len(blob) % 2:
        raise ValueError("bad length")
    (x,) = struct.unpack_from("<I", blob, 0)
    if x < RANS_L:
        raise ValueError("bad initial state")
    pos = 4
    out = []
    for t in tids:
        slot = x & 0xFFFF
        c = 0
        s = 0
        while c + freq[t][s] <= slot:
            c += freq[t][s]
            s += 1
        x = freq[t][s] * (x >> 16) + slot - c
        if x < RANS_L:
            if pos + 2 > len(blob):
                raise ValueError("overrun")
            x = (x << 16) | struct.unpack_from("<H", blob, pos)[0]
            pos += 2
        out.append(s)
    if x != RANS_L or pos != len(blob):
        raise ValueError("bad final state or unconsumed words")
    return out


def ref_encode(symbols, table_ids, bounds, freqs) -> tuple[bytes, list[int]]:  # noqa: ANN001
    freq = np.asarray(freqs).tolist()
    blobs = [
        ref_encode_stream(symbols[a:b].tolist(), table_ids[a:b].tolist(), freq)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    bb = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    return b"".join(blobs), bb.tolist()


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def uniform_table() -> np.ndarray:
    return np.full(ALPHABET, M // ALPHABET, dtype=np.uint32)


def extreme_table(peak: int = 0) -> np.ndarray:
    f = np.ones(ALPHABET, dtype=np.uint32)
    f[peak] = M - (ALPHABET - 1)
    return f


def laplace_probs(scale: float) -> np.ndarray:
    r = (np.arange(ALPHABET) + 128) % 256 - 128
    p = np.exp(-np.abs(r) / scale)
    return p / p.sum()


def random_tables(rng: np.random.Generator, n: int) -> np.ndarray:
    """A mix of uniform, extreme, Laplacian and random tables."""
    out = []
    for k in range(n):
        kind = (k + int(rng.integers(0, 4))) % 4
        if kind == 0:
            out.append(uniform_table())
        elif kind == 1:
            out.append(extreme_table(int(rng.integers(0, ALPHABET))))
        elif kind == 2:
            out.append(normalize_freqs(laplace_probs(float(rng.uniform(0.2, 50))))[0])
        else:
            counts = rng.integers(0, 50, ALPHABET) * (rng.random(ALPHABET) < 0.5)
            out.append(normalize_freqs(counts)[0])
    return np.stack(out)


def random_case(seed: int, max_streams: int = 12, max_len: int = 300):  # noqa: ANN201
    """Symbols drawn (mostly) from their tables, plus uniform junk, random stream lengths."""
    rng = np.random.default_rng(seed)
    t = int(rng.integers(1, 6))
    freqs = random_tables(rng, t)
    n_streams = int(rng.integers(0, max_streams + 1))
    lengths = rng.integers(0, max_len + 1, n_streams) * (rng.random(n_streams) < 0.85)
    n = int(lengths.sum())
    tids = rng.integers(0, t, n).astype(np.uint8)
    cdf = np.cumsum(freqs, axis=1)
    slots = rng.integers(0, M, n)
    syms = np.empty(n, np.uint8)
    for k in range(t):
        sel = tids == k
        syms[sel] = np.searchsorted(cdf[k], slots[sel], side="right")
    junk = rng.random(n) < 0.1
    syms[junk] = rng.integers(0, ALPHABET, int(junk.sum()))
    bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return freqs, syms, tids, bounds


def roundtrip(freqs, syms, tids, bounds) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    tabs = RansTables.from_freqs(freqs)
    data, bb = encode_streams(syms, tids, bounds, tabs)
    assert data.dtype == np.uint8 and bb.dtype == np.int64
    assert bb[0] == 0 and bb[-1] == len(data) and len(bb) == len(bounds)
    nb = np.diff(bb)
    assert np.all(nb >= 4) and np.all(nb % 2 == 0) and np.all(nb <= 4 + 2 * np.diff(bounds))
    out = decode_streams(data, bb, bounds, tids, tabs)
    np.testing.assert_array_equal(out, syms)
    return data, bb


@pytest.fixture(scope="module")
def laplace_case():  # noqa: ANN201
    """64 Laplacian tables, per-symbol table choice, 40 streams of unequal length."""
    rng = np.random.default_rng(7)
    probs = np.stack([laplace_probs(s) for s in np.geomspace(0.3, 60, 64)])
    freqs = normalize_freqs(probs)
    lengths = rng.integers(0, 3000, 41)
    n = int(lengths.sum())
    tids = rng.integers(0, 64, n).astype(np.uint8)
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(n)
    syms = np.empty(n, np.uint8)
    for t in range(64):
        sel = tids == t
        syms[sel] = np.minimum(np.searchsorted(cdf[t], u[sel]), 255)
    bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return freqs, syms, tids, bounds


# ---------------------------------------------------------------------------------------------
# Encoder == spec, round trips
# ---------------------------------------------------------------------------------------------


def test_constants() -> None:
    assert (PREC, RANS_L, ALPHABET) == (16, 1 << 16, 256)


@settings(FUZZ, max_examples=80)
@given(st.integers(0, 2**32 - 1))
def test_matches_oracle(seed: int) -> None:
    freqs, syms, tids, bounds = random_case(seed)
    data, bb = roundtrip(freqs, syms, tids, bounds)
    ref_data, ref_bb = ref_encode(syms, tids, bounds, freqs)
    assert data.tobytes() == ref_data
    assert bb.tolist() == ref_bb
    freq = freqs.tolist()
    for s in range(len(bounds) - 1):
        a, b = bounds[s], bounds[s + 1]
        blob = data[bb[s] : bb[s + 1]].tobytes()
        assert ref_decode_stream(blob, tids[a:b].tolist(), freq) == syms[a:b].tolist()


def test_empty_and_degenerate_streams() -> None:
    tabs = RansTables.from_freqs(uniform_table())
    empty = np.zeros(0, np.uint8)
    # No streams at all.
    data, bb = encode_streams(empty, empty, np.array([0]), tabs)
    assert len(data) == 0 and bb.tolist() == [0]
    assert len(decode_streams(data, bb, [0], empty, tabs)) == 0
    # Empty streams are exactly the 4 bytes of RANS_L.
    data, bb = encode_streams(empty, empty, np.zeros(6, np.int64), tabs)
    assert data.tobytes() == struct.pack("<I", RANS_L) * 5
    assert bb.tolist() == [0, 4, 8, 12, 16, 20]
    # A uniform table codes each byte in exactly 8 bits: one word per 2 symbols, plus the state.
    syms = np.arange(256, dtype=np.uint8)
    data, bb = roundtrip(uniform_table(), syms, np.zeros(256, np.uint8), np.array([0, 256]))
    assert len(data) == 4 + 2 * 128


@pytest.mark.parametrize("n_streams", [1, 3, 4, 5, 8, 9, 13])
def test_roundtrip_stream_counts(n_streams: int) -> None:
    """Partial 4-lane groups, unequal lengths, empty and single-symbol streams."""
    rng = np.random.default_rng(n_streams)
    freqs = random_tables(rng, 5)
    lengths = rng.choice([0, 1, 2, 7, 64, 500, 1000], size=n_streams)
    n = int(lengths.sum())
    syms = rng.integers(0, 256, n).astype(np.uint8)
    tids = rng.integers(0, 5, n).astype(np.uint8)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    data, bb = roundtrip(freqs, syms, tids, bounds)
    assert data.tobytes() == ref_encode(syms, tids, bounds, freqs)[0]


def test_roundtrip_mixed_tables(laplace_case) -> None:  # noqa: ANN001
    roundtrip(*laplace_case)


def test_extreme_tables() -> None:
    rng = np.random.default_rng(3)
    freqs = np.stack([extreme_table(0), extreme_table(255), uniform_table()])
    n = 20000
    # Rare symbols only: every symbol costs 16 bits, i.e. exactly one word per symbol.
    syms = rng.integers(1, 255, n).astype(np.uint8)
    tids = np.zeros(n, np.uint8)
    data, _ = roundtrip(freqs, syms, tids, np.array([0, n // 2, n]))
    assert len(data) == 8 + 2 * n
    # The frequent symbol only: ~0.0056 bits each.
    syms = np.zeros(n, np.uint8)
    data, _ = roundtrip(freqs, syms, tids, np.array([0, n]))
    assert len(data) <= 4 + 2 * 8
    # Mixed tables per symbol.
    tids = rng.integers(0, 3, n).astype(np.uint8)
    syms = rng.integers(0, 256, n).astype(np.uint8)
    roundtrip(freqs, syms, tids, np.arange(0, n + 1, 1000))


def test_one_million_symbols_one_stream() -> None:
    rng = np.random.default_rng(11)
    n = 1_000_000
    freqs = normalize_freqs(np.stack([laplace_probs(3.0), laplace_probs(20.0)]))
    tids = (rng.random(n) < 0.5).astype(np.uint8)
    cdf = np.cumsum(freqs, axis=1)
    syms = np.searchsorted(cdf[0], rng.integers(0, M, n), side="right").astype(np.uint8)
    data, _ = roundtrip(freqs, syms, tids, np.array([0, n]))
    assert len(data) < n  # compresses


def test_thread_count_does_not_change_bytes(laplace_case) -> None:  # noqa: ANN001
    freqs, syms, tids, bounds = laplace_case
    tabs = RansTables.from_freqs(freqs)
    results = []
    for k in (1, 2, 3):
        with kernels.using_threads(k):
            data, bb = encode_streams(syms, tids, bounds, tabs)
            out = decode_streams(data, bb, bounds, tids, tabs)
            results.append((data.tobytes(), bb.tolist(), out.tobytes()))
    assert results[0] == results[1] == results[2]
    assert results[0][2] == syms.tobytes()


def test_decode_accepts_bytes_like() -> None:
    freqs, syms, tids, bounds = random_case(5)
    tabs = RansTables.from_freqs(freqs)
    data, bb = encode_streams(syms, tids, bounds, tabs)
    for blob in (data.tobytes(), bytearray(data.tobytes()), memoryview(data.tobytes()), data):
        np.testing.assert_array_equal(decode_streams(blob, bb, bounds, tids, tabs), syms)
    # Streams may sit at any offset inside a larger buffer.
    shifted = b"xyz" + data.tobytes() + b"tail"
    np.testing.assert_array_equal(decode_streams(shifted, bb + 3, bounds, tids, tabs), syms)


def test_float_division_is_exact() -> None:
    """The encoder's floor((x + 1/2) * (1/f)) equals x // f for all x < 2^32, 1 <= f < 2^16."""
    f = np.arange(1, M, dtype=np.int64)
    inv = 1.0 / f.astype(np.float64)
    qmax = ((1 << 32) - 1) // f
    for frac in np.linspace(0.0, 1.0, 41):
        q = np.floor(qmax * frac).astype(np.int64)
        for x in (q * f, q * f + f - 1, q * f - 1):
            x = np.clip(x, 0, (1 << 32) - 1)
            got = ((x.astype(np.float64) + 0.5) * inv).astype(np.int64)
            np.testing.assert_array_equal(got, x // f)


def test_integer_reciprocal_division_is_exact() -> None:
    """The CPU encoder's (x * rcp) >> 48, rcp = 2^48 // f + 1 (RansTables._rcp), taken in two
    64-bit halves as the kernel does, equals x // f where the error bound is tightest: x next to
    a multiple of f, and the largest states."""
    tabs = RansTables.from_freqs(np.stack([extreme_table(3), uniform_table()]))
    want = np.uint64(1 << 48) // tabs.freq.astype(np.uint64).reshape(-1) + np.uint64(1)
    np.testing.assert_array_equal(tabs._rcp, want)
    f = np.arange(1, M, dtype=np.uint64)
    rcp = np.uint64(1 << 48) // f + np.uint64(1)
    hi, lo = rcp >> np.uint64(32), rcp & np.uint64(0xFFFFFFFF)
    qmax = np.uint64((1 << 32) - 1) // f
    for frac in np.linspace(0.0, 1.0, 41):
        q = np.floor(qmax.astype(np.float64) * frac).astype(np.uint64)
        for x in (q * f, q * f + f - np.uint64(1), np.maximum(q * f, np.uint64(1)) - np.uint64(1)):
            x = np.minimum(x, np.uint64((1 << 32) - 1))
            got = (x * hi + ((x * lo) >> np.uint64(32))) >> np.uint64(16)
            np.testing.assert_array_equal(got, x // f)


# ---------------------------------------------------------------------------------------------
# Golden vectors
# ---------------------------------------------------------------------------------------------


def test_golden_vectors() -> None:
    with np.load(GOLDEN) as z:
        g = {k: z[k] for k in z.files}
    tabs = RansTables.from_freqs(g["freqs"])
    data, bb = encode_streams(g["symbols"], g["table_ids"], g["stream_bounds"], tabs)
    assert data.tobytes() == g["data"].tobytes()
    np.testing.assert_array_equal(bb, g["byte_bounds"])
    out = decode_streams(g["data"], g["byte_bounds"], g["stream_bounds"], g["table_ids"], tabs)
    np.testing.assert_array_equal(out, g["symbols"])
    np.testing.assert_array_equal(normalize_freqs(g["norm_counts"]), g["norm_freqs"])
    assert g["norm_freqs"].dtype == np.uint32


def test_golden_matches_oracle() -> None:
    with np.load(GOLDEN) as z:
        g = {k: z[k] for k in z.files}
    ref, ref_bb = ref_encode(g["symbols"], g["table_ids"], g["stream_bounds"], g["freqs"])
    assert ref == g["data"].tobytes()
    assert ref_bb == g["byte_bounds"].tolist()


# ---------------------------------------------------------------------------------------------
# Corruption and argument validation
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encoded():  # noqa: ANN201
    freqs, syms, tids, bounds = random_case(1234, max_streams=9, max_len=400)
    rng = np.random.default_rng(0)
    n = 3000
    syms = np.concatenate([syms, rng.integers(0, 256, n).astype(np.uint8)])
    tids = np.concatenate([tids, rng.integers(0, len(freqs), n).astype(np.uint8)])
    bounds = np.concatenate([bounds, [bounds[-1] + 1000, bounds[-1] + n]])
    tabs = RansTables.from_freqs(freqs)
    data, bb = encode_streams(syms, tids, bounds, tabs)
    return tabs, syms, tids, bounds, data, bb


def test_truncated_data(encoded) -> None:  # noqa: ANN001
    tabs, _, tids, bounds, data, bb = encoded
    last = len(bb) - 2
    for cut in (2, 4, 10):
        bb2 = bb.copy()
        bb2[-1] -= cut
        with pytest.raises(CodecError, match=f"stream {last}"):
            decode_streams(data[: bb2[-1]], bb2, bounds, tids, tabs)
    with pytest.raises(CodecError, match="outside data"):
        decode_streams(data[:-2], bb, bounds, tids, tabs)
    with pytest.raises(CodecError):
        decode_streams(b"", bb, bounds, tids, tabs)


def test_flipped_bytes_are_detected(laplace_case) -> None:  # noqa: ANN001
    """rANS carries no checksum: the final-state and word-count checks catch most damage.

    A flip can turn a stream into a *different valid* stream (e.g. a slot moved between two
    symbols of frequency 1 leaves the state unchanged), so the container needs its own hash;
    here we require CodecError naming the stream or a different output, and a high catch rate.
    """
    freqs, syms, tids, bounds = laplace_case
    syms, tids, bounds = syms[: bounds[5]], tids[: bounds[5]], bounds[:6]
    tabs = RansTables.from_freqs(freqs)
    data, bb = encode_streams(syms, tids, bounds, tabs)
    rng = np.random.default_rng(99)
    caught = 0
    positions = rng.integers(0, len(data), 200)
    for p in positions:
        stream = int(np.searchsorted(bb, p, side="right")) - 1
        bad = data.copy()
        bad[p] ^= np.uint8(1 << int(rng.integers(0, 8)))
        try:
            out = decode_streams(bad, bb, bounds, tids, tabs)
        except CodecError as exc:
            assert f"stream {stream}:" in str(exc)
            caught += 1
        else:
            assert not np.array_equal(out, syms)
    assert caught >= 0.95 * len(positions)


def test_wrong_bounds(encoded) -> None:  # noqa: ANN001
    tabs, syms, tids, bounds, data, bb = encoded
    cases = []
    b = bb.copy()
    b[-2], b[-3] = b[-3], b[-2]  # not monotone
    cases.append((b, bounds, "not monotone"))
    b = bb.copy()
    b[-2] += 2  # words moved between the last two streams
    cases.append((b, bounds, "stream"))
    b = bb.copy()
    b[-1] += 2  # past the data
    cases.append((b, bounds, "outside data"))
    cases.append((bb - 1, bounds, "outside data"))
    cases.append((bb[:-1], bounds, "streams"))
    b = bounds.copy()
    b[-2] += 1  # symbols moved between the last two streams
    cases.append((bb, b, "stream"))
    b = bounds.copy()
    b[-1] += 1
    cases.append((bb, b, "end at N"))
    cases.append((bb, bounds[::-1].copy(), "stream_bounds"))
    cases.append((bb.astype(np.float64), bounds, "integers"))
    cases.append((np.array([], np.int64), np.array([], np.int64), "non-empty"))
    for b_bytes, b_syms, msg in cases:
        with pytest.raises(CodecError, match=msg):
            decode_streams(data, b_bytes, b_syms, tids, tabs)
    # A stream claimed shorter than 4 bytes / of odd length / too long for its symbols.
    data3, bb3 = encode_streams(syms[:3], tids[:3], np.array([0, 1, 3]), tabs)
    for b in ([0, 3, len(data3)], [0, 2, len(data3)], [0, 4, 12]):
        with pytest.raises(CodecError, match="stream"):
            decode_streams(
                np.concatenate([data3, np.zeros(8, np.uint8)]), b, [0, 1, 3], tids[:3], tabs
            )


def test_bad_table_ids(encoded) -> None:  # noqa: ANN001
    tabs, syms, tids, bounds, data, bb = encoded
    bad = tids.copy()
    bad[-1] = tabs.n_tables
    with pytest.raises(CodecError, match=f"stream {len(bounds) - 2}: table id"):
        decode_streams(data, bb, bounds, bad, tabs)
    with pytest.raises(CodecError, match="table id"):
        encode_streams(syms, bad, bounds, tabs)
    with pytest.raises(CodecError, match="uint8"):
        decode_streams(data, bb, bounds, tids.astype(np.int64), tabs)
    # Wrong (but valid) tables: decodes garbage, must be caught by the final-state check.
    other = RansTables.from_freqs(np.roll(tabs.freq, 1, axis=1))
    with pytest.raises(CodecError):
        decode_streams(data, bb, bounds, tids, other)


def test_encode_argument_validation() -> None:
    tabs = RansTables.from_freqs(uniform_table())
    s = np.zeros(10, np.uint8)
    with pytest.raises(CodecError, match="uint8"):
        encode_streams(s.astype(np.int32), s, [0, 10], tabs)
    with pytest.raises(CodecError, match="entries"):
        encode_streams(s, s[:5], [0, 10], tabs)
    with pytest.raises(CodecError, match="end at N"):
        encode_streams(s, s, [0, 9], tabs)
    with pytest.raises(CodecError, match="start at 0"):
        encode_streams(s, s, [1, 10], tabs)
    with pytest.raises(CodecError, match="not monotone"):
        encode_streams(s, s, [0, 6, 4, 10], tabs)
    with pytest.raises(CodecError, match="1-D"):
        encode_streams(s.reshape(2, 5), s.reshape(2, 5), [0, 10], tabs)
    with pytest.raises(CodecError, match="RansTables"):
        encode_streams(s, s, [0, 10], uniform_table())
    with pytest.raises(CodecError, match="RansTables"):
        decode_streams(b"", [0], [0], s[:0], None)


@FUZZ
@given(
    st.binary(min_size=0, max_size=200),
    st.lists(st.integers(-3, 220), min_size=1, max_size=7),
    st.lists(st.integers(-3, 60), min_size=1, max_size=7),
    st.integers(0, 2**32 - 1),
)
def test_fuzz_decode_only_raises_codec_error(
    blob: bytes, byte_bounds: list[int], stream_bounds: list[int], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    tabs = RansTables.from_freqs(random_tables(rng, 3))
    n = max(0, stream_bounds[-1])
    tids = rng.integers(0, 4 if seed % 7 == 0 else 3, n).astype(np.uint8)
    if seed % 3 == 0:  # mostly well-formed bounds, so the kernel itself gets fuzzed
        k = len(stream_bounds)
        stream_bounds = [0, *sorted(rng.integers(0, 60, k - 1).tolist())]
        n = stream_bounds[-1]
        tids = rng.integers(0, 3, n).astype(np.uint8)
        sizes = 4 + 2 * rng.integers(0, 6, k - 1)
        byte_bounds = [0, *np.cumsum(sizes).tolist()]
        blob = blob + bytes(rng.integers(0, 256, max(0, byte_bounds[-1] - len(blob)), np.uint8))
    try:
        out = decode_streams(blob, byte_bounds, stream_bounds, tids, tabs)
    except CodecError:
        return
    assert out.dtype == np.uint8 and len(out) == n
    # Anything that decodes must re-encode to the same bytes (rANS is a bijection here).
    data, bb = encode_streams(out, tids, np.asarray(stream_bounds), tabs)
    for s in range(len(stream_bounds) - 1):
        got = data[bb[s] : bb[s + 1]].tobytes()
        assert got == bytes(blob[byte_bounds[s] : byte_bounds[s + 1]])


def test_initial_state_below_range() -> None:
    tabs = RansTables.from_freqs(uniform_table())
    blob = struct.pack("<I", RANS_L - 1)
    with pytest.raises(CodecError, match="stream 0: initial"):
        decode_streams(blob, [0, 4], [0, 0], np.zeros(0, np.uint8), tabs)
    # Also inside a full 4-lane group with symbols.
    syms = np.zeros(40, np.uint8)
    data, bb = encode_streams(syms, syms, np.arange(0, 41, 10), tabs)
    data = data.copy()
    data[bb[2] : bb[2] + 4] = np.frombuffer(struct.pack("<I", 5), np.uint8)
    with pytest.raises(CodecError, match="stream 2: initial"):
        decode_streams(data, bb, np.arange(0, 41, 10), syms, tabs)


# ---------------------------------------------------------------------------------------------
# Tables and normalize_freqs
# ---------------------------------------------------------------------------------------------


def test_tables_from_freqs() -> None:
    freqs = np.stack([uniform_table(), extreme_table(3)])
    tabs = RansTables.from_freqs(freqs)
    assert tabs.n_tables == 2
    assert tabs.freq.dtype == np.uint32 and tabs.freq.shape == (2, 256)
    assert tabs.cum.dtype == np.uint32 and tabs.cum.shape == (2, 257)
    assert tabs.slot2sym.dtype == np.uint8 and tabs.slot2sym.shape == (2, M)
    assert np.all(tabs.cum[:, 0] == 0) and np.all(tabs.cum[:, -1] == M)
    for t in range(2):
        for s in (0, 3, 4, 255):
            lo, hi = tabs.cum[t, s], tabs.cum[t, s + 1]
            assert np.all(tabs.slot2sym[t, lo:hi] == s)
    assert RansTables.from_freqs(uniform_table()).n_tables == 1  # 1-D accepted
    clone = pickle.loads(pickle.dumps(tabs))
    for name in ("freq", "cum", "slot2sym"):
        np.testing.assert_array_equal(getattr(clone, name), getattr(tabs, name))
    syms = np.arange(256, dtype=np.uint8)
    ids = np.ones(256, np.uint8)
    a = encode_streams(syms, ids, [0, 256], tabs)
    b = encode_streams(syms, ids, [0, 256], clone)
    assert a[0].tobytes() == b[0].tobytes()
    with pytest.raises(ValueError):
        tabs.freq[0, 0] = 5  # read-only, shareable


@pytest.mark.parametrize(
    "bad, msg",
    [
        (np.full((1, 255), 257, np.uint32), "shape"),
        (np.full((1, 256), 255, np.uint32), "sums"),
        (np.concatenate([[0, 512], np.full(254, 256)]).astype(np.int64), ">= 1"),
        (np.concatenate([[-1, 513], np.full(254, 256)]).astype(np.int64), ">= 1"),
        (np.full((1, 256), 256.0), "integers"),
        (np.zeros((0, 256), np.uint32), "tables"),
        (np.full((257, 256), 256, np.uint32), "tables"),
    ],
)
def test_tables_validation(bad: np.ndarray, msg: str) -> None:
    with pytest.raises(CodecError, match=msg):
        RansTables.from_freqs(bad)


def test_tables_constructor_checks_consistency() -> None:
    good = RansTables.from_freqs(extreme_table())
    with pytest.raises(CodecError, match="cum"):
        RansTables(good.freq, good.cum[:, ::-1].copy(), good.slot2sym)
    with pytest.raises(CodecError, match="slot2sym"):
        RansTables(good.freq, good.cum, np.zeros((1, M), np.uint8))


def _cost(counts: np.ndarray, freqs: np.ndarray) -> float:
    """Ideal code length in bits of a histogram under integer freqs."""
    c = counts.astype(np.float64)
    return float(-(c * np.log2(freqs / M)).sum())


def _optimal_freqs(counts: np.ndarray) -> np.ndarray:
    """Exact minimiser of the code length (greedy on true log gains; slow, for tests)."""
    f = np.ones(ALPHABET, np.int64)
    heap = [(-c * math.log((2) / 1), i) for i, c in enumerate(counts.tolist()) if c > 0]
    heapq.heapify(heap)
    for _ in range(M - ALPHABET):
        _, i = heapq.heappop(heap)
        f[i] += 1
        c = float(counts[i])
        heapq.heappush(heap, (-c * math.log((f[i] + 1) / f[i]), i))
    return f


@pytest.mark.parametrize("seed", range(4))
def test_normalize_freqs_properties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    counts = np.stack(
        [
            rng.integers(0, 1000, 256) * (rng.random(256) < 0.3),  # many zeros
            laplace_probs(float(rng.uniform(0.3, 40))),
            rng.random(256) ** 8,
            np.zeros(256),
            np.eye(256)[int(rng.integers(0, 256))] * 1e-300,  # one tiny non-zero count
            np.full(256, 1e300),  # sum overflows a float64
        ]
    )
    f = normalize_freqs(counts)
    assert f.dtype == np.uint32 and f.shape == counts.shape
    assert np.all(f.sum(axis=1) == M) and np.all(f >= 1)
    np.testing.assert_array_equal(f[3], uniform_table())  # all-zero row -> uniform
    np.testing.assert_array_equal(f[5], uniform_table())
    assert f[4].max() == M - 255
    np.testing.assert_array_equal(f, normalize_freqs(counts))  # deterministic
    np.testing.assert_array_equal(f[1:2], normalize_freqs(counts[1]))  # 1-D -> (1, 256)
    np.testing.assert_array_equal(f[0:1], normalize_freqs(counts[0].astype(np.int64)))
    for row in (0, 1, 2):  # coding cost within 0.01 % of the best possible integer tables
        best = _cost(counts[row], _optimal_freqs(counts[row]))
        assert _cost(counts[row], f[row]) <= best * (1 + 1e-4) + 1e-9


def test_normalize_freqs_rejects_bad_input() -> None:
    for bad in (np.full(256, np.nan), -np.ones(256), np.ones(255), np.ones((2, 2, 256))):
        with pytest.raises(CodecError):
            normalize_freqs(bad)
    counts = np.ones(256)
    normalize_freqs(counts)
    assert np.all(counts == 1)  # input untouched


@pytest.mark.parametrize("width", [0, 8, 16])
def test_every_lane_width_writes_the_oracles_bytes(width: int) -> None:
    """The encoder's vector lanes (16 or 8 streams at once, where the CPU runs them) and the
    scalar coder: unequal and empty streams, partial lane groups, every table."""
    from codec import kernels

    rng = np.random.default_rng(100 + width)
    freqs = np.stack(
        [extreme_table(0), extreme_table(255), uniform_table(), *random_tables(rng, 4)]
    )
    for n_streams in (1, 5, 16, 17, 40):
        lengths = rng.choice([0, 1, 2, 3, 50, 700], size=n_streams)
        n = int(lengths.sum())
        syms = rng.integers(0, 256, n).astype(np.uint8)
        tids = rng.integers(0, len(freqs), n).astype(np.uint8)
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        with kernels.using_lanes(width):
            data, _ = roundtrip(freqs, syms, tids, bounds)
        assert data.tobytes() == ref_encode(syms, tids, bounds, freqs)[0], n_streams
