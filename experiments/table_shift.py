"""What a per-image or per-tile-plane shift of the coding-table level would save (experiment log
entry 22), computed from the encoder's own symbols without changing the format.

The level a sample is coded with comes from its bucket's running mean (LEVEL_OF_MEAN); a shift
s would code it with level clamp(level + s) instead. The model pass does not depend on the
tables, so every shift's cost is the ideal code length of the same symbols under the shifted
tables' frequencies: no re-encode. Per tile plane the shift would cost 3 bits to send.
Reads the levels' lab sets (TRAINING photos, experiments/levels_lab.py).

Usage: python experiments/table_shift.py [LEVEL] [--data DIR]
(LEVEL: 4, the max level, by default; 2 and 3 are max-v1 and max-v2)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codec import kernels, learned, pixelmodel, rans  # noqa: E402
from codec.api import _to_groups  # noqa: E402
from codec.imagefile import load_image  # noqa: E402
from codec.model import default_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from levels_lab import DATA, lab_sets  # noqa: E402

SHIFTS = np.arange(-3, 4)
SHIFT_BITS = 3  # what sending one shift per tile plane would cost


def shifted_costs(code: pixelmodel.PlaneCode, bits: np.ndarray) -> np.ndarray:
    """(len(SHIFTS), streams) ideal bits of each stream with every table level shifted."""
    sym = code.symbols.astype(np.int64)
    tid = code.table_ids.astype(np.int64)
    n_lev = pixelmodel.N_LEVELS
    far, kind, lv = tid & 1, (tid >> 1) // n_lev, (tid >> 1) % n_lev
    per_sample = np.stack(
        [bits[((kind * n_lev + np.clip(lv + s, 0, n_lev - 1)) << 1) + far, sym] for s in SHIFTS]
    )
    starts = code.bounds[:-1]
    keep = starts < len(sym)  # empty streams add nothing
    out = np.zeros((len(SHIFTS), len(starts)))
    out[:, keep] = np.add.reduceat(per_sample, starts[keep], axis=1)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("level", type=int, nargs="?", default=pixelmodel.LEVEL_MAX)
    ap.add_argument("--data", type=Path, default=DATA)
    a = ap.parse_args(argv)
    model = default_model()
    freq = model.pixel_tables(a.level).tables.freq.astype(np.float64)
    bits = -np.log2(freq / float(1 << rans.PREC))
    zero = int(np.flatnonzero(SHIFTS == 0)[0])
    with kernels.using_threads(1):
        for name, paths in lab_sets(a.data).items():
            base = per_image = per_plane = 0.0
            for path in paths:
                img = load_image(path)
                if img.mode not in ("L", "RGB"):
                    continue
                _, _, codes = learned.analyse(model, _to_groups(img), level=a.level)
                costs = np.concatenate([shifted_costs(c, bits) for c in codes], axis=1)
                base += costs[zero].sum()
                per_image += costs.sum(axis=1).min()
                per_plane += costs.min(axis=0).sum() + SHIFT_BITS * costs.shape[1]
            if base:
                print(f"{name:5s} level {a.level}: {base / 8:,.0f} B; per-image shift "
                      f"{100 * (per_image / base - 1):+.2f}%; per-tile-plane shift "
                      f"{100 * (per_plane / base - 1):+.2f}%")  # fmt: skip


if __name__ == "__main__":
    main()
