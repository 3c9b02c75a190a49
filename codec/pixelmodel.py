"""Per-pixel model of one tile plane: blended prediction and adaptive table choice, fused with rANS.

Why per pixel: a residual's best predictor and its spread change from pixel to pixel; a fixed
predictor per tile and a context from residuals alone left ~10% on the table (docs/experiments.md,
entries 5-6). Every sample of a tile plane is modelled in raster order from its already coded
neighbours, so the decoder runs the same recurrence fused with the rANS decode of the plane's one
stream; tiles stay independent (one GPU thread, or one CPU task, per tile), planes of a tile run
in order (later planes see earlier ones).

Prediction (all integers, 1/8 pixel units):
  * 3 spatial predictors from JPEG-XL's weighted-predictor family: W+NE-N, N corrected by the
    signed true errors of NW, N, NE, and W corrected by those of W, N, NW (true error =
    value - prediction, so a correction adds it; format version 2 subtracted it, which is why
    these measured worse than nothing there, docs/experiments.md entries 7 and 9),
  * per earlier plane r, 3 cross-plane predictors (W, N and gradient predictors of this plane
    plus the gradient of plane r towards the current position),
  * one least-squares linear predictor over N, W, NW, NE, NN, WW (+ 5 taps of each earlier
    plane), fitted by the encoder per tile plane and sent as coefficients in 1/256 (|a| <= 2047),
  blended with weights ~ 1 / (recent |error| of each predictor + 12)^2 around the pixel; on planes
  > 0 the LS predictor's weight is doubled (-0.2% bytes on RGB, docs/experiments.md entry 9).

Table choice: a local error energy E (|true error| of N, W, NW, NE, NN, WW and, for planes > 0,
of the co-located earlier planes), split 4 ways by a sub-bucket, picks one of N_BUCKETS
buckets; each bucket keeps a running mean of the |error| it saw in this tile plane (started
from a trained prior), and that mean's log picks one of N_LEVELS levels of the plane's kind; the
prediction's rounding offset picks one of the level's two tables and the residual's sign
(_coding_frame).
The sub-bucket is the decoder network's scale class where the group carries the VQ stage, else
a class of the local pixel gradient |N-NW| + |W-NW| + |NE-N| (edges vs noise at equal error
energy: -0.3% bytes on photos, -2% on screenshots, docs/experiments.md entry 9). The adaptation
makes the tables fit images unlike the training set (docs/experiments.md, entry 6).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codec import container, kernels, rans
from codec.errors import CodecError

N_SPATIAL = 3
N_CROSS_PRED = 3
N_PRED_MAX = N_SPATIAL + 2 * N_CROSS_PRED + 1
N_TAPS_MAX = 24  # LS taps of the max level's plane 2: 10 own + 7 of each earlier plane
# Effort levels (docs/FORMAT.md "levels"): the level's index is in the header and in the kernels.
LEVELS = container.EFFORTS
LEVEL_DEFAULT, LEVEL_FASTEST, LEVEL_MAX_V1, LEVEL_MAX_V2, LEVEL_MAX, LEVEL_FAST = 0, 1, 2, 3, 4, 5
# the levels that run the fast loop (pilc_fast.h): level 5 is level 1 plus a cross-plane blend
FAST_LEVELS = (LEVEL_FASTEST, LEVEL_FAST)
# one model family: max v2 widens v1's plane-0 local LS, max v3 adds an NLMS stage to v2
MAX_LEVELS = (LEVEL_MAX_V1, LEVEL_MAX_V2, LEVEL_MAX)
N_BIAS_MAX = 192  # max level: bias contexts (24 energy x 8 texture)
N_BIAS_FAST = 768  # fast level: bias contexts (12 energy x 64 texture)
COEF_ONE = 256  # LS coefficients are in 1/256
COEF_MAX = 2047
N_E_BUCKETS = 24
N_SUB_BUCKETS = 4  # with the VQ stage: VQ scale index >> VQ_SHIFT; without: gradient class
VQ_SHIFT = 4
N_BUCKETS = N_E_BUCKETS * N_SUB_BUCKETS
N_CTX2 = 96  # max level: second scale contexts (24 energy buckets x 4 spread classes)
# adaptive sums per tile plane (PM_NSTAT): the buckets, then either level's contexts
N_STATE = N_BUCKETS + max(N_BIAS_MAX + N_CTX2, N_BIAS_FAST)
N_LEVELS = 40
N_KINDS = 3  # table families: plane 0 (and gray / alpha), plane 1, plane 2
N_OFFSET_CLASSES = 2  # |P - 8 * round(P / 8)| < 2 or >= 2 (in 1/8): see _coding_frame
N_PIXEL_TABLES = N_KINDS * N_LEVELS * N_OFFSET_CLASSES
FAR_OFFSETS = 0b11000111  # bit d + 4 set where the rounding offset d (-4..3) has |d| >= 2
PRIOR_COUNT = 4
HALVE_AT = 256
GRAD_EDGES = (1, 4, 12)  # |N-NW| + |W-NW| + |NE-N| -> gradient class 0..3
GRAD_CLASS = np.searchsorted(GRAD_EDGES, np.arange(GRAD_EDGES[-1] + 1), side="right").astype(
    np.uint8
)
PAD = 2  # zero border of the per-tile error buffers

# np.unique leaves 21 energy edges, so E_BUCKET never gives 22-23: those two serve the samples of
# a tile's first row and first column (-0.3% bytes on gray, -0.07% RGB, docs/experiments.md
# entry 9). Format quirk: the level edges start 2, 2, so level 1 never occurs.
EDGE_ROW_BUCKET = 22
EDGE_COL_BUCKET = 23
_E_EDGES = np.unique(np.round(np.geomspace(1, 600, N_E_BUCKETS - 1)).astype(np.int64))
E_BUCKET = np.searchsorted(_E_EDGES, np.arange(4096), side="right").astype(np.uint8)
_LEVEL_EDGES = np.round(np.geomspace(2, 16 * 8 * 60, N_LEVELS - 1)).astype(np.int64)
MEAN_MAX = 1 << 15
LEVEL_OF_MEAN = np.searchsorted(_LEVEL_EDGES, np.arange(MEAN_MAX), side="right").astype(np.uint8)
CNT_RECIP = np.concatenate([[0], -(-(1 << 33) // np.arange(1, HALVE_AT + 1))]).astype(np.int64)
# Blend weight of a predictor whose 6-neighbour |error| sum (1/8 units) is 2s: ~ 1 / (s + 12)^2,
# at most 65536 (so a blend's weight total stays < 2^21, as _floor_div needs). The softening
# constant replaced format v2's 1 / (s/2 + 1)^2 (-0.1..-0.6% bytes, docs/experiments.md entry 9).
WEIGHT_SOFT = 12
WEIGHT_OF_ERR = (
    65535 * WEIGHT_SOFT**2 // (np.arange(4096, dtype=np.int64) + WEIGHT_SOFT) ** 2 + 1
).astype(np.int32)


def n_taps(plane: int, level: int = LEVEL_DEFAULT) -> int:
    """LS taps of a plane: 6 own neighbours + 5 per earlier plane (at most 2); at the max
    levels 10 own + 7 per earlier plane."""
    if level in MAX_LEVELS:
        return 10 + 7 * min(plane, 2)
    return 6 + 5 * min(plane, 2)


def level_index(effort: str | int) -> int:
    """An effort name ("fastest", "fast", "default", "max", "max-v1", "max-v2") or header index
    -> the level index."""
    if isinstance(effort, str) and effort in LEVELS:
        return LEVELS.index(effort)
    if isinstance(effort, int) and not isinstance(effort, bool) and 0 <= effort < len(LEVELS):
        return effort
    raise CodecError(f"effort must be one of {LEVELS}, not {effort!r}")


def coding_frame(pr: int, kind: int, level: int) -> tuple[int, int, int]:
    """(base, neg, table id) of a sample with prediction pr (1/8 units) at a table level, as
    the kernels compute it: base = (pr + 4) >> 3, neg = -1 where the residual is flipped (the
    prediction's rounding offset is < 0), the level's second table where |offset| >= 2."""
    out = np.zeros(3, dtype=np.int64)
    kernels.lib.pilc_coding_frame(pr, kind, level, kernels.ptr(out))
    return int(out[0]), int(out[1]), int(out[2])


def stream_starts(boxes: np.ndarray, n_ch: int) -> np.ndarray:
    """Symbol bounds of the streams of a group: one per (tile, plane), tile-major."""
    sizes = np.repeat(boxes[:, 2] * boxes[:, 3], n_ch)
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


@dataclass
class PlaneCode:
    """Encoder output of one plane group, in stream order (tile-major, then plane)."""

    symbols: np.ndarray  # uint8 residual symbols
    table_ids: np.ndarray  # uint8 rANS table of each symbol
    buckets: np.ndarray | None  # uint8 context bucket of each symbol (table fitting only)
    bounds: np.ndarray  # int64 stream bounds
    coefs: np.ndarray  # (n_tiles, C, N_TAPS_MAX) int64 LS coefficients


_NO_TABLES = rans.RansTables.from_freqs(np.full((1, 256), 256, dtype=np.uint32))


def _model_tables(prior: np.ndarray, tables: rans.RansTables = _NO_TABLES) -> list[np.ndarray]:
    """The model tables in the kernels' argument order (PM_TABLE_PARAMS); the encoder's model
    pass reads no rANS table."""
    prior = np.ascontiguousarray(prior, dtype=np.int64)
    if prior.shape != (N_KINDS, N_BUCKETS):
        raise CodecError(f"pixel-model prior must have shape {(N_KINDS, N_BUCKETS)}")
    return [E_BUCKET, LEVEL_OF_MEAN, CNT_RECIP, WEIGHT_OF_ERR, GRAD_CLASS, prior, tables._bk,
            tables._fc]  # fmt: skip


# (id(prior), id(tables)) -> (prior, tables, arrays, addresses). A model's prior and tables live
# as long as the model, and a small image's kernel call cost as much in taking eight addresses
# (numpy's .ctypes) as in its samples. The entry holds the objects it is keyed on, so their
# ids cannot be reused while it exists, and the arrays the addresses point into.
_TABLE_PTRS: dict[tuple[int, int], tuple] = {}
_TABLE_PTRS_MAX = 64


def _table_ptrs(
    prior: np.ndarray, tables: rans.RansTables = _NO_TABLES
) -> tuple[list[np.ndarray], list[int]]:
    """_model_tables(prior, tables) and their addresses, cached per (prior, tables) pair. The
    caller holds the arrays while the kernels run (a converted prior is a copy only they hold)."""
    if not (isinstance(prior, np.ndarray) and prior.dtype == np.int64
            and prior.flags.c_contiguous):  # fmt: skip
        # converted to a copy: not cached, as the caller's prior may change under the copy
        arrays = _model_tables(prior, tables)
        return arrays, [kernels.ptr(a) for a in arrays]
    key = (id(prior), id(tables))
    hit = _TABLE_PTRS.get(key)
    if hit is not None and hit[0] is prior and hit[1] is tables:
        return hit[2], hit[3]
    arrays = _model_tables(prior, tables)
    ptrs = [kernels.ptr(a) for a in arrays]
    if len(_TABLE_PTRS) >= _TABLE_PTRS_MAX:
        _TABLE_PTRS.clear()
    _TABLE_PTRS[key] = (prior, tables, arrays, ptrs)
    return arrays, ptrs


def _check_planes(n_ch: int) -> None:
    if not 1 <= n_ch <= 3:  # the kernels specialise plane indices 0, 1 and 2
        raise CodecError(f"a plane group has 1 to 3 planes, not {n_ch}")


def vq_map(vq: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """The scale map as the kernels read it (same layout as the planes, sub-bucket in range),
    or None without the VQ stage."""
    if vq is None:
        return None
    vq = np.ascontiguousarray(vq, dtype=np.uint8)
    if vq.shape != tuple(shape):
        raise CodecError(f"VQ scale map has shape {vq.shape}, the planes {tuple(shape)}")
    if vq.size and int(vq.max()) >> VQ_SHIFT >= N_SUB_BUCKETS:
        raise CodecError("VQ scale class out of range for the pixel model")
    return vq


def encode_planes(
    planes: np.ndarray,
    boxes: np.ndarray,
    vq: np.ndarray | None,
    prior: np.ndarray,
    level: int = LEVEL_DEFAULT,
    buckets: bool = False,
) -> PlaneCode:
    """(C,H,W) uint8 planes -> everything the coder and the payload need. vq: the (C,H,W) VQ
    scale map where the group carries the VQ stage, else None; level: the effort level;
    buckets: also return each symbol's context bucket (table fitting; the coder needs none,
    and the kernels skip writing them when not asked)."""
    planes = np.ascontiguousarray(planes, dtype=np.uint8)
    n_ch = planes.shape[0]
    _check_planes(n_ch)
    starts = stream_starts(boxes, n_ch)
    sym = np.empty(int(starts[-1]), dtype=np.uint8)
    tid = np.empty(int(starts[-1]), dtype=np.uint8)
    bkt = np.empty(int(starts[-1]), dtype=np.uint8) if buckets else None
    coefs = np.zeros((len(boxes), n_ch, N_TAPS_MAX), dtype=np.int64)
    scales = vq_map(vq, planes.shape)
    boxes = np.ascontiguousarray(boxes, dtype=np.int64)
    p = kernels.ptr
    model_tables, table_ptrs = _table_ptrs(prior)  # held while the kernels run
    failed = kernels.run_shared(
        lambda counter: kernels.lib.pilc_pm_encode(
            level,
            p(planes),
            n_ch,
            planes.shape[1],
            planes.shape[2],
            p(scales),
            p(boxes),
            len(boxes),
            *table_ptrs,
            p(coefs),
            p(starts),
            p(sym),
            p(tid),
            p(bkt),
            counter,
        ),
        len(boxes),
    )
    if any(failed):
        raise MemoryError("pixel model: out of memory for the tile state")
    return PlaneCode(sym, tid, bkt, starts, coefs)


def decode_planes(
    data: np.ndarray,
    byte_bounds: np.ndarray,
    shape: tuple[int, int, int],
    boxes: np.ndarray,
    vq: np.ndarray | None,
    coefs: np.ndarray,
    prior: np.ndarray,
    tables: rans.RansTables,
    first_stream: int = 0,
    level: int = LEVEL_DEFAULT,
) -> np.ndarray:
    """Inverse of encode_planes + rANS: the (C,H,W) uint8 planes. first_stream numbers the
    streams in errors (where these boxes are a band of a larger group)."""
    n_ch = shape[0]
    _check_planes(n_ch)
    n_streams = len(boxes) * n_ch
    if len(byte_bounds) != n_streams + 1:
        raise CodecError("stream count does not match the tile layout")
    if int(byte_bounds[-1]) > len(data) or np.any(np.diff(byte_bounds) < 0):
        raise CodecError("stream byte bounds out of range")
    if tables.n_tables < N_PIXEL_TABLES:
        raise CodecError("model has too few coding tables for the pixel model")
    planes = np.zeros(shape, dtype=np.uint8)
    err = np.zeros(n_streams, dtype=np.int64)
    scales = vq_map(vq, shape)
    boxes = np.ascontiguousarray(boxes, dtype=np.int64)
    data = np.ascontiguousarray(data, dtype=np.uint8)
    bb = np.ascontiguousarray(byte_bounds, dtype=np.int64)
    coefs = np.ascontiguousarray(coefs, dtype=np.int64)
    p = kernels.ptr
    model_tables, table_ptrs = _table_ptrs(prior, tables)  # held while the kernels run
    failed = kernels.run_shared(
        lambda counter: kernels.lib.pilc_pm_decode(
            level, p(data), p(bb), p(planes), n_ch, shape[1], shape[2], p(scales), p(boxes),
            len(boxes), p(coefs), *table_ptrs, p(err), counter,
        ),
        len(boxes),
    )  # fmt: skip
    if any(failed):
        raise MemoryError("pixel model: out of memory for the tile state")
    bad = np.flatnonzero(err)
    if bad.size:
        s = int(bad[0])
        raise CodecError(f"residual stream {first_stream + s}: corrupt (code {int(err[s])})")
    return planes
