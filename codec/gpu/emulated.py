"""The CUDA entry points run on the host (codec/kernels/pilc_emu.c): the same kernel text, grid
and thread indexing, state layout and compaction as on a GPU, each launch a loop over the
threads. The tests use it to check the GPU path against the CPU build without a GPU."""

from __future__ import annotations

from typing import Any

import numpy as np

from codec import kernels
from codec.gpu.backend import Backend


class EmulatedBackend(Backend):
    """numpy arrays as device memory, launches through the emulation entry points."""

    name = "emulated"
    xp = np

    def __init__(self, block: int = 32, max_tiles: int = 256, max_pixels: int = 1 << 24) -> None:
        super().__init__()
        self.block = block
        self.max_tiles = max_tiles
        self.max_pixels = max_pixels

    def upload(self, a: np.ndarray) -> np.ndarray:
        return np.array(a, copy=True, order="C")  # a copy, as a device transfer is

    def download(self, a: np.ndarray) -> np.ndarray:
        return np.array(a, copy=True)

    def launch(self, kernel: str, n_threads: int, args: list[Any]) -> None:
        blocks, block = self.grid(n_threads)
        fn = getattr(kernels.lib, kernel.replace("pilc_gpu_", "pilc_emu_"))
        fn(
            blocks,
            block,
            *[kernels.ptr(a) if isinstance(a, np.ndarray) or a is None else int(a) for a in args],
        )
