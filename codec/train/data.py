"""The training images and the scale range that the trainer and the weight export share.

One module below both (and below the table fit) so that none of them imports another's
internals: the three once imported each other in a circle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from codec.colour import forward_rgb
from codec.layout import CELL
from codec.learned import vq_residuals

EVAL_ONLY = {"imagecompression_info", "mcmaster18", "clic_2images", "sintel_frames"}
DEFAULT_TRAIN_DIRS = (
    "wikipedia_photos",
    "urban100_subset",
    "usc_sipi",
    "waterloo_bragzone",
    "classic_sr_denoise_sets",
    "imagenet_sample_downsampled/64x64",
    "screenshots_gimp",
)
IMAGE_EXT = {".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp"}
LOG_SIGMA_MIN = float(np.log(0.15))
LOG_SIGMA_MAX = float(np.log(96.0))


def _refuse_eval_only(path: Path) -> None:
    if any(part in EVAL_ONLY for part in path.resolve().parts):
        raise SystemExit(f"refusing to train on {path}: it is an EVAL ONLY / evaluation set")


def list_images(dirs: list[Path]) -> list[Path]:
    """All 8-bit-capable image files under the given folders, sorted for reproducibility."""
    out = []
    for d in dirs:
        _refuse_eval_only(d)
        out += [p for p in sorted(d.rglob("*")) if p.suffix.lower() in IMAGE_EXT]
    return out


def load_planes(path: Path) -> np.ndarray | None:
    """8-bit gray -> (1,H,W); colour -> colour-transformed (3,H,W); others -> None."""
    from codec.errors import CodecError
    from codec.imagefile import open_pillow

    try:
        with open_pillow(path) as im:  # the codec's one size limit, not Pillow's bomb limit
            if im.mode in ("I;16", "I;16B", "I", "F"):
                return None
            if im.mode == "L":
                return np.asarray(im)[None].copy()
            return forward_rgb(np.asarray(im.convert("RGB")))
    except (OSError, CodecError):
        return None


def residual_image(planes: np.ndarray) -> np.ndarray:
    """Signed int8 residuals (C,H,W) exactly as the codec's VQ encoder sees them."""
    return vq_residuals(planes)


def sample_crops(residuals: list[np.ndarray], n: int, size: int, seed: int):
    """Random 8-aligned size x size crops padded to 3 planes, plus the plane mask."""
    rng = np.random.default_rng(seed)
    areas = np.array([r.shape[1] * r.shape[2] for r in residuals], dtype=np.float64)
    weights = np.sqrt(areas) / np.sqrt(areas).sum()
    crops = np.zeros((n, 3, size, size), dtype=np.int8)
    mask = np.zeros((n, 3), dtype=np.float32)
    picks = rng.choice(len(residuals), size=n, p=weights)
    for i, k in enumerate(picks):
        r = residuals[k]
        c, h, w = r.shape
        y = rng.integers(0, max(1, (h - size) // CELL + 1)) * CELL
        x = rng.integers(0, max(1, (w - size) // CELL + 1)) * CELL
        patch = r[:, y : y + size, x : x + size]
        crops[i, :c, : patch.shape[1], : patch.shape[2]] = patch
        mask[i, :c] = 1.0
    return crops, mask
