"""The GPU path against the CPU build: same bytes out, same pixels back, both ways.

"emulated" runs the CUDA entry points (codec/kernels/pilc_cuda.cu) as host loops through the
same batch driver the CUDA backend uses, so these run everywhere; "cuda" repeats them on a GPU
(marked gpu: skipped where CuPy sees no device; benchmarks/gpu_check.sh runs them there)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from golden.make_codec_vectors import NAMES, encoded_name, options

import codec
from codec import learned
from codec.errors import CodecError
from codec.gpu import batch, resolve
from codec.gpu.emulated import EmulatedBackend
from codec.model import default_model

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "codec_vectors.npz"
# ../shared/data beside the checkout, or where PILC_SHARED_DATA points (benchmarks/gpu_check.sh
# carries a subset to the GPU machine, where ../shared does not travel)
DATA = Path(
    os.environ.get("PILC_SHARED_DATA") or Path(__file__).resolve().parents[4] / "shared/data"
)
DEVICES = ["emulated", pytest.param("cuda", marks=pytest.mark.gpu)]


def device_backend(name: str):  # noqa: ANN201
    # small blocks and launches in emulation, so tiles spread over several blocks and launches
    return EmulatedBackend(block=8, max_tiles=7) if name == "emulated" else resolve("cuda")


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 120 + 50 * np.sin(x / 13.0) * np.cos(y / 19.0)
    rgb = np.stack([base, 0.6 * base + 30, 250 - base], -1) + rng.normal(0, 3, (h, w, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("device", DEVICES)
def test_golden_vectors_on_the_device(device):
    backend = device_backend(device)
    with np.load(GOLDEN) as f:
        for name in NAMES:
            px, stored = f[f"in_{name}"], f[f"blob_{name}"].tobytes()
            blob = codec.encode(px, fallback="never", device=backend, **options(name))
            assert blob == f[f"blob_{encoded_name(name)}"].tobytes(), name
            assert np.array_equal(codec.decode(stored, device=backend), px), name


@pytest.mark.parametrize("device", DEVICES)
def test_mixed_batch_matches_cpu_both_ways(device):
    """Gray, RGB, RGBA, tiny and tile-crossing sizes in one batch, both tile sides: the device
    writes the CPU's bytes, and each side decodes the other's blobs."""
    backend = device_backend(device)
    rgb = photo(300, 270, 1)
    images = [rgb, rgb[:, :, 0].copy(), np.dstack([rgb[:90, :77], rgb[:90, :77, :1]]),
              rgb[:1, :3], rgb[:129, :257], rgb[:5, :300, 1].copy()]  # fmt: skip
    for tile in (128, 256):
        cpu = codec.encode_batch(images, fallback="never", tile=tile, device="cpu")
        dev = codec.encode_batch(images, fallback="never", tile=tile, device=backend)
        assert cpu == dev
        for blob, px in zip(cpu, images, strict=True):
            assert np.array_equal(codec.decode(blob, device=backend), px)
        assert all(
            np.array_equal(a, b)
            for a, b in zip(codec.decode_batch(cpu, device=backend), images, strict=True)
        )


@pytest.mark.parametrize("device", DEVICES)
def test_vq_side_information_on_the_device(device):
    backend = device_backend(device)
    px = photo(140, 150, 2)
    cpu = codec.encode(px, fallback="never", vq=True, device="cpu")
    assert codec.encode(px, fallback="never", vq=True, device=backend) == cpu
    assert np.array_equal(codec.decode(cpu, device=backend), px)


@pytest.mark.parametrize("device", DEVICES)
def test_corrupt_stream_is_named_on_the_device(device):
    backend = device_backend(device)
    model = default_model()
    planes = np.ascontiguousarray(np.moveaxis(photo(200, 300, 3), -1, 0))
    (payload,) = learned.encode_groups(model, [planes], tile=128)
    bad = bytearray(payload)
    bad[-40] ^= 0xFF  # inside the last stream
    with pytest.raises(CodecError, match="residual stream"):
        learned.decode_groups(model, [bytes(bad)], [planes.shape], device=backend)
    cpu_msg = dev_msg = ""
    try:
        learned.decode_groups(model, [bytes(bad)], [planes.shape])
    except CodecError as exc:
        cpu_msg = str(exc)
    try:
        learned.decode_groups(model, [bytes(bad)], [planes.shape], device=backend)
    except CodecError as exc:
        dev_msg = str(exc)
    assert cpu_msg == dev_msg


def test_launches_respect_their_limits_and_keep_order():
    boxes = [np.array([[0, 0, 128, 128]] * n) for n in (3, 1, 9, 2)]
    units = batch.units_of(boxes, [3, 1, 3, 1], band_pixels=128 * 128 * 2)
    packed = batch.launches(units, max_tiles=4, max_pixels=1 << 30)
    assert [u for launch in packed for u in launch] == units  # order kept, nothing lost
    assert all(sum(u.b - u.a for u in launch) <= 4 for launch in packed)


def test_threads_take_tiles_largest_first():
    boxes = [np.array([[0, 0, 128, 128], [0, 128, 128, 5], [128, 0, 7, 128], [128, 128, 7, 5]])]
    units = batch.units_of(boxes, [1], band_pixels=1 << 22)
    lay = batch.layout(units, boxes, [False])
    sizes = lay.records[:, 6] * lay.records[:, 7]
    assert list(sizes) == sorted(sizes, reverse=True)
    assert sorted(lay.records[:, 9]) == [0, 1, 2, 3]  # every stream exactly once


def eval_crops() -> list[tuple[str, np.ndarray]]:
    """A crop of the first image of each evaluation set (gray and RGB photos, CGI, screens)."""
    from PIL import Image

    out = []
    for folder in ("mcmaster18", "imagecompression_info", "sintel_frames", "screenshots_gimp"):
        paths = sorted((DATA / folder).rglob("*.png"))
        for path in paths[:1] + [p for p in paths if "gray8" in str(p)][:1]:
            with Image.open(path) as im:
                if im.mode not in ("L", "RGB"):
                    continue
                out.append((f"{folder}/{path.name}", np.asarray(im)[:300, :400].copy()))
    return out


@pytest.mark.parametrize("device", DEVICES)
def test_shared_data_crosses_cpu_and_device(device):
    crops = eval_crops()
    if not crops:
        pytest.skip(f"no evaluation images under {DATA}")
    backend = device_backend(device)
    for name, px in crops:
        cpu = codec.encode(px, fallback="never", device="cpu")
        assert codec.encode(px, fallback="never", device=backend) == cpu, name
        assert np.array_equal(codec.decode(cpu, device=backend), px), name


def test_device_choice():
    assert resolve("cpu") is None
    assert resolve("emulated").name == "emulated"
    with pytest.raises(CodecError, match="device must be one of"):
        resolve("tpu")
