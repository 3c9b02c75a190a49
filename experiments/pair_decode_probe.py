"""Two equal tiles decoded stage-interleaved in numba (docs/experiments.md entry 14): copies
codec/pixelmodel.py into a temporary module, applies experiments/pair_decode_probe.patch (split
of `_predict` into inputs and blend, a two-tile plane loop and a one-thread `pair_decode` kernel
that pairs consecutive tiles of equal shape), checks its output bit for bit and times it against
the shipped decode kernel, alternately, on 1024x1024 crops. The first run compiles the probe
(~2 minutes; numba caches it beside the temporary copy, so every run compiles).

Usage: python experiments/pair_decode_probe.py [IMAGE ...]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numba
import numpy as np
from c_decode_probe import check_and_time, crop_and_parse, shipped_decoder  # same folder
from pixelmodel_variant import load_patched

from codec import pixelmodel
from codec.model import default_model

DATA = "../shared/data/"
DEFAULTS = (
    DATA + "imagecompression_info/gray8bit/flower_foveon.png",
    DATA + "clic_2images/alberto-montalesi-176097.png",
)


def main() -> None:
    images = sys.argv[1:] or list(DEFAULTS)
    numba.set_num_threads(1)
    model = default_model()
    tb = model.tables
    with tempfile.TemporaryDirectory() as tmp:
        probe = load_patched("pmpair", ["pair_decode_probe.patch"], Path(tmp))
        for path in images:
            g, p = crop_and_parse(path, model)

            def paired(p=p):
                out = np.zeros(p.shape, np.uint8)
                err = np.zeros(len(p.pixel_bytes) - 1, np.int64)
                probe.pair_decode(
                    p.data, p.pixel_bytes.astype(np.int64), p.boxes, p.coefs, model.prior, out,
                    err, tb._bk, tb._fc, pixelmodel.E_BUCKET, pixelmodel.LEVEL_OF_MEAN,
                    pixelmodel.CNT_RECIP, pixelmodel.WEIGHT_OF_ERR,
                )  # fmt: skip
                if err.any():
                    raise SystemExit(f"stream errors {err}")
                return out

            fns = {"shipped": shipped_decoder(p, model), "paired": paired}
            print(check_and_time(fns, g, path, rounds=4, repeats=4), flush=True)


if __name__ == "__main__":
    main()
