"""What a device must offer the batch driver (codec/gpu/batch.py), and the one implementation of
a launch's steps on top of it: allocate, copy in, run the kernels, compact, copy out.

A backend supplies an array module (`xp`: cupy, or numpy for the host emulation), transfers and
kernel launches; everything else, including the state layout and the compaction, is shared, so
the emulated backend the tests run takes the same steps as the CUDA one.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from codec import pixelmodel, rans
from codec.kernels import LEVEL_SUFFIXES

PAD = 2
NPM = 11  # PM_NPM: per-predictor error slots
N_STATE = pixelmodel.N_STATE  # PM_NSTAT: bucket sums, then the max level's bias sums
N_TAPS = pixelmodel.N_TAPS_MAX
TR_LEVEL = 11  # tile record column of the effort level (pilc_cuda.cu)
LL_NT = 10  # PM_LL_NT: the max levels' local LS taps at most (max v2's plane 0)
LL_NS = LL_NT * (LL_NT + 1) // 2 + LL_NT + 1  # PM_LL_NS
NL_NS = 2 * (NPM + 8) + 2 + 2 * pixelmodel.N_BUCKETS  # PM_NL_NS: max v3's NLMS state
LM_N = LL_NT * (LL_NT + 1) + NL_NS  # PM_LM_N: float64 scratch per lane (solve, then NLMS)


@dataclass
class Layout:
    """What one launch sends: tile records, stream symbol bounds, the band pixel offsets."""

    records: np.ndarray  # (n_tiles, TR_N) int64, in thread order
    sym_bounds: np.ndarray  # (n_streams + 1,) int64, stream order (unit, tile, plane)
    px_offsets: list[int]  # byte offset of each unit's band in the pixel buffer
    px_bytes: int
    n_streams: int
    max_h: int
    max_w: int
    max_ch: int

    @property
    def level(self) -> int:
        """The effort level of the launch's tiles (one per launch): picks the kernels and the
        state they need; read from the records the kernels see, so the two cannot disagree."""
        return int(self.records[0, TR_LEVEL]) if len(self.records) else 0


def level_kernel(name: str, level: int) -> str:
    """The model-pass or decode kernel of an effort level (pilc_cuda.cu: one per level, so the
    max levels' registers do not cut the others' occupancy)."""
    return name + LEVEL_SUFFIXES[level]


class Backend:
    """Device primitives; subclasses set name, xp, block, max_tiles, max_pixels."""

    name = "abstract"
    xp: ModuleType = np
    block = 128  # threads per block
    max_tiles = 1 << 15  # threads (tiles) per launch: bounds the per-thread state memory
    max_pixels = 1 << 28  # pixels per launch: bounds the pixel, symbol and stream buffers

    def __init__(self) -> None:
        # (prior, tables, their device copies): held, so the identity check below cannot be
        # fooled by a new model at a freed one's address
        self._tables: tuple[Any, Any, list[Any]] | None = None
        # seconds per phase ("h2d", "kernels", "d2h") when set to a dict: each phase is then
        # bracketed by device syncs, which costs overlap, so only benchmarks turn it on
        self.profile: dict[str, float] | None = None

    @contextlib.contextmanager
    def phase(self, name: str) -> Any:
        """Charge the block's device time to `name` (only with profile on)."""
        if self.profile is None:
            yield
            return
        self.synchronize()
        t = time.perf_counter()
        yield
        self.synchronize()
        self.profile[name] = self.profile.get(name, 0.0) + time.perf_counter() - t

    # -- primitives -------------------------------------------------------------------------
    def upload(self, a: np.ndarray) -> Any:
        raise NotImplementedError

    def download(self, a: Any) -> np.ndarray:
        raise NotImplementedError

    def empty(self, n: int, dtype: Any) -> Any:
        return self.xp.empty(int(n), dtype=dtype)

    def zeros(self, n: int, dtype: Any) -> Any:
        return self.xp.zeros(int(n), dtype=dtype)

    def launch(self, kernel: str, n_threads: int, args: list[Any]) -> None:
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for the device (timing)."""

    def context(self) -> contextlib.AbstractContextManager:
        """Where the array module's own operations run (CUDA: the backend's stream)."""
        return contextlib.nullcontext()

    # -- shared steps -----------------------------------------------------------------------
    def grid(self, n_threads: int) -> tuple[int, int]:
        """(blocks, threads per block) covering n_threads."""
        return max(1, -(-n_threads // self.block)), self.block

    def model_tables(self, prior: np.ndarray, tables: rans.RansTables) -> list[Any]:
        """Device copies of the model tables in kernel argument order (PILC_TABLE_ARGS), then
        inv; copied once per (prior, tables) pair."""
        held = self._tables
        if held is None or held[0] is not prior or held[1] is not tables:
            host = [
                pixelmodel.E_BUCKET, pixelmodel.LEVEL_OF_MEAN, pixelmodel.CNT_RECIP,
                pixelmodel.WEIGHT_OF_ERR, pixelmodel.GRAD_CLASS,
                np.ascontiguousarray(prior, dtype=np.int64), tables._bk, tables._fc, tables._inv,
            ]  # fmt: skip
            held = self._tables = (
                prior,
                tables,
                [self.upload(np.ascontiguousarray(a)) for a in host],
            )
        return held[2]

    def _state(self, lay: Layout, lanes: int) -> tuple[list[Any], int, int]:
        """Launch-wide per-thread model state, lane-interleaved (PmState.ls = lanes)."""
        rows, tw = lay.max_h + PAD, lay.max_w + 2 * PAD
        state = [
            self.empty(lanes * lay.max_ch * rows * tw, np.int16),
            self.empty(lanes * 3 * tw * NPM, np.uint16),
            self.empty(lanes * N_STATE, np.int32),
            self.empty(lanes * N_STATE, np.int32),
        ]
        # the max level's local LS: per-column sums and the solve scratch (PmState.lsum, lmat)
        mx = lay.level in pixelmodel.MAX_LEVELS
        state.append(self.empty(lanes * ((2 * tw + 2) * LL_NS + LL_NT) if mx else 1, np.int32))
        state.append(self.empty(lanes * LM_N if mx else 1, np.float64))
        return state, rows, tw

    def encode(
        self,
        lay: Layout,
        px: np.ndarray,
        vq: np.ndarray | None,
        prior: np.ndarray,
        tables: rans.RansTables,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One encode launch: (stream bytes, their byte bounds, LS coefficients (streams, 16))."""
        with self.context():
            xp = self.xp
            n_tiles, n_streams = len(lay.records), lay.n_streams
            n_sym = int(lay.sym_bounds[-1])
            blocks, block = self.grid(n_tiles)
            state, rows, tw = self._state(lay, blocks * block)
            tabs = self.model_tables(prior, tables)
            fc, inv = tabs[7], tabs[8]
            with self.phase("h2d"):
                d_px, d_rec, d_sb = (
                    self.upload(px),
                    self.upload(lay.records),
                    self.upload(lay.sym_bounds),
                )
                d_vq = None if vq is None else self.upload(vq)
            coefs = self.zeros(n_streams * N_TAPS, np.int64)
            sym, tid = self.empty(n_sym, np.uint8), self.empty(n_sym, np.uint8)
            buf = self.empty(4 * n_streams + 2 * n_sym, np.uint8)
            starts = self.empty(n_streams, np.int64)
            with self.phase("kernels"):  # the compacted size is the one sync inside
                self.launch("pilc_gpu_fit", n_tiles, [d_px, d_rec, n_tiles, coefs])
                model_args = [d_px, d_vq, d_rec, n_tiles, *tabs[:8], *state, rows, tw, coefs]
                self.launch(level_kernel("pilc_gpu_model", lay.level), n_tiles,
                            [*model_args, d_sb, sym, tid])  # fmt: skip
                del state, model_args  # the model state is free before the coder runs
                self.launch(
                    "pilc_gpu_rans_encode", n_streams,
                    [sym, tid, d_sb, n_streams, fc, inv, buf, starts],
                )  # fmt: skip
                ends = 4 * xp.arange(1, n_streams + 1, dtype=np.int64) + 2 * d_sb[1:]
                ob = xp.zeros(n_streams + 1, dtype=np.int64)
                xp.cumsum(ends - starts, out=ob[1:])
                total = int(ob[-1])
                out = self.empty(max(total, 1), np.uint8)
                self.launch("pilc_gpu_compact", n_streams, [buf, starts, ob, n_streams, out])
            with self.phase("d2h"):
                data = self.download(out)[:total]
                return data, self.download(ob), self.download(coefs).reshape(n_streams, N_TAPS)

    def decode(
        self,
        lay: Layout,
        vq: np.ndarray | None,
        data: np.ndarray,
        bb: np.ndarray,
        coefs: np.ndarray,
        prior: np.ndarray,
        tables: rans.RansTables,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One fused decode launch: (pixel buffer at lay.px_offsets, per-stream status)."""
        with self.context():
            n_tiles = len(lay.records)
            blocks, block = self.grid(n_tiles)
            state, rows, tw = self._state(lay, blocks * block)
            tabs = self.model_tables(prior, tables)[:8]
            px = self.empty(max(lay.px_bytes, 1), np.uint8)
            err = self.zeros(lay.n_streams, np.int64)
            with self.phase("h2d"):
                d_vq = None if vq is None else self.upload(vq)
                d_rec, d_coefs = self.upload(lay.records), self.upload(coefs)
                d_data, d_bb = self.upload(np.ascontiguousarray(data)), self.upload(bb)
            args = [px, d_vq, d_rec, n_tiles, *tabs, *state, rows, tw, d_coefs, d_data, d_bb, err]
            with self.phase("kernels"):
                self.launch(level_kernel("pilc_gpu_decode", lay.level), n_tiles, args)
            with self.phase("d2h"):
                return self.download(px)[: lay.px_bytes], self.download(err)
