"""Decoding the planes of a tile staggered by a row, in one loop (docs/experiments.md entry 16):
plane c runs on tile row r - c from its own stream and state, so a sample of plane c sees only
rows <= its own of earlier planes and decodes the shipped bytes. Three independent serial
chains side by side, as entry 14's two tiles were, without needing a second tile of equal shape
or a second copy of the plane code. Variants of codec/pixelmodel.py:

  staggered          (stagger_decode_probe.patch) per sample: the whole model step of planes 0,
                     1, 2, then their rANS decode and update; per-plane state in plain arrays
                     (a first version with tuples of arrays in the loop segfaulted under prange,
                     where its serial copy ran exact with bounds checks on);
  stage-interleaved  (+ stagger_staged.patch) the model split into inputs and predictions, blend
                     (entry 14's `_pre` and `_blend`) and table choice, each stage run for the
                     three planes before the next.

Each is checked bit for bit and timed against the shipped kernel, alternately, one thread, on
1024x1024 crops. Compiles both variants first (~4 minutes).

Usage: python experiments/stagger_decode_probe.py [IMAGE ...]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numba
from c_decode_probe import check_and_time, crop_and_parse, kernel_decoder  # same folder
from pixelmodel_variant import load_patched

from codec.model import default_model

DATA = "../shared/data/"
DEFAULTS = (
    DATA + "clic_2images/alberto-montalesi-176097.png",
    DATA + "imagecompression_info/gray8bit/flower_foveon.png",
)
VARIANTS = {
    "staggered": ["stagger_decode_probe.patch"],
    "stage-interleaved": ["stagger_decode_probe.patch", "stagger_staged.patch"],
}


def main() -> None:
    images = sys.argv[1:] or list(DEFAULTS)
    numba.set_num_threads(1)
    model = default_model()
    with tempfile.TemporaryDirectory() as tmp:
        mods = {
            name: load_patched(f"pm_{k}", patches, Path(tmp))
            for k, (name, patches) in enumerate(VARIANTS.items())
        }
        for path in images:
            g, p = crop_and_parse(path, model)
            fns = {"shipped": kernel_decoder(p, model)}
            fns.update({name: kernel_decoder(p, model, mod) for name, mod in mods.items()})
            print(check_and_time(fns, g, path, rounds=3, repeats=3), flush=True)


if __name__ == "__main__":
    main()
