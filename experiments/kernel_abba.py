"""Pixel-stage speed of two builds of the kernels side by side (experiment log entries 27-39):
`learned.encode_groups` and `decode_groups` at one effort level, each build in its own worker
process, timed in ABBA order so drift on this noisy machine falls on both alike.

A build is a checkout with its kernels built in place, e.g. the baseline as a worktree:
    git worktree add --detach /tmp/base HEAD && (cd /tmp/base && python setup.py build_ext -i)
Usage: python experiments/kernel_abba.py /tmp/base . [--level fast] [--rounds 6] [--images ...]
(default images: mcmaster18's first 9 and sintel_frames' first 4; only timed, nothing is fitted)
Prints per direction the best and median time of each build and B's speed relative to A.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

# levels_lab.DATA, not imported: the driver loads no codec of its own, so it runs while the
# checkout it sits in has its kernels half rebuilt (each worker imports its build's codec)
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_IMAGES = [*sorted((DATA / "mcmaster18").glob("*.png"))[:9],
                  *sorted((DATA / "sintel_frames").glob("*.png"))[:4]]  # fmt: skip

# Runs inside each build (its own codec on sys.path): one line in, one "encode decode" line out.
WORKER = r"""
import os, sys, time
os.environ["PILC_THREADS"] = "1"
cpu = int(sys.argv.pop(1))
if cpu >= 0:
    os.sched_setaffinity(0, {cpu})
from codec import learned, pixelmodel
from codec.api import _to_groups
from codec.imagefile import load_image
from codec.model import default_model
level = pixelmodel.level_index(sys.argv[1])
groups = [_to_groups(load_image(p)) for p in sys.argv[2:]]
model = default_model()
for _ in sys.stdin:
    te = td = 0.0
    for grp in groups:
        t0 = time.perf_counter()
        coded = learned.encode_groups(model, grp, level=level)
        t1 = time.perf_counter()
        learned.decode_groups(model, coded, [g.shape for g in grp], level=level)
        te += t1 - t0
        td += time.perf_counter() - t1
    print(te, td, flush=True)
"""


def _start(build: Path, level: str, images: list[str], cpu: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(build), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(cpu), level, *images], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, env=env, cwd=build,
    )  # fmt: skip


def _ask(worker: subprocess.Popen) -> tuple[float, float]:
    worker.stdin.write("x\n")
    worker.stdin.flush()
    line = worker.stdout.readline()
    if not line:
        raise RuntimeError("a worker died (is its build current? see its stderr above)")
    enc, dec = map(float, line.split())
    return enc, dec


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build_a", type=Path)
    ap.add_argument("build_b", type=Path)
    ap.add_argument("--level", default="fast", help="effort name or header index")
    ap.add_argument("--rounds", type=int, default=6, help="ABBA rounds (4 timings each)")
    ap.add_argument("--images", nargs="+", default=[str(p) for p in DEFAULT_IMAGES])
    ap.add_argument(
        "--cpu", type=int, default=max(os.sched_getaffinity(0)),
        help="the CPU both workers are pinned to (-1: the scheduler's choice)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    builds = (args.build_a, args.build_b)
    workers = [_start(b.resolve(), args.level, args.images, args.cpu) for b in builds]
    try:
        for w in workers:  # warm-up: imports, tables, first-touch pages
            _ask(w)
        times: list[list[tuple[float, float]]] = [[], []]
        for _ in range(args.rounds):
            for k in (0, 1, 1, 0):
                times[k].append(_ask(workers[k]))
    finally:
        for w in workers:
            w.stdin.close()
            w.wait()
    for d, name in ((0, "enc"), (1, "dec")):
        ta, tb = ([t[d] for t in ts] for ts in times)
        print(
            f"{args.level} {name}: A best {min(ta) * 1e3:.1f} median "
            f"{statistics.median(ta) * 1e3:.1f} ms | B best {min(tb) * 1e3:.1f} median "
            f"{statistics.median(tb) * 1e3:.1f} ms | B/A speed best {min(ta) / min(tb):.3f} "
            f"median {statistics.median(ta) / statistics.median(tb):.3f}"
        )


if __name__ == "__main__":
    main()
