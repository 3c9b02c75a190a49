"""Bytes of max-level variants (docs/experiments.md entry 23): the learned path's max-level bytes,
encode only, per image, for the kernels as built in this checkout, on the levels' lab sets
(TRAINING photos) or, to measure a chosen variant only, the EVAL photo sets.

Variants are compile-time switches in codec/kernels/pilc_model.h (this commit only; each
defaults to the shipped model): LL0_NT (plane 0's local LS taps, 6 or 10: + NNE, NNW, NWW,
NEE), PM_LL_R (window half-width), PM_LL_KV (column decay), PM_LL_KAPPA (ridge), P0_HALVE
(plane 0's bucket halving point), LL_W0 (plane 0's local LS blend weight), C2_P0 / C2_MW0 (the
second scale context on plane 0, and its weight). Build one with e.g.
`rm -rf build && CFLAGS="-DLL0_NT=10 -DPM_LL_R=6 -DP0_HALVE=128" python setup.py build_ext
--inplace`.

Usage:
    PILC_THREADS=1 python experiments/max_variants.py measure OUT.json [--eval] [--data DIR]
    python experiments/max_variants.py compare BASE.json OTHER.json ...
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from levels_lab import DATA, lab_sets  # noqa: E402

EVAL_SETS = ("mcmaster18", "clic_2images", "imagecompression_info/rgb8bit",
             "imagecompression_info/gray8bit", "sintel_frames")
SYNTHETIC = ("france.png", "5.1.13.png")  # the gray lab set's two non-photos (entry 21)


def measure(out: Path, data: Path, use_eval: bool) -> None:
    from codec import kernels, learned, pixelmodel
    from codec.api import _to_groups
    from codec.imagefile import load_image
    from codec.model import default_model

    if use_eval:
        sets = {s: sorted(glob.glob(str(data / s / "*.png"))) for s in EVAL_SETS}
    else:
        sets = lab_sets(data)
    model = default_model()
    sizes = {}
    with kernels.using_threads(1):
        for name, paths in sets.items():
            for p in paths:
                img = load_image(p)
                if img.mode not in ("L", "RGB"):
                    continue
                payloads = learned.encode_groups(model, _to_groups(img), level=pixelmodel.LEVEL_MAX)
                sizes[f"{name}:{Path(p).name}"] = sum(len(x) for x in payloads)
    out.write_text(json.dumps(sizes, indent=0))


def compare(base: Path, others: list[Path]) -> None:
    ref = json.loads(base.read_text())
    groups = sorted({k.split(":")[0] for k in ref})
    for f in others:
        got = json.loads(f.read_text())
        cols = []
        for g in groups:
            keys = [k for k in ref if k.split(":")[0] == g]
            rel = sum(got[k] for k in keys) / sum(ref[k] for k in keys) - 1
            cols.append(f"{g} {100 * rel:+.3f}%")
            photos = [k for k in keys if not k.endswith(SYNTHETIC)]
            if len(photos) < len(keys):
                rel = sum(got[k] for k in photos) / sum(ref[k] for k in photos) - 1
                cols.append(f"{g} photos {100 * rel:+.3f}%")
        total = sum(got.values()) / sum(ref.values()) - 1
        print(f"{f.name}: all {100 * total:+.3f}%  " + "  ".join(cols))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("out", type=Path)
    m.add_argument("--eval", action="store_true")
    m.add_argument("--data", type=Path, default=DATA)
    c = sub.add_parser("compare")
    c.add_argument("base", type=Path)
    c.add_argument("others", type=Path, nargs="+")
    a = ap.parse_args(argv)
    if a.cmd == "measure":
        measure(a.out, a.data, a.eval)
    else:
        compare(a.base, a.others)


if __name__ == "__main__":
    main()
