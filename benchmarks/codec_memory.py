"""Peak memory of encoding and decoding one large RGB photo (a photo tiled to SIDE x SIDE), with
the pixel stage in chunks (encoder) and bands (decoder) of whole tiles, the default, and in one
pass over the image (`--one-pass-too`: the codec before chunking), side by side in one process.

Usage: python benchmarks/codec_memory.py [--sides 4096 8192] [--one-pass-too] [--out PATH]

Memory is Python's traced allocations (tracemalloc: numpy buffers and bytes objects), the peak
while the call runs above what was allocated before it; so the input image, which the caller
holds, is not counted, and neither is the interpreter's fixed footprint.
"""

from __future__ import annotations

import argparse
import platform
import time
import tracemalloc
from datetime import datetime, timezone

import numpy as np
from PIL import Image

import codec
from codec import kernels, learned

PHOTO = "../shared/data/clic_2images/alberto-montalesi-176097.png"
MIB = 2**20


def _photo(side: int) -> np.ndarray:
    src = np.asarray(Image.open(PHOTO).convert("RGB"))
    reps = (-(-side // src.shape[0]), -(-side // src.shape[1]), 1)
    return np.ascontiguousarray(np.tile(src, reps)[:side, :side])


def _peak(fn):
    """(result, seconds, peak traced bytes above the start)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return out, dt, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sides", type=int, nargs="+", default=[4096, 8192])
    ap.add_argument("--one-pass-too", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    codec.decode(codec.encode(_photo(300)))  # compile / load the kernels first
    rows = []
    for side in a.sides:
        img = _photo(side)
        raw = img.nbytes
        modes = [("chunks", learned.CHUNK_PIXELS)] + (
            [("one pass", 1 << 62)] if a.one_pass_too else []
        )
        for label, limit in modes:
            saved, learned.CHUNK_PIXELS = learned.CHUNK_PIXELS, limit
            try:
                blob, t_enc, m_enc = _peak(lambda img=img: codec.encode(img))
                back, t_dec, m_dec = _peak(lambda blob=blob: codec.decode(blob))
            finally:
                learned.CHUNK_PIXELS = saved
            if not np.array_equal(back, img):
                raise SystemExit(f"{side}: round trip failed")
            del back
            rows.append((side, label, raw, len(blob), m_enc, t_enc, m_dec, t_dec))
            print(rows[-1])
    lines = [
        "# Codec peak memory (one large RGB photo)",
        "",
        f"- command: `python benchmarks/codec_memory.py --sides {' '.join(map(str, a.sides))}"
        + (" --one-pass-too" if a.one_pass_too else "")
        + (f" --out {a.out}" if a.out else "")
        + "`",
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.machine()}, {kernels.threads()} kernel threads, "
        f"{platform.platform()}",
        f"- image: {PHOTO.split('/')[-1]} tiled to side x side; encoder chunks and decoder bands "
        f"of {learned.CHUNK_PIXELS:,} pixels (whole tiles); peak = traced allocations above the "
        "caller's (tracemalloc), input image not counted",
        "",
        "| side | pixel stage | raw MiB | blob MiB | encode peak MiB | x raw | encode s "
        "| decode peak MiB | x raw | decode s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for side, label, raw, size, m_enc, t_enc, m_dec, t_dec in rows:
        lines.append(
            f"| {side} | {label} | {raw / MIB:.0f} | {size / MIB:.0f} | {m_enc / MIB:.0f} "
            f"| {m_enc / raw:.2f} | {t_enc:.1f} | {m_dec / MIB:.0f} | {m_dec / raw:.2f} "
            f"| {t_dec:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
