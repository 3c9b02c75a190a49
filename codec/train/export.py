"""Turn a trained float VQ-VAE into shipped integer weights and fitted coding tables.

Decoder quantisation: int8 embeddings (per-tensor scale), int8 weights (per-output-channel
scale), int8 activations (scale calibrated on training latents), requantisation multipliers with
a 24-bit shift. Tables and bucket priors of the pixel model: codec/train/fit_tables.py, run over the
training images through the exact integer pipeline.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from codec import pixelmodel
from codec.model import DEFAULT_WEIGHTS, Model, model_id
from codec.train import fit_tables
from codec.train.data import LOG_SIGMA_MAX, LOG_SIGMA_MIN, list_images, load_planes, sample_crops

SHIFT = 24
N_SCALES = 64


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


def _q_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric int8 quantisation of a (Cout, ...) weight."""
    flat = w.reshape(w.shape[0], -1)
    scale = np.maximum(np.abs(flat).max(1), 1e-12) / 127.0
    return np.clip(np.round(flat / scale[:, None]), -127, 127).astype(np.int8), scale


def _requant_params(in_scale: np.ndarray, out_scale: float, bias: np.ndarray, offset: float = 0.0):
    """(M, B) such that (acc*M + B) >> SHIFT == round((acc*in_scale + bias - offset)/out_scale)."""
    mult = np.round(in_scale / out_scale * 2.0**SHIFT).astype(np.int64)
    add = np.round((bias - offset) / out_scale * 2.0**SHIFT).astype(np.int64) + (1 << (SHIFT - 1))
    return mult, add


def quantise_decoder(net, calib_codes: np.ndarray, log_sigma_min: float, step: float) -> dict:
    """Integer decoder arrays from the float net, activations calibrated on calib_codes."""
    import torch

    codebook = _np(net.codebook)
    emb_scale = np.abs(codebook).max() / 127.0
    emb = np.clip(np.round(codebook / emb_scale), -127, 127).astype(np.int8)
    arrays: dict[str, np.ndarray] = {"emb": emb, "codebook": codebook.astype(np.float32)}
    with torch.no_grad():
        q = net.codebook[torch.from_numpy(calib_codes).long()].permute(0, 3, 1, 2)
        a1 = torch.relu(net.d1(q))
        a2 = torch.relu(net.d2(a1))
    in_scale = np.array(emb_scale)
    for name, layer, act in (("d1", net.d1, a1), ("d2", net.d2, a2)):
        wq, wscale = _q_weights(_np(layer.weight))
        out_scale = max(float(np.quantile(_np(act), 0.9999)), 1e-6) / 127.0
        m, b = _requant_params(wscale * in_scale, out_scale, _np(layer.bias))
        arrays.update({f"{name}_w": wq, f"{name}_m": m, f"{name}_b": b})
        in_scale = np.array(out_scale)
    wq, wscale = _q_weights(_np(net.d3.weight))
    m, b = _requant_params(wscale * in_scale, step, _np(net.d3.bias), offset=log_sigma_min)
    arrays.update({"d3_w": wq, "d3_m": m, "d3_b": b})
    return arrays


def float_encoder(net) -> dict:
    """Encoder weights as float32 matrices in the layout codec/model.py expects."""
    return {
        "e1_w": _np(net.e1.weight).reshape(net.e1.weight.shape[0], -1).astype(np.float32),
        "e1_b": _np(net.e1.bias).astype(np.float32),
        "e2_w": _np(net.e2.weight).reshape(net.e2.weight.shape[0], -1).astype(np.float32),
        "e2_b": _np(net.e2.bias).astype(np.float32),
        "e3_w": _np(net.e3.weight).reshape(net.e3.weight.shape[0], -1).astype(np.float32),
        "e3_b": _np(net.e3.bias).astype(np.float32),
    }


def export_weights(net, residuals: list[np.ndarray], args: argparse.Namespace) -> Path:
    """Write the shipped .npz: config, encoder, integer decoder, tables, lookup."""
    import torch

    step = (LOG_SIGMA_MAX - LOG_SIGMA_MIN) / (N_SCALES - 1)
    crops, _ = sample_crops(residuals, 1024, args.crop, seed=12345)
    with torch.no_grad():
        feats = torch.log2(1 + torch.from_numpy(crops.astype(np.float32)).abs())
        _, idx = net.quantise(net.encode(feats))
    n_lat = args.crop // 8
    calib = idx.numpy().reshape(len(crops), n_lat, n_lat)
    arrays = quantise_decoder(net, calib, LOG_SIGMA_MIN, step)
    arrays.update(float_encoder(net))
    arrays["config"] = np.array(
        [args.codes, args.latent, args.hidden, N_SCALES, 0, SHIFT], dtype=np.int64
    )
    arrays["log_sigma"] = np.array([LOG_SIGMA_MIN, step], dtype=np.float64)
    arrays["freqs"] = np.ones((pixelmodel.N_PIXEL_TABLES + 1, 256), np.uint32)
    # the static VQ index table, from the codes the encoder picked on the calibration crops
    arrays["freqs"][-1] = np.bincount(calib.ravel(), minlength=256)[:256] + 1
    dirs = [Path(args.data) / d for d in (args.dirs or _default_dirs())]
    rng = np.random.default_rng(args.seed)
    per_dir = max(1, args.table_images // len(dirs))
    chosen = []
    for d in dirs:  # stratified: every folder contributes, none dominates
        paths = list_images([d])
        chosen += [paths[i] for i in sorted(rng.permutation(len(paths))[:per_dir])]
    groups = [g for g in (load_planes(p) for p in chosen) if g is not None]
    arrays = fit_tables.fit(arrays, groups)
    out = Path(args.out) if args.out else DEFAULT_WEIGHTS
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    Model(arrays)  # validates bounds once more
    print(f"model {model_id(arrays)} -> {out}")
    return out


def _default_dirs():
    return fit_tables.TABLE_DIRS
