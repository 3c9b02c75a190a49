"""Effort levels: every level exact on every mode and shape, named in the header, decoded by one
decoder; the header's level bits and the level files are checked like every other field."""

from __future__ import annotations

import glob
import shutil
from pathlib import Path

import numpy as np
import pytest

import codec
from codec import container, kernels, learned, pixelmodel, rans
from codec.api import FAST_MIN_PIXELS
from codec.layout import tile_boxes
from codec.model import DEFAULT_WEIGHTS, _read_npz, default_model, level_file, load_model_file

EFFORTS = ("fastest", "fast", "default", "max-v1", "max-v2", "max")
FAST = ("fastest", "fast")
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def photo(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 120 + 50 * np.sin(x / 13.0) * np.cos(y / 19.0)
    rgb = np.stack([base, 0.7 * base + 20, 240 - base], -1) + rng.normal(0, 4, (h, w, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


def images() -> dict[str, np.ndarray]:
    rgb = photo(300, 520, 3)  # 256 tiles: two full tiles per row and a narrow one
    return {
        "rgb": rgb,
        "gray": rgb[:, :, 1].copy(),
        "rgba": np.dstack([rgb[:97, :131], rgb[:97, :131, :1]]),
        "la": np.dstack([rgb[:40, :33, 0], rgb[:40, :33, 2]]),
        "row": rgb[:1, :300].copy(),
        "column": rgb[:300, :1, 0].copy(),
        "tiny": rgb[:1, :1].copy(),
    }


@pytest.mark.parametrize("effort", EFFORTS)
def test_every_level_is_exact_and_named_in_the_header(effort):
    """Each blob names the level it was coded at; max keeps the default level where that codes
    smaller (tiny images, where its extra LS coefficients weigh most), never more bytes; the
    fast levels code images under 64x64 pixels at the default level."""
    used = set()
    for name, px in images().items():
        blob = codec.encode(px, effort=effort, fallback="never")
        head = codec.info(blob)
        assert head["codec"] == "learned", name
        small = px.shape[0] * px.shape[1] < FAST_MIN_PIXELS
        assert head["effort"] == effort or head["effort"] == "default" and (
            effort.startswith("max") or effort in FAST and small), name
        used.add(head["effort"])
        assert np.array_equal(codec.decode(blob), px), name
        tables = default_model().pixel_tables(pixelmodel.LEVELS.index(head["effort"]))
        assert head["model_id"] == tables.model_id, name
        if effort.startswith("max"):
            assert len(blob) <= len(codec.encode(px, fallback="never")), name
    assert effort in used


@pytest.mark.parametrize("effort", FAST)
def test_fast_levels_code_small_images_at_the_default_level(effort):
    """Under 64x64 pixels the fast model saves ~8% of the time for 6-10% more bytes, so the fast
    levels write the default level's blob there, byte for byte; at 64x64 it is the fast model,
    and a batch mixing both writes what each image alone would."""
    px = photo(64, 64, 5)
    small = [px[:63, :64].copy(), px[:32, :32].copy(), px[:1, :1].copy(), px[:2, :64, 1].copy()]
    for img in small:
        fast = codec.encode(img, effort=effort, fallback="never")
        assert fast == codec.encode(img, fallback="never")
        assert codec.info(fast)["effort"] == "default"
    assert codec.info(codec.encode(px, effort=effort, fallback="never"))["effort"] == effort
    batch = codec.encode_batch([px, *small], effort=effort, fallback="never")
    assert batch == [codec.encode(i, effort=effort, fallback="never") for i in [px, *small]]


def _shared_photos(n: int) -> list[str]:
    paths = sorted(glob.glob(str(DATA / "classic_sr_denoise_sets" / "**" / "*.png"),
                             recursive=True))[:n]  # fmt: skip
    if not paths:
        pytest.skip(f"no images under {DATA}")
    return paths


def test_levels_order_their_bytes_on_photos():
    """On real photos (a training set) max codes fewest bytes and fastest most, fast between it
    and the default. (On a synthetic sine plus Gaussian noise the LS predictor alone wins:
    levels are tuned for photos.)"""
    sizes = dict.fromkeys(("fastest", "fast", "default", "max"), 0)
    for p in _shared_photos(4):
        img = codec.load_image(p)
        for e in sizes:
            sizes[e] += len(codec.encode(img, effort=e, fallback="never"))
    assert sizes["max"] < sizes["default"] < sizes["fast"] < sizes["fastest"], sizes


def test_effort_names_and_indices_and_refusals():
    px = photo(40, 50, 1)
    assert codec.encode(px, effort=1) == codec.encode(px, effort="fastest")
    assert codec.encode(px, effort=5) == codec.encode(px, effort="fast")
    assert codec.encode(px, effort=0) == codec.encode(px)  # default: the bytes of before
    assert codec.encode(px, effort=4) == codec.encode(px, effort="max")  # max v3
    assert codec.encode(px, effort=3) == codec.encode(px, effort="max-v2")
    assert codec.encode(px, effort=2) == codec.encode(px, effort="max-v1")
    for bad in ("turbo", 6, -1, True, 1.0):
        with pytest.raises(codec.CodecError, match="effort"):
            codec.encode(px, effort=bad)
    with pytest.raises(codec.CodecError, match="VQ"):
        codec.encode(px, effort="fast", vq=True)


def test_mixed_levels_decode_in_one_batch_on_the_cpu_and_the_emulated_gpu():
    from codec.gpu.emulated import EmulatedBackend

    pics = list(images().values())
    blobs = [codec.encode(p, effort=EFFORTS[i % len(EFFORTS)], fallback="never")
             for i, p in enumerate(pics)]  # fmt: skip
    for device in ("cpu", EmulatedBackend()):
        for got, px in zip(codec.decode_batch(blobs, device=device), pics, strict=True):
            assert np.array_equal(got, px)
    for effort in (*FAST, "max-v1", "max-v2", "max"):
        cpu = codec.encode_batch(pics, effort=effort, fallback="never", device="cpu")
        assert codec.encode_batch(pics, effort=effort, fallback="never",
                                  device=EmulatedBackend()) == cpu  # fmt: skip


def _with_flags(blob: bytes, flags: int) -> bytes:
    """The blob with another header flags byte (the header check recomputed to match)."""
    head, payload = container.parse(blob)
    n = len(blob) - len(payload) - 4
    raw = bytearray(blob[:n])
    raw[7] = flags
    return bytes(raw) + container.header_check(raw).to_bytes(4, "little") + bytes(payload)


def test_header_level_bits_are_checked():
    px = photo(64, 64, 2)  # 64x64: the fast level's smallest images
    fast = codec.encode(px, effort="fastest", fallback="never")
    assert fast[7] >> container.LEVEL_SHIFT & 7 == 1
    assert codec.encode(px, effort="fast", fallback="never")[7] >> container.LEVEL_SHIFT == 5
    assert codec.encode(px, fallback="never")[7] == 0  # default level: bits clear
    assert codec.encode(px, effort="max", fallback="never")[7] >> container.LEVEL_SHIFT == 4
    for flags in (1 << 4, 6 << container.LEVEL_SHIFT, 7 << container.LEVEL_SHIFT):
        with pytest.raises(codec.CodecError, match="header flags"):  # bit 4, levels 6-7: unknown
            codec.decode(_with_flags(fast, flags))
    for level in (2, 3, 4, 5):  # the other levels' bits on a blob naming level 1's tables
        with pytest.raises(codec.CodecError, match="lacks"):
            codec.decode(_with_flags(fast, level << container.LEVEL_SHIFT))
    classical = codec.encode(np.full((10, 12), 1000, np.uint16))  # 16-bit: never learned
    assert container.parse(classical)[0].codec != "learned"
    with pytest.raises(codec.CodecError, match="effort level is set"):
        codec.decode(_with_flags(classical, 1 << container.LEVEL_SHIFT))


def test_level_files_are_validated(tmp_path):
    model = default_model()
    arrays = _read_npz(level_file(DEFAULT_WEIGHTS, "fast"))
    assert int(arrays["level"][0]) == pixelmodel.LEVEL_FAST
    assert int(_read_npz(level_file(DEFAULT_WEIGHTS, "fastest"))["level"][0]) == 1
    other = dict(arrays, base_id=np.zeros(8, np.uint8))
    with pytest.raises(codec.CodecError, match="made for model"):
        model.add_level(other)
    with pytest.raises(codec.CodecError, match="shapes"):
        model.add_level(dict(arrays, prior=arrays["prior"][:2]))
    with pytest.raises(codec.CodecError, match="not a level file"):
        model.add_level({"freqs": arrays["freqs"]})
    with pytest.raises(codec.CodecError, match="not a non-default"):
        model.add_level(dict(arrays, level=np.array([0])))


def test_a_level_file_under_another_levels_name_is_refused(tmp_path):
    """Level 1's tables were renamed from `.fast.npz` to `.fastest.npz` when level 5 took the
    name: a weights folder with level 1's file still under the old name must not load it as
    level 5's tables."""
    weights = tmp_path / DEFAULT_WEIGHTS.name
    shutil.copy(DEFAULT_WEIGHTS, weights)
    shutil.copy(level_file(DEFAULT_WEIGHTS, "fastest"), level_file(weights, "fast"))
    with pytest.raises(codec.CodecError, match="holds level \\[1\\] tables, not 'fast'"):
        load_model_file(weights)
    shutil.copy(level_file(DEFAULT_WEIGHTS, "fast"), level_file(weights, "fast"))
    assert pixelmodel.LEVEL_FAST in load_model_file(weights).levels


def _fast_streams(g: np.ndarray, level: int):
    pt = default_model().pixel_tables(level)
    boxes = tile_boxes(g.shape[1], g.shape[2], 128)
    code = pixelmodel.encode_planes(g, boxes, None, pt.prior, level)
    data, bb = rans.encode_streams(code.symbols, code.table_ids, code.bounds, pt.tables)
    return pt, boxes, code, data, bb


@pytest.mark.parametrize("level", pixelmodel.FAST_LEVELS)
def test_fast_decoder_threads_and_corrupt_streams(level):
    """The fast levels decode the same pixels on 1 and 2 threads, and a corrupt stream is
    reported by its own index."""
    g = np.ascontiguousarray(photo(300, 520, 5).transpose(2, 0, 1))
    pt, boxes, code, data, bb = _fast_streams(g, level)
    for threads in (1, 2):
        with kernels.using_threads(threads):
            out = pixelmodel.decode_planes(data, bb, g.shape, boxes, None, code.coefs, pt.prior,
                                           pt.tables, level=level)  # fmt: skip
        assert np.array_equal(out, g)
    stream = 2 * 3 + 1  # plane 1 of the third tile
    bad = data.copy()
    bad[bb[stream] + 4 : bb[stream + 1]] ^= 0x5A
    with pytest.raises(codec.CodecError, match=f"residual stream {stream}: corrupt"):
        pixelmodel.decode_planes(bad, bb, g.shape, boxes, None, code.coefs, pt.prior, pt.tables,
                                 level=level)  # fmt: skip
    short = data.copy()
    short[bb[stream] : bb[stream] + 4] = 0  # initial state below 2^16
    with pytest.raises(codec.CodecError, match=f"residual stream {stream}: corrupt \\(code 4\\)"):
        pixelmodel.decode_planes(short, bb, g.shape, boxes, None, code.coefs, pt.prior, pt.tables,
                                 level=level)  # fmt: skip


def test_payload_sends_each_levels_coefficient_count():
    g = photo(64, 64, 9).transpose(2, 0, 1).copy()
    for level, taps in ((pixelmodel.LEVEL_DEFAULT, (6, 11, 16)),
                        (pixelmodel.LEVEL_FASTEST, (6, 11, 16)),
                        (pixelmodel.LEVEL_FAST, (6, 11, 16)),
                        (pixelmodel.LEVEL_MAX_V1, (10, 17, 24)),
                        (pixelmodel.LEVEL_MAX_V2, (10, 17, 24)),
                        (pixelmodel.LEVEL_MAX, (10, 17, 24))):
        assert tuple(pixelmodel.n_taps(c, level) for c in range(3)) == taps
        payload = learned.encode_groups(default_model(), [g], level=level)[0]
        parsed = learned._parse(payload, g.shape, level)
        assert np.array_equal(learned.decode_groups(default_model(), [payload], [g.shape],
                                                    level=level)[0], g)  # fmt: skip
        assert parsed.coefs.shape[2] == pixelmodel.N_TAPS_MAX


def test_shared_photos_are_exact_at_every_level():
    for p in _shared_photos(3):
        img = codec.load_image(p)
        for effort in EFFORTS:
            blob = codec.encode(img, effort=effort)
            assert np.array_equal(codec.decode(blob), img.pixels), (p, effort)



@pytest.mark.parametrize("effort", (*FAST, "max-v1", "max-v2", "max"))
def test_truncated_blobs_of_every_level_raise(effort):
    blob = codec.encode(photo(64, 64, 6), effort=effort, fallback="never")
    for n in range(0, len(blob), max(1, len(blob) // 61)):
        with pytest.raises(codec.CodecError):
            codec.decode(blob[:n])


@pytest.mark.parametrize("effort", (*FAST, "max-v1", "max-v2", "max"))
def test_levels_independent_of_kernel_threads(effort):
    """Each thread keeps its own tile state (the max level's local LS sums and solve scratch
    too): 1 and 2 threads write the same bytes and decode the same pixels."""
    px = photo(300, 520, 8)  # 6 tiles of 256: both threads get work
    one = codec.encode(px, effort=effort, fallback="never", threads=1)
    assert codec.encode(px, effort=effort, fallback="never", threads=2) == one
    assert np.array_equal(codec.decode(one, threads=2), px)
