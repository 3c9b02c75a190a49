"""Cheap estimates for `fallback="auto"`: whether a classical encoder can plausibly beat the
learned blob, without running it on the whole image."""

from __future__ import annotations

import numpy as np

from codec import kernels
from codec.imagefile import RasterImage, png_encode_pixels

SAMPLE_BAND = 16  # rows per sampled band: long enough for PNG's up/paeth filters and LZ matches
SAMPLE_FRACTION = 16  # one band in this many is encoded


def repeat_share(pixels: np.ndarray) -> float:
    """Share of pixels identical (all channels) to their left neighbour: high for synthetic
    images, where classical LZ-based codecs can beat the learned path. Counted in bands of
    ~2^20 pixels, so the comparison masks stay small however large the image; contiguous 8-bit
    RGB/RGBA is counted in one pass by the kernels (pilc_repeat_count)."""
    px = pixels if pixels.ndim == 3 else pixels[:, :, None]
    h, w = px.shape[:2]
    if w < 2:
        return 0.0
    if px.dtype == np.uint8 and px.shape[2] in (3, 4) and px.flags.c_contiguous:
        same = kernels.lib.pilc_repeat_count(kernels.ptr(px), h, w, px.shape[2])
        return same / (h * (w - 1))
    rows = max(1, (1 << 20) // w)
    count = 0
    for r in range(0, h, rows):
        band = px[r : r + rows]
        same = band[:, 1:, 0] == band[:, :-1, 0]
        for ch in range(1, px.shape[2]):  # per channel: np.all over a short axis is ~10x slower
            same &= band[:, 1:, ch] == band[:, :-1, ch]
        count += np.count_nonzero(same)
    return count / (h * (w - 1))


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
    (Pillow's filters, ~1/fraction of the rows), scaled to the full height. An image too short
    to sample gets PNG's own size, exactly: level 1 of a whole image overshot level 6 by up to
    1.19x (smooth gradients), and on small images level 6 costs 1.05-2x level 1."""
    px = img.pixels
    h = px.shape[0]
    step = SAMPLE_BAND * fraction
    if fraction <= 1 or h <= step:
        return len(png_encode_pixels(img))
    starts = np.arange((step - SAMPLE_BAND) // 2, h - SAMPLE_BAND + 1, step)
    rows = (starts[:, None] + np.arange(SAMPLE_BAND)).ravel()
    sample = np.ascontiguousarray(px[rows])
    n = len(png_encode_pixels(RasterImage(sample, img.mode), compress_level=1))
    return round(n * h / len(rows))


# The rule (designed on the train sets with benchmarks/fallback_check.py; EVAL sets only
# measured, benchmarks/results/fallback_check.md). L is the learned payload's bytes.
TINY_SAMPLES = 1 << 10  # <= this: PNG alone, always (header and side information weigh most)
REPEAT_ALL = 0.5  # repeat share at or above which a sampled image gets every kind, unestimated:
# LZ matches reach across the sampled bands on GUI screenshots (40-95% repeats), so the band
# estimates overshoot there by up to 4.6x (PNG) and 14x (WebP)
REPEAT_SOME = 0.2  # 0.2-0.5: photos with flat or clipped areas (gray ones reach 30-40%) and a
K_REPEAT = 1.3  # few screenshots: estimated, with a wider margin. On the 38 train images there
# the estimates need up to 1.25 x L where a kind wins (waterloo library: PNG 0.97 L estimated
# at 1.25 L, WebP 0.85 at 1.19); with 1.3 one WebP win (a screenshot, 3% of its bytes) is
# missed and no PNG win, and 23 of 76 runs remain (docs/experiments.md entry 18)
SMALL_GATE_HIGH_BPSP = 8.0  # images short enough to be estimated whole: none run at 2-8 bpsp
SMALL_GATE_REPEAT = 0.3  # under 30% repeats, where PNG never beat the learned blob on 2830
# train and small-image-set images (imagenet 64 and 32, cifar10, ...); WebP did on 51 of them,
# by 3572 bytes in all, less than their whole-image estimate pass would cost in time
VERY_LOW_BPSP = 0.5  # near-flat content: a few KB either way, fixed costs swamp the estimate
GATE_LOW_BPSP = 2.0  # estimate only where the learned path can plausibly lose: smooth or
GATE_HIGH_BPSP = 6.0  # noisy content, or a visible share of repeats; photos sit at 2-5 bpsp
GATE_REPEAT = 0.1  # with ~1% repeats (wikipedia 001.png, 9%, is the highest photo seen)
# A kind runs where its estimate is below K x L. The estimates overshoot the real encoders on
# the train images where a classical kind won by at most: PNG 1.06 (usc textures/1.2.09),
# WebP 1.14 (usc texmos1); 1.15 keeps both and lenna's PNG win (estimate 0.89 L).
K_PNG = 1.15
K_WEBP = 1.15


# The fast level skips its learned encode where the classical kinds all but always win: colour
# images (all channels equal to the left neighbour; one gray channel repeats in dark or clipped
# photos too) with >= 50% repeats. At the fast level on the train sets, PNG or WebP beat the
# learned blob on all 246 such images (screenshots, waterloo's synthetic ones: at best 0.88x
# of it), and on 19 of the 20 in imagenet 64/32 and cifar10 (teapot 64x64: 123 bytes lost);
# docs/experiments.md entry 29.
REPEAT_CLASSICAL_FAST = 0.5


def classical_only(img: RasterImage, repeat: float) -> bool:
    """Whether `fallback="auto"` at the fast level can skip the learned path for this image,
    whose repeat_share is `repeat`."""
    if img.mode not in ("RGB", "RGBA") or img.pixels.dtype != np.uint8:
        return False
    return repeat >= REPEAT_CLASSICAL_FAST


def plausible_kinds(
    img: RasterImage, learned_bytes: int, kinds: tuple[str, ...], repeat: float
) -> tuple[str, ...]:
    """Those of `kinds` ("png", "webp") that can plausibly beat a learned payload of
    learned_bytes, from the learned bpsp, the repeat share and, where those say "maybe",
    cheap sampled estimates (a few % of the learned encode's time)."""
    px = img.pixels
    if px.size <= TINY_SAMPLES:
        return tuple(k for k in kinds if k == "png") or kinds[:1]
    bpsp = 8 * learned_bytes / px.size
    sampled = px.shape[0] > SAMPLE_BAND * SAMPLE_FRACTION
    if bpsp < VERY_LOW_BPSP or (sampled and repeat >= REPEAT_ALL):
        return kinds
    if GATE_LOW_BPSP <= bpsp <= GATE_HIGH_BPSP and repeat < GATE_REPEAT:
        return ()
    if not sampled and GATE_LOW_BPSP <= bpsp <= SMALL_GATE_HIGH_BPSP and repeat < SMALL_GATE_REPEAT:
        return ()
    k_png, k_webp = (K_REPEAT, K_REPEAT) if sampled and repeat >= REPEAT_SOME else (K_PNG, K_WEBP)
    if not sampled:  # the PNG "estimate" is PNG's exact size (estimate_png)
        k_png = 1.0
    png = estimate_png(img) if "png" in kinds else None
    out = []
    for k in kinds:
        if k == "png" and png < k_png * learned_bytes:
            out.append(k)
        elif k == "webp" and not _webp_out_of_reach(img, png, learned_bytes):
            if estimate_webp(img) < k_webp * learned_bytes:
                out.append(k)
        elif k not in ("png", "webp"):
            out.append(k)
    return tuple(out)


# On gray images WebP (three equal channels) costs ~10x the PNG estimate to estimate (0.10-0.18 s
# against 0.01-0.02 on a 6-12 MP photo: 30-45% of the default level's encode), and it is never
# far below PNG there: over the 159 train gray images under 50% repeats WebP's real size was at
# least 0.657x the PNG estimate (usc motion10; 0.69 texmos2 and frog, the deepest WebP wins). So
# where the PNG estimate is >= 1.6x the learned payload, WebP cannot win and is not estimated
# (docs/experiments.md entry 31).
GRAY_WEBP_GATE = 1.6


def _webp_out_of_reach(img: RasterImage, png_estimate: int | None, learned_bytes: int) -> bool:
    return (
        img.mode == "L"
        and png_estimate is not None
        and png_estimate >= GRAY_WEBP_GATE * learned_bytes
    )
