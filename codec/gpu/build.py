"""How the CUDA build of the kernels is compiled: one place for the source and the NVRTC options,
used by the CuPy backend at run time and by the compile checks (tests, benchmarks/gpu_kernels.py)
on machines without a GPU.

--fmad=false: the encoder's least-squares fit is float64 and must round as the CPU build
(gcc -ffp-contract=off) does, so both pick the same coefficients and write the same bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from codec.kernels import LEVEL_SUFFIXES, SOURCE_DIR

ENTRY_SOURCE = '#include "pilc_cuda.cu"\n'
KERNELS = (
    "pilc_gpu_fit",
    *(f"pilc_gpu_model{lv}" for lv in LEVEL_SUFFIXES),
    "pilc_gpu_rans_encode",
    "pilc_gpu_compact",
    *(f"pilc_gpu_decode{lv}" for lv in LEVEL_SUFFIXES),
)
NVRTC_OPTIONS = ("--std=c++17", "--fmad=false", f"-I{SOURCE_DIR}")
ARCHS = ("sm_80", "sm_90")  # A100, H100/H200: what the compile checks build for
# Per-thread local memory (stack) and spill-store bytes each entry point may use (docs/gpu.md,
# "Resource budget", says why): the sample loops none at all, as every spilled word is a
# global-memory round trip on the serial chain; the LS fit its 4.6 KiB normal equations (24 x 24
# float64: the max level's plane 2) plus what ptxas spills around them, since it touches every
# 25th sample only.
RESOURCE_BUDGET: dict[str, tuple[int, int]] = {
    **{f"pilc_gpu_{k}{lv}": (0, 0) for k in ("decode", "model") for lv in LEVEL_SUFFIXES},
    "pilc_gpu_rans_encode": (0, 0),
    "pilc_gpu_compact": (0, 0),
    "pilc_gpu_fit": (5632, 1536),
}


def kernel_sources() -> dict[str, str]:
    """Every file of the kernel source (name -> text): what the CUDA build compiles."""
    return {p.name: p.read_text() for p in sorted(SOURCE_DIR.glob("pilc_*")) if p.suffix != ".c"}


@dataclass
class Resources:
    """ptxas' report for one entry point."""

    kernel: str
    registers: int
    stack_bytes: int
    spill_stores: int
    spill_loads: int
    smem_bytes: int


_FUNC = re.compile(r"Function properties for (\w+)")
_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?")


def parse_ptxas(log: str) -> dict[str, Resources]:
    """Registers, stack, spills and shared memory per entry point from a `ptxas -v` log."""
    out: dict[str, Resources] = {}
    current = None
    stack = (0, 0, 0)
    for line in log.splitlines():
        if m := _FUNC.search(line):
            current = m.group(1)
        elif (m := _STACK.search(line)) and current:
            stack = tuple(int(v) for v in m.groups())
        elif (m := _USED.search(line)) and current:
            out[current] = Resources(current, int(m.group(1)), *stack, int(m.group(2) or 0))
            current, stack = None, (0, 0, 0)
    return out


def over_budget(resources: dict[str, Resources]) -> list[str]:
    """Entry points missing from a report or over RESOURCE_BUDGET, as readable lines."""
    out = []
    for kernel, (max_stack, max_spill) in RESOURCE_BUDGET.items():
        r = resources.get(kernel)
        if r is None:
            out.append(f"{kernel}: missing from the ptxas report")
        elif r.stack_bytes > max_stack or r.spill_stores > max_spill:
            out.append(
                f"{kernel}: {r.stack_bytes} B stack, {r.spill_stores} B spill stores "
                f"(budget {max_stack} / {max_spill})"
            )
    return out


def nvcc_compile(arch: str, nvcc: str = "nvcc") -> tuple[bytes, str]:
    """The same source through nvcc (-Werror all-warnings, ptxas -v): (cubin, log)."""
    import subprocess
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pilc.cubin"
        src = Path(tmp) / "pilc_entry.cu"
        src.write_text(ENTRY_SOURCE)
        flags = ["-cubin", "-std=c++17", "--fmad=false", "-Werror", "all-warnings", "-Xptxas", "-v"]
        cmd = [nvcc, f"-arch={arch}", *flags, f"-I{SOURCE_DIR}", "-o", str(out), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise RuntimeError(f"nvcc for {arch} failed:\n{log}")
        return out.read_bytes(), log


def nvrtc_compile(arch: str, extra: tuple[str, ...] = ()) -> tuple[bytes, str]:
    """Compile the kernels with NVRTC (the compiler CuPy uses) for `arch` (e.g. "sm_90"), with
    ptxas' resource report: (cubin, log). Needs the nvidia-cuda-nvrtc and cuda-bindings wheels
    (extra "cuda-check"), not a GPU. Raises RuntimeError with the log on any error or warning."""
    from cuda.bindings import nvrtc

    def check(result: tuple, what: str) -> tuple:
        if result[0] != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise RuntimeError(f"NVRTC {what}: {result[0]}")
        return result[1:]

    (prog,) = check(
        nvrtc.nvrtcCreateProgram(ENTRY_SOURCE.encode(), b"pilc_entry.cu", 0, [], []), "create"
    )
    opts = [*NVRTC_OPTIONS, f"--gpu-architecture={arch}", "--ptxas-options=-v", *extra]
    status = nvrtc.nvrtcCompileProgram(prog, len(opts), [o.encode() for o in opts])[0]
    (size,) = check(nvrtc.nvrtcGetProgramLogSize(prog), "log size")
    log = b" " * size
    check(nvrtc.nvrtcGetProgramLog(prog, log), "log")
    text = log.decode(errors="replace").rstrip("\x00").strip()
    if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise RuntimeError(f"NVRTC compile for {arch} failed:\n{text}")
    warnings = [ln for ln in text.splitlines() if "warning" in ln.lower()]
    if warnings:
        raise RuntimeError(f"NVRTC compile for {arch} warned:\n{text}")
    (csize,) = check(nvrtc.nvrtcGetCUBINSize(prog), "cubin size")
    cubin = b" " * csize
    check(nvrtc.nvrtcGetCUBIN(prog, cubin), "cubin")
    nvrtc.nvrtcDestroyProgram(prog)
    return cubin, text
