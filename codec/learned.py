"""The learned path over a batch of plane groups: VQ-VAE side information + per-pixel model + rANS.

A plane group is a (C,H,W) uint8 array, C = 1 (gray, or an alpha plane) or 3 (G, R, B). All tiles
of all groups in a batch go through the network together (grouped by latent shape) and all
streams of a stage through one coder call, so a batch fills the machine the same way whatever mix
of image sizes it holds.

Coding stages:
  0. VQ indices, one stream per tile, static table (the model's last table); only in groups whose
     flags say so. The encoder leaves it out unless asked (`vq=True`): with the per-pixel model
     of format v3 the index stream costs 2-10x what the scales save (docs/experiments.md entry
     9). Without it the pixel model splits its buckets by a local gradient class instead.
  1. pixels: one stream per (tile, plane), tile-major; decoded by codec.pixelmodel with the
     prediction and table choice fused into the rANS loop.

Group payload: flags (varint, bit 0: VQ stage present, bit 1: 256-pixel tiles instead of 128,
format v5), LS coefficients (zigzag varints, n_taps(c) per tile plane), stream word counts
(varints: stage 0 then stage 1), stream bytes in the same order.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from codec import pixelmodel, rans, timing, varints
from codec.errors import CodecError
from codec.layout import (
    CELL,
    CHUNK_PIXELS,
    DEFAULT_TILE,
    TILE,
    TILE_SIZES,
    cell_shape,
    tile_bands,
    tile_boxes,
    tile_chunks,
    tile_grid,
)
from codec.model import Model, residual_features

if TYPE_CHECKING:
    from codec.gpu.backend import Backend

FLAG_VQ = 1
FLAG_TILE256 = 2


def _tiles_by_shape(groups_boxes, vq_on) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """(group, tile) keys of every tile of the VQ groups, grouped by latent shape: one network
    pass per shape."""
    by_shape: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for g, boxes in enumerate(groups_boxes):
        if not vq_on[g]:
            continue
        for t, (_, _, h, w) in enumerate(boxes):
            by_shape[cell_shape(int(h), int(w))].append((g, t))
    return by_shape


def _scale_maps(
    model: Model, groups_boxes, shapes, vq_on, indices: dict
) -> list[np.ndarray | None]:
    """Run the integer decoder over every tile of the VQ groups (batched by latent shape):
    (C,H,W) scale maps, None for groups without the VQ stage."""
    maps = [
        np.zeros(s, dtype=np.uint8) if on else None for s, on in zip(shapes, vq_on, strict=True)
    ]
    for keys in _tiles_by_shape(groups_boxes, vq_on).values():
        idx = np.stack([indices[key] for key in keys])
        scales = model.decode_scales(idx)
        for k, (g, t) in enumerate(keys):
            y0, x0, h, w = groups_boxes[g][t]
            n_ch = shapes[g][0]
            maps[g][:, y0 : y0 + h, x0 : x0 + w] = scales[k, :n_ch, :h, :w]
    return maps


def _shifted(a: np.ndarray, axis: int) -> np.ndarray:
    """a moved one step along `axis` (towards higher indices), first slice repeated."""
    out = np.empty_like(a)
    src = [slice(None)] * a.ndim
    dst = [slice(None)] * a.ndim
    src[axis], dst[axis] = slice(None, -1), slice(1, None)
    out[tuple(dst)] = a[tuple(src)]
    first = [slice(None)] * a.ndim
    first[axis] = slice(0, 1)
    out[tuple(first)] = a[tuple(first)]
    return out


def vq_residuals(planes: np.ndarray) -> np.ndarray:
    """What the VQ encoder looks at: gradient residuals, later planes with the first plane's
    residual removed (roughly what the cross-plane predictors leave), clipped to int8.

    Only the encoder (and training) sees these, so they need not be exact or tile-local: the
    decoder gets the chosen indices."""
    p = planes.astype(np.int16)
    n = _shifted(p, 1)  # edge-replicated neighbours, as np.pad(mode="edge") would give
    w = _shifted(p, 2)
    nw = _shifted(n, 2)
    r = p - np.clip(n + w - nw, 0, 255)
    if r.shape[0] == 3:
        r[1:] -= r[0]
    return np.clip(r, -127, 127).astype(np.int8)


def vq_features(planes: np.ndarray) -> np.ndarray:
    """Encoder input: log2(1 + |vq_residuals|), float32."""
    return residual_features(vq_residuals(planes))


def _vq_indices(model: Model, groups: list[np.ndarray], boxes_all, vq_on) -> dict:
    """Encoder side: code indices of every tile of the VQ groups, (g, t) -> (lh, lw) uint8."""
    feats_of = [vq_features(g) if on else None for g, on in zip(groups, vq_on, strict=True)]
    indices: dict[tuple[int, int], np.ndarray] = {}
    for (lh, lw), keys in _tiles_by_shape(boxes_all, vq_on).items():
        feats = np.zeros((len(keys), 3, lh * CELL, lw * CELL), dtype=np.float32)
        for k, (g, t) in enumerate(keys):
            y0, x0, h, w = boxes_all[g][t]
            f = feats_of[g][:, y0 : y0 + h, x0 : x0 + w]
            feats[k, : f.shape[0], :h, :w] = f
        codes = model.encode_latents(feats)
        for k, key in enumerate(keys):
            indices[key] = codes[k]
    return indices


def _index_bounds(boxes: np.ndarray, vq_on: bool) -> np.ndarray:
    """Stream bounds of the VQ index stage: one stream per tile of lh*lw indices, or none."""
    if not vq_on:
        return np.zeros(1, dtype=np.int64)
    sizes = [int(np.prod(cell_shape(int(h), int(w)))) for _, _, h, w in boxes]
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def _zigzag(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.int64)
    return ((v << 1) ^ (v >> 63)).astype(np.uint64)


def _unzigzag(u: np.ndarray) -> np.ndarray:
    u = u.astype(np.int64)
    return (u >> 1) ^ -(u & 1)


@functools.lru_cache(maxsize=256)
def _coef_mask(n_tiles: int, n_ch: int, level: int = pixelmodel.LEVEL_DEFAULT) -> np.ndarray:
    """Which of the (n_tiles, C, N_TAPS_MAX) coefficients are sent (read-only: cached, since
    most batches repeat a few layouts)."""
    mask = np.zeros((n_tiles, n_ch, pixelmodel.N_TAPS_MAX), dtype=bool)
    for c in range(n_ch):
        mask[:, c, : pixelmodel.n_taps(c, level)] = True
    mask.flags.writeable = False
    return mask


def check_tile(tile: int | None) -> None:
    """The group flags can only say 128 or 256 (None: the encoder picks per group, group_tile):
    refuse anything else before any work."""
    whole = isinstance(tile, (int, np.integer)) and not isinstance(tile, bool)
    if tile is not None and (not whole or tile not in TILE_SIZES):
        raise CodecError(f"tile side must be one of {TILE_SIZES}, not {tile!r}")


# The fast levels cut a plane group in 128-pixel tiles where 256 would give fewer than this
# many tiles. Their CPU kernels code 8 or 16 tiles at once (pilc_fast_lanes.h), and a batch
# costs its largest tile's shape in every lane, so a few 256-pixel tiles leave lanes idle:
# in a last, part-filled batch, or beside a short bottom-row tile.
FAST_TILE128_UNDER = 32


def group_tile(height: int, width: int, level: int, tile: int | None = None) -> int:
    """The tile side of one plane group: `tile` where given, else 256 (a tile's cold start and
    edges cost bytes), except at the fast levels where 256 would give under 32 tiles: 128 there
    (4x the tiles, so the vector lanes fill). Under 16 tiles of 256: on the lab's gray scans
    +0.2% bytes for 1.3x the speed, on 1024x768 photos 0.3% fewer bytes and 1.2-1.4x the speed
    (docs/experiments.md entry 27); 16 to 31 tiles (40 lab images of 0.8-2 MP): level 5 0.1%
    fewer bytes, pixel stage 1.08x encode and 1.15x decode; level 1 +0.2%, 1.06x and 1.13x
    (entry 40). No lab image has more tiles, so larger ones keep 256. A fixed rule, not the
    CPU's: every machine writes the same bytes."""
    if tile is not None:
        return int(tile)
    if level not in pixelmodel.FAST_LEVELS:
        return DEFAULT_TILE
    ty, tx = tile_grid(height, width, DEFAULT_TILE)
    return DEFAULT_TILE if ty * tx >= FAST_TILE128_UNDER else TILE


