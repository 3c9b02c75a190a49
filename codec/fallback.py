"""Cheap estimates for `fallback="auto"`: whether a classical encoder can plausibly beat the
learned blob, without running it on the whole image."""

from __future__ import annotations

import numpy as np

from codec.imagefile import RasterImage, png_encode_pixels

SAMPLE_BAND = 16  # rows per sampled band: long enough for PNG's up/paeth filters and LZ matches
SAMPLE_FRACTION = 16  # one band in this many is encoded


def _sample(img: RasterImage, fraction: int) -> tuple[RasterImage, float]:
    """Evenly spaced bands of SAMPLE_BAND rows, ~1/fraction of the image, and the factor that
    scales the sample's size to the whole image."""
    px = img.pixels
    h = px.shape[0]
    step = SAMPLE_BAND * fraction
    if fraction <= 1 or h <= step:
        return img, 1.0
    starts = np.arange((step - SAMPLE_BAND) // 2, h - SAMPLE_BAND + 1, step)
    rows = (starts[:, None] + np.arange(SAMPLE_BAND)).ravel()
    return RasterImage(np.ascontiguousarray(px[rows]), img.mode), h / len(rows)


def estimate_webp(img: RasterImage, fraction: int = SAMPLE_FRACTION) -> int:
    """Lossless WebP (method 0) bytes of the whole image estimated from a row-band sample."""
    import imagecodecs

    sample, scale = _sample(img, fraction)
    px = sample.pixels
    if img.mode in ("L", "LA"):
        gray = px if img.mode == "L" else px[:, :, 0]
        planes = [gray, gray, gray] + ([px[:, :, 1]] if img.mode == "LA" else [])
        px = np.ascontiguousarray(np.stack(planes, axis=2))
    n = len(imagecodecs.webp_encode(px, 75, lossless=True, method=0, numthreads=1))
    return round(n * scale)


def estimate_png(img: RasterImage, fraction: int = SAMPLE_FRACTION) -> int:
    """PNG bytes of the whole image estimated from zlib level 1 of evenly spaced row bands
    (Pillow's filters, ~1/fraction of the rows), scaled to the full height."""
    px = img.pixels
    h = px.shape[0]
    step = SAMPLE_BAND * fraction
    if fraction <= 1 or h <= step:
        rows = np.arange(h)
    else:
        starts = np.arange((step - SAMPLE_BAND) // 2, h - SAMPLE_BAND + 1, step)
        rows = (starts[:, None] + np.arange(SAMPLE_BAND)).ravel()
    sample = np.ascontiguousarray(px[rows])
    n = len(png_encode_pixels(RasterImage(sample, img.mode), compress_level=1))
    return round(n * h / len(rows))
