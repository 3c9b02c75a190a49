"""Bindings to the compiled kernels (codec/kernels/*.c, *.h, *.cu): one C source for the CPU
extension built at install and for the CUDA build (codec/gpu).

Why ctypes over a prebuilt shared object: nothing compiles at import or first use (numba's
first-use compile cost 85-112 s per fresh machine), a foreign call releases the GIL, so Python
threads over one call scale across cores, and the same library carries the host emulation of
the CUDA entry points that the tests run.

Threads: a call that spreads over tiles or streams runs on `threads()` threads (the CPUs this
process may use, or what `set_threads`/`PILC_THREADS`/`using_threads` said); the kernels share
an atomic work counter, so the output never depends on the thread count.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import hashlib
import importlib.machinery
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from codec.errors import CodecError

SOURCE_DIR = Path(__file__).parent
_P = ctypes.c_void_p
_I = ctypes.c_int64
# Name suffix of each effort level's model-pass and decode entry points, by level index
# (codec/pixelmodel.py LEVELS): one per level in pilc_cuda.cu and pilc_emu.c, each level a literal.
LEVEL_SUFFIXES = ("", "_fast", "_max", "_max2", "_max3", "_fast2")


def _library_path() -> Path:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = SOURCE_DIR / f"_native{suffix}"
        if path.exists():
            return path
    raise CodecError(
        "codec kernels are not built: install the package (`pip install -e .` runs the C "
        "compiler; a C compiler such as gcc is required)"
    )


_SIGNATURES: dict[str, tuple[type | None, list]] = {
    "pilc_pm_encode": (ctypes.c_int, [_I, _P, _I, _I, _I, _P, _P, _I] + [_P] * 8 + [_P] * 6),
    "pilc_pm_decode": (
        ctypes.c_int,
        [_I, _P, _P, _P, _I, _I, _I, _P, _P, _I, _P] + [_P] * 8 + [_P] * 2,
    ),
    "pilc_rans_encode": (None, [_P, _P, _P, _I, _P, _P, _P, _P, _P, _P]),
    "pilc_rans_decode": (None, [_P, _P, _P, _I, _P, _P, _P, _P, _P, _P]),
    "pilc_compact": (None, [_P, _P, _I, _P, _P]),
    "pilc_set_lanes": (_I, [_I]),
    "pilc_set_isa": (_I, [_I]),
    "pilc_coding_frame": (None, [_I, _I, _I, _P]),
    "pilc_varint_write": (_I, [_P, _I, _P]),
    "pilc_varint_read": (_I, [_P, _I, _I, _P, _I, _P, _P]),
    "pilc_normalize_rows": (None, [_P, _I, _I, _P]),
    "pilc_repeat_count": (_I, [_P, _I, _I, _I]),
    "pilc_emu_fit": (None, [_I, _I, _P, _P, _I, _P]),
    **{
        f"pilc_emu_model{lv}": (None, [_I, _I, _P, _P, _P, _I] + [_P] * 14 + [_I, _I] + [_P] * 4)
        for lv in LEVEL_SUFFIXES
    },
    "pilc_emu_rans_encode": (None, [_I, _I, _P, _P, _P, _I, _P, _P, _P, _P]),
    "pilc_emu_compact": (None, [_I, _I, _P, _P, _P, _I, _P]),
    **{
        f"pilc_emu_decode{lv}": (None, [_I, _I, _P, _P, _P, _I] + [_P] * 14 + [_I, _I] + [_P] * 4)
        for lv in LEVEL_SUFFIXES
    },
}


# setup.py hashes the same files in the same order into the library
_SOURCES = ("pilc_portable.h", "pilc_rans.h", "pilc_model.h", "pilc_fast.h",
            "pilc_fast_lanes.h", "pilc_fast_lanes_body.h", "pilc_cuda.cu", "pilc_cpu.c",
            "pilc_cpu_model.h", "pilc_cpu_v3.c", "pilc_emu.c")  # fmt: skip


def source_hash() -> str:
    """Hash of the kernel sources next to this file."""
    h = hashlib.sha256()
    for name in _SOURCES:
        h.update((SOURCE_DIR / name).read_bytes())
    return h.hexdigest()[:16]


def _load() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(_library_path()))  # CDLL (not PyDLL): calls release the GIL
    lib.pilc_source_hash.restype = ctypes.c_char_p
    built = lib.pilc_source_hash().decode()
    if built != source_hash():
        raise CodecError(
            f"codec kernels were built from other sources ({built}, the sources here are "
            f"{source_hash()}): rebuild them with `pip install -e .`"
        )
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


lib = _load()


def ptr(a: np.ndarray | None) -> int | None:
    """Address of a C-contiguous array's first element (None for a NULL pointer)."""
    if a is None:
        return None
    if not a.flags.c_contiguous:
        raise ValueError("kernel arguments must be C-contiguous")
    return a.ctypes.data


