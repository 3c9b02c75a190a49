"""Generated sample images so the demo job runs on a fresh clone with no data.

Smooth photo-like fields with texture and noise, a gray image, an RGBA image with a soft alpha
mask, and a flat graphic (where the classical fallback should win), in several sizes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from codec.imagefile import RasterImage


def _photo_like(rng: np.random.Generator, h: int, w: int, channels: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((h, w, channels), dtype=np.float32)
    for c in range(channels):
        for _ in range(4):
            fy, fx = rng.uniform(0.002, 0.03, 2)
            phase = rng.uniform(0, 6.28)
            out[..., c] += rng.uniform(20, 50) * np.sin(fy * y + fx * x + phase)
        out[..., c] += 128 + rng.normal(0, rng.uniform(1, 6), (h, w))
    return np.clip(out, 0, 255).astype(np.uint8)


def sample_images(count: int = 12, seed: int = 0) -> list[tuple[str, RasterImage]]:
    """`count` named sample images of mixed modes and sizes."""
    rng = np.random.default_rng(seed)
    sizes = [(480, 640), (256, 256), (100, 333), (64, 64), (32, 32), (700, 500)]
    out = []
    for i in range(count):
        h, w = sizes[i % len(sizes)]
        kind = i % 4
        if kind == 0:
            img = RasterImage(_photo_like(rng, h, w, 3), "RGB")
        elif kind == 1:
            img = RasterImage(_photo_like(rng, h, w, 1)[..., 0], "L")
        elif kind == 2:
            px = _photo_like(rng, h, w, 4)
            px[..., 3] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
            img = RasterImage(px, "RGBA")
        else:
            px = np.full((h, w, 3), 240, dtype=np.uint8)
            px[h // 4 : h // 2, w // 5 : w // 2] = (30, 90, 200)
            img = RasterImage(px, "RGB")
        out.append((f"sample_{i:02d}_{img.mode}_{w}x{h}", img))
    return out


def write_samples(out: str, count: int = 24) -> list[Path]:
    """Sample images as PNG files in sub-folders, plus one JPEG (stored as-is by the job)."""
    import io

    from PIL import Image

    import codec

    root = Path(out)
    paths = []
    for name, img in sample_images(count):
        sub = root / ("graphics" if img.pixels.std() < 30 else "photos")
        sub.mkdir(parents=True, exist_ok=True)
        p = sub / f"{name}.png"
        p.write_bytes(codec.to_png_bytes(img))
        paths.append(p)
    rgb = next((img for _, img in sample_images(1)), None)
    if rgb is not None:
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(rgb.pixels)).save(buf, "JPEG", quality=90)
        p = root / "photos" / "camera_0001.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(buf.getvalue())
        paths.append(p)
    return paths
