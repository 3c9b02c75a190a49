"""Generate tests/golden/rans_vectors.npz: fixed rANS inputs and the exact bytes they must give.

Why: the bitstream is a compatibility contract. The CPU coder (codec/rans.py), a pure-Python
spec reference (below) and the future GPU coder must all produce these bytes. Run once and
commit the output; re-running must reproduce it bit for bit (it is checked in tests).

    python tests/golden/make_rans_vectors.py [--check]
"""

from __future__ import annotations

import argparse
import io
import struct
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from codec.rans import RANS_L, RansTables, encode_streams, normalize_freqs  # noqa: E402

OUT = Path(__file__).with_name("rans_vectors.npz")


def reference_encode(symbols: np.ndarray, tids: np.ndarray, freqs: np.ndarray) -> bytes:
    """Spec encoder for one stream, in plain Python (independent of the C kernels)."""
    freq = freqs.tolist()
    cum = [[0, *np.cumsum(row).tolist()] for row in freqs]
    x = RANS_L
    words: list[int] = []
    for s, t in zip(reversed(symbols.tolist()), reversed(tids.tolist()), strict=True):
        f, c = freq[t][s], cum[t][s]
        while x >= (f << 16):
            words.append(x & 0xFFFF)
            x >>= 16
        x = ((x // f) << 16) + (x % f) + c
    words.reverse()
    return struct.pack("<I", x) + struct.pack(f"<{len(words)}H", *words)


def laplace_counts(scale: float, center: int = 0) -> np.ndarray:
    """Discretised Laplacian over residuals mod 256, like a predictive image codec's."""
    r = (np.arange(256) - center + 128) % 256 - 128
    p = np.exp(-np.abs(r) / scale)
    return p / p.sum()


def build() -> dict[str, np.ndarray]:
    """All golden arrays (deterministic: fixed seeds, no platform-dependent maths)."""
    rng = np.random.default_rng(20240601)
    tables = []
    tables.append(np.full(256, 256, dtype=np.uint32))  # 0: uniform
    extreme = np.ones(256, dtype=np.uint32)
    extreme[0] = (1 << 16) - 255  # 1: one symbol at 65281, the rest 1
    tables.append(extreme)
    extreme2 = np.ones(256, dtype=np.uint32)
    extreme2[200] = (1 << 16) - 255  # 2: same, peak elsewhere
    tables.append(extreme2)
    for scale in (0.3, 1.0, 4.0, 16.0, 64.0):  # 3..7: Laplacians, made with integer maths
        p = laplace_counts(scale)
        f = np.maximum(1, np.floor(p * ((1 << 16) - 256))).astype(np.int64)
        f[0] += (1 << 16) - f.sum()
        tables.append(f.astype(np.uint32))
    cuts = np.sort(rng.choice(np.arange(1, 1 << 16), size=255, replace=False))  # 8: random
    tables.append(np.diff(np.concatenate([[0], cuts, [1 << 16]])).astype(np.uint32))
    freqs = np.stack(tables)
    t_count = freqs.shape[0]

    lengths = [0, 1, 0, 2, 3, 1, 17, 100, 255, 256, 1000, 4096, 4096, 4096, 4095, 5, 0, 777]
    lengths += list(rng.integers(0, 600, size=14))
    sym_parts, tid_parts = [], []
    for k, n in enumerate(lengths):
        n = int(n)
        mode = k % 5
        if mode == 0:  # per-symbol random table, symbols drawn from that table
            tid = rng.integers(0, t_count, size=n)
            sym = np.array(
                [rng.choice(256, p=freqs[t] / (1 << 16)) for t in tid], dtype=np.int64
            ).reshape(-1)
        elif mode == 1:  # uniform random bytes under random tables (incl. rare symbols)
            tid = rng.integers(0, t_count, size=n)
            sym = rng.integers(0, 256, size=n)
        elif mode == 2:  # extreme table, mostly its rare symbols: ~1 word per symbol
            tid = np.full(n, 1)
            sym = np.where(rng.random(n) < 0.8, rng.integers(1, 256, size=n), 0)
        elif mode == 3:  # extreme table, only the frequent symbol: almost no words
            tid = np.full(n, 2)
            sym = np.full(n, 200)
        else:  # a single Laplacian table, as in a flat image region
            t = 3 + k % 5
            tid = np.full(n, t)
            sym = rng.choice(256, size=n, p=freqs[t] / (1 << 16))
        sym_parts.append(np.asarray(sym, dtype=np.uint8).reshape(-1))
        tid_parts.append(np.asarray(tid, dtype=np.uint8).reshape(-1))
    symbols = np.concatenate(sym_parts)
    table_ids = np.concatenate(tid_parts)
    stream_bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

    tabs = RansTables.from_freqs(freqs)
    data, byte_bounds = encode_streams(symbols, table_ids, stream_bounds, tabs)
    ref = b"".join(
        reference_encode(
            symbols[stream_bounds[s] : stream_bounds[s + 1]],
            table_ids[stream_bounds[s] : stream_bounds[s + 1]],
            freqs,
        )
        for s in range(len(lengths))
    )
    if ref != data.tobytes():
        raise SystemExit("kernel encoder disagrees with the reference encoder")

    # normalize_freqs is pinned too: encoders and decoders may both derive tables from counts.
    norm_counts = np.stack(
        [
            np.zeros(256),
            np.ones(256),
            laplace_counts(2.5, center=3) * 1e6,
            np.round(laplace_counts(30.0) * 5000),
            rng.integers(0, 1000, size=256) * (rng.random(256) < 0.3),
            np.eye(256)[17] * 123.0,
        ]
    ).astype(np.float64)
    norm_freqs = normalize_freqs(norm_counts)

    return {
        "freqs": freqs,
        "symbols": symbols,
        "table_ids": table_ids,
        "stream_bounds": stream_bounds,
        "data": data,
        "byte_bounds": byte_bounds,
        "norm_counts": norm_counts,
        "norm_freqs": norm_freqs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed file")
    args = ap.parse_args()
    arrays = build()
    if args.check:
        with np.load(OUT) as z:
            for k, v in arrays.items():
                if not np.array_equal(z[k], v) or z[k].dtype != v.dtype:
                    raise SystemExit(f"{OUT.name}: {k} differs")
        print(f"{OUT.name} reproduced exactly")
        return
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    OUT.write_bytes(buf.getvalue())
    n = len(arrays["symbols"])
    print(f"wrote {OUT} ({n} symbols, {len(arrays['data'])} bytes of streams)")


if __name__ == "__main__":
    main()
