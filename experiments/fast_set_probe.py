"""What a cheaper predictor set buys (docs/experiments.md entry 16): planes 1 and 2 without the
three spatial predictors and plane 2 without the cross predictors from plane 0, so every plane
blends 4 predictors as gray does (entry 11's "both cuts"). Reports learned bytes with the shipped
tables (`fallback="never"`, experiments/coded_sizes.py's RGB subsets; every variant blob is
decoded again and checked) and one-thread encode and decode ns/sample of both models on 1024x1024
crops, alternated in one process. Gray is unchanged by construction (plane 0 keeps its set).

Usage: python experiments/fast_set_probe.py [--no-bytes] [--rounds N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
from c_decode_probe import check_and_time, kernel_decoder  # same folder
from coded_sizes import SETS, subset
from pixelmodel_variant import load_variant

from codec import learned, pixelmodel
from codec.model import default_model
from codec.train import load_planes

FAST_SET = [
    (
        """    q[0] = (wv + ne - n) << 3
    q[1] = (n << 3) + (((t_nw + t_n + t_ne) * 7) >> 5)
    q[2] = (wv << 3) + (((t_w + t_n + t_nw) * 10) >> 5)
    k = N_SPATIAL
""",
        """    k = 0
    if c == 0:
        q[0] = (wv + ne - n) << 3
        q[1] = (n << 3) + (((t_nw + t_n + t_ne) * 7) >> 5)
        q[2] = (wv << 3) + (((t_w + t_n + t_nw) * 10) >> 5)
        k = N_SPATIAL
""",
    ),
    (
        """        nt += 5
        q[k] = (wv + gx - gw) << 3
        q[k + 1] = (n + gx - gn) << 3
        q[k + 2] = (n + wv - nw + gx - (gn + gw - gnw)) << 3
        k += N_CROSS_PRED
""",
        """        nt += 5
        if c == 1 or r == 1:
            q[k] = (wv + gx - gw) << 3
            q[k + 1] = (n + gx - gn) << 3
            q[k + 2] = (n + wv - nw + gx - (gn + gw - gnw)) << 3
            k += N_CROSS_PRED
""",
    ),
]
RGB_SETS = [s for s in SETS if s[0].split()[0] in ("mcmaster18", "clic", "rgb8bit", "imagenet")]
TIMED = ("clic_2images/alberto-montalesi-176097.png", "mcmaster18/01.png")


def _encode(model, mod, g: np.ndarray) -> bytes:
    """Learned payload of plane group g with `mod` as the pixel model."""
    learned.pixelmodel = mod
    try:
        return learned.encode_groups(model, [g])[0]
    finally:
        learned.pixelmodel = pixelmodel


def _decode(model, mod, payload: bytes, shape) -> np.ndarray:
    return kernel_decoder(learned._parse(payload, shape), model, mod)()


def _bytes(model, fast, data: Path) -> None:
    print("set | shipped | fast set")
    for name, pattern, n in RGB_SETS:
        a = b = 0
        for path in subset(data, pattern, n):
            g = load_planes(path)
            if g is None or g.shape[0] != 3:
                continue
            blob = _encode(model, fast, g)
            if not np.array_equal(_decode(model, fast, blob, g.shape), g):
                raise SystemExit(f"{path}: fast set round trip failed")
            a += len(_encode(model, pixelmodel, g))
            b += len(blob)
        print(f"{name} | {a:,} | {b:,} ({(b / a - 1) * 100:+.2f}%)", flush=True)


def _times(model, fast, data: Path, rounds: int) -> None:
    numba.set_num_threads(1)
    for rel in TIMED:
        g = np.ascontiguousarray(load_planes(data / rel)[:, :1024, :1024])
        pa, pb = _encode(model, pixelmodel, g), _encode(model, fast, g)
        fns = {
            "shipped": lambda pa=pa, g=g: _decode(model, pixelmodel, pa, g.shape),
            "fast set": lambda pb=pb, g=g: _decode(model, fast, pb, g.shape),
        }
        print("decode", check_and_time(fns, g, rel, rounds=rounds, repeats=3))
        best = {"shipped": np.inf, "fast set": np.inf}
        for _ in range(rounds):
            for k, mod in (("shipped", pixelmodel), ("fast set", fast)):
                t = time.perf_counter()
                _encode(model, mod, g)
                best[k] = min(best[k], (time.perf_counter() - t) / g.size * 1e9)
        cells = ", ".join(f"{k} {v:.1f}" for k, v in best.items())
        print(f"encode {Path(rel).name}: ns/sample, best of {rounds}: {cells}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--no-bytes", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    model = default_model()
    with tempfile.TemporaryDirectory() as tmp:
        fast = load_variant("pm_fast_set", FAST_SET, Path(tmp))
        if not a.no_bytes:
            _bytes(model, fast, a.data)
        _times(model, fast, a.data, a.rounds)


if __name__ == "__main__":
    main()
