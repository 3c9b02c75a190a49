"""The CUDA backend: the kernel source (codec/kernels) compiled by NVRTC through cupy.RawModule,
run on the current CuPy device on a stream of its own.

Transfers: inputs go host -> device through a pinned staging buffer (asynchronous copies on the
backend's stream), results come back into pinned buffers; within a launch the kernels run back
to back on that stream, and the host only waits where it must (the compacted size, the final
copies). docs/gpu.md has the design and the cost model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from codec.gpu import build
from codec.gpu.backend import Backend


class CudaBackend(Backend):
    """cupy arrays as device memory; kernels from one NVRTC build per process and device."""

    name = "cuda"

    def __init__(self, block: int = 128, max_tiles: int = 1 << 15) -> None:
        super().__init__()
        import cupy

        self.cp = cupy
        self.xp = cupy
        self.block = block
        self.max_tiles = max_tiles
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.module = cupy.RawModule(
            code=build.ENTRY_SOURCE, options=build.NVRTC_OPTIONS, backend="nvrtc"
        )
        self.functions = {k: self.module.get_function(k) for k in build.KERNELS}
        self._null = cupy.zeros(1, dtype=np.uint8)  # stands for a NULL pointer argument
        self._pending: list[Any] = []  # pinned staging buffers of copies still in flight
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"]
        self.device_name = name.decode() if isinstance(name, bytes) else str(name)

    def upload(self, a: np.ndarray) -> Any:
        a = np.ascontiguousarray(a)
        with self.stream:
            dev = self.cp.empty(a.shape, dtype=a.dtype)
            if a.nbytes:
                pinned = self.cp.cuda.alloc_pinned_memory(a.nbytes)
                staged = np.frombuffer(pinned, a.dtype, a.size).reshape(a.shape)
                staged[...] = a
                dev.set(staged, stream=self.stream)
                self._pending.append(pinned)  # alive until the copy ran: the next sync
            return dev

    def download(self, a: Any) -> np.ndarray:
        pinned = self.cp.cuda.alloc_pinned_memory(max(1, a.nbytes))
        host = np.frombuffer(pinned, a.dtype, a.size).reshape(a.shape)
        a.get(stream=self.stream, out=host)
        self.stream.synchronize()
        self._pending.clear()
        return np.array(host)  # pageable copy: the pinned pool is reused

    def empty(self, n: int, dtype: Any) -> Any:
        with self.stream:
            return self.cp.empty(int(n), dtype=dtype)

    def zeros(self, n: int, dtype: Any) -> Any:
        with self.stream:
            return self.cp.zeros(int(n), dtype=dtype)

    def launch(self, kernel: str, n_threads: int, args: list[Any]) -> None:
        blocks, block = self.grid(n_threads)
        cooked = [
            self._null if a is None else (np.int64(a) if isinstance(a, int | np.integer) else a)
            for a in args
        ]
        self.functions[kernel]((blocks,), (block,), tuple(cooked), stream=self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def context(self) -> Any:
        return self.stream
