"""Public codec API: encode/decode single images and batches, inspect blobs.

The learned path serves 8-bit L, LA, RGB and RGBA (alpha is coded as an extra gray plane group);
every other mode, and any image where the learned path loses, is stored by the best classical
codec (flagged in the header), so a blob is never worse than the PNG we compare against on the
images we check (see `fallback`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import xxhash

from codec import classical, container, gpu, kernels, learned, pixelmodel, timing, varints
from codec import fallback as fallback_rule
from codec.colour import forward_rgb, inverse_rgb
from codec.errors import CodecError
from codec.gpu.backend import Backend
from codec.imagefile import DEFAULT_MAX_SAMPLES, RasterImage, load_image, mode_shape
from codec.model import (
    WEIGHTS_DIR,
    Model,
    PixelTables,
    default_model,
    is_level_file,
    load_model_file,
)

LEARNED_MODES = ("L", "LA", "RGB", "RGBA")
FALLBACKS = ("auto", "always", "never")
# "auto" compares with classical codecs only where one can plausibly beat the learned blob:
# codec/fallback.py decides from the learned payload's size, the repeat share and, where those
# leave it open, sampled PNG/WebP estimates; its constants say why. (The old rule ran PNG and
# WebP wherever bpsp < 1.5 or > 6 or repeats >= 20%: 3.5-6x slower on smooth photos, where
# they never won, and it missed lenna, 34% above PNG; benchmarks/results/fallback_check.md.)
AUTO_SMALL_SAMPLES = fallback_rule.TINY_SAMPLES
AUTO_REPEAT = fallback_rule.REPEAT_ALL
repeat_share = fallback_rule.repeat_share  # the fallback rule's statistic, used here too

ImageLike = RasterImage | np.ndarray | object


def checksum(pixels: np.ndarray) -> int:
    """xxh3-64 of the raw pixels (C order, little-endian samples)."""
    px = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False)
    return xxhash.xxh3_64_intdigest(np.ascontiguousarray(px).data)


def _to_groups(img: RasterImage) -> list[np.ndarray]:
    """Plane groups the learned path codes for this image."""
    px = img.pixels
    if img.mode == "L":
        return [px[None]]
    if img.mode == "LA":
        return [px[None, :, :, 0], px[None, :, :, 1]]
    groups = [forward_rgb(px[:, :, :3])]
    if img.mode == "RGBA":
        groups.append(px[None, :, :, 3])
    return [np.ascontiguousarray(g) for g in groups]


def _band_writers(mode: str, out: np.ndarray) -> list[Callable[[int, int, np.ndarray], None]]:
    """Per plane group of an image, a function placing a decoded band, (C, h, w) planes at
    (y0, x0), into the image's (H, W[, C]) pixels: the inverse of _to_groups."""

    def gray(ch: int | None):
        def write(y0: int, x0: int, p: np.ndarray) -> None:
            at = (slice(y0, y0 + p.shape[1]), slice(x0, x0 + p.shape[2]))
            if ch is None:
                out[at] = p[0]
            else:
                out[(*at, ch)] = p[0]

        return write

    def colour(y0: int, x0: int, p: np.ndarray) -> None:
        out[y0 : y0 + p.shape[1], x0 : x0 + p.shape[2], :3] = inverse_rgb(p)

    return {
        "L": [gray(None)],
        "LA": [gray(0), gray(1)],
        "RGB": [colour],
        "RGBA": [colour, gray(3)],
    }[mode]


def _group_shapes(mode: str, height: int, width: int) -> list[tuple[int, int, int]]:
    return {
        "L": [(1, height, width)],
        "LA": [(1, height, width)] * 2,
        "RGB": [(3, height, width)],
        "RGBA": [(3, height, width), (1, height, width)],
    }[mode]


def _header(
    img: RasterImage, codec: str, model_id: str | None = None, effort: str = "default"
) -> container.Header:
    h, w = img.pixels.shape[:2]
    return container.Header(
        codec=codec,
        mode=img.mode,
        width=w,
        height=h,
        checksum=checksum(img.pixels),
        model_id=model_id,
        icc_profile=img.icc_profile,
        exif=img.exif,
        text=dict(img.text),
        effort=effort,
    )


