"""The fast level's CPU vector lanes (codec/kernels/pilc_fast_lanes.h) against its scalar loop and
the default level, one core, side by side.

What it measures (issue 15, the fast level's speed): encode and decode MB/s of the pixel stage
(learned.encode_groups / decode_groups, no fallback check, no container) in the scalar loop and
in 8 and 16 lanes at the fast level's own tile choice (learned.group_tile), in the widest lanes
at 256-pixel tiles, and the default level for the ratio the issue's target is written in; lane
widths this CPU does not run are left out. Runs alternate configurations within each round and
each figure is the best of --rounds, so drifts of this VM hit all alike. Images: the levels
lab's training photos (experiments/levels_lab.py: 9 RGB photos of ~1 MP, 14 gray scans of
256x256 to 512x512), never EVAL; every round trip is checked once.

    python benchmarks/fast_lanes.py [--rounds 5] [--out benchmarks/results/fast_lanes.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from levels_lab import lab_sets  # noqa: E402

from codec import kernels, learned, pixelmodel  # noqa: E402
from codec.api import _to_groups  # noqa: E402
from codec.imagefile import load_image  # noqa: E402
from codec.model import default_model  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
# (label, level, lane width, tile): width 0 is the scalar loop, True the widest this CPU runs;
# tile None is the level's own choice (learned.group_tile)
CONFIGS = (
    ("default level", pixelmodel.LEVEL_DEFAULT, True, None),
    ("fastest, scalar loop", pixelmodel.LEVEL_FASTEST, 0, None),
    ("fastest, 8 lanes (AVX2)", pixelmodel.LEVEL_FASTEST, 8, None),
    ("fastest, 16 lanes (AVX-512)", pixelmodel.LEVEL_FASTEST, 16, None),
    ("fastest, widest lanes, 256 tiles", pixelmodel.LEVEL_FASTEST, True, 256),
    ("fast, scalar loop", pixelmodel.LEVEL_FAST, 0, None),
    ("fast, widest lanes", pixelmodel.LEVEL_FAST, True, None),
)


def run_set(model, groups: list[list[np.ndarray]], rounds: int) -> dict[str, tuple]:
    """Best encode and decode seconds and payload bytes of each configuration."""
    best: dict[str, list] = {}
    for r in range(rounds):
        for label, level, lanes, tile in CONFIGS:
            with kernels.using_lanes(lanes) as width:
                if lanes and not width:
                    continue  # this CPU does not run that width
                t_enc = t_dec = 0.0
                n_bytes = 0
                for grp in groups:
                    t0 = time.perf_counter()
                    payloads = learned.encode_groups(model, grp, tile=tile, level=level)
                    t1 = time.perf_counter()
                    shapes = [g.shape for g in grp]
                    back = learned.decode_groups(model, payloads, shapes, level=level)
                    t2 = time.perf_counter()
                    t_enc += t1 - t0
                    t_dec += t2 - t1
                    n_bytes += sum(len(p) for p in payloads)
                    exact = all(np.array_equal(a, b) for a, b in zip(back, grp, strict=True))
                    if r == 0 and not exact:
                        raise SystemExit(f"round trip failed: {label}")
            b = best.setdefault(label, [1e9, 1e9, 0])
            b[0], b[1], b[2] = min(b[0], t_enc), min(b[1], t_dec), n_bytes
    return {k: tuple(v) for k, v in best.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fast_lanes.md"))
    a = ap.parse_args()
    model = default_model()
    head = (
        f"`python benchmarks/fast_lanes.py --rounds {a.rounds}`; {platform.machine()}, "
        f"{os.cpu_count()} CPUs, widest lanes here: {kernels.set_lanes(True)}; pixel stage only "
        "(learned.encode_groups / decode_groups: no fallback check, no container), one kernel "
        f"thread, MB/s of raw samples, best of {a.rounds} alternated rounds; bytes vs the "
        "default level."
    )
    lines = ["# The fast level: vector lanes vs its scalar loop (one core)", "", head, ""]
    with kernels.using_threads(1):
        for name, paths in lab_sets(DATA).items():
            images = [load_image(p) for p in paths]
            groups = [_to_groups(im) for im in images if im.mode in ("L", "RGB")]
            raw = sum(g.size for grp in groups for g in grp)
            res = run_set(model, groups, a.rounds)
            ref_enc, ref_dec, ref_bytes = res["default level"]
            scalar_enc, scalar_dec, _ = res["fast, scalar loop"]
            lines += [
                f"## {name}: {len(groups)} images, {raw / 1e6:.2f} M samples",
                "",
                "| configuration | bytes vs default | enc MB/s | dec MB/s | enc vs default "
                "| dec vs default | enc vs scalar | dec vs scalar |",
                "|---|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for label, (t_enc, t_dec, n_bytes) in res.items():
                lines.append(
                    f"| {label} | {100 * (n_bytes / ref_bytes - 1):+.2f}% | {raw / t_enc / 1e6:.1f}"
                    f" | {raw / t_dec / 1e6:.1f} | {ref_enc / t_enc:.2f}x | {ref_dec / t_dec:.2f}x"
                    f" | {scalar_enc / t_enc:.2f}x | {scalar_dec / t_dec:.2f}x |"
                )
            lines.append("")
            print("\n".join(lines[-len(res) - 5 :]), flush=True)
    Path(a.out).write_text("\n".join(lines))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
