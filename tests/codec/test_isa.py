"""The library's two builds of the model's entry points (pilc_cpu.c baseline x86-64, pilc_cpu_v3.c
x86-64-v3): every level must give the same bytes and pixels through either, and the golden
vectors must hold through the baseline build too (test_determinism runs the default, v3 where
the CPU runs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from golden.make_codec_vectors import NAMES, encoded_name, options
from test_fast_lanes import FLAGS, smooth

import codec
from codec import kernels
from codec.errors import CodecError

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "codec_vectors.npz"
# x86-64-v3's features as /proc/cpuinfo names them (lzcnt is "abm" there)
V3_FLAGS = {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}
CPU_V3 = V3_FLAGS <= FLAGS
needs_v3 = pytest.mark.skipif(not CPU_V3, reason="this CPU does not run x86-64-v3")
LEVELS = ("fastest", "fast", "default", "max-v1", "max-v2", "max")


def encode(px: np.ndarray, v3: bool, **opts) -> bytes:
    with kernels.using_v3(v3) as used:
        assert used == (v3 and CPU_V3)
        return codec.encode(px, fallback="never", **opts)


def decode(blob: bytes, v3: bool) -> np.ndarray:
    with kernels.using_v3(v3):
        return np.asarray(codec.decode(blob))


def test_v3_follows_the_cpu():
    assert kernels.set_v3(True) == CPU_V3
    assert kernels.set_v3(False) is False
    with kernels.using_v3(True) as used:
        assert used == CPU_V3
    with kernels.using_v3(False) as used:
        assert used is False
    assert kernels.set_v3(True) == CPU_V3


def test_pilc_v3_must_be_0_or_1(monkeypatch):
    monkeypatch.setenv("PILC_V3", "yes")
    with pytest.raises(CodecError, match="PILC_V3"):
        kernels._env_v3()
    monkeypatch.setenv("PILC_V3", "0")
    assert kernels._env_v3() is False


@needs_v3
@pytest.mark.parametrize("effort", LEVELS)
@pytest.mark.parametrize("h,w,ch", [(130, 300, 3), (200, 150, 1), (129, 140, 4)])
def test_both_builds_give_the_same_bytes_and_pixels(effort, h, w, ch):
    px = smooth(h, w, ch, seed=h * w + ch)
    base = encode(px, False, effort=effort)
    assert encode(px, True, effort=effort) == base
    assert np.array_equal(decode(base, True), px)
    assert np.array_equal(decode(base, False), px)


@needs_v3
def test_both_builds_report_a_corrupt_stream_alike():
    px = smooth(200, 300, 3, seed=3)
    blob = bytearray(encode(px, False, effort="max"))
    blob[len(blob) // 2] ^= 0x10
    outcomes = []
    for v3 in (False, True):
        try:
            outcomes.append(("ok", decode(bytes(blob), v3).tobytes()))
        except CodecError as exc:
            outcomes.append(("error", str(exc)))
    assert outcomes[0] == outcomes[1]


OTHER_LEVELS = [n for n in NAMES if options(n).get("effort", "default") != "default"]


@pytest.mark.parametrize("name", OTHER_LEVELS)
def test_golden_vectors_through_the_baseline_build(name):
    with np.load(GOLDEN) as f:
        px, stored = f[f"in_{name}"], f[f"blob_{name}"].tobytes()
        expected = f[f"blob_{encoded_name(name)}"].tobytes()
    assert encode(px, False, **options(name)) == expected
    assert np.array_equal(decode(stored, False), px)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
@pytest.mark.parametrize("define", ["-DPILC_NO_V3", "-DPILC_NO_LANES"])
def test_kernels_build_without_the_v3_copy(define):
    """Targets without it (PILC_NO_V3 stands in for them) build the baseline entry points under
    their exported names, warning-free."""
    src = Path(kernels.__file__).parent
    for name in ("pilc_cpu.c", "pilc_cpu_v3.c"):
        run = subprocess.run(
            ["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", define,
             '-DPILC_SOURCE_HASH="x"', str(src / name)],
            capture_output=True, text=True,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
