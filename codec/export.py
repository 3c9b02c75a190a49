"""Turn a trained float VQ-VAE into shipped integer weights and fitted coding tables.

Decoder quantisation: int8 embeddings (per-tensor scale), int8 weights (per-output-channel
scale), int8 activations (scale calibrated on training latents), requantisation multipliers with
a 24-bit shift. Tables: one per decoder scale index, fitted on the symbols the integer pipeline
assigns to it (plus a small discretised-logistic prior so no symbol is starved), and the
cross-plane lookup choosing, per (plane, scale, bucket of earlier |residual|), the best table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from codec import context, rans
from codec.model import DEFAULT_WEIGHTS, N_CH, Model, model_id

SHIFT = 24
N_SCALES = 64
PRIOR_WEIGHT = 24.0
SAMPLES_PER_IMAGE = 1 << 18  # big images (screenshots) must not outvote the rest


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


def logistic_table(log_sigma: float) -> np.ndarray:
    """Discretised zero-mean logistic over the 256 residual symbols (mod-256 order)."""
    r = np.arange(256)
    r = np.where(r < 128, r, r - 256).astype(np.float64)
    s = np.exp(log_sigma)
    cdf = lambda v: 1.0 / (1.0 + np.exp(-v / s))  # noqa: E731
    return np.maximum(cdf(r + 0.5) - cdf(r - 0.5), 1e-12)


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


def collect_statistics(model: Model, groups: list[np.ndarray]):
    """Symbol histograms per context (plane kind, scale, activity, cross) and code counts."""
    from codec import context
    from codec.layout import tile_boxes
    from codec.learned import analyse

    s_n = model.config.n_scales
    n_ctx = N_CH * s_n * context.N_ACTIVITY * context.N_CROSS
    hist = np.zeros(n_ctx * 256, dtype=np.float64)
    codes = np.zeros(256)
    for start in range(0, len(groups), 16):
        for g in analyse(model, groups[start : start + 16]):
            boxes = tile_boxes(g.shape[1], g.shape[2])
            for idx in g.indices:
                codes += np.bincount(idx.ravel(), minlength=256)
            for c in range(g.shape[0]):
                act = context.activity(g.symbols[c], boxes).astype(np.int64)
                cross = context.cross_context(g.symbols, c).astype(np.int64)
                key = ((c * s_n + g.scales[c]) * context.N_ACTIVITY + act) * context.N_CROSS
                key = (key + cross) * 256 + g.symbols[c]
                weight = np.full(key.size, min(1.0, SAMPLES_PER_IMAGE / key.size))
                hist += np.bincount(key.ravel(), weights=weight, minlength=hist.size)
    shape = (N_CH, s_n, context.N_ACTIVITY, context.N_CROSS, 256)
    return hist.reshape(shape).astype(np.float64), codes


def fit_tables(hist: np.ndarray, log_sigmas: np.ndarray, iterations: int = 5):
    """Alternate: tables from the samples mapped to them, then each context's cheapest table.

    Starts from the table a pure logistic of the context's empirical spread would pick; empty
    contexts keep the decoder's scale as their table.
    """
    s_n = len(log_sigmas)
    flat = hist.reshape(-1, 256)
    n_ctx = flat.shape[0]
    prior = np.stack([logistic_table(ls) for ls in log_sigmas])
    prior /= prior.sum(1, keepdims=True)
    scale_of_ctx = np.broadcast_to(np.arange(s_n)[None, :, None, None], hist.shape[:4]).reshape(-1)
    cost = -np.log2(prior)
    lut = np.argmin(flat @ cost.T, axis=1)
    empty = flat.sum(1) == 0
    lut[empty] = scale_of_ctx[empty]
    for _ in range(iterations):
        counts = np.zeros((s_n, 256))
        np.add.at(counts, lut, flat)
        freqs = rans.normalize_freqs(counts + PRIOR_WEIGHT * prior)
        cost = -np.log2(freqs / float(1 << rans.PREC))
        lut = np.argmin(flat @ cost.T, axis=1)
        lut[empty] = scale_of_ctx[empty]
        bits = float((flat * cost[lut]).sum() / max(flat.sum(), 1))
        print(f"table fit: {bits:.4f} bits/sample over {int(flat.sum())} samples, {n_ctx} contexts")
    return freqs, lut.reshape(hist.shape[:4]).astype(np.uint8)


def export_weights(net, residuals: list[np.ndarray], args: argparse.Namespace) -> Path:
    """Write the shipped .npz: config, encoder, integer decoder, tables, lookup."""
    import torch

    from codec.train import LOG_SIGMA_MAX, LOG_SIGMA_MIN, list_images, load_planes, sample_crops

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
        [args.codes, args.latent, args.hidden, N_SCALES, context.N_CROSS, SHIFT], dtype=np.int64
    )
    arrays["log_sigma"] = np.array([LOG_SIGMA_MIN, step], dtype=np.float64)
    log_sigmas = LOG_SIGMA_MIN + step * np.arange(N_SCALES)
    init = np.stack([logistic_table(ls) for ls in log_sigmas] + [np.ones(256)])
    arrays["freqs"] = rans.normalize_freqs(init)
    arrays["lut"] = np.broadcast_to(
        np.arange(N_SCALES, dtype=np.uint8)[None, :, None, None],
        (N_CH, N_SCALES, context.N_ACTIVITY, context.N_CROSS),
    ).copy()
    model = Model(arrays)
    dirs = [Path(args.data) / d for d in (args.dirs or _default_dirs())]
    rng = np.random.default_rng(args.seed)
    per_dir = max(1, args.table_images // len(dirs))
    chosen = []
    for d in dirs:  # stratified: every folder contributes, none dominates
        paths = list_images([d])
        chosen += [paths[i] for i in sorted(rng.permutation(len(paths))[:per_dir])]
    groups = [g for g in (load_planes(p) for p in chosen) if g is not None]
    hist, codes = collect_statistics(model, groups)
    freqs, lut = fit_tables(hist, log_sigmas)
    arrays["freqs"] = np.concatenate([freqs, rans.normalize_freqs(codes + 0.5)])
    arrays["lut"] = lut
    out = Path(args.out) if args.out else DEFAULT_WEIGHTS
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    Model(arrays)  # validates bounds once more
    print(f"model {model_id(arrays)} -> {out}")
    return out


def _default_dirs():
    from codec.train import DEFAULT_TRAIN_DIRS

    return DEFAULT_TRAIN_DIRS
