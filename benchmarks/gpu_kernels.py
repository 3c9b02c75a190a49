"""What the CUDA build of the kernels costs per thread, read off the compilers (no GPU needed):
registers, stack, spills and shared memory per entry point (ptxas -v through NVRTC, what CuPy
runs), the SASS instructions of each plane's per-sample loop (cuobjdump), and the occupancy
they allow. Feeds docs/gpu.md's cost model.

    pip install -e ".[cuda-check]"
    python benchmarks/gpu_kernels.py [--out benchmarks/results/gpu_kernels.md]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codec.gpu import build  # noqa: E402

SAMPLE_LOOP_MIN = 300  # SASS instructions: the per-sample loops are the innermost this large
REGS_PER_SM = 65536
MAX_THREADS_PER_SM = 2048
SMEM_PER_SM = 228 * 1024


def cuobjdump() -> str:
    found = shutil.which("cuobjdump")
    if found:
        return found
    import nvidia

    for base in nvidia.__path__:
        for path in Path(base).glob("*/bin/cuobjdump"):
            return str(path)
    raise SystemExit("cuobjdump not found (pip install nvidia-cuda-cuobjdump)")


def sample_loops(cubin: bytes, kernel: str) -> list[int]:
    """Sizes (instructions) of the kernel's innermost backward-branch loops of at least
    SAMPLE_LOOP_MIN instructions, largest first: one per plane's per-sample loop (their
    bodies hold the tile-edge branches too, so these bound the interior path from above)."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        sass = subprocess.run(
            [cuobjdump(), "-sass", "-fun", kernel, f.name], capture_output=True, text=True,
            check=True,
        ).stdout  # fmt: skip
    loops = []
    for m in re.finditer(r"/\*([0-9a-f]{4,})\*/\s+[^;]*?BRA[^;]*?0x([0-9a-f]+)\s*;", sass):
        src, dst = int(m.group(1), 16), int(m.group(2), 16)
        if dst < src and (src - dst) // 16 + 1 >= SAMPLE_LOOP_MIN:
            loops.append((dst, src))
    inner = [a for a in loops if not any(b != a and a[0] <= b[0] and b[1] <= a[1] for b in loops)]
    return sorted(((src - dst) // 16 + 1 for dst, src in inner), reverse=True)


def occupancy(r: build.Resources, block: int = 128) -> int:
    """Resident threads per SM (registers, shared memory, thread limit; 256-register units)."""
    regs_per_warp = -(-r.registers * 32 // 256) * 256
    by_regs = REGS_PER_SM // regs_per_warp * 32 // block * block
    by_smem = SMEM_PER_SM // max(r.smem_bytes, 1) * block if r.smem_bytes else MAX_THREADS_PER_SM
    return min(by_regs, by_smem, MAX_THREADS_PER_SM)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/gpu_kernels.md")
    args = ap.parse_args()
    from cuda.bindings import nvrtc

    ver = nvrtc.nvrtcVersion()
    lines = [
        "# CUDA build of the kernels: per-thread resources (compiler reports, no GPU)",
        "",
        f"`python benchmarks/gpu_kernels.py`; NVRTC {ver[1]}.{ver[2]} with the options CuPy uses "
        f"(`{' '.join(build.NVRTC_OPTIONS[:2])}`), block of 128 threads. Budget: "
        "codec/gpu/build.py RESOURCE_BUDGET, checked by "
        "tests/codec/gpu/test_kernels_cuda_build.py.",
        "",
        "| arch | kernel | registers | stack B | spill stores B | spill loads B | smem B | "
        "threads/SM | SASS per-sample loop bodies, largest first (planes 2, 1, 0) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arch in build.ARCHS:
        cubin, log = build.nvrtc_compile(arch)
        for kernel, r in build.parse_ptxas(log).items():
            loops = (
                sample_loops(cubin, kernel)
                if kernel in ("pilc_gpu_decode", "pilc_gpu_model")
                else []
            )
            lines.append(
                f"| {arch} | {kernel} | {r.registers} | {r.stack_bytes} | {r.spill_stores} | "
                f"{r.spill_loads} | {r.smem_bytes} | {occupancy(r)} | "
                f"{', '.join(map(str, loops)) or '-'} |"
            )
    lines.append("")
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
