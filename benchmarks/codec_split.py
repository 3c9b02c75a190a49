"""Single-core speed of our codec with its time split, side by side with JPEG-XL e3, one run.

Why: the issue's speed target is "as fast as JPEG-XL e3 on one core, same run"; the split says
where our time goes (predictor, VQ network, coder, container). Timings are wall time of one
thread (codec kernels, BLAS and libjxl all limited to one), best of --repeats, so the stage
shares (also wall time, codec.timing) add up; run it on a quiet machine.

    python benchmarks/codec_split.py IMG [IMG ...] --out benchmarks/results/codec_split.md
"""

from __future__ import annotations

import os

for _v in ("PILC_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import imagecodecs  # noqa: E402
import numpy as np  # noqa: E402

import codec  # noqa: E402
from codec import timing  # noqa: E402
from codec.imagefile import load_image  # noqa: E402
from codec.timing import STAGES  # noqa: E402


def best_of(fn, repeats: int) -> tuple[float, object, dict[str, float]]:
    """(min CPU seconds, last result, stage split of the fastest run)."""
    best, out, split = float("inf"), None, {}
    for _ in range(repeats):
        with timing.collect() as stages:
            t0 = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t0
        if dt < best:
            best, split = dt, dict(stages)
    return best, out, split


def measure(path: Path, repeats: int) -> dict:
    px = load_image(path).pixels
    codec.decode(codec.encode(px, fallback="never"))  # compile and warm caches
    t_enc, blob, enc_split = best_of(lambda: codec.encode(px, fallback="never"), repeats)
    t_dec, out, dec_split = best_of(lambda: codec.decode(blob), repeats)
    assert np.array_equal(out, px), f"{path}: round trip failed"
    jxl = lambda: imagecodecs.jpegxl_encode(px, lossless=True, effort=3, numthreads=1)  # noqa: E731
    t_jenc, jblob, _ = best_of(jxl, repeats)
    t_jdec, jout, _ = best_of(lambda: imagecodecs.jpegxl_decode(jblob, numthreads=1), repeats)
    assert np.array_equal(np.asarray(jout).reshape(px.shape), px)
    mb = px.nbytes / 1e6
    return {
        "image": path.name,
        "shape": "x".join(map(str, px.shape)),
        "bpsp": 8 * len(blob) / px.size,
        "jxl_bpsp": 8 * len(jblob) / px.size,
        "enc": mb / t_enc,
        "dec": mb / t_dec,
        "jxl_enc": mb / t_jenc,
        "jxl_dec": mb / t_jdec,
        "enc_split": {k: enc_split[k] / t_enc for k in STAGES},
        "dec_split": {k: dec_split[k] / t_dec for k in STAGES},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    rows = [measure(p, a.repeats) for p in a.images]
    pct = lambda d: " / ".join(f"{100 * d[k]:.0f}" for k in STAGES)  # noqa: E731
    lines = [
        "# Codec speed and time split (one core)",
        "",
        f"- command: `python benchmarks/codec_split.py {' '.join(map(str, a.images))} "
        f"--out {a.out} --repeats {a.repeats}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs,"
        f" {platform.platform()}; wall time of one thread, best of {a.repeats}",
        "- split columns: share of our time in " + " / ".join(STAGES) + " (%); the rest is "
        "Python glue (payload packing, parsing)",
        "",
        "| image | shape | bpsp | JXL e3 bpsp | enc MB/s | JXL e3 enc | dec MB/s | JXL e3 dec "
        "| enc split % | dec split % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['image']} | {r['shape']} | {r['bpsp']:.3f} | {r['jxl_bpsp']:.3f} "
            f"| {r['enc']:.1f} | {r['jxl_enc']:.1f} | {r['dec']:.1f} | {r['jxl_dec']:.1f} "
            f"| {pct(r['enc_split'])} | {pct(r['dec_split'])} |"
        )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