def _side_information(model: Model, groups: list[np.ndarray], vq: bool, tiles: list[int]):
    """Tile boxes of every group (group g cut in tiles[g]), VQ indices per tile (if vq) and the
    scale maps they give."""
    boxes_all = [tile_boxes(p.shape[1], p.shape[2], t) for p, t in zip(groups, tiles, strict=True)]
    vq_on = [vq] * len(groups)
    with timing.stage("model"):
        indices = _vq_indices(model, groups, boxes_all, vq_on)
        scales = _scale_maps(model, boxes_all, [p.shape for p in groups], vq_on, indices)
    return boxes_all, indices, scales


def _group_tiles(groups: list[np.ndarray], level: int, tile: int | None) -> list[int]:
    check_tile(tile)
    return [group_tile(p.shape[1], p.shape[2], level, tile) for p in groups]


def analyse(
    model: Model,
    groups: list[np.ndarray],
    vq: bool = False,
    tile: int | None = None,
    level: int = pixelmodel.LEVEL_DEFAULT,
):
    """Encode-side modelling of a batch in one pass (table fitting): VQ indices per tile (if
    vq), then each group's PlaneCode at the effort level (tile: group_tile)."""
    tiles = _group_tiles(groups, level, tile)
    boxes_all, indices, scales = _side_information(model, groups, vq, tiles)
    prior = model.pixel_tables(level).prior
    with timing.stage("predictor"):
        encoded = [
            pixelmodel.encode_planes(planes, boxes_all[g], scales[g], prior, level, buckets=True)
            for g, planes in enumerate(groups)
        ]
    return boxes_all, indices, encoded


