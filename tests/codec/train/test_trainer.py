"""`pilc train` end to end on a tiny generated set: train, resume, export, code with the result."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import codec
from codec import api
from codec.model import load_model_file
from codec.train import trainer
from codec.train.data import list_images

pytest.importorskip("torch")


def _images(folder, n: int = 4) -> None:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:96, 0:112]
    for i in range(n):
        base = (yy * (i + 1) + xx * 2) % 256
        rgb = np.stack([base, (base + 40 * i) % 256, (255 - base)], -1)
        noisy = np.clip(rgb + rng.integers(-6, 7, rgb.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"img{i}.png")
    Image.fromarray(noisy[:, :, 0]).save(folder / "gray.png")


def test_train_resume_export_and_code(tmp_path, monkeypatch):
    data = tmp_path / "data" / "set"
    data.mkdir(parents=True)
    _images(data)
    work, out = tmp_path / "work", tmp_path / "weights" / "tiny.npz"
    common = ["--data", str(tmp_path / "data"), "--dirs", "set", "--work", str(work)]
    common += ["--out", str(out), "--batch", "4", "--crop", "32", "--table-images", "5"]
    common += ["--checkpoint-every", "2", "--quiet", "--threads", "1"]
    trainer.main(common + ["--steps", "2"])
    assert (work / "checkpoint.pt").exists() and out.exists()
    trainer.main(common + ["--steps", "4"])  # resumes at step 2, not from scratch
    import torch

    assert torch.load(work / "checkpoint.pt")["step"] == 4
    model = load_model_file(out)
    img = np.asarray(Image.open(data / "img1.png"))
    blob = codec.encode(img, fallback="never", model=model)
    assert json.loads(json.dumps(codec.info(blob)))["model_id"] == model.model_id
    monkeypatch.setenv("PILC_WEIGHTS_DIR", str(out.parent))
    api.model_for.cache_clear()
    try:
        assert np.array_equal(codec.decode(blob), img)
    finally:
        api.model_for.cache_clear()


def test_train_refuses_eval_only_sets(tmp_path):
    folder = tmp_path / "mcmaster18"
    folder.mkdir()
    with pytest.raises(SystemExit, match="EVAL ONLY"):
        list_images([folder])
