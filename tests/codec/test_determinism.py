"""Determinism contract: golden vectors, and the integer decoder independent of threads/batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from golden.make_codec_vectors import NAMES, encoded_name, options

import codec
from codec import kernels
from codec.model import default_model

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "codec_vectors.npz"


@pytest.fixture(scope="module")
def golden():
    if not GOLDEN.exists():
        pytest.fail("golden vectors missing: run tests/golden/make_codec_vectors.py")
    with np.load(GOLDEN) as f:
        data = {k: f[k] for k in f.files}
    if bytes(data["model_id"]).hex() != default_model().model_id:
        pytest.fail("golden vectors are for another model: regenerate after retraining")
    return data


def test_decoder_network_golden(golden):
    assert np.array_equal(
        default_model().decode_scales(golden["net_indices"]), golden["net_scales"]
    )


@pytest.mark.parametrize("name", NAMES)
def test_blob_golden_bytes(golden, name):
    px = golden[f"in_{name}"]
    expected = golden[f"blob_{encoded_name(name)}"].tobytes()
    assert codec.encode(px, fallback="never", **options(name)) == expected
    assert np.array_equal(codec.decode(golden[f"blob_{name}"].tobytes()), px)


def test_decoder_network_independent_of_batch_and_threads():
    model = default_model()
    rng = np.random.default_rng(3)
    idx = rng.integers(0, model.config.n_codes, (6, 16, 16)).astype(np.uint8)
    alone = np.stack([model.decode_scales(idx[i : i + 1])[0] for i in range(6)])
    together = model.decode_scales(idx)
    reordered = model.decode_scales(idx[::-1])[::-1]
    assert np.array_equal(alone, together) and np.array_equal(together, reordered)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        with threadpool_limits(1):
            assert np.array_equal(model.decode_scales(idx), together)


def test_float64_accumulation_gives_same_integers():
    """The float32 GEMMs are exact: recomputing them in int64 gives the same scales."""
    import codec.model as m

    model = default_model()
    idx = np.random.default_rng(4).integers(0, model.config.n_codes, (2, 9, 11)).astype(np.uint8)
    reference = model.decode_scales(idx)
    original = m._conv3x3_cols
    try:
        m._conv3x3_cols = lambda x: original(x).astype(np.float64)  # float64 GEMM path
        assert np.array_equal(model.decode_scales(idx), reference)
    finally:
        m._conv3x3_cols = original


def test_codec_independent_of_kernel_threads():
    """Tiles are claimed from a shared counter in whatever order threads get to them: bytes and
    pixels must not depend on how many threads there are (5 is more than this image's tiles)."""
    px = np.random.default_rng(6).integers(0, 255, (300, 260, 3), dtype=np.uint8)
    blobs = []
    for n in (1, 2, 5):
        with kernels.using_threads(n):
            blobs.append(codec.encode(px, fallback="never", tile=128))
            assert np.array_equal(codec.decode(blobs[-1]), px)
    assert blobs[0] == blobs[1] == blobs[2]