def _candidates(
    fallback: str, learned_bytes: int, img: RasterImage, repeat: float | None
) -> tuple[str, ...]:
    """Classical kinds to compare a learned payload of learned_bytes with (empty: keep it);
    repeat is the image's repeat share (given under "auto").

    "auto" runs a kind only where codec.fallback finds it can plausibly win, so on photos the
    check costs the repeat share (~1% of the encode) and no classical encoder."""
    if fallback == "never":
        return ()
    kinds = classical.default_kinds(img.mode)
    if fallback == "always":
        return kinds
    assert repeat is not None  # encode_batch measures it for every learned image under "auto"
    return fallback_rule.plausible_kinds(img, learned_bytes, kinds, repeat)


def encode_batch(
    images: Sequence[ImageLike],
    *,
    fallback: str = "auto",
    model: Model | None = None,
    vq: bool = False,
    tile: int | None = None,
    device: str | Backend | None = None,
    threads: int | None = None,
    effort: str | int = "default",
) -> list[bytes]:
    """Encode many images; all learned-path tiles share one network and coder pass. effort is
    the learned path's level ("fastest", "fast", "default", "max", or its header index 1, 5, 0,
    4; "max-v1", 2, and "max-v2", 3, are the earlier max models, kept so their blobs decode;
    FORMAT.md "levels": on photos fastest codes ~4x faster for 2-10% more bytes, fast ~3.5x
    faster within ~1% of the default's bytes, max spends ~5x the time for fewer, and keeps the
    default level for an image where that codes smaller); the header names the level used, and
    one decoder reads every level. vq sends
    the VQ-VAE side information (off by default: it costs more than it saves, FORMAT.md);
    tile is the learned path's tile side (256, or 128 for more independent streams; None: 256,
    but 128 at the fast levels for images under 32 tiles of 256, learned.group_tile); device
    is where the pixel stage runs ("cpu", "cuda", "auto"; default PILC_DEVICE, else auto:
    codec.gpu), threads how many CPU threads the kernels use (default: the CPUs this process
    may use). Every device and thread count writes the same bytes."""
    if fallback not in FALLBACKS:
        raise CodecError(f"fallback must be one of {FALLBACKS}, not {fallback!r}")
    learned.check_tile(tile)
    level = pixelmodel.level_index(effort)
    if vq and level != pixelmodel.LEVEL_DEFAULT:
        raise CodecError("the VQ side information is coded at the default effort level only")
    imgs = [im if isinstance(im, RasterImage) else load_image(im) for im in images]
    model = model or default_model()
    # the repeat share, once per image: the fast level's classical-only rule and auto's check
    repeats = {
        i: repeat_share(im.pixels)
        for i, im in enumerate(imgs)
        if fallback == "auto" and im.mode in LEARNED_MODES
    }
    fast_auto = fallback == "auto" and level in pixelmodel.FAST_LEVELS
    learned_ids = [
        i
        for i, im in enumerate(imgs)
        if im.mode in LEARNED_MODES
        and not (fast_auto and fallback_rule.classical_only(im, repeats[i]))
    ]
    groups, owners = [], []
    for i in learned_ids:
        for g in _to_groups(imgs[i]):
            groups.append(g)
            owners.append(i)
    backend = gpu.resolve(device)
    tries = {i: _levels_for(imgs[i], level) for i in learned_ids}
    best: dict[int, tuple[PixelTables, list[bytes]]] = {}
    for lv in dict.fromkeys(lv for i in learned_ids for lv in tries[i]):  # first seen, first
        ids = [i for i in learned_ids if lv in tries[i]]
        mine = [n for n, owner in enumerate(owners) if lv in tries[owner]]
        payloads: dict[int, list[bytes]] = {i: [] for i in ids}
        with kernels.using_threads(threads):
            coded = (
                learned.encode_groups(
                    model, [groups[n] for n in mine], vq, tile, device=backend, level=lv
                )
                if mine
                else []
            )
        for n, payload in zip(mine, coded, strict=True):
            payloads[owners[n]].append(payload)
        for i, parts in payloads.items():
            size = sum(len(p) for p in parts)
            if i not in best or size < sum(len(p) for p in best[i][1]):
                best[i] = (model.pixel_tables(lv), parts)
    fallback_tables = model.pixel_tables(level)
    with timing.stage("container"):
        return [
            _pack_best(img, *best.get(i, (fallback_tables, None)), fallback, repeats.get(i))
            for i, img in enumerate(imgs)
        ]


