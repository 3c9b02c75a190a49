"""`pilc train`: fit the VQ-VAE on residual images, quantise it, fit the coding tables, export.

Training runs in PyTorch (float); export turns the decoder into the integer-exact form that
codec/model.py runs, then fits the semi-dynamic tables by running that exact integer pipeline
over the training images, so the tables match what the codec will really see.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from codec.layout import CELL
from codec.model import OUT_BLOCK
from codec.train.data import (
    DEFAULT_TRAIN_DIRS,
    LOG_SIGMA_MAX,
    LOG_SIGMA_MIN,
    list_images,
    load_planes,
    residual_image,
    sample_crops,
)
from codec.train.export import export_weights


def build_net(n_codes: int, latent_dim: int, hidden: int):
    """The float VQ-VAE (torch); mirrors codec/model.py layer for layer."""
    import torch
    from torch import nn

    class VQVAE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.e1 = nn.Conv2d(3 * CELL * CELL, 32, 1)
            self.e2 = nn.Conv2d(32, 32, 3, padding=1)
            self.e3 = nn.Conv2d(32, latent_dim, 1)
            self.codebook = nn.Parameter(torch.randn(n_codes, latent_dim) * 0.5)
            self.d1 = nn.Conv2d(latent_dim, hidden, 3, padding=1)
            self.d2 = nn.Conv2d(hidden, hidden, 3, padding=1)
            self.d3 = nn.Conv2d(hidden, 3 * (CELL // OUT_BLOCK) ** 2, 1)

        def encode(self, feats):
            x = nn.functional.pixel_unshuffle(feats, CELL)
            x = torch.relu(self.e1(x))
            x = torch.relu(self.e2(x))
            return self.e3(x)

        def quantise(self, z):
            flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
            d = (flat**2).sum(1, keepdim=True) - 2 * flat @ self.codebook.T
            d = d + (self.codebook**2).sum(1)[None]
            idx = d.argmin(1)
            q = self.codebook[idx].reshape(z.shape[0], z.shape[2], z.shape[3], -1)
            return q.permute(0, 3, 1, 2), idx

        def decode(self, q):
            x = torch.relu(self.d1(q))
            x = torch.relu(self.d2(x))
            x = nn.functional.pixel_shuffle(self.d3(x), CELL // OUT_BLOCK)
            return x.repeat_interleave(OUT_BLOCK, 2).repeat_interleave(OUT_BLOCK, 3)

    return VQVAE()


def logistic_bits(res, log_sigma):
    """Code length in bits of integer residuals under a zero-mean discretised logistic."""
    import torch

    a = res.abs()
    s = torch.exp(log_sigma)
    upper = torch.sigmoid(-(a - 0.5) / s)
    lower = torch.sigmoid(-(a + 0.5) / s)
    p = torch.where(a == 0, 1 - 2 * lower, upper - lower)
    return -torch.log2(p.clamp_min(1e-9))


def train(args: argparse.Namespace) -> Path:
    """Train (resumable from the checkpoint in --work), then export the shipped weights."""
    import torch
    from tqdm import tqdm

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data_root = Path(args.data)
    dirs = [data_root / d for d in (args.dirs or DEFAULT_TRAIN_DIRS)]
    paths = list_images(dirs)
    cache = work / "residuals-v2.npz"  # v2: the VQ residuals of codec v2 (learned.vq_residuals)
    if cache.exists():
        with np.load(cache) as f:
            residuals = [f[k] for k in sorted(f.files, key=int)]
    else:
        residuals = []
        for p in tqdm(paths, desc="residuals", disable=args.quiet):
            planes = load_planes(p)
            if planes is not None and min(planes.shape[1:]) >= 16:
                residuals.append(residual_image(planes))
        np.savez(cache, **{str(i): r for i, r in enumerate(residuals)})
    net = build_net(args.codes, args.latent, args.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    ckpt = work / "checkpoint.pt"
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
    log = open(work / "train_log.jsonl", "a")
    usage = torch.zeros(args.codes)
    bar = tqdm(total=args.steps, initial=step, desc="train", disable=args.quiet)
    started = time.time()
    while step < args.steps:
        if step % 1000 == 0 or "crops" not in locals():
            crops, cmask = sample_crops(residuals, 8192, args.crop, args.seed + step)
        pick = np.random.default_rng(step).integers(0, len(crops), args.batch)
        res = torch.from_numpy(crops[pick].astype(np.float32))
        mask = torch.from_numpy(cmask[pick])[:, :, None, None].expand_as(res)
        lr = args.lr * min(1.0, 2 * (1 - step / args.steps) + 0.05)
        for g in opt.param_groups:
            g["lr"] = lr
        z = net.encode(torch.log2(1 + res.abs()))
        q, idx = net.quantise(z)
        usage += torch.bincount(idx, minlength=args.codes).float()
        q_st = z + (q - z).detach()
        log_sigma = net.decode(q_st).clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)
        bits = (logistic_bits(res, log_sigma) * mask).sum() / mask.sum()
        vq = ((q - z.detach()) ** 2).mean() + 0.25 * ((z - q.detach()) ** 2).mean()
        loss = bits + vq
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        if step % 250 == 0:
            with torch.no_grad():  # re-seed dead codes from live encoder outputs
                dead = (usage == 0).nonzero().flatten()
                if len(dead):
                    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
                    net.codebook[dead] = flat[torch.randint(0, len(flat), (len(dead),))]
                usage.zero_()
            rec = {
                "step": step,
                "bits": float(bits),
                "vq": float(vq),
                "dead": len(dead),
                "lr": lr,
                "seconds": time.time() - started,
            }
            log.write(json.dumps(rec) + "\n")
            log.flush()
            bar.set_postfix(bits=f"{float(bits):.3f}", dead=len(dead))
        if step % args.checkpoint_every == 0 or step == args.steps:
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "step": step}, ckpt)
    bar.close()
    return export_weights(net, residuals, args)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `pilc train` (shared by the CLI and `python -m codec.train.trainer`)."""
    p.add_argument("--data", default="../shared/data", help="root of the image folders")
    p.add_argument("--dirs", nargs="*", help="folders under --data (default: the train sets)")
    p.add_argument("--work", default=".train", help="checkpoints, logs and caches (resumable)")
    p.add_argument("--out", default=None, help="weights file (default: the shipped one)")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--codes", type=int, default=256)
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--table-images", type=int, default=400, help="images used to fit tables")
    p.add_argument("--quiet", action="store_true")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="pilc train", description=__doc__)
    add_arguments(p)
    print(train(p.parse_args(argv)))


if __name__ == "__main__":
    main()
