"""Two equal tiles decoded stage-interleaved in numba (docs/experiments.md entry 14): copies
codec/pixelmodel.py into a temporary module, applies experiments/pair_decode_probe.patch (split
of `_predict` into inputs and blend, a two-tile plane loop and a one-thread `pair_decode` kernel
that pairs consecutive tiles of equal shape, and `pair_decode_parallel`, the same pairs in a
prange like the shipped kernel), checks their output bit for bit and times them against the
shipped decode kernel, alternately, on 1024x1024 crops. Each run compiles the probe afresh
(numba caches it beside the temporary copy); the first call of each kernel prints its time.

Usage: python experiments/pair_decode_probe.py [IMAGE ...]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
from c_decode_probe import check_and_time, crop_and_parse, kernel_decoder  # same folder
from pixelmodel_variant import load_patched

from codec import pixelmodel
from codec.model import default_model

DATA = "../shared/data/"
DEFAULTS = (
    DATA + "imagecompression_info/gray8bit/flower_foveon.png",
    DATA + "clic_2images/alberto-montalesi-176097.png",
)


def _decoders(probe, p, model) -> dict:
    """The probe's two pair kernels on payload p as no-argument calls: `pair_decode` (one
    thread, pairs consecutive tiles of equal shape, the rest alone) and `pair_decode_parallel`
    (pairs in a prange, like the shipped kernel; every tile must be in a pair)."""
    tb = model.tables
    tail = (tb._bk, tb._fc, pixelmodel.E_BUCKET, pixelmodel.LEVEL_OF_MEAN, pixelmodel.CNT_RECIP)
    tail += (pixelmodel.WEIGHT_OF_ERR,)
    bb = p.pixel_bytes.astype(np.int64)

    def run(kernel, *lead):
        out = np.zeros(p.shape, np.uint8)
        err = np.zeros(len(bb) - 1, np.int64)
        kernel(p.data, bb, p.boxes, *lead, p.coefs, model.prior, out, err, *tail)
        if err.any():
            raise SystemExit(f"stream errors {err}")
        return out

    fns = {"paired": lambda: run(probe.pair_decode)}
    nt = len(p.boxes)
    if nt % 2 == 0 and (p.boxes[:, 2:] == p.boxes[0, 2:]).all():
        firsts = np.arange(0, nt, 2, dtype=np.int64)
        fns["paired, parallel kernel"] = lambda: run(probe.pair_decode_parallel, firsts)
    return fns


def main() -> None:
    images = sys.argv[1:] or list(DEFAULTS)
    numba.set_num_threads(1)
    model = default_model()
    with tempfile.TemporaryDirectory() as tmp:
        probe = load_patched("pmpair", ["pair_decode_probe.patch"], Path(tmp))
        for path in images:
            g, p = crop_and_parse(path, model)
            fns = {"shipped": kernel_decoder(p, model)}
            for name, fn in _decoders(probe, p, model).items():
                t = time.perf_counter()
                fn()
                print(f"{name}: first call {time.perf_counter() - t:.1f} s", flush=True)
                fns[name] = fn
            print(check_and_time(fns, g, path, rounds=4, repeats=4), flush=True)


if __name__ == "__main__":
    main()
