"""The GPU path: the pixel stage of whole batches on a CUDA device (docs/gpu.md).

`resolve(device)` turns what a caller asked for into a backend: "cpu" (None: the CPU kernels),
"cuda" (codec/gpu/cuda.py, CuPy + NVRTC over the same kernel source as the CPU build),
"emulated" (the CUDA entry points as host loops: for tests), "auto" (CUDA where CuPy sees a
device, else the CPU), or a Backend instance. The default comes from PILC_DEVICE (else "auto").
Every device writes and reads the same bytes.
"""

from __future__ import annotations

import os
from functools import cache, lru_cache

from codec.errors import CodecError
from codec.gpu.backend import Backend

DEVICES = ("auto", "cpu", "cuda", "emulated")


@lru_cache(maxsize=1)
def cuda_available() -> bool:
    """Whether CuPy is installed and sees a CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no cupy, no driver, no device: all mean "no"
        return False


@cache
def _backend(name: str) -> Backend | None:
    if name == "cpu":
        return None
    if name == "emulated":
        from codec.gpu.emulated import EmulatedBackend

        return EmulatedBackend()
    if name == "cuda":
        if not cuda_available():
            raise CodecError("device 'cuda' asked for, but CuPy sees no CUDA device")
        from codec.gpu.cuda import CudaBackend

        return CudaBackend()
    return _backend("cuda" if cuda_available() else "cpu")  # auto


def default_device() -> str:
    """PILC_DEVICE, else "auto"."""
    name = os.environ.get("PILC_DEVICE", "auto").strip().lower() or "auto"
    if name not in DEVICES:
        raise CodecError(f"PILC_DEVICE must be one of {DEVICES}, not {name!r}")
    return name


def resolve(device: str | Backend | None = None) -> Backend | None:
    """The backend for `device` (None: PILC_DEVICE or auto); None means the CPU kernels."""
    if isinstance(device, Backend):
        return device
    name = default_device() if device is None else str(device).lower()
    if name not in DEVICES:
        raise CodecError(f"device must be one of {DEVICES}, not {device!r}")
    return _backend(name)


def device_name(device: str | Backend | None = None) -> str:
    """What resolve(device) runs on, as a word ("cpu", "cuda", "emulated")."""
    backend = resolve(device)
    return "cpu" if backend is None else backend.name
