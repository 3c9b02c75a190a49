"""Device batching of the pixel stage: the tiles of many plane groups of mixed sizes in one launch.

Why here and not in the backends: this is the part of the GPU path that decides what the device
sees (tile records, stream numbering, state layout, compaction), and it must be the same code
whether the kernels run on a GPU (codec/gpu/cuda.py) or as host loops (codec/gpu/emulated.py),
so that the tests, which run the emulation, test what the GPU runs.

A launch covers whole bands of tiles (layout.tile_bands: whole tile rows, or runs of tiles in a
row, at most `band_pixels` each) of any number of groups, up to `max_tiles` tiles (one thread
each) and `max_pixels` pixels. Per launch: pixels (and scale maps) host -> device once, one
kernel (encode: model pass and rANS per tile; decode: fused), one compaction (encode), results
device -> host once. Tiles are given to threads in order of decreasing size, so a warp's
threads walk equal tiles in step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from codec import pixelmodel, rans
from codec.errors import CodecError
from codec.gpu.backend import Backend, Layout
from codec.layout import CHUNK_PIXELS, tile_bands

TR_N = 12  # fields of a tile record (pilc_cuda.cu, TR_*)
N_TAPS = pixelmodel.N_TAPS_MAX


@dataclass
class Unit:
    """A band of group g: tiles [a, b) inside the rectangle (y0, x0)-(y1, x1)."""

    g: int
    a: int
    b: int
    y0: int
    x0: int
    y1: int
    x1: int
    n_ch: int

    @property
    def pixels(self) -> int:
        return self.n_ch * (self.y1 - self.y0) * (self.x1 - self.x0)


def units_of(boxes_all: list[np.ndarray], n_chs: list[int], band_pixels: int) -> list[Unit]:
    """Every group's tiles as bands of at most band_pixels pixels (or one tile), in order."""
    out = []
    for g, boxes in enumerate(boxes_all):
        for a, b in tile_bands(boxes, band_pixels):
            rows = boxes[a:b]
            y0, x0 = int(rows[:, 0].min()), int(rows[:, 1].min())
            y1 = int((rows[:, 0] + rows[:, 2]).max())
            x1 = int((rows[:, 1] + rows[:, 3]).max())
            out.append(Unit(g, a, b, y0, x0, y1, x1, n_chs[g]))
    return out


def launches(units: list[Unit], max_tiles: int, max_pixels: int) -> list[list[Unit]]:
    """Consecutive units packed into launches of at most max_tiles tiles and max_pixels pixels
    (a unit over either limit goes alone)."""
    out: list[list[Unit]] = []
    tiles = pixels = 0
    for u in units:
        n = u.b - u.a
        if out and out[-1] and tiles + n <= max_tiles and pixels + u.pixels <= max_pixels:
            out[-1].append(u)
            tiles += n
            pixels += u.pixels
        else:
            out.append([u])
            tiles, pixels = n, u.pixels
    return out


def layout(
    units: list[Unit], boxes_all: list[np.ndarray], vq_on: list[bool], level: int = 0
) -> Layout:
    """Tile records of a launch (all at one effort level): streams numbered unit by unit, tile
    by tile, plane by plane; threads take tiles largest first."""
    recs, sizes, px_offsets = [], [], []
    px = stream = 0
    for u in units:
        bh, bw = u.y1 - u.y0, u.x1 - u.x0
        px_offsets.append(px)
        for y0, x0, h, w in boxes_all[u.g][u.a : u.b]:
            recs.append(
                [
                    px,
                    px if vq_on[u.g] else -1,
                    bh * bw,
                    bw,
                    y0 - u.y0,
                    x0 - u.x0,
                    h,
                    w,
                    u.n_ch,
                    stream,
                    stream * N_TAPS,
                    level,
                ]  # fmt: skip
            )
            sizes.extend([h * w] * u.n_ch)
            stream += u.n_ch
        px += u.n_ch * bh * bw
    records = np.array(recs, dtype=np.int64).reshape(-1, TR_N)
    area = records[:, 6] * records[:, 7]  # largest first, equal shapes side by side
    order = np.lexsort((np.arange(len(records)), -records[:, 7], -records[:, 6], -area))
    bounds = np.zeros(stream + 1, dtype=np.int64)
    np.cumsum(sizes, out=bounds[1:])
    return Layout(
        records=np.ascontiguousarray(records[order]),
        sym_bounds=bounds,
        px_offsets=px_offsets,
        px_bytes=px,
        n_streams=stream,
        max_h=int(records[:, 6].max()),
        max_w=int(records[:, 7].max()),
        max_ch=max(u.n_ch for u in units),
    )


def _band_buffer(
    units: list[Unit], lay: Layout, source: Callable[[Unit], np.ndarray]
) -> np.ndarray:
    """One host buffer of every unit's band planes, at lay.px_offsets."""
    buf = np.empty(lay.px_bytes, dtype=np.uint8)
    for u, off in zip(units, lay.px_offsets, strict=True):
        band = source(u)
        buf[off : off + band.size] = band.reshape(-1)
    return buf