# --------------------------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------------------------


def _affinity() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _env_threads() -> int | None:
    raw = os.environ.get("PILC_THREADS", "").strip()
    if not raw:
        return None
    try:
        return max(1, int(raw))
    except ValueError:
        raise CodecError(f"PILC_THREADS must be a positive integer, not {raw!r}") from None


_default_threads: int | None = _env_threads()
_scoped: contextvars.ContextVar[int | None] = contextvars.ContextVar("pilc_threads", default=None)
# Threads are started as work needs them, so the cap only bounds what a huge `threads` asks for.
_pool = ThreadPoolExecutor(max_workers=256, thread_name_prefix="pilc-kernel")


def threads() -> int:
    """Threads a kernel call uses here: `using_threads`, else `set_threads`/PILC_THREADS, else
    the CPUs this process may run on."""
    return _scoped.get() or _default_threads or _affinity()


def set_threads(n: int | None) -> None:
    """Process-wide default thread count (None: the CPUs this process may use)."""
    global _default_threads
    if n is not None and int(n) < 1:
        raise CodecError(f"threads must be >= 1, not {n}")
    _default_threads = None if n is None else int(n)


@contextlib.contextmanager
def using_threads(n: int | None) -> Iterator[None]:
    """Thread count for the kernel calls inside the block (None: leave the default)."""
    if n is not None and int(n) < 1:
        raise CodecError(f"threads must be >= 1, not {n}")
    token = _scoped.set(None if n is None else int(n))
    try:
        yield
    finally:
        _scoped.reset(token)


def run_shared(call: Callable[[int], object], n_items: int) -> list:
    """Run call(counter_address) on min(threads(), n_items) threads sharing one work counter;
    returns each run's result."""
    counter = np.zeros(1, dtype=np.int64)
    n = max(1, min(threads(), n_items))
    if n == 1:
        return [call(ptr(counter))]
    futures = [_pool.submit(call, ptr(counter)) for _ in range(n - 1)]
    results = [call(ptr(counter))]  # the calling thread works too
    return results + [f.result() for f in futures]


# --------------------------------------------------------------------------------------------
# Vector lanes (the fast level, pilc_fast_lanes.h)
# --------------------------------------------------------------------------------------------


def set_lanes(width: bool | int) -> int:
    """Process-wide: code the fast level's tiles in vector lanes, several at once. True: the
    widest this CPU runs (16 with AVX-512, 8 with AVX2; the default); 16 or 8: that width where
    the CPU runs it, else none; False or 0: one tile at a time (the scalar loop). The bytes are
    the same either way; returns the width now in use (0: none)."""
    w = 1 if width is True else int(width)
    if w not in (0, 1, 8, 16):
        raise CodecError(f"lane width must be 16, 8, True or False, not {width!r}")
    return int(lib.pilc_set_lanes(w))


@contextlib.contextmanager
def using_lanes(width: bool | int) -> Iterator[int]:
    """set_lanes(width) for the block (yields the width in use), then back to the default: the
    widest this CPU runs, or what PILC_LANES says."""
    try:
        yield set_lanes(width)
    finally:
        set_lanes(_env_lanes())


def _env_lanes() -> int:
    raw = os.environ.get("PILC_LANES", "").strip()
    if raw not in ("", "0", "8", "16"):
        raise CodecError(f"PILC_LANES must be 0, 8 or 16, not {raw!r}")
    return int(raw) if raw else 1


set_lanes(_env_lanes())


# --------------------------------------------------------------------------------------------
# The x86-64-v3 build of the model's entry points (pilc_cpu_v3.c)
# --------------------------------------------------------------------------------------------


def set_v3(enabled: bool) -> bool:
    """Process-wide: run the model through the library's x86-64-v3 (AVX2) build where this CPU
    runs it (True, the default: the max levels code 1.03-1.17x faster there, the others at the
    same speed), or through the baseline x86-64 build (False). The bytes are the same either
    way; returns whether the v3 build is now in use."""
    return bool(lib.pilc_set_isa(1 if enabled else 0))


@contextlib.contextmanager
def using_v3(enabled: bool) -> Iterator[bool]:
    """set_v3(enabled) for the block (yields whether v3 is in use), then back to the default:
    on, unless PILC_V3=0."""
    try:
        yield set_v3(enabled)
    finally:
        set_v3(_env_v3())


def _env_v3() -> bool:
    raw = os.environ.get("PILC_V3", "").strip()
    if raw not in ("", "0", "1"):
        raise CodecError(f"PILC_V3 must be 0 or 1, not {raw!r}")
    return raw != "0"


set_v3(_env_v3())