# Under this many pixels the fast level codes at the default level: one small tile, where the
# fast model's speed is lost in per-image costs (32x32: 1.08x the default's encode, cifar10 1.07x)
# and its bytes are not (+5.7%, +9.6%; benchmarks/results/pilc_levels_small.md, entry 30).
FAST_MIN_PIXELS = 64 * 64


def _levels_for(img: RasterImage, level: int) -> tuple[int, ...]:
    """The learned levels an image is coded at; the smallest result is kept, the first on a tie.

    Max also tries the default level: on tiny images the max level's 2-3x more LS coefficients
    can outweigh its gain (cifar10: +1.2%), and the default costs ~1/5 of the max level's time."""
    h, w = img.pixels.shape[:2]
    if level in pixelmodel.FAST_LEVELS and h * w < FAST_MIN_PIXELS:
        return (pixelmodel.LEVEL_DEFAULT,)
    if level in pixelmodel.MAX_LEVELS:
        return (level, pixelmodel.LEVEL_DEFAULT)
    return (level,)


def _pack_best(
    img: RasterImage,
    tables: PixelTables,
    parts: list[bytes] | None,
    fallback: str,
    repeat: float | None,
) -> bytes:
    """The learned blob, or the classical one where the fallback policy finds it smaller."""
    effort = pixelmodel.LEVELS[tables.level]
    settings = classical.classical_effort(effort)
    if parts is None:  # not a learned mode, or fallback.classical_only: classical only
        kind, payload = classical.encode_classical(img, effort=settings)
        return container.pack(_header(img, kind), payload)
    body = parts[0] if len(parts) == 1 else varints.encode_one(len(parts[0])) + b"".join(parts)
    best = container.pack(_header(img, "learned", tables.model_id, effort), body)
    kinds = _candidates(fallback, len(body), img, repeat)  # the payload: metadata weighs alike
    if not kinds:
        return best
    header = _header(img, kinds[0])  # one length for every classical kind
    below = len(best) - len(container.pack(header, b""))  # payloads that would make it smaller
    found = classical.smallest_verified(img, kinds, effort=settings, below=below)
    if found is None:
        return best
    kind, payload = found
    return container.pack(dataclasses.replace(header, codec=kind), payload)


def encode(
    image: ImageLike,
    *,
    fallback: str = "auto",
    model: Model | None = None,
    vq: bool = False,
    tile: int | None = None,
    device: str | Backend | None = None,
    threads: int | None = None,
    effort: str | int = "default",
) -> bytes:
    """Encode one image (array, PIL image, RasterImage, path or file bytes) to a blob."""
    return encode_batch(
        [image], fallback=fallback, model=model, vq=vq, tile=tile, device=device,
        threads=threads, effort=effort,
    )[0]  # fmt: skip


def _names(model: Model, model_id: str, level: int) -> bool:
    return level in model.levels and model.pixel_tables(level).model_id == model_id


@lru_cache(maxsize=8)
def model_for(model_id: str, level: int = pixelmodel.LEVEL_DEFAULT) -> Model:
    """The model whose tables at this effort level a blob names (the model's own id at the
    default level, its level file's elsewhere): the shipped one, or another .npz in the
    weights folder."""
    model = default_model()
    if _names(model, model_id, level):
        return model
    extra = os.environ.get("PILC_WEIGHTS_DIR")
    for folder in filter(None, [extra, str(WEIGHTS_DIR)]):
        for path in sorted(os.scandir(folder), key=lambda e: e.name):
            if path.name.endswith(".npz") and not is_level_file(path.name):
                candidate = load_model_file(path.path)
                if _names(candidate, model_id, level):
                    return candidate
    effort = pixelmodel.LEVELS[level]
    raise CodecError(
        f"blob was made with model {model_id} (effort {effort}), which this installation lacks"
    )


