"""Builds the codec's C kernels into codec/kernels/_native (a plain shared library the package
loads with ctypes; docs/architecture.md says why). Everything else is in pyproject.toml."""

import hashlib
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNELS = "codec/kernels"
SOURCES = ("pilc_portable.h", "pilc_rans.h", "pilc_model.h", "pilc_fast.h", "pilc_fast_lanes.h",
           "pilc_fast_lanes_body.h", "pilc_cuda.cu", "pilc_cpu.c", "pilc_cpu_model.h",
           "pilc_cpu_v3.c", "pilc_emu.c")


def source_hash() -> str:
    """What codec/kernels/__init__.py compares at import: a stale build is refused, not run."""
    h = hashlib.sha256()
    for name in SOURCES:
        h.update((Path(__file__).parent / KERNELS / name).read_bytes())
    return h.hexdigest()[:16]

# -ffp-contract=off: the encoder's least-squares fit is float64 and must round exactly as the
# CUDA build (NVRTC --fmad=false) does, so both pick the same coefficients.
FLAGS = ["-O3", "-std=c11", "-ffp-contract=off", "-fno-strict-aliasing", "-Wall", "-Wextra"]


class BuildCtypesLibrary(build_ext):
    """The library exports C functions, not a Python module: no PyInit_ symbol to export."""

    def get_export_symbols(self, ext: Extension) -> list[str]:
        return []


setup(
    ext_modules=[
        Extension(
            "codec.kernels._native",
            sources=[f"{KERNELS}/pilc_cpu.c", f"{KERNELS}/pilc_cpu_v3.c", f"{KERNELS}/pilc_emu.c"],
            depends=[f"{KERNELS}/{name}" for name in SOURCES],
            extra_compile_args=FLAGS,
            define_macros=[("PILC_SOURCE_HASH", f'"{source_hash()}"')],
        )
    ],
    cmdclass={"build_ext": BuildCtypesLibrary},
)
