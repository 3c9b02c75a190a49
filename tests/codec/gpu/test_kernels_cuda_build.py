"""The CUDA build of the kernels compiles, without a GPU: NVRTC (what CuPy uses at run time) and
this machine's nvcc, for sm_80 and sm_90, warnings as errors, within docs/gpu.md's resource
budget. Skipped where a compiler is missing, unless PILC_REQUIRE_CUDA_COMPILERS=1 (.ci/run)."""

from __future__ import annotations

import os
import shutil

import pytest

from codec.gpu import build

REQUIRED = os.environ.get("PILC_REQUIRE_CUDA_COMPILERS") == "1"


def _need(available: bool, what: str) -> None:
    if available:
        return
    if REQUIRED:
        pytest.fail(f"{what} missing, and PILC_REQUIRE_CUDA_COMPILERS=1")
    pytest.skip(f"{what} missing")


def _has_nvrtc() -> bool:
    try:
        from cuda.bindings import nvrtc

        return nvrtc.nvrtcVersion()[0] == nvrtc.nvrtcResult.NVRTC_SUCCESS
    except Exception:  # noqa: BLE001 - not installed, or no libnvrtc: both mean "no"
        return False


@pytest.mark.parametrize("arch", build.ARCHS)
def test_nvrtc_builds_every_entry_point_within_budget(arch):
    _need(_has_nvrtc(), "NVRTC (pip install '.[cuda-check]')")
    cubin, log = build.nvrtc_compile(arch)
    assert cubin[:4] == b"\x7fELF"
    resources = build.parse_ptxas(log)
    assert set(resources) == set(build.KERNELS)
    assert build.over_budget(resources) == []


@pytest.mark.parametrize("arch", build.ARCHS)
def test_nvcc_builds_the_same_source_warning_free(arch):
    _need(shutil.which("nvcc") is not None, "nvcc")
    cubin, log = build.nvcc_compile(arch)
    assert cubin[:4] == b"\x7fELF"
    assert build.over_budget(build.parse_ptxas(log)) == []


def test_budget_check_catches_spills():
    report = {k: build.Resources(k, 64, 0, 0, 0, 0) for k in build.KERNELS}
    assert build.over_budget(report) == []
    report["pilc_gpu_decode"] = build.Resources("pilc_gpu_decode", 255, 96, 96, 96, 0)
    assert build.over_budget(report) == [
        "pilc_gpu_decode: 96 B stack, 96 B spill stores (budget 0 / 0)"
    ]
    del report["pilc_gpu_model"]
    assert "pilc_gpu_model: missing from the ptxas report" in build.over_budget(report)


def test_parse_ptxas_reads_a_real_report_shape():
    log = """ptxas info    : Compiling entry function 'pilc_gpu_fit' for 'sm_90'
ptxas info    : Function properties for pilc_gpu_fit
    2928 bytes stack frame, 1236 bytes spill stores, 1564 bytes spill loads
ptxas info    : Used 255 registers, used 0 barriers, 2928 bytes cumulative stack size
ptxas info    : Function properties for pilc_gpu_decode
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 166 registers, used 1 barriers, 22552 bytes smem"""
    r = build.parse_ptxas(log)
    assert r["pilc_gpu_fit"] == build.Resources("pilc_gpu_fit", 255, 2928, 1236, 1564, 0)
    assert r["pilc_gpu_decode"] == build.Resources("pilc_gpu_decode", 166, 0, 0, 0, 22552)
