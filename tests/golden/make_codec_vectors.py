"""Regenerate tests/golden/codec_vectors.npz after retraining (a deliberate step: the vectors pin
the shipped model's exact integer outputs and the exact blob bytes).

    python tests/golden/make_codec_vectors.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import codec
from codec.model import default_model

OUT = Path(__file__).with_name("codec_vectors.npz")


# Vectors encoded with options other than the defaults: another tile side, the other effort
# levels (each pins its level's model and tables; the default-level vectors are unchanged). The
# "max-v1" vectors are byte for byte the "max" vectors of before max v2 (level 3) existed, and
# the "max-v2" vectors the "max" vectors of before max v3 (level 4); the "fastest" vectors
# (level 1) are the "fast" vectors of before level 5 took that name (docs/experiments.md entry
# 36), and the "fast" vectors are level 5's.
OPTIONS: dict[str, dict] = {
    "rgb_t128": {"tile": 128},
    # 4 tiles of 4 shapes: the vector lanes
    "rgb_fastest_t128": {"effort": "fastest", "tile": 128},
    "rgb_fast_t128": {"effort": "fast", "tile": 128},
    # tile 256 pinned: since the fast levels pick 128 for small images by default (entry 27),
    # these keep the bytes they were written with
    **{f"{base}_{effort}": {"effort": effort, "tile": 256}
       for effort in ("fastest", "max-v1", "max-v2", "max")
       for base in ("rgb", "gray", "rgba", "tiny")},
    **{f"{base}_fast": {"effort": "fast", "tile": 256} for base in ("rgb", "gray", "rgba")},
}  # fmt: skip
NAMES = ("rgb", "gray", "rgba", "tiny", *OPTIONS)
# Vectors whose options encode differently since a rule changed: their blobs stay, written by the
# encoder of their time, as decode vectors (old blobs keep decoding), and the same call must now
# write the named vector's bytes. The fast levels code images under 64x64 pixels at the default
# level since docs/experiments.md entry 30 (level 5 never had a tiny vector of its own).
ENCODES_AS = {"tiny_fastest": "tiny"}


def encoded_name(name: str) -> str:
    """The vector whose blob codec.encode(in_<name>, **options(name)) writes today."""
    return ENCODES_AS.get(name, name)


def inputs() -> dict[str, np.ndarray]:
    """Fixed images: smooth+noise RGB (also with 128-pixel tiles), gray, RGBA, odd sizes
    crossing tile edges, 1x1."""
    rng = np.random.default_rng(1234)
    y, x = np.mgrid[0:150, 0:200]
    base = (128 + 60 * np.sin(x / 17.0) * np.cos(y / 23.0)).astype(np.int64)
    rgb = np.stack([base, base // 2 + 40, 255 - base], -1) + rng.integers(-4, 5, (150, 200, 3))
    rgb8 = np.clip(rgb, 0, 255).astype(np.uint8)
    plain = {
        "rgb": rgb8,
        "gray": np.clip(base[:37, :129] + rng.integers(-2, 3, (37, 129)), 0, 255).astype(np.uint8),
        "rgba": np.clip(rgb[:64, :70], 0, 255).astype(np.uint8)[..., [0, 1, 2, 0]],
        "tiny": np.array([[[7, 8, 9]]], dtype=np.uint8),
    }
    return {name: plain[name.split("_")[0]] for name in NAMES}


def options(name: str) -> dict:
    """codec.encode keywords of a vector besides fallback="never"."""
    return OPTIONS.get(name, {})


def network_inputs(n_codes: int) -> np.ndarray:
    """Fixed code-index grids for the decoder network vector."""
    return np.random.default_rng(99).integers(0, n_codes, (3, 16, 16)).astype(np.uint8)


def main() -> None:
    model = default_model()
    arrays = {"model_id": np.frombuffer(bytes.fromhex(model.model_id), dtype=np.uint8)}
    with np.load(OUT) as old:  # the decode-only vectors keep the blobs their encoder wrote
        kept = {f"blob_{name}": old[f"blob_{name}"] for name in ENCODES_AS}
    for name, px in inputs().items():
        arrays[f"in_{name}"] = px
        blob = codec.encode(px, fallback="never", **options(name))
        arrays[f"blob_{name}"] = np.frombuffer(blob, dtype=np.uint8)
    arrays.update(kept)
    idx = network_inputs(model.config.n_codes)
    arrays["net_indices"] = idx
    arrays["net_scales"] = model.decode_scales(idx)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} for model {model.model_id}")


if __name__ == "__main__":
    main()
