"""Pipeline overhead: job throughput with N CPU workers vs N x the single-process codec.

The baseline is the codec alone in one process on one core (kernels pinned to 1 thread): read
each file, decode it to pixels, `codec.encode_batch` per batch; no writing. The job does the
same plus Ray scheduling, shard writes and the index, with N workers of 1 CPU and 1 thread
each. Runs are interleaved and repeated (medians) because this machine is shared.

    python benchmarks/pipeline_throughput.py --workers 1,2 --repeats 3 \
        --out benchmarks/results/pipeline_throughput.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import codec
from codec.imagefile import RasterImage


def make_images(folder: Path, count: int, seed: int = 7) -> int:
    """Photo-like PNGs of mixed sizes and modes; returns their raw pixel bytes."""
    from pilc_ray.samples import _photo_like

    rng = np.random.default_rng(seed)
    sizes = [(384, 512), (256, 256), (320, 240), (512, 384), (200, 300)]
    raw = 0
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        h, w = sizes[i % len(sizes)]
        if i % 3 == 2:
            img = RasterImage(_photo_like(rng, h, w, 1)[..., 0], "L")
        else:
            img = RasterImage(_photo_like(rng, h, w, 3), "RGB")
        (folder / f"img_{i:04d}.png").write_bytes(codec.to_png_bytes(img))
        raw += img.pixels.nbytes
    return raw


def baseline(folder: Path, batch_size: int) -> tuple[float, float]:
    """(seconds for read+decode+encode of every file, seconds for encode alone) on one core."""
    from codec import kernels

    kernels.set_threads(1)
    files = sorted(folder.glob("*.png"))
    codec.encode_batch([codec.load_image(files[0])])  # warm (model load)
    t_enc = 0.0
    t0 = time.perf_counter()
    for k in range(0, len(files), batch_size):
        imgs = [codec.load_image(f.read_bytes()) for f in files[k : k + batch_size]]
        t1 = time.perf_counter()
        codec.encode_batch(imgs)
        t_enc += time.perf_counter() - t1
    return time.perf_counter() - t0, t_enc


def job(folder: Path, workers: int, batch_size: int, engine: str) -> dict:
    from pilc_ray.api import compress

    dest = tempfile.mkdtemp(prefix="pilc-tp-")
    t0 = time.perf_counter()
    r = compress(str(folder), dest, workers=workers, cpus_per_worker=1, threads_per_worker=1,
                 batch_size=batch_size, engine=engine, progress="none")
    wall = time.perf_counter() - t0
    rec = r.record
    d = rec["durations"]
    steady = d["compress_s"] - d.get("pool_start_s", 0.0) - d.get("ray_start_s", 0.0)
    return {"steady_s": steady, "wall_s": wall,
            "pool_start_s": d.get("pool_start_s", 0.0), "bpsp": rec["bpsp"],
            "n": rec["counts"]["compressed"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--engines", default="actors,data")
    ap.add_argument("--out")
    a = ap.parse_args()
    import ray

    work = Path(tempfile.mkdtemp(prefix="pilc-tp-src-"))
    raw = make_images(work / "src", a.images)
    ncpu = os.cpu_count() or 2
    ray.init(address="local", num_cpus=ncpu, include_dashboard=False,
             _node_ip_address="127.0.0.1",
             logging_level="WARNING")
    load0 = os.getloadavg()
    workers = [int(w) for w in a.workers.split(",")]
    engines = a.engines.split(",")
    base, enc, runs = [], [], {}
    for rep in range(a.repeats):
        b, e = baseline(work / "src", a.batch_size)
        base.append(b)
        enc.append(e)
        for n in workers:
            for eng in engines if n == max(workers) else ["actors"]:
                runs.setdefault((eng, n), []).append(job(work / "src", n, a.batch_size, eng))
        print(f"repeat {rep + 1}/{a.repeats} done", file=sys.stderr)
    load1 = os.getloadavg()
    mb = raw / 1e6
    base_mbs = mb / statistics.median(base)
    enc_mbs = mb / statistics.median(enc)
    lines = [
        "# Pipeline throughput: job vs single-process codec",
        "",
        f"Command: `python {' '.join(sys.argv)}`  ",
        f"Machine: {platform.platform()}, {ncpu} cores, no GPU, shared (load average "
        f"{load0[0]:.1f} before, {load1[0]:.1f} after); Python {platform.python_version()}, "
        f"Ray {ray.__version__}",
        "",
        f"{a.images} photo-like PNGs (RGB and gray, 200x300 to 512x384), {mb:.1f} MB of raw "
        f"pixels, batches of {a.batch_size}; medians of {a.repeats} interleaved repeats.",
        "",
        f"- single process, 1 core: read + decode PNG + encode **{base_mbs:.2f} MB/s** "
        f"(encode alone {enc_mbs:.2f} MB/s)",
        "",
        "| engine | workers | job MB/s (workers up) | vs N x single process | job wall s "
        "(incl. Ray workers start) | worker start s |",
        "|---|---|---|---|---|---|",
    ]
    for (eng, n), rs in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        steady = mb / statistics.median(r["steady_s"] for r in rs)
        wall = statistics.median(r["wall_s"] for r in rs)
        start = statistics.median(r["pool_start_s"] for r in rs)
        lines.append(f"| {eng} | {n} | {steady:.2f} | {steady / (n * base_mbs):.0%} | "
                     f"{wall:.1f} | {start:.1f} |")
    lines += [
        "",
        "\"workers up\": from the moment every worker has loaded the model (the job record's "
        "compress time minus pool start). Ray Data starts its actors inside the stream, so its "
        "row includes that start; compare engines on wall time too.",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if a.out:
        Path(a.out).write_text(report)
    ray.shutdown()


if __name__ == "__main__":
    main()
