"""Is numba the decode bottleneck? The fused decode kernel (pixelmodel._decode_kernel) ported to
C (experiments/c_probe/): scalar; with the predictor blend in AVX2 lanes (scalar.c built with
-DSIMD_BLEND); with 1, 2 or 4 equal-shape tiles decoded stage-interleaved. Each variant is built
with gcc, called through ctypes on the same 1024x1024 crops, checked bit for bit against the
image, and timed alternately with the numba kernel in one process (docs/experiments.md, 14).

Usage: python experiments/c_decode_probe.py [RGB_IMAGE GRAY_IMAGE] [--repeats N] [--rounds N]
       python experiments/c_decode_probe.py --dump DIR [IMAGE]   (inputs for c_probe/main.c)
"""

from __future__ import annotations

import argparse
import ctypes
import subprocess
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

from codec import learned, pixelmodel
from codec.layout import DEFAULT_TILE
from codec.model import default_model
from codec.train import load_planes

HERE = Path(__file__).parent / "c_probe"
DATA = "../shared/data/"
DEFAULTS = (
    DATA + "clic_2images/alberto-montalesi-176097.png",
    DATA + "imagecompression_info/gray8bit/flower_foveon.png",
)
VARIANTS = {  # name: (source, extra gcc flags)
    "scalar": ("scalar.c", []),
    "simd": ("scalar.c", ["-DSIMD_BLEND", "-DNPM=16", "-mavx2"]),
    "tiles1": ("interleave.c", ["-DNL=1"]),
    "tiles2": ("interleave.c", ["-DNL=2"]),
    "tiles4": ("interleave.c", ["-DNL=4"]),
}
P = ctypes.c_void_p


def _build(out_dir: Path) -> dict[str, ctypes.CDLL]:
    libs = {}
    for name, (src, flags) in VARIANTS.items():
        so = out_dir / f"{name}.so"
        cmd = ["gcc", "-O3", "-ffp-contract=off", "-fPIC", "-shared", *flags]
        subprocess.run([*cmd, "-o", str(so), str(HERE / src), "-lm"], check=True)
        libs[name] = ctypes.CDLL(str(so))
    return libs


def crop_and_parse(path: str, model):
    """The image's plane group cropped to 1024x1024, and its encoded, parsed payload."""
    g = load_planes(Path(path))
    if g is None:
        raise SystemExit(f"{path}: not an 8-bit gray or colour image")
    g = np.ascontiguousarray(g[:, :1024, :1024])
    return g, learned._parse(learned.encode_groups(model, [g], tile=DEFAULT_TILE)[0], g.shape)


def kernel_decoder(p, model, mod=pixelmodel):
    """The fused decode kernel of `mod` (the codec's own pixel model, or a variant from
    pixelmodel_variant) on parsed payload p, as a no-argument call."""
    return lambda: mod.decode_planes(
        p.data, p.pixel_bytes, p.shape, p.boxes, None, p.coefs, model.prior, model.tables
    )


def check_and_time(fns: dict, g: np.ndarray, path: str, rounds: int, repeats: int) -> str:
    """Check every decoder gives g bit for bit, then time them alternately (best of
    rounds x repeats, ns/sample); returns the report line."""
    for name, fn in fns.items():
        if not np.array_equal(fn(), g):
            raise SystemExit(f"{name}: decode mismatch on {path}")
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], _best(fn, repeats, g.size))
    cells = ", ".join(f"{k} {v:.1f}" for k, v in best.items())
    return f"{Path(path).name} {g.shape}: ns/sample, best of {rounds}x{repeats}: {cells}"


def _inputs(path: str):
    model = default_model()
    g, p = crop_and_parse(path, model)
    arrays = {
        "data": np.ascontiguousarray(p.data),
        "bb": p.pixel_bytes.astype(np.int64),
        "boxes": p.boxes.astype(np.int64),
        "coefs": p.coefs.astype(np.int64),
        "prior": model.prior.astype(np.int64),
        "bk": model.tables._bk,
        "fc": model.tables._fc,
        "eb": pixelmodel.E_BUCKET,
        "lom": pixelmodel.LEVEL_OF_MEAN,
        "crc": pixelmodel.CNT_RECIP,
        "recip": pixelmodel.WEIGHT_OF_ERR,
        "gc": pixelmodel.GRAD_CLASS,
        "ref": g,
    }
    return model, g, p, arrays


def _c_decode(lib: ctypes.CDLL, g: np.ndarray, a: dict) -> np.ndarray:
    out = np.zeros(g.shape, np.uint8)
    err = np.zeros(len(a["bb"]) - 1, np.int64)
    ptr = [np.ascontiguousarray(a[k]).ctypes.data_as(P) for k in ("data", "bb", "boxes")]
    lib.pm_decode(
        *ptr,
        ctypes.c_int64(len(a["boxes"])),
        np.zeros(1, np.uint8).ctypes.data_as(P),
        ctypes.c_int(0),
        a["coefs"].ctypes.data_as(P),
        a["prior"].ctypes.data_as(P),
        out.ctypes.data_as(P),
        *(ctypes.c_int64(v) for v in g.shape),
        err.ctypes.data_as(P),
        *(a[k].ctypes.data_as(P) for k in ("bk", "fc", "eb", "lom", "crc", "recip", "gc")),
    )
    if err.any():
        raise SystemExit(f"stream errors {err}")
    return out


def _best(fn, repeats: int, n: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) / n * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("images", nargs="*", default=list(DEFAULTS))
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dump", default=None)
    args = ap.parse_args()
    if args.dump:
        _, g, _, arrays = _inputs(args.images[0])
        out = Path(args.dump)
        out.mkdir(parents=True, exist_ok=True)
        for k, v in arrays.items():
            np.ascontiguousarray(v).tofile(out / f"{k}.bin")
        n_bb = len(arrays["bb"])
        (out / "meta.txt").write_text(
            f"{len(arrays['boxes'])} {g.shape[0]} {g.shape[1]} {g.shape[2]} {n_bb}\n"
        )
        return
    numba.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        libs = _build(Path(tmp))
        for path in args.images:
            model, g, p, a = _inputs(path)
            fns = {"numba": kernel_decoder(p, model)}
            fns.update(
                {n: (lambda lib=lib, g=g, a=a: _c_decode(lib, g, a)) for n, lib in libs.items()}
            )
            print(check_and_time(fns, g, path, args.rounds, args.repeats))


if __name__ == "__main__":
    main()
