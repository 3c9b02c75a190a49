"""Where the fused decode kernel's first-use compile time goes, and what cutting it costs at run
time (docs/experiments.md entry 16). A fresh environment compiles the two pixel kernels in ~3
minutes, once per numba cache (CI, every new Ray node). Variants of codec/pixelmodel.py, each
compiled afresh from a temporary copy:

  shipped   as committed: the plane loop and every helper inlined by numba (inline="always")
            into three plane-specialised copies;
  called    the plane loop a plain njit function called by the kernel (one compile per plane
            index, c no longer a constant of the caller);
  helpers   only the plane loop inlined; the helpers inside it plain njit calls, left to LLVM;
  serial    as shipped but a plain njit kernel (range, not prange): no parfor passes, and no
            noalias on its array arguments, which numba's parfor lowering adds to the gufunc it
            builds when it finds no aliases (numba/parfors/parfor_lowering.py) and plain njit
            has no option for.

Reports the decode kernel's compile + first run (s), numba's own split of it (compiler lock vs
LLVM), and one-thread decode ns/sample against the cached shipped kernel, alternated, bit-exact.

Usage: python experiments/compile_time_probe.py [IMAGE] [--rounds N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numba
from c_decode_probe import check_and_time, crop_and_parse, kernel_decoder  # same folder
from pixelmodel_variant import load_variant

from codec.model import default_model

INLINE = '@njit(cache=True, inline="always")\n'
HELPERS = (
    "_neighbours",
    "_taps",
    "_floor_div",
    "_predict",
    "_bucket",
    "_level",
    "_coding_frame",
    "_model_step",
    "_update",
    "_reset",
    "_tile_state",
)
VARIANTS = {
    "shipped": [],
    "called": [(INLINE + "def _decode_plane(", "@njit(cache=True)\ndef _decode_plane(")],
    "helpers": [(INLINE + f"def {h}(", f"@njit(cache=True)\ndef {h}(") for h in HELPERS],
    "serial": [
        (
            "@njit(cache=True, parallel=True)\ndef _decode_kernel(",
            "@njit(cache=True)\ndef _decode_kernel(",
        ),
        (
            "    tabs = (e_bucket, lom, crc, recip)\n    for t in prange(boxes.shape[0]):\n"
            "        box = (boxes[t, 0], boxes[t, 1], boxes[t, 2], boxes[t, 3])\n"
            "        st = _tile_state(n_ch, box[2], box[3])\n        for c in range(n_ch):\n"
            "            s = t",
            "    tabs = (e_bucket, lom, crc, recip)\n    for t in range(boxes.shape[0]):\n"
            "        box = (boxes[t, 0], boxes[t, 1], boxes[t, 2], boxes[t, 3])\n"
            "        st = _tile_state(n_ch, box[2], box[3])\n        for c in range(n_ch):\n"
            "            s = t",
        ),
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "image", nargs="?", default="../shared/data/clic_2images/alberto-montalesi-176097.png"
    )
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    numba.set_num_threads(1)
    model = default_model()
    g, p = crop_and_parse(a.image, model)
    fns = {"cached shipped": kernel_decoder(p, model)}
    with tempfile.TemporaryDirectory() as tmp:
        for name, repl in VARIANTS.items():
            mod = load_variant(f"pm_{name}", repl, Path(tmp))
            dec = kernel_decoder(p, model, mod)
            t = time.perf_counter()
            dec()
            first = time.perf_counter() - t
            timers = [
                mod._decode_kernel.get_metadata(s)["timers"] for s in mod._decode_kernel.signatures
            ]
            lock = sum(x["compiler_lock"] for x in timers)
            llvm = sum(x["llvm_lock"] for x in timers)
            print(
                f"{name}: compile + first run {first:.1f} s "
                f"(numba {lock:.1f} s, of it LLVM {llvm:.1f} s)",
                flush=True,
            )
            fns[name] = dec
        print(check_and_time(fns, g, a.image, rounds=a.rounds, repeats=3))


if __name__ == "__main__":
    main()
