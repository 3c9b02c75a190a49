"""The learned path over a batch of plane groups: predictor -> VQ-VAE -> table choice -> rANS.

A plane group is a (C,H,W) uint8 array, C = 1 (gray, or an alpha plane) or 3 (colour-transformed
RGB). All tiles of all groups in a batch go through the network together (grouped by latent
shape) and all streams through one coder call per stage, so a batch fills the machine the same
way whatever mix of image sizes it holds.

Coding stages (each depends only on earlier ones, all parallel inside):
  0. VQ indices, one stream per tile, static table S.
  1. plane 0 residuals: table = decoder scale index.
  2. plane 1: table = lut[0, scale, bucket(|r0|)].
  3. plane 2: table = lut[1, scale, bucket((|r0| + |r1| + 1) >> 1)].
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from codec import context, rans, varints
from codec.errors import CodecError
from codec.layout import CELL, N_PREDICTORS, cell_shape, plane_order, tile_boxes
from codec.model import Model, residual_features
from codec.predictor import decode_residuals, encode_residuals, signed


@dataclass
class GroupCode:
    """Everything coded for one plane group, before byte packing."""

    shape: tuple[int, int, int]  # C, H, W
    pred_ids: np.ndarray  # (n_tiles, C) uint8
    mix: np.ndarray  # (n_tiles, C-1, 2) int8 cross-plane weights
    indices: list[np.ndarray]  # per tile (lh, lw) uint8
    symbols: np.ndarray  # (C,H,W) uint8 residual symbols
    scales: np.ndarray  # (C,H,W) uint8 decoder scale index per sample
    table_ids: np.ndarray  # (C,H,W) uint8


def _tiles_by_shape(groups_boxes) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """(group, tile) keys of every tile, grouped by latent shape: one network pass per shape."""
    by_shape: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for g, boxes in enumerate(groups_boxes):
        for t, (_, _, h, w) in enumerate(boxes):
            by_shape[cell_shape(int(h), int(w))].append((g, t))
    return by_shape


def _tile_scales(model: Model, groups_boxes, indices_of) -> dict[tuple[int, int], np.ndarray]:
    """Run the integer decoder over every tile, batched by latent shape; (g, t) -> (3,h,w)."""
    out = {}
    for keys in _tiles_by_shape(groups_boxes).values():
        idx = np.stack([indices_of(g, t) for g, t in keys])
        scales = model.decode_scales(idx)
        for k, (g, t) in enumerate(keys):
            h, w = groups_boxes[g][t][2:]
            out[(g, t)] = scales[k, :, :h, :w]
    return out


def _place(scales_of, boxes, g: int, n_ch: int, height: int, width: int) -> np.ndarray:
    """Assemble per-tile scale crops into a (C,H,W) scale map of group g."""
    out = np.empty((n_ch, height, width), dtype=np.uint8)
    for t, (y0, x0, h, w) in enumerate(boxes):
        out[:, y0 : y0 + h, x0 : x0 + w] = scales_of[(g, t)][:n_ch]
    return out


def analyse(model: Model, groups: list[np.ndarray]) -> list[GroupCode]:
    """Encode-side modelling of a batch: residuals, VQ indices, table id of every sample."""
    boxes_all = [tile_boxes(p.shape[1], p.shape[2]) for p in groups]
    residuals = [encode_residuals(p, b) for p, b in zip(groups, boxes_all, strict=True)]
    indices: dict[tuple[int, int], np.ndarray] = {}
    for (lh, lw), keys in _tiles_by_shape(boxes_all).items():
        feats = np.zeros((len(keys), 3, lh * CELL, lw * CELL), dtype=np.float32)
        for k, (g, t) in enumerate(keys):
            y0, x0, h, w = boxes_all[g][t]
            sym = residuals[g][0][:, y0 : y0 + h, x0 : x0 + w]
            feats[k, : sym.shape[0], :h, :w] = residual_features(signed(sym))
        codes = model.encode_latents(feats)
        for k, key in enumerate(keys):
            indices[key] = codes[k]
    scales_of = _tile_scales(model, boxes_all, lambda g, t: indices[(g, t)])
    out = []
    for g, planes in enumerate(groups):
        n_ch, height, width = planes.shape
        symbols, pred_ids, mix = residuals[g]
        scales = _place(scales_of, boxes_all[g], g, n_ch, height, width)
        boxes = boxes_all[g]
        tids = np.stack(
            [
                context.table_ids(
                    symbols[c], scales[c], context.cross_context(symbols, c), model.lut[c], boxes
                )
                for c in range(n_ch)
            ]
        )
        out.append(
            GroupCode(
                shape=(n_ch, height, width),
                pred_ids=pred_ids,
                mix=mix,
                indices=[indices[(g, t)] for t in range(len(boxes_all[g]))],
                symbols=symbols,
                scales=scales,
                table_ids=tids.astype(np.uint8),
            )
        )
    return out


# ---- byte packing ----------------------------------------------------------------------------


def _index_bounds(boxes: np.ndarray) -> np.ndarray:
    """Stream bounds of the VQ index stage: one stream per tile of lh*lw indices."""
    sizes = [int(np.prod(cell_shape(int(h), int(w)))) for _, _, h, w in boxes]
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def _stage_bounds(shape: tuple[int, int, int], boxes: np.ndarray) -> list[np.ndarray]:
    """Stream bounds of every stage of a group: indices, then one stage per plane."""
    n_ch, height, width = shape
    return [_index_bounds(boxes)] + [plane_order(height, width)[1]] * n_ch


def _stage_streams(code: GroupCode, index_table: int):
    """(symbols, table ids, stream bounds) of each coding stage of one group, in order."""
    n_ch, height, width = code.shape
    idx = np.concatenate([i.ravel() for i in code.indices]).astype(np.uint8)
    boxes = tile_boxes(height, width)
    stages = [(idx, np.full(idx.shape, index_table, dtype=np.uint8), _index_bounds(boxes))]
    for c in range(n_ch):
        order, bounds = plane_order(height, width)
        stages.append((code.symbols[c].ravel()[order], code.table_ids[c].ravel()[order], bounds))
    return stages


def encode_groups(model: Model, groups: list[np.ndarray]) -> list[bytes]:
    """Learned payload of each plane group: predictor ids, stream word counts, stream bytes."""
    codes = analyse(model, groups)
    syms, tids, bounds, counts = [], [], [np.zeros(1, dtype=np.int64)], []
    offset = 0
    for code in codes:
        n = 0
        for s, t, b in _stage_streams(code, model.config.n_scales):
            syms.append(s)
            tids.append(t)
            bounds.append(b[1:] + offset)
            offset += len(s)
            n += len(b) - 1
        counts.append(n)
    data, byte_bounds = rans.encode_streams(
        np.concatenate(syms), np.concatenate(tids), np.concatenate(bounds), model.tables
    )
    out, first = [], 0
    for code, n in zip(codes, counts, strict=True):
        bb = byte_bounds[first : first + n + 1]
        words = (np.diff(bb) - 4) // 2
        out.append(
            code.pred_ids.tobytes()
            + code.mix.tobytes()
            + varints.encode(words)
            + data[bb[0] : bb[-1]].tobytes()
        )
        first += n
    return out


@dataclass
class _Parsed:
    shape: tuple[int, int, int]
    boxes: np.ndarray
    pred_ids: np.ndarray
    mix: np.ndarray
    stage_bounds: list[np.ndarray]  # symbol bounds per stage
    stage_bytes: list[tuple[np.ndarray, np.ndarray]]  # (data, byte bounds) per stage


def _parse(payload: bytes, shape: tuple[int, int, int]) -> _Parsed:
    """Split a group payload into per-stage stream data, checking every length first."""
    n_ch, height, width = shape
    boxes = tile_boxes(height, width)
    reader = varints.Reader(payload)
    pred_ids = np.frombuffer(reader.take(len(boxes) * n_ch), dtype=np.uint8)
    if pred_ids.size and int(pred_ids.max()) >= N_PREDICTORS:
        raise CodecError("learned payload: predictor id out of range")
    n_mix = max(n_ch - 1, 0)
    mix = np.frombuffer(reader.take(len(boxes) * n_mix * 2), dtype=np.int8)
    stage_bounds = _stage_bounds(shape, boxes)
    per_stage = [len(b) - 1 for b in stage_bounds]
    max_words = np.concatenate([np.diff(b) for b in stage_bounds])
    words = reader.varint_array(int(sum(per_stage)), max_words)
    lengths = 4 + 2 * words
    if int(lengths.sum()) != reader.remaining:
        raise CodecError(
            f"learned payload: streams need {int(lengths.sum())} bytes, {reader.remaining} present"
        )
    data = np.frombuffer(payload, dtype=np.uint8, offset=reader.pos)
    ends = np.cumsum(lengths)
    stage_bytes, first = [], 0
    for n in per_stage:
        bb = np.concatenate([[0], ends[first : first + n]]).astype(np.int64)
        if first:
            bb[0] = ends[first - 1]
        stage_bytes.append((data, bb))
        first += n
    return _Parsed(
        shape,
        boxes,
        pred_ids.reshape(len(boxes), n_ch),
        mix.reshape(len(boxes), n_mix, 2),
        stage_bounds,
        stage_bytes,
    )


def _decode_stage(model: Model, parsed: list[_Parsed], stage: int, table_ids: list[np.ndarray]):
    """Decode one stage of many groups with a single coder call; symbols per group."""
    datas, bbs, sbs = [], [np.zeros(1, dtype=np.int64)], [np.zeros(1, dtype=np.int64)]
    byte_off = sym_off = 0
    for p in parsed:
        data, bb = p.stage_bytes[stage]
        datas.append(data[bb[0] : bb[-1]])
        bbs.append(bb[1:] - bb[0] + byte_off)
        byte_off += int(bb[-1] - bb[0])
        sb = p.stage_bounds[stage]
        sbs.append(sb[1:] + sym_off)
        sym_off += int(sb[-1])
    out = rans.decode_streams(
        np.concatenate(datas),
        np.concatenate(bbs),
        np.concatenate(sbs),
        np.concatenate(table_ids),
        model.tables,
    )
    splits = np.cumsum([int(p.stage_bounds[stage][-1]) for p in parsed])[:-1]
    return np.split(out, splits)


def decode_groups(
    model: Model, payloads: list[bytes], shapes: list[tuple[int, int, int]]
) -> list[np.ndarray]:
    """Inverse of encode_groups: (C,H,W) uint8 planes of every group."""
    parsed = [_parse(p, s) for p, s in zip(payloads, shapes, strict=True)]
    n_codes = model.config.n_codes
    index_tables = [
        np.full(int(p.stage_bounds[0][-1]), model.config.n_scales, np.uint8) for p in parsed
    ]
    flat_idx = _decode_stage(model, parsed, 0, index_tables)
    tile_indices = {}
    for g, (p, idx) in enumerate(zip(parsed, flat_idx, strict=True)):
        if idx.size and int(idx.max()) >= n_codes:
            raise CodecError("learned payload: VQ index out of range")
        sb = p.stage_bounds[0]
        for t, (_, _, h, w) in enumerate(p.boxes):
            tile_indices[(g, t)] = idx[sb[t] : sb[t + 1]].reshape(cell_shape(int(h), int(w)))
    scales_of = _tile_scales(model, [p.boxes for p in parsed], lambda g, t: tile_indices[(g, t)])
    scales = [_place(scales_of, p.boxes, g, *p.shape) for g, p in enumerate(parsed)]
    symbols = [np.zeros(p.shape, dtype=np.uint8) for p in parsed]
    for g, p in enumerate(parsed):
        for c in range(p.shape[0]):
            data, bb = p.stage_bytes[c + 1]
            symbols[g][c] = context.decode_plane(
                data,
                bb,
                p.boxes,
                scales[g][c],
                context.cross_context(symbols[g], c),
                model.lut[c],
                model.tables,
            )
    return [
        decode_residuals(sym, p.boxes, p.pred_ids, p.mix)
        for sym, p in zip(symbols, parsed, strict=True)
    ]
