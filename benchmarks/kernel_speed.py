"""The C kernels against the numba kernels they replaced and JPEG-XL e3, one core, side by side.

What it checks (issue: the codec's kernels in C): encode and decode of 1 MP RGB and gray photos
at least as fast as numba, with the same bytes; a 12 MP image decoding >= 1.8x faster on 2
threads than on 1; a fresh process encoding and decoding a 1 MP photo, first call and import
included, in under a second. Runs alternate (C, numba, JPEG-XL, C, ...) and each figure is the
best of --rounds, so drifts of this VM hit all three alike.

    pip install -e ".[bench]"    # numba, for the baseline only (codec/*.py at BASELINE_REV)
    python benchmarks/kernel_speed.py [--rounds 5] [--out benchmarks/results/kernel_speed.md]

The first run compiles the numba baseline (minutes; cached afterwards).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import imagecodecs  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import codec  # noqa: E402
from codec import kernels, pixelmodel, rans  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
PHOTOS = {  # EVAL sets: true lossless camera images, cropped to 1024 x 1024 (1 MP)
    "clic alberto (RGB)": "clic_2images/alberto-montalesi-176097.png",
    "flower_foveon (RGB)": "imagecompression_info/rgb8bit/flower_foveon.png",
    "flower_foveon (gray)": "imagecompression_info/gray8bit/flower_foveon.png",
    "cathedral (gray)": "imagecompression_info/gray8bit/cathedral.png",
}
BIG = "imagecompression_info/rgb8bit/flower_foveon.png"


def load(rel: str, side: int | None = 1024) -> np.ndarray:
    with Image.open(DATA / rel) as im:
        px = np.asarray(im)
    return np.ascontiguousarray(px[:side, :side] if side else px)


BASELINE_REV = "29b2273"  # the last commit with the numba kernels


def numba_baseline() -> tuple[object, object]:
    """The numba pixel model and coder of BASELINE_REV, taken from git history (no copy lives
    in the tree) into a cache folder, where numba also caches their compiled kernels."""
    folder = Path.home() / ".cache" / "pilc" / f"numba_baseline_{BASELINE_REV}"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("rans", "pixelmodel"):
        path = folder / f"numba_{name}.py"
        if not path.exists():
            text = subprocess.run(
                ["git", "-C", str(ROOT), "show", f"{BASELINE_REV}:codec/{name}.py"],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            path.write_text(text.replace("from codec import rans", "import numba_rans as rans"))
    sys.path.insert(0, str(folder))
    import numba_pixelmodel
    import numba_rans

    return numba_pixelmodel, numba_rans


@contextlib.contextmanager
def numba_kernels() -> Iterator[None]:
    """The codec with its pixel model and coder swapped for the numba baseline."""
    import numba

    npm, nrans = numba_baseline()
    numba.set_num_threads(1)
    converted: dict[int, object] = {}

    def old(tables: rans.RansTables) -> object:
        if id(tables) not in converted:
            converted[id(tables)] = nrans.RansTables.from_freqs(np.array(tables.freq))
        return converted[id(tables)]

    saved = (pixelmodel.encode_planes, pixelmodel.decode_planes)
    saved_rans = (rans.encode_streams, rans.encode_kernel_streams, rans.decode_streams)
    pixelmodel.encode_planes = npm.encode_planes
    pixelmodel.decode_planes = lambda *a, **k: npm.decode_planes(*a[:7], old(a[7]), *a[8:], **k)
    rans.encode_streams = lambda s, t, b, tables: nrans.encode_streams(s, t, b, old(tables))
    rans.encode_kernel_streams = rans.encode_streams  # what learned calls on kernel output
    rans.decode_streams = lambda d, bb, sb, t, tables: nrans.decode_streams(
        d, bb, sb, t, old(tables)
    )
    try:
        yield
    finally:
        pixelmodel.encode_planes, pixelmodel.decode_planes = saved
        rans.encode_streams, rans.encode_kernel_streams, rans.decode_streams = saved_rans


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def compare_photo(px: np.ndarray, rounds: int) -> dict:
    """Best-of-rounds encode/decode seconds of C, numba and JPEG-XL e3, alternated."""
    best = {k: float("inf") for k in ("c_enc", "c_dec", "nb_enc", "nb_dec", "jxl_enc", "jxl_dec")}
    same = True
    for _ in range(rounds):
        with kernels.using_threads(1):
            t, blob = timed(lambda: codec.encode(px, fallback="never"))
            best["c_enc"] = min(best["c_enc"], t)
            t, back = timed(lambda b=blob: codec.decode(b))
            best["c_dec"] = min(best["c_dec"], t)
            same &= bool(np.array_equal(back, px))
        with numba_kernels():
            t, nblob = timed(lambda: codec.encode(px, fallback="never"))
            best["nb_enc"] = min(best["nb_enc"], t)
            t, nback = timed(lambda b=nblob: codec.decode(b))
            best["nb_dec"] = min(best["nb_dec"], t)
        same &= blob == nblob and bool(np.array_equal(nback, px))
        t, jblob = timed(
            lambda: imagecodecs.jpegxl_encode(px, lossless=True, effort=3, numthreads=1)
        )
        best["jxl_enc"] = min(best["jxl_enc"], t)
        t, _ = timed(lambda b=jblob: imagecodecs.jpegxl_decode(b, numthreads=1))
        best["jxl_dec"] = min(best["jxl_dec"], t)
    mb = px.nbytes / 1e6
    return {k: mb / v for k, v in best.items()} | {"same": same, "bytes": len(blob),
                                                   "jxl_bytes": len(jblob)}  # fmt: skip


def thread_scaling(rounds: int) -> tuple[str, float, float]:
    """Decode seconds of a 12 MP RGB image (an EVAL photo tiled up) on 1 and 2 threads."""
    px = load(BIG, None)
    reps = (-(-3000 // px.shape[0]), -(-4000 // px.shape[1]), 1)
    big = np.ascontiguousarray(np.tile(px, reps)[:3000, :4000])
    blob = codec.encode(big, fallback="never")
    best = {1: float("inf"), 2: float("inf")}
    for _ in range(rounds):
        for n in (1, 2):
            t, back = timed(lambda n=n: codec.decode(blob, threads=n))
            assert np.array_equal(back, big)
            best[n] = min(best[n], t)
    return f"{big.shape[1]}x{big.shape[0]} RGB", best[1], best[2]


FRESH = """
import sys, time
import numpy as np
from PIL import Image
px = np.ascontiguousarray(np.asarray(Image.open(sys.argv[1]))[:1024, :1024])
t = time.perf_counter()
import codec
blob = codec.encode(px)
assert np.array_equal(codec.decode(blob), px)
print(time.perf_counter() - t)
"""


def fresh_process(rel: str) -> float:
    """Seconds from `import codec` to a decoded 1 MP photo in a new interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", FRESH, str(DATA / rel)], capture_output=True, text=True,
        check=True, cwd=ROOT,
    )  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/kernel_speed.md")
    args = ap.parse_args()
    with numba_kernels():  # compile (or load) the baseline before anything is timed
        codec.decode(codec.encode(load(BIG, 64), fallback="never"))
    fresh = [fresh_process(PHOTOS["clic alberto (RGB)"]) for _ in range(3)]
    rows = []
    for name, rel in PHOTOS.items():
        r = compare_photo(load(rel), args.rounds)
        rows.append((name, r))
        print(name, {k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()})
    big, one, two = thread_scaling(args.rounds)
    lines = [
        "# C kernels vs numba kernels vs JPEG-XL e3 (one core)",
        "",
        f"`python benchmarks/kernel_speed.py --rounds {args.rounds}`; {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, imagecodecs "
        f"{imagecodecs.__version__}; MB/s of raw pixels, best of {args.rounds} alternated rounds; "
        '1024x1024 crops of EVAL photos; codec with `fallback="never"`, one kernel thread, '
        "JPEG-XL lossless effort 3 with numthreads=1; numba = the kernels of commit "
        f"{BASELINE_REV}.",
        "",
        "| image | C enc | numba enc | C/numba | C dec | numba dec | C/numba | JXL e3 enc | "
        "JXL e3 dec | same bytes | bytes (ours / JXL e3) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['c_enc']:.1f} | {r['nb_enc']:.1f} | {r['c_enc'] / r['nb_enc']:.2f}x | "
            f"{r['c_dec']:.1f} | {r['nb_dec']:.1f} | {r['c_dec'] / r['nb_dec']:.2f}x | "
            f"{r['jxl_enc']:.1f} | {r['jxl_dec']:.1f} | {'yes' if r['same'] else 'NO'} | "
            f"{r['bytes']:,} / {r['jxl_bytes']:,} |"
        )
    lines += [
        "",
        f"Thread scaling, decode of a {big} image (an EVAL photo tiled up, 12 MP): 1 thread "
        f"{one:.2f} s, 2 threads {two:.2f} s: {one / two:.2f}x.",
        "",
        "Fresh process, `import codec` + encode + decode of a 1 MP RGB photo, first calls "
        f"included: {', '.join(f'{t:.2f}' for t in fresh)} s (three runs). With the numba "
        "kernels a fresh machine first compiled them: 85 s before the first encode and 90 s "
        "more before the first decode (issue 14).",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
