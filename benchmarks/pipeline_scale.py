"""Scaling: a synthetic job of many small images; driver memory against images done.

Writes `--images` small PNGs (16x16 to 48x40, gray/RGB/RGBA) into a folder, runs the real job
on a local Ray (the driver is this process), samples the driver's RSS every 0.5 s with the
number of images done, and reports RSS against image count, peak RSS, and phase times.

    python benchmarks/pipeline_scale.py --images 100000 --out benchmarks/results/pipeline_scale.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import codec
from codec.imagefile import RasterImage


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_images(folder: Path, count: int) -> int:
    rng = np.random.default_rng(0)
    raw = 0
    for i in range(count):
        sub = folder / f"{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        h, w = 16 + (i % 5) * 8, 16 + (i % 7) * 4
        y, x = np.mgrid[0:h, 0:w]
        base = ((x * (1 + i % 3) + y * (1 + i % 4) + rng.integers(0, 8, (h, w))) % 256)
        kind = i % 3
        if kind == 0:
            img = RasterImage(base.astype(np.uint8), "L")
        elif kind == 1:
            img = RasterImage(np.stack([base, base // 2, 255 - base], -1).astype(np.uint8), "RGB")
        else:
            img = RasterImage(np.stack([base, base, base // 3, base], -1).astype(np.uint8), "RGBA")
        (sub / f"{i:07d}.png").write_bytes(codec.to_png_bytes(img))
        raw += img.pixels.nbytes
    return raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dir", help="work folder (kept; images are reused when present)")
    ap.add_argument("--out")
    a = ap.parse_args()
    import ray

    from pilc_ray.job.config import JobConfig
    from pilc_ray.job.driver import Driver

    work = Path(a.dir or tempfile.mkdtemp(prefix="pilc-scale-"))
    src = work / "src"
    t0 = time.perf_counter()
    if not (src / "done").exists():
        make_images(src, a.images)
        (src / "done").write_text("ok")
    gen_s = time.perf_counter() - t0
    dest = work / f"job-{int(time.time())}"
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
             _node_ip_address="127.0.0.1",
             logging_level="WARNING")
    rss_start = rss_mib()
    driver = Driver(JobConfig(source=str(src), dest=str(dest), workers=a.workers,
                              cpus_per_worker=1, batch_size=a.batch_size, progress="log",
                              log_every_s=60))
    samples: list[tuple[float, int, float]] = []
    stop = threading.Event()

    def sample() -> None:
        t = time.perf_counter()
        while not stop.is_set():
            p = getattr(driver, "progress", None)
            samples.append((time.perf_counter() - t, p.done if p else 0, rss_mib()))
            time.sleep(0.5)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t1 = time.perf_counter()
    result = driver.run()
    wall = time.perf_counter() - t1
    stop.set()
    th.join()
    samples.append((time.perf_counter() - t1, driver.progress.done, rss_mib()))
    rec = result.record
    n = rec["counts"]["index_rows"]
    lines = [
        "# Pipeline scale: many small images, driver memory",
        "",
        f"Command: `python {' '.join(sys.argv)}`  ",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores, no GPU, shared; Python "
        f"{platform.python_version()}, Ray {ray.__version__}",
        "",
        f"- {a.images:,} PNGs (16x16 to 48x40, L/RGB/RGBA) in {a.images // 1000 + 1} folders, "
        f"generated in {gen_s:.0f} s (reused when 0)",
        f"- job: {a.workers} CPU workers, batches of {a.batch_size}; status "
        f"**{rec['status']}**, {n:,} index rows, {rec['counts']['errors']} errors, "
        f"wall {wall:.0f} s",
        f"- phases: enumerate {rec['durations']['enumerate_s']:.1f} s, workers start "
        f"{rec['durations'].get('pool_start_s', 0):.1f} s, compress "
        f"{rec['durations']['compress_s']:.0f} s ({rec['throughput']['images_per_s']:.0f} "
        f"images/s), compact {rec['durations']['compact_s']:.1f} s, orphan GC "
        f"{rec['durations']['gc_s']:.1f} s",
        f"- index: {rec['index_file']['bytes'] / 2**20:.1f} MiB, "
        f"{rec['index_file']['row_groups']} row groups",
        f"- driver RSS: {rss_start:.0f} MiB after Ray start, peak (VmHWM) "
        f"**{peak_rss_mib():.0f} MiB**",
        "",
        "| images done | driver RSS MiB |",
        "|---|---|",
    ]
    marks = sorted({int(a.images * f) for f in (0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)})
    for m in marks:
        hit = next((s for s in samples if s[1] >= m), samples[-1] if samples else None)
        if hit:
            lines.append(f"| {hit[1]:,} | {hit[2]:.0f} |")
    lines.append(f"| (job finished, index compacted) | {samples[-1][2]:.0f} |")
    report = "\n".join(lines) + "\n"
    print(report)
    if a.out:
        Path(a.out).write_text(report)
    ray.shutdown()


if __name__ == "__main__":
    main()
