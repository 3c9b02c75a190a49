"""The VQ-VAE: a float encoder (runs only when encoding) and an integer-exact decoder.

Decoder determinism: embeddings, weights and activations are int8-valued; convolutions run as
float32 GEMMs whose every product and partial sum is an integer below 2**24, so any summation
order (BLAS blocking, threads, GPU, TF32 input rounding, which keeps 10 mantissa bits >= 7 needed)
gives the same exact integers; requantisation is int64 multiply-add-shift. Bounds are checked
when weights load (`_check_exact_bounds`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from codec import rans
from codec.errors import CodecError
from codec.layout import CELL
from codec.pixelmodel import LEVEL_DEFAULT, LEVELS, N_BUCKETS, N_KINDS, N_PIXEL_TABLES

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "pilc-default.npz"
EXACT_LIMIT = 1 << 24  # float32 represents every integer up to this exactly
N_CH = 3  # the model sees 1 (gray, alpha) or 3 (G, R, B) planes
OUT_BLOCK = 2  # the decoder predicts one scale per OUT_BLOCK x OUT_BLOCK pixels
N_OUT = N_CH * (CELL // OUT_BLOCK) ** 2


@dataclass(frozen=True)
class ModelConfig:
    n_codes: int  # K
    latent_dim: int  # D
    hidden: int  # decoder width
    n_scales: int  # S: decoder scale indices 0..S-1
    log_sigma_min: float
    log_sigma_step: float
    n_buckets: int  # unused since codec v2 (kept so the config array layout is stable)
    shift: int  # requantisation shift


def _conv3x3_cols(x: np.ndarray) -> np.ndarray:
    """(N,h,w,C) -> (N*h*w, 9*C) im2col with zero padding, (ky, kx, c) order: nine contiguous
    slab copies, much cheaper than a strided (c, ky, kx) gather."""
    n, h, w, c = x.shape
    xp = np.zeros((n, h + 2, w + 2, c), dtype=x.dtype)
    xp[:, 1:-1, 1:-1] = x
    cols = np.concatenate(
        [xp[:, dy : dy + h, dx : dx + w, :] for dy in range(3) for dx in range(3)], axis=-1
    )
    return cols.reshape(n * h * w, 9 * c)


def _kyx_c(w: np.ndarray) -> np.ndarray:
    """3x3 conv weights (out, C*9) stored in (c, ky, kx) order -> float32 (9*C, out) in the
    (ky, kx, c) order of _conv3x3_cols, ready for x @ w."""
    out = w.shape[0]
    return np.ascontiguousarray(
        w.reshape(out, -1, 9).transpose(0, 2, 1).reshape(out, -1).T, dtype=np.float32
    )


def _requant(acc: np.ndarray, mult: np.ndarray, bias: np.ndarray, shift: int, lo: int, hi: int):
    """Exact integer requantisation: clip((acc * M + B) >> shift, lo, hi)."""
    a = acc.astype(np.int64)
    return np.clip((a * mult + bias) >> shift, lo, hi)


@dataclass(frozen=True)
class PixelTables:
    """What the pixel model of one effort level codes with, and the id a blob's header names
    for it: the model's own tables at the default level, a level file's elsewhere."""

    level: int
    prior: np.ndarray  # (N_KINDS, N_BUCKETS) int64 bucket priors
    tables: rans.RansTables  # at least N_PIXEL_TABLES rows
    model_id: str


class Model:
    """Loaded weights plus the integer decoder and float encoder that use them."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays
        cfg = arrays["config"]
        self.config = ModelConfig(
            n_codes=int(cfg[0]),
            latent_dim=int(cfg[1]),
            hidden=int(cfg[2]),
            n_scales=int(cfg[3]),
            log_sigma_min=float(arrays["log_sigma"][0]),
            log_sigma_step=float(arrays["log_sigma"][1]),
            n_buckets=int(cfg[4]),
            shift=int(cfg[5]),
        )
        self.model_id = model_id(arrays)
        self.freqs = arrays["freqs"].astype(np.uint32)
        self.prior = np.ascontiguousarray(arrays["prior"], dtype=np.int64)
        self.index_table = N_PIXEL_TABLES  # the last table codes VQ indices
        self._check()
        self._check_exact_bounds()
        self.tables = rans.RansTables.from_freqs(self.freqs)
        # GEMM-ready weights, converted once (integer-valued, so float32 is exact)
        self._d1 = _kyx_c(arrays["d1_w"])
        self._d2 = _kyx_c(arrays["d2_w"])
        self._d3 = np.ascontiguousarray(arrays["d3_w"].T, dtype=np.float32)
        self._e1 = np.ascontiguousarray(arrays["e1_w"].T, dtype=np.float32)
        self._e2 = _kyx_c(arrays["e2_w"])
        self._e3 = np.ascontiguousarray(arrays["e3_w"].T, dtype=np.float32)
        self.levels: dict[int, PixelTables] = {
            LEVEL_DEFAULT: PixelTables(LEVEL_DEFAULT, self.prior, self.tables, self.model_id)
        }

    def add_level(self, arrays: dict[str, np.ndarray], source: str = "level tables") -> None:
        """Attach an effort level's tables (a level file: base_id, level, freqs, prior), checked
        like the model's own; the file must name this model as its base."""
        try:
            level = int(np.asarray(arrays["level"]).reshape(-1)[0])
            base = bytes(np.asarray(arrays["base_id"], dtype=np.uint8)).hex()
            freqs = np.asarray(arrays["freqs"]).astype(np.uint32)
            prior = np.ascontiguousarray(arrays["prior"], dtype=np.int64)
        except (KeyError, IndexError, ValueError, TypeError) as e:
            raise CodecError(f"{source}: not a level file ({e})") from e
        if base != self.model_id:
            raise CodecError(f"{source}: made for model {base}, not {self.model_id}")
        if not 0 < level < len(LEVELS):
            raise CodecError(f"{source}: level {level} is not a non-default effort level")
        if freqs.shape != (N_PIXEL_TABLES, 256) or prior.shape != (N_KINDS, N_BUCKETS):
            raise CodecError(f"{source}: tables have shapes {freqs.shape} and {prior.shape}")
        if int(prior.min()) < 1 or int(prior.max()) >= 1 << 20:
            raise CodecError(f"{source}: prior out of range")
        tables = rans.RansTables.from_freqs(freqs)  # checks each row
        self.levels[level] = PixelTables(level, prior, tables, model_id(arrays))

    def pixel_tables(self, level: int) -> PixelTables:
        """The tables of an effort level (CodecError if this model has none for it)."""
        if level not in self.levels:
            raise CodecError(f"model {self.model_id} has no tables for effort {LEVELS[level]!r}")
        return self.levels[level]

    # ---- validation -------------------------------------------------------------------------
    def _check(self) -> None:
        c = self.config
        a = self.arrays
        expect = {
            "emb": (c.n_codes, c.latent_dim),
            "d1_w": (c.hidden, c.latent_dim * 9),
            "d2_w": (c.hidden, c.hidden * 9),
            "d3_w": (N_OUT, c.hidden),
            "freqs": (N_PIXEL_TABLES + 1, 256),
            "prior": (N_KINDS, N_BUCKETS),
            "codebook": (c.n_codes, c.latent_dim),
        }
        for name, shape in expect.items():
            if a[name].shape != shape:
                raise CodecError(f"weights: {name} has shape {a[name].shape}, expected {shape}")
        if c.n_codes > 256 or c.n_scales > 64:
            raise CodecError("weights: too many codes or scales")
        if int(self.prior.min()) < 1 or int(self.prior.max()) >= 1 << 20:
            raise CodecError("weights: pixel-model prior out of range")

    def _check_exact_bounds(self) -> None:
        a = self.arrays
        for name in ("emb", "d1_w", "d2_w", "d3_w"):
            if np.abs(a[name]).max() > 127:
                raise CodecError(f"weights: {name} is not int8-valued")
        for name in ("d1_w", "d2_w", "d3_w"):
            worst = int(np.abs(a[name].astype(np.int64)).sum(axis=1).max()) * 127
            if worst >= EXACT_LIMIT:
                raise CodecError(f"weights: {name} could exceed float32-exact accumulation")

    # ---- decoder (integer exact) -----------------------------------------------------------
    def decode_scales(self, indices: np.ndarray) -> np.ndarray:
        """(N,lh,lw) code indices of whole tiles -> (N, 3, lh*8, lw*8) uint8 scale indices.

        Tiles of one call share a latent shape; the zero padding of each 3x3 conv is the tile
        border, so a tile's output never depends on its neighbours or on the batch.
        """
        a = self.arrays
        c = self.config
        n, lh, lw = indices.shape
        x = a["emb"][indices].astype(np.float32)  # NHWC
        for layer, w in (("d1", self._d1), ("d2", self._d2)):
            acc = _conv3x3_cols(x) @ w
            y = _requant(acc, a[f"{layer}_m"], a[f"{layer}_b"], c.shift, 0, 127)
            x = y.astype(np.float32).reshape(n, lh, lw, -1)
        acc = x.reshape(n * lh * lw, -1) @ self._d3
        s = _requant(acc, a["d3_m"], a["d3_b"], c.shift, 0, c.n_scales - 1).astype(np.uint8)
        sub = CELL // OUT_BLOCK
        s = s.reshape(n, lh, lw, N_CH, sub, sub).transpose(0, 3, 1, 4, 2, 5)
        s = np.ascontiguousarray(s).reshape(n, N_CH, lh * sub, lw * sub)
        return s.repeat(OUT_BLOCK, axis=2).repeat(OUT_BLOCK, axis=3)

    # ---- encoder (float, encode side only) -------------------------------------------------
    def encode_latents(self, feats: np.ndarray) -> np.ndarray:
        """(N, 3, lh*8, lw*8) float32 residual features -> (N, lh, lw) uint8 code indices."""
        a = self.arrays
        n, ch, hh, ww = feats.shape
        lh, lw = hh // CELL, ww // CELL
        s2d = feats.reshape(n, ch, lh, CELL, lw, CELL).transpose(0, 2, 4, 1, 3, 5)
        x = s2d.reshape(n * lh * lw, ch * CELL * CELL) @ self._e1 + a["e1_b"]
        x = np.maximum(x, 0).reshape(n, lh, lw, -1)
        x = _conv3x3_cols(x) @ self._e2 + a["e2_b"]
        x = np.maximum(x, 0)
        z = x @ self._e3 + a["e3_b"]
        cb = a["codebook"]
        d = (z * z).sum(1, keepdims=True) - 2 * z @ cb.T + (cb * cb).sum(1)[None]
        return d.argmin(1).astype(np.uint8).reshape(n, lh, lw)