def _split_learned(mode: str, payload: memoryview) -> list[bytes]:
    if mode in ("L", "RGB"):
        return [bytes(payload)]
    r = varints.Reader(payload, "learned payload")
    first = r.take(r.varint(r.remaining))
    return [first, r.take(r.remaining)]


def decode_image_batch(
    blobs: Sequence[bytes],
    *,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    device: str | Backend | None = None,
    threads: int | None = None,
) -> list[RasterImage]:
    """Decode many blobs; learned ones of the same model share one network and coder pass
    (device and threads as in encode_batch)."""
    with timing.stage("container"):
        parsed = [container.parse(b) for b in blobs]
    pixels: dict[int, np.ndarray | RasterImage] = {}
    by_model: dict[tuple[str, int], list[int]] = {}
    backend = gpu.resolve(device)
    for i, (h, payload) in enumerate(parsed):
        shape = mode_shape(h.mode, h.height, h.width)
        if math.prod(shape) > max_samples:
            raise CodecError(f"image of {shape} exceeds the {max_samples}-sample limit")
        if h.codec == "learned":
            if h.mode not in LEARNED_MODES:
                raise CodecError(f"learned blob with non-learned mode {h.mode}")
            key = (h.model_id, pixelmodel.level_index(h.effort))
            by_model.setdefault(key, []).append(i)
        else:
            with timing.stage("container"):
                pixels[i] = classical.decode_classical_image(h.codec, bytes(payload), h.mode, shape)
    for (mid, level), members in by_model.items():
        model = model_for(mid, level)
        groups, shapes, writers = [], [], []
        for i in members:
            h, payload = parsed[i]
            pixels[i] = np.empty(mode_shape(h.mode, h.height, h.width), dtype=np.uint8)
            for part, shape, write in zip(
                _split_learned(h.mode, payload),
                _group_shapes(h.mode, h.height, h.width),
                _band_writers(h.mode, pixels[i]),
                strict=True,
            ):
                groups.append(part)
                shapes.append(shape)
                writers.append(write)
        with kernels.using_threads(threads):
            learned.decode_groups_into(
                model,
                groups,
                shapes,
                lambda g, y0, x0, planes, w=writers: w[g](y0, x0, planes),
                device=backend,
                level=level,
            )
    out = []
    for i, (h, _) in enumerate(parsed):
        got = pixels[i]
        img = got if isinstance(got, RasterImage) else RasterImage(got, h.mode)
        with timing.stage("container"):
            ok = checksum(img.pixels) == h.checksum
        if not ok:
            raise CodecError("checksum mismatch: the blob is corrupt (decoded pixels differ)")
        img.icc_profile, img.exif, img.text = h.icc_profile, h.exif, dict(h.text)
        out.append(img)
    return out


def decode_image(
    blob: bytes,
    *,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    device: str | Backend | None = None,
    threads: int | None = None,
) -> RasterImage:
    """Blob -> RasterImage (pixels, mode, ICC, Exif, text, palette)."""
    return decode_image_batch([blob], max_samples=max_samples, device=device, threads=threads)[0]


def decode(
    blob: bytes,
    *,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    device: str | Backend | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Blob -> pixel array (H,W) or (H,W,C), exactly what was encoded."""
    return decode_image(blob, max_samples=max_samples, device=device, threads=threads).pixels


def decode_batch(
    blobs: Sequence[bytes],
    *,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    device: str | Backend | None = None,
    threads: int | None = None,
) -> list[np.ndarray]:
    """Many blobs -> list of pixel arrays."""
    images = decode_image_batch(blobs, max_samples=max_samples, device=device, threads=threads)
    return [im.pixels for im in images]


def info(blob: bytes) -> dict:
    """Header fields of a blob as a dict (no pixel decoding)."""
    header, payload = container.parse(blob)
    d = header.to_dict()
    d.update(blob_bytes=len(blob), payload_bytes=len(payload))
    return d