def _split_streams(data: np.ndarray, byte_bounds: np.ndarray, counts) -> list:
    """(word counts, bytes) of consecutive runs of `counts` streams out of one coder call's
    output: what a group payload sends per stage (_parse reads lengths back as 4 + 2 words)."""
    out, first = [], 0
    for n in counts:
        b = byte_bounds[first : first + n + 1]
        out.append(((np.diff(b) - 4) // 2, data[b[0] : b[-1]].tobytes()))
        first += n
    return out


def _encode_index_streams(model: Model, boxes_all, indices: dict, vq: bool):
    """Stage 0 (VQ indices) of every group in one coder call: per group (word counts, bytes).
    Without the VQ stage there is nothing to code: no coder call (a small image's encode is
    mostly per-call costs)."""
    if not vq:
        return [(np.zeros(0, dtype=np.int64), b"") for _ in boxes_all]
    syms, bnds, off = [], [np.zeros(1, dtype=np.int64)], 0
    for g, boxes in enumerate(boxes_all):
        ib = _index_bounds(boxes, vq)
        syms.extend(indices[(g, t)].ravel() for t in range(len(boxes)) if vq)
        bnds.append(ib[1:] + off)
        off += int(ib[-1])
    sym = np.concatenate(syms).astype(np.uint8) if syms else np.zeros(0, np.uint8)
    data, bb = rans.encode_streams(
        sym, np.full(sym.shape, model.index_table, np.uint8), np.concatenate(bnds), model.tables
    )
    return _split_streams(data, bb, [len(boxes) if vq else 0 for boxes in boxes_all])


# Whole groups of at most this many pixels without the VQ stage are coded side by side on shared
# canvases (_plan_packs): a small image is one tile, which alone runs the scalar loop on one
# thread, and a mid-size one ends in a part-filled batch of vector lanes; packed, their tiles
# fill the lanes and the threads (tiles read only inside their box, so each group's bytes are
# its own; docs/experiments.md entries 38 and 42).
PACK_PIXELS = 1 << 20


def _packable(shape: tuple[int, ...], scale: np.ndarray | None) -> bool:
    """Whether a whole group of this shape may share a canvas (not with the VQ stage, nor too
    large)."""
    _, h, w = shape
    return scale is None and 0 < h * w <= PACK_PIXELS


def _plan_packs(shapes: list[tuple[int, ...]], packable: list[bool], limit: int) -> list[list[int]]:
    """Canvases of 2 or more packable groups (indices into shapes): groups of one plane count,
    tallest first, side by side on a canvas as tall as its tallest group and of at most `limit`
    pixels, padding included. The encoder plans a chunk with it, the decoder a batch: the bytes
    do not depend on the packing, so the two need not agree."""
    by_planes: dict[int, list[int]] = defaultdict(list)
    for i, (shape, ok) in enumerate(zip(shapes, packable, strict=True)):
        if ok:
            by_planes[shape[0]].append(i)
    packs: list[list[int]] = []
    for members in by_planes.values():
        members.sort(key=lambda i: -shapes[i][1])  # stable: equal heights keep their order
        pack: list[int] = []
        height = width = 0
        for i in members:
            h, w = shapes[i][1:]
            if pack and height * (width + w) > limit:
                packs.append(pack)
                pack = []
            if not pack:
                height, width = h, 0
            pack.append(i)
            width += w
        packs.append(pack)
    return [p for p in packs if len(p) > 1]


def _canvas_boxes(
    boxes: list[np.ndarray], widths: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Each group's x offset on a canvas of the groups side by side, and all their tile boxes
    moved there (in group order)."""
    x0 = np.cumsum([0] + widths[:-1])
    moved = [b + np.array([0, x, 0, 0]) for b, x in zip(boxes, x0, strict=True)]
    return x0, np.concatenate(moved)


def _canvas(planes: list[np.ndarray], boxes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The groups side by side, top-aligned on a canvas as tall as the tallest (the padding is
    never read), and their tile boxes moved there."""
    x0, moved = _canvas_boxes(boxes, [p.shape[2] for p in planes])
    n_ch, height = planes[0].shape[0], max(p.shape[1] for p in planes)
    canvas = np.zeros((n_ch, height, sum(p.shape[2] for p in planes)), dtype=np.uint8)
    for p, x in zip(planes, x0, strict=True):
        canvas[:, : p.shape[1], x : x + p.shape[2]] = p
    return canvas, moved


def _shape_order(boxes: np.ndarray) -> np.ndarray | None:
    """A canvas's tiles tallest, then widest, first (stable), or None where they already are
    (nothing to move): the kernels batch consecutive tiles into vector lanes and a batch costs
    its largest tile in every lane, so like shapes together leave fewer lanes idle than each
    group's raster order (entry 42)."""
    order = np.lexsort((-boxes[:, 3], -boxes[:, 2]))
    return None if np.array_equal(order, np.arange(len(order))) else order


def _gather_streams(
    bounds: np.ndarray, tiles: np.ndarray, n_ch: int, *arrays: np.ndarray
) -> tuple[np.ndarray, ...]:
    """The streams of `tiles` (all planes of each, in this order) cut out of `arrays` (laid out
    by `bounds`, tile-major) and joined, then their bounds."""
    streams = (tiles[:, None] * n_ch + np.arange(n_ch)).ravel()
    starts, ends = bounds[streams], bounds[streams + 1]
    cuts = list(zip(starts.tolist(), ends.tolist(), strict=True))
    out = tuple(np.concatenate([a[i:j] for i, j in cuts]) for a in arrays)
    new_bounds = np.zeros(len(streams) + 1, dtype=np.int64)
    np.cumsum(ends - starts, out=new_bounds[1:])
    return (*out, new_bounds)


def _encode_packed(planes: list[np.ndarray], boxes: list[np.ndarray], prior, level: int) -> list:
    """encode_planes of several groups on one canvas, their tiles in _shape_order: each group's
    PlaneCode, as if coded alone."""
    canvas, moved = _canvas(planes, boxes)
    n_ch, order = canvas.shape[0], _shape_order(moved)
    if order is None:
        code = pixelmodel.encode_planes(canvas, moved, None, prior, level)
        sym, tid, bounds, coefs = code.symbols, code.table_ids, code.bounds, code.coefs
    else:
        code = pixelmodel.encode_planes(canvas, moved[order], None, prior, level)
        back = np.argsort(order)  # each tile's place in the kernel's order
        sym, tid, bounds = _gather_streams(code.bounds, back, n_ch, code.symbols, code.table_ids)
        coefs = code.coefs[back]
    codes, t0 = [], 0
    for b in boxes:
        t1 = t0 + len(b)
        s0, s1 = int(bounds[t0 * n_ch]), int(bounds[t1 * n_ch])
        codes.append(pixelmodel.PlaneCode(sym[s0:s1], tid[s0:s1], None,
                                          bounds[t0 * n_ch : t1 * n_ch + 1] - s0, coefs[t0:t1]))
        t0 = t1
    return codes


def _encode_chunk(groups, boxes_all, scales, chunk, prior, level: int, limit: int) -> list:
    """pixelmodel.encode_planes of each (group, first tile, end tile) of a chunk, its packable
    whole groups on shared canvases of at most `limit` pixels (_plan_packs)."""
    codes: list = [None] * len(chunk)
    packable = [
        (a, b) == (0, len(boxes_all[g])) and _packable(groups[g].shape, scales[g])
        for g, a, b in chunk
    ]
    for ks in _plan_packs([groups[g].shape for g, _, _ in chunk], packable, limit):
        members = [chunk[k][0] for k in ks]
        packed = _encode_packed([groups[g] for g in members], [boxes_all[g] for g in members],
                                prior, level)  # fmt: skip
        for k, code in zip(ks, packed, strict=True):
            codes[k] = code
    for k, (g, a, b) in enumerate(chunk):
        if codes[k] is None:
            codes[k] = pixelmodel.encode_planes(
                groups[g], boxes_all[g][a:b], scales[g], prior, level
            )
    return codes


def _joined(codes: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symbols, table ids and stream bounds of a chunk's PlaneCodes as one coder call's input
    (a lone code as it is: no copies)."""
    if len(codes) == 1:
        return codes[0].symbols, codes[0].table_ids, codes[0].bounds
    offsets = np.cumsum([0] + [len(c.symbols) for c in codes[:-1]])
    bounds = [[0]] + [c.bounds[1:] + o for c, o in zip(codes, offsets, strict=True)]
    return (np.concatenate([c.symbols for c in codes]),
            np.concatenate([c.table_ids for c in codes]),
            np.concatenate(bounds).astype(np.int64))  # fmt: skip


def _encode_pixel_streams(model: Model, groups, boxes_all, scales, limit: int, level: int):
    """Stage 1 of every group, chunk by chunk (model pass, then one coder call per chunk):
    per group (LS coefficients, word counts, stream byte pieces). Streams are independent, so
    the bytes do not depend on the chunking."""
    # seeded with empty arrays, so a group without tiles (an empty plane) joins to nothing
    pt = model.pixel_tables(level)
    coefs = [[np.zeros((0, g.shape[0], pixelmodel.N_TAPS_MAX), np.int64)] for g in groups]
    words = [[np.zeros(0, np.int64)] for _ in groups]
    parts = [[] for _ in groups]
    for chunk in tile_chunks(boxes_all, limit):
        with timing.stage("predictor"):
            codes = _encode_chunk(groups, boxes_all, scales, chunk, pt.prior, level, limit)
        with timing.stage("coder"):
            data, bb = rans.encode_kernel_streams(*_joined(codes), pt.tables)
        runs = _split_streams(data, bb, [len(c.bounds) - 1 for c in codes])
        for (g, _, _), code, (w, run) in zip(chunk, codes, runs, strict=True):
            coefs[g].append(code.coefs)
            words[g].append(w)
            parts[g].append(run)
    return [
        (np.concatenate(coefs[g]), np.concatenate(words[g]), parts[g]) for g in range(len(groups))
    ]


def encode_groups(
    model: Model,
    groups: list[np.ndarray],
    vq: bool = False,
    tile: int | None = None,
    chunk_pixels: int | None = None,
    device: Backend | None = None,
    level: int = pixelmodel.LEVEL_DEFAULT,
) -> list[bytes]:
    """Learned payload of each plane group at an effort level (pixelmodel.LEVELS; the header
    names it, not the payload); vq sends the VQ-VAE side information, tile is the tile side
    (layout.TILE_SIZES; None: group_tile picks per group); device runs the pixel stage on a GPU
    backend (codec.gpu) instead of the CPU kernels, with the same bytes out. The pixel stage
    runs over runs of whole tiles of at most chunk_pixels pixels (default CHUNK_PIXELS), so its
    working memory (symbols, table ids, the coder's worst-case buffer: ~10 bytes per sample) is
    bounded by the chunk, not by the image or the batch (the VQ stage, when asked for, still
    builds full-size features and maps)."""
    tiles = _group_tiles(groups, level, tile)
    boxes_all, indices, scales = _side_information(model, groups, vq, tiles)
    with timing.stage("coder"):
        index_streams = _encode_index_streams(model, boxes_all, indices, vq)
    limit = chunk_pixels or CHUNK_PIXELS
    if device is None:
        pixel_streams = _encode_pixel_streams(model, groups, boxes_all, scales, limit, level)
    else:
        from codec.gpu import batch

        with timing.stage("coder"):
            pt = model.pixel_tables(level)
            pixel_streams = batch.encode_pixel_stage(
                device, groups, boxes_all, scales, pt.prior, pt.tables, limit, level
            )
    out = []
    for g, ((idx_words, idx_bytes), (coefs, px_words, px_parts)) in enumerate(
        zip(index_streams, pixel_streams, strict=True)
    ):
        sent = coefs[_coef_mask(len(boxes_all[g]), groups[g].shape[0], level)]
        flags = (FLAG_VQ if vq else 0) | (FLAG_TILE256 if tiles[g] == 2 * TILE else 0)
        head = [
            varints.encode_one(flags),
            varints.encode(_zigzag(sent)),
            varints.encode(np.concatenate([idx_words, px_words])),
            idx_bytes,
        ]
        out.append(b"".join(head + px_parts))  # one copy of the stream bytes, not one per part
    return out


@functools.lru_cache(maxsize=256)
def _coef_limits(n_tiles: int, n_ch: int, level: int) -> tuple[int, np.ndarray]:
    """How many coefficient varints a group sends, and each one's limit (read-only, cached)."""
    n = int(_coef_mask(n_tiles, n_ch, level).sum())
    limits = np.full(n, 2 * pixelmodel.COEF_MAX, dtype=np.int64)
    limits.flags.writeable = False
    return n, limits


@dataclass
class _Parsed:
    shape: tuple[int, int, int]
    boxes: np.ndarray
    coefs: np.ndarray  # (n_tiles, C, N_TAPS_MAX) int64
    vq_on: bool
    index_bounds: np.ndarray
    data: np.ndarray
    index_bytes: np.ndarray  # byte bounds of the VQ index streams
    pixel_bytes: np.ndarray  # byte bounds of the pixel streams


def _parse(
    payload: bytes, shape: tuple[int, int, int], level: int = pixelmodel.LEVEL_DEFAULT
) -> _Parsed:
    """Split a group payload, checking every count and length before anything is allocated."""
    n_ch, height, width = shape
    reader = varints.Reader(payload)
    flags = reader.varint(FLAG_VQ | FLAG_TILE256)
    vq_on = bool(flags & FLAG_VQ)
    if vq_on and level != pixelmodel.LEVEL_DEFAULT:
        raise CodecError("learned payload: the VQ stage at a non-default effort level")
    boxes = tile_boxes(height, width, 2 * TILE if flags & FLAG_TILE256 else TILE)
    mask = _coef_mask(len(boxes), n_ch, level)
    raw = reader.varint_array(*_coef_limits(len(boxes), n_ch, level))
    coefs = np.zeros(mask.shape, dtype=np.int64)
    coefs[mask] = _unzigzag(raw)
    ib = _index_bounds(boxes, vq_on)
    pixel_sizes = np.repeat(boxes[:, 2] * boxes[:, 3], n_ch)
    max_words = np.concatenate([np.diff(ib), pixel_sizes])
    words = reader.varint_array(len(max_words), max_words)
    lengths = 4 + 2 * words.astype(np.int64)
    if int(lengths.sum()) != reader.remaining:
        raise CodecError(
            f"learned payload: streams need {int(lengths.sum())} bytes, {reader.remaining} present"
        )
    data = np.frombuffer(payload, dtype=np.uint8, offset=reader.pos)
    ends = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n_idx = len(ib) - 1
    return _Parsed(shape, boxes, coefs, vq_on, ib, data, ends[: n_idx + 1], ends[n_idx:])


def _decode_indices(model: Model, parsed: list[_Parsed]) -> dict:
    """All VQ index streams of the batch in one coder call; (g, t) -> (lh, lw) indices (none,
    and no coder call, where no group carries the VQ stage)."""
    if not any(p.vq_on for p in parsed):
        return {}
    datas, bbs, sbs = [], [np.zeros(1, dtype=np.int64)], [np.zeros(1, dtype=np.int64)]
    byte_off = sym_off = 0
    for p in parsed:
        bb = p.index_bytes
        datas.append(p.data[bb[0] : bb[-1]])
        bbs.append(bb[1:] - bb[0] + byte_off)
        byte_off += int(bb[-1] - bb[0])
        sbs.append(p.index_bounds[1:] + sym_off)
        sym_off += int(p.index_bounds[-1])
    flat = rans.decode_streams(
        np.concatenate(datas),
        np.concatenate(bbs),
        np.concatenate(sbs),
        np.full(sym_off, model.index_table, dtype=np.uint8),
        model.tables,
    )
    if flat.size and int(flat.max()) >= model.config.n_codes:
        raise CodecError("learned payload: VQ index out of range")
    out, first = {}, 0
    for g, p in enumerate(parsed):
        for t, (_, _, h, w) in enumerate(p.boxes if p.vq_on else ()):
            lh, lw = cell_shape(int(h), int(w))
            out[(g, t)] = flat[first : first + lh * lw].reshape(lh, lw)
            first += lh * lw
    return out


def decode_groups_into(
    model: Model,
    payloads: list[bytes],
    shapes: list[tuple[int, int, int]],
    write: Callable[[int, int, int, np.ndarray], None],
    chunk_pixels: int | None = None,
    device: Backend | None = None,
    level: int = pixelmodel.LEVEL_DEFAULT,
) -> None:
    """Inverse of encode_groups, band by band: write(g, y0, x0, planes) gets the (C, h, w)
    uint8 planes of group g's rectangle at (y0, x0): whole tile rows, or runs of tiles within a
    row, of at most chunk_pixels pixels each (default CHUNK_PIXELS; one tile at least). The
    caller places them in its output, so the decoder holds no full-size planes besides it
    (tiles are independent: a band decodes alone). device: as in encode_groups; level: the
    effort level the blob's header names."""
    parsed = [_parse(p, s, level) for p, s in zip(payloads, shapes, strict=True)]
    pt = model.pixel_tables(level)
    with timing.stage("model"):
        indices = _decode_indices(model, parsed)
        vq_on = [p.vq_on for p in parsed]
        scales = _scale_maps(model, [p.boxes for p in parsed], shapes, vq_on, indices)
    limit = chunk_pixels or CHUNK_PIXELS
    if device is not None:
        from codec.gpu import batch

        with timing.stage("coder"):
            batch.decode_pixel_stage(
                device, parsed, scales, pt.prior, pt.tables, write, limit, level
            )
        return
    packs = _decode_packs(parsed, scales, limit)
    packed = {g for members in packs.values() for g in members}
    for g, p in enumerate(parsed):
        if g in packs:
            _decode_packed(parsed, packs[g], pt, write, level)
        if g in packed:
            continue
        n_ch = p.shape[0]
        for a, b in tile_bands(p.boxes, limit):
            boxes = p.boxes[a:b].copy()
            y0, x0 = int(boxes[:, 0].min()), int(boxes[:, 1].min())
            y1 = int((boxes[:, 0] + boxes[:, 2]).max())
            x1 = int((boxes[:, 1] + boxes[:, 3]).max())
            boxes[:, 0] -= y0
            boxes[:, 1] -= x0
            vq = None if scales[g] is None else np.ascontiguousarray(scales[g][:, y0:y1, x0:x1])
            with timing.stage("coder"):
                planes = pixelmodel.decode_planes(
                    p.data,
                    p.pixel_bytes[a * n_ch : b * n_ch + 1],
                    (n_ch, y1 - y0, x1 - x0),
                    boxes,
                    vq,
                    p.coefs[a:b],
                    pt.prior,
                    pt.tables,
                    first_stream=a * n_ch,
                    level=level,
                )
            write(g, y0, x0, planes)


def _decode_packs(parsed: list[_Parsed], scales: list, limit: int) -> dict[int, list[int]]:
    """The decoder's side of PACK_PIXELS: first member -> the groups (_plan_packs over the
    batch, canvases of at most `limit` pixels, a band's) decoded side by side in one kernel
    call."""
    shapes = [p.shape for p in parsed]
    packable = [_packable(p.shape, scales[g]) for g, p in enumerate(parsed)]
    return {members[0]: members for members in _plan_packs(shapes, packable, limit)}


def _decode_packed(parsed: list[_Parsed], members: list[int], pt, write, level: int) -> None:
    """Decode the groups `members` on one canvas; where a stream is bad, decode them one at a
    time instead, so the error names the stream as a lone decode would."""
    n_ch, h = parsed[members[0]].shape[0], max(parsed[g].shape[1] for g in members)
    widths = [parsed[g].shape[2] for g in members]
    x0, boxes = _canvas_boxes([parsed[g].boxes for g in members], widths)
    datas, bounds, off = [], [np.zeros(1, dtype=np.int64)], 0
    for g in members:
        bb = parsed[g].pixel_bytes
        datas.append(parsed[g].data[bb[0] : bb[-1]])
        bounds.append(bb[1:] - bb[0] + off)
        off += int(bb[-1] - bb[0])
    order = _shape_order(boxes)  # like shapes batched together, as the encoder does (speed only)
    data, bb = np.concatenate(datas), np.concatenate(bounds)
    coefs = np.concatenate([parsed[g].coefs for g in members])
    if order is not None:
        data, bb = _gather_streams(bb, order, n_ch, data)
        coefs, boxes = coefs[order], boxes[order]
    try:
        with timing.stage("coder"):
            canvas = pixelmodel.decode_planes(
                data, bb, (n_ch, h, int(sum(widths))), boxes, None, coefs, pt.prior, pt.tables,
                level=level,
            )  # fmt: skip
    except CodecError:
        for g in members:
            p = parsed[g]
            with timing.stage("coder"):
                planes = pixelmodel.decode_planes(
                    p.data, p.pixel_bytes, p.shape, p.boxes, None, p.coefs, pt.prior, pt.tables,
                    level=level,
                )  # fmt: skip
            write(g, 0, 0, planes)
        return
    for g, x, w in zip(members, x0, widths, strict=True):
        write(g, 0, 0, canvas[:, : parsed[g].shape[1], x : x + w])


def decode_groups(
    model: Model,
    payloads: list[bytes],
    shapes: list[tuple[int, int, int]],
    device: Backend | None = None,
    level: int = pixelmodel.LEVEL_DEFAULT,
) -> list[np.ndarray]:
    """Inverse of encode_groups: (C,H,W) uint8 planes of every group."""
    out = [np.empty(s, dtype=np.uint8) for s in shapes]

    def place(g: int, y0: int, x0: int, planes: np.ndarray) -> None:
        out[g][:, y0 : y0 + planes.shape[1], x0 : x0 + planes.shape[2]] = planes

    decode_groups_into(model, payloads, shapes, place, device=device, level=level)
    return out