def residual_features(signed_res: np.ndarray) -> np.ndarray:
    """What the encoder sees: log2(1 + |r|), float32."""
    return np.log2(1.0 + np.abs(signed_res).astype(np.float32))


def model_id(arrays: dict[str, np.ndarray]) -> str:
    """Stable 16-hex-digit id: hash of every array's name, dtype, shape and bytes."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        v = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{v.dtype.str}|{v.shape}|".encode())
        h.update(v.tobytes())
    return h.hexdigest()[:16]


def _read_npz(path: str | Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise CodecError(f"cannot read weights {path}: {e}") from e


def level_file(path: str | Path, effort: str) -> Path:
    """Where a model's tables for an effort level live: beside it, `<stem>.<effort>.npz`."""
    p = Path(path)
    return p.with_name(f"{p.stem}.{effort}.npz")


def is_level_file(path: str | Path) -> bool:
    """Whether a weights-folder file is some model's level file (named as level_file makes)."""
    return Path(path).name.endswith(tuple(f".{effort}.npz" for effort in LEVELS[1:]))


def load_model_file(path: str | Path) -> Model:
    """Load a weights .npz (no pickles) into a Model, with the level files beside it."""
    model = Model(_read_npz(path))
    for effort in LEVELS[1:]:
        lf = level_file(path, effort)
        if lf.exists():
            arrays = _read_npz(lf)
            named = np.asarray(arrays.get("level", -1)).reshape(-1)[:1].tolist()
            if named != [LEVELS.index(effort)]:  # a renamed file must not change a level's tables
                raise CodecError(f"{lf}: holds level {named} tables, not {effort!r}'s")
            model.add_level(arrays, str(lf))
    return model


@lru_cache(maxsize=4)
def default_model() -> Model:
    """The shipped model, loaded once per process."""
    if not DEFAULT_WEIGHTS.exists():
        raise CodecError(f"no shipped weights at {DEFAULT_WEIGHTS}; run `pilc train`")
    return load_model_file(DEFAULT_WEIGHTS)
