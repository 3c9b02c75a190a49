"""End-to-end GPU throughput, host memory to host memory, against the CPU on all its cores.

For each batch size (megapixels of mixed-size photo crops per `encode_batch` call): compress and
decompress MB/s of raw pixels on the device at tile sides 256 and 128, the split of device time
into transfers and kernels (a second, profiled pass: every phase bracketed by syncs), and, in the
same run, our CPU build and the peers (PNG via Pillow, JPEG-XL e3 via imagecodecs) on every CPU
core. Bytes and pixels are checked: the device writes the CPU's bytes, and each side decodes the
other's.

    python benchmarks/gpu_throughput.py --out $OUT [--sizes 16 64 256] [--device cuda]

`--device emulated --sizes 1` runs the same steps here without a GPU (a smoke test: the
emulation is a serial host loop, its speed means nothing).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import codec  # noqa: E402
from codec import gpu  # noqa: E402

DATA = Path(os.environ.get("PILC_SHARED_DATA", ROOT.parent / "shared" / "data"))
SOURCES = ("mcmaster18", "clic_2images", "imagecompression_info/rgb8bit", "sintel_frames",
           "imagecompression_info/gray8bit", "wikipedia_photos")  # fmt: skip
CROPS = ((512, 512), (768, 1024), (1024, 1024), (300, 400), (1080, 1920), (256, 256))


def photo_pool() -> list[np.ndarray]:
    """8-bit RGB and gray photos from the shared data (generated ones where none are found)."""
    out = []
    for folder in SOURCES:
        for path in sorted((DATA / folder).glob("*.png"))[:6]:
            with Image.open(path) as im:
                if im.mode in ("RGB", "L"):
                    out.append(np.asarray(im))
    if not out:
        rng = np.random.default_rng(0)
        y, x = np.mgrid[0:1200, 0:1600]
        base = 120 + 60 * np.sin(x / 31.0) * np.cos(y / 17.0)
        out = [
            np.clip(base[..., None] + rng.normal(0, 4, (1200, 1600, 3)), 0, 255).astype(np.uint8)
        ]
    return out


def batch_of(pool: list[np.ndarray], megapixels: float, seed: int) -> list[np.ndarray]:
    """Crops of mixed sizes from the pool adding up to about `megapixels`."""
    rng = np.random.default_rng(seed)
    images, total = [], 0
    while total < megapixels * 1e6:
        src = pool[int(rng.integers(len(pool)))]
        h, w = CROPS[int(rng.integers(len(CROPS)))]
        h, w = min(h, src.shape[0]), min(w, src.shape[1])
        y = int(rng.integers(src.shape[0] - h + 1))
        x = int(rng.integers(src.shape[1] - w + 1))
        images.append(np.ascontiguousarray(src[y : y + h, x : x + w]))
        total += h * w
    return images


def timed(fn):  # noqa: ANN001, ANN201
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def peers(images: list[np.ndarray], workers: int) -> dict[str, dict[str, float]]:
    """PNG and JPEG-XL e3 over the batch on every core (images spread over threads)."""
    raw = sum(im.nbytes for im in images) / 1e6
    out = {}

    def png_enc(im: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, "PNG")
        return buf.getvalue()

    def png_dec(b: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(b)) as im:
            return np.asarray(im)

    codecs = {"png": (png_enc, png_dec)}
    try:
        import imagecodecs

        codecs["jxl-e3"] = (
            lambda im: imagecodecs.jpegxl_encode(im, lossless=True, effort=3, numthreads=1),
            lambda b: imagecodecs.jpegxl_decode(b, numthreads=1),
        )
    except ImportError:
        pass
    with ThreadPoolExecutor(workers) as pool:
        for name, (enc, dec) in codecs.items():
            te, blobs = timed(lambda enc=enc: list(pool.map(enc, images)))
            td, _ = timed(lambda dec=dec, blobs=blobs: list(pool.map(dec, blobs)))
            out[name] = {"compress_MBps": raw / te, "decompress_MBps": raw / td,
                         "bytes": sum(len(b) for b in blobs)}  # fmt: skip
    return out


def device_run(images: list[np.ndarray], backend: object, tile: int) -> tuple[dict, list]:
    """End-to-end and profiled (h2d / kernels / d2h) MB/s of the device at one tile side."""
    raw = sum(im.nbytes for im in images) / 1e6
    kw = {"fallback": "never", "tile": tile}
    codec.decode_batch(codec.encode_batch(images[:2], device=backend, **kw), device=backend)  # warm
    te, blobs = timed(lambda: codec.encode_batch(images, device=backend, **kw))
    td, back = timed(lambda: codec.decode_batch(blobs, device=backend))
    exact = all(np.array_equal(a, b) for a, b in zip(back, images, strict=True))
    backend.profile = {}
    codec.encode_batch(images, device=backend, **kw)
    enc_phases, backend.profile = backend.profile, {}
    codec.decode_batch(blobs, device=backend)
    dec_phases, backend.profile = backend.profile, None
    return {"compress_MBps": raw / te, "decompress_MBps": raw / td, "exact": exact,
            "compress_phases_s": enc_phases, "decompress_phases_s": dec_phases,
            "kernels_compress_MBps": raw / max(enc_phases.get("kernels", 0), 1e-9),
            "kernels_decompress_MBps": raw / max(dec_phases.get("kernels", 0), 1e-9),
            "bytes": sum(len(b) for b in blobs)}, blobs  # fmt: skip


def run_size(images: list[np.ndarray], device: str, cores: int) -> dict:
    """The device at both tile sides (docs/gpu.md predicts 128 fills a GPU far better), then
    our CPU build and the peers on every core, and blobs crossing both ways."""
    raw = sum(im.nbytes for im in images) / 1e6
    backend = gpu.resolve(device)
    dev256, blobs = device_run(images, backend, 256)
    dev128, _ = device_run(images, backend, 128)
    kw = {"fallback": "never"}
    tce, cpu_blobs = timed(lambda: codec.encode_batch(images, device="cpu", threads=cores, **kw))
    tcd, cpu_back = timed(lambda: codec.decode_batch(blobs, device="cpu", threads=cores))
    cross = all(np.array_equal(a, b) for a, b in zip(cpu_back, images, strict=True)) and all(
        np.array_equal(a, b)
        for a, b in zip(codec.decode_batch(cpu_blobs, device=backend), images, strict=True)
    )
    return {
        "images": len(images),
        "raw_MB": raw,
        "device_tile256": dev256,
        "device_tile128": dev128,
        "cpu_all_cores": {"compress_MBps": raw / tce, "decompress_MBps": raw / tcd},
        "same_bytes_as_cpu": blobs == cpu_blobs,
        "cross_decode_exact": cross,
        "peers_all_cores": peers(images, cores),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "out")))
    ap.add_argument("--sizes", type=float, nargs="+", default=[16, 64, 256])
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cores = len(os.sched_getaffinity(0))
    backend = gpu.resolve(args.device)
    result = {
        "command": "python benchmarks/gpu_throughput.py " + " ".join(sys.argv[1:]),
        "device": getattr(backend, "device_name", gpu.device_name(args.device)),
        "cpu": f"{platform.processor() or platform.machine()}, {cores} cores",
        "sizes": {},
    }
    pool = photo_pool()
    for i, mp in enumerate(args.sizes):
        r = run_size(batch_of(pool, mp, i), args.device, cores)
        result["sizes"][str(mp)] = r
        print(json.dumps({mp: r}, indent=1), flush=True)
        (args.out / "gpu_throughput.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