def _crop(planes: np.ndarray, u: Unit) -> np.ndarray:
    return np.ascontiguousarray(planes[:, u.y0 : u.y1, u.x0 : u.x1])


def _vq_buffer(
    units: list[Unit], lay: Layout, scales: list[np.ndarray | None]
) -> np.ndarray | None:
    """The scale maps of a launch's bands at the pixels' offsets (zeros for bands of groups
    without the VQ stage, whose records point nowhere), or None if no band has one."""
    if all(scales[u.g] is None for u in units):
        return None
    return _band_buffer(
        units,
        lay,
        lambda u: np.zeros(u.pixels, np.uint8) if scales[u.g] is None else _crop(scales[u.g], u),
    )


def encode_pixel_stage(
    backend: Backend,
    groups: list[np.ndarray],
    boxes_all: list[np.ndarray],
    scales: list[np.ndarray | None],
    prior: np.ndarray,
    tables: rans.RansTables,
    band_pixels: int = CHUNK_PIXELS,
    level: int = 0,
) -> list[tuple[np.ndarray, np.ndarray, list[bytes]]]:
    """Stage 1 of every group on the device at one effort level: per group (LS coefficients
    (n_tiles, C, N_TAPS), word counts, stream byte pieces), the same as learned's CPU pixel
    stage gives."""
    n_chs = [g.shape[0] for g in groups]
    vq_on = [s is not None for s in scales]
    coefs = [[np.zeros((0, c, N_TAPS), np.int64)] for c in n_chs]
    words: list[list[np.ndarray]] = [[np.zeros(0, np.int64)] for _ in groups]
    parts: list[list[bytes]] = [[] for _ in groups]
    units = units_of(boxes_all, n_chs, band_pixels)
    for launch in launches(units, backend.max_tiles, backend.max_pixels):
        lay = layout(launch, boxes_all, vq_on, level)
        px = _band_buffer(launch, lay, lambda u: _crop(groups[u.g], u))
        vq = _vq_buffer(launch, lay, scales)
        data, ob, cf = backend.encode(lay, px, vq, prior, tables)
        stream = 0
        for u in launch:
            n = (u.b - u.a) * u.n_ch
            b = ob[stream : stream + n + 1]
            words[u.g].append((np.diff(b) - 4) // 2)
            parts[u.g].append(data[b[0] : b[-1]].tobytes())
            coefs[u.g].append(cf[stream : stream + n].reshape(u.b - u.a, u.n_ch, N_TAPS))
            stream += n
    return [
        (np.concatenate(coefs[g]), np.concatenate(words[g]), parts[g]) for g in range(len(groups))
    ]


def decode_pixel_stage(
    backend: Backend,
    parsed: list,
    scales: list[np.ndarray | None],
    prior: np.ndarray,
    tables: rans.RansTables,
    write: Callable[[int, int, int, np.ndarray], None],
    band_pixels: int = CHUNK_PIXELS,
    level: int = 0,
) -> None:
    """Stage 1 of every parsed group (learned._Parsed) on the device; write(g, y0, x0, planes)
    gets each band's planes, as learned.decode_groups_into gives them."""
    if tables.n_tables < pixelmodel.N_PIXEL_TABLES:
        raise CodecError("model has too few coding tables for the pixel model")
    boxes_all = [p.boxes for p in parsed]
    n_chs = [p.shape[0] for p in parsed]
    vq_on = [s is not None for s in scales]
    for s in scales:
        if s is not None:
            pixelmodel.vq_map(s, s.shape)  # the sub-bucket range check the CPU decoder makes
    units = units_of(boxes_all, n_chs, band_pixels)
    for launch in launches(units, backend.max_tiles, backend.max_pixels):
        lay = layout(launch, boxes_all, vq_on, level)
        datas, bbs, coefs, first = [], [np.zeros(1, np.int64)], [], []
        off = 0
        for u in launch:
            p = parsed[u.g]
            bb = p.pixel_bytes[u.a * u.n_ch : u.b * u.n_ch + 1]
            datas.append(p.data[bb[0] : bb[-1]])
            bbs.append(bb[1:] - bb[0] + off)
            off += int(bb[-1] - bb[0])
            coefs.append(p.coefs[u.a : u.b].reshape(-1, N_TAPS))
            first.append(u.a * u.n_ch)
        vq = _vq_buffer(launch, lay, scales)
        px, err = backend.decode(
            lay, vq, np.concatenate(datas), np.concatenate(bbs),
            np.ascontiguousarray(np.concatenate(coefs), dtype=np.int64), prior, tables,
        )  # fmt: skip
        stream = 0
        for u, off0, f in zip(launch, lay.px_offsets, first, strict=True):
            n = (u.b - u.a) * u.n_ch
            bad = np.flatnonzero(err[stream : stream + n])
            if bad.size:
                s = int(bad[0])
                code = int(err[stream + s])
                raise CodecError(f"residual stream {f + s}: corrupt (code {code})")
            stream += n
            shape = (u.n_ch, u.y1 - u.y0, u.x1 - u.x0)
            write(u.g, u.y0, u.x0, px[off0 : off0 + u.pixels].reshape(shape))
