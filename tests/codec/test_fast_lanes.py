"""The fast levels' vector lanes (pilc_fast_lanes.h): up to 16 tiles coded at once must give the
scalar loop's bytes, pixels and stream errors exactly, for any mix of tile shapes, at both fast
levels (level 1, "fastest", and level 5, "fast", whose planes > 0 add a cross-plane blend)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from golden.make_codec_vectors import NAMES, encoded_name, options

import codec
from codec import container, kernels, learned, pixelmodel
from codec.errors import CodecError
from codec.layout import tile_boxes
from codec.model import default_model

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "codec_vectors.npz"


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((x for x in text.splitlines() if x.startswith("flags")), "")
    return set(line.split())


FLAGS = cpu_flags()
CPU_WIDTH = 16 if "avx512f" in FLAGS else 8 if "avx2" in FLAGS else 0
WIDTHS = [w for w in (8, 16) if w <= CPU_WIDTH]  # the lane kernels this CPU runs
FAST = ("fastest", "fast")


def smooth(h: int, w: int, ch: int, seed: int) -> np.ndarray:
    """Noisy gradients: photo-like enough that every tile takes the learned path."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    planes = [
        100 + 60 * np.sin(x / (9.0 + 4 * k)) * np.cos(y / (15.0 + k)) + rng.normal(0, 3 + k, (h, w))
        for k in range(ch)
    ]
    px = np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)
    return px[:, :, 0].copy() if ch == 1 else px


# Shapes whose tiles differ: ragged last rows and columns (down to 1 pixel), 2 to 30 tiles,
# gray, RGB, and RGBA (a 3-plane and a 1-plane group).
CASES = [
    (130, 129, 3, 128),
    (257, 300, 1, 128),
    (300, 520, 3, 256),
    (140, 1100, 3, 128),
    (900, 131, 1, 128),
    (600, 600, 1, 128),
    (129, 257, 4, 128),
    (6, 700, 3, 128),  # 6 rows: images under 64x64 pixels are coded at the default level
]


def encode(px: np.ndarray, tile: int, lanes: int, effort: str = "fast") -> bytes:
    with kernels.using_lanes(lanes) as width:
        assert width == lanes
        return codec.encode(px, effort=effort, tile=tile, fallback="never")


def decode(blob: bytes, lanes: int) -> np.ndarray:
    with kernels.using_lanes(lanes) as width:
        assert width == lanes
        return np.asarray(codec.decode(blob))


def test_lane_widths_follow_the_cpu():
    with kernels.using_lanes(True) as width:
        assert width == CPU_WIDTH
    with kernels.using_lanes(False) as width:
        assert width == 0
    for w in (8, 16):
        with kernels.using_lanes(w) as width:
            assert width == (w if w <= CPU_WIDTH else 0)
    with pytest.raises(CodecError, match="lane width"):
        kernels.set_lanes(4)
    assert kernels.set_lanes(True) == CPU_WIDTH


@pytest.mark.parametrize("effort", FAST)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("h,w,ch,tile", CASES)
def test_lanes_give_the_scalar_loops_bytes_and_pixels(h, w, ch, tile, width, effort):
    px = smooth(h, w, ch, seed=h + w + ch)
    scalar = encode(px, tile, lanes=0, effort=effort)
    assert encode(px, tile, lanes=width, effort=effort) == scalar
    assert np.array_equal(decode(scalar, lanes=width), px)
    assert np.array_equal(decode(scalar, lanes=0), px)


@pytest.mark.parametrize("level", [*pixelmodel.FAST_LEVELS, pixelmodel.LEVEL_DEFAULT])
@pytest.mark.parametrize("width", WIDTHS)
def test_buckets_only_when_asked_and_the_same_in_lanes(width, level):
    """Table fitting asks for each symbol's context bucket; the coder does not, and then gets
    none. Asked for, the lanes write the scalar loop's buckets; asked or not, the same symbols."""
    px = np.moveaxis(smooth(300, 400, 3, seed=4), -1, 0).copy()
    boxes = tile_boxes(300, 400, 128)
    prior = default_model().pixel_tables(level).prior
    codes = {}
    for lanes in (0, width):
        with kernels.using_lanes(lanes):
            for asked in (False, True):
                codes[lanes, asked] = pixelmodel.encode_planes(
                    px, boxes, None, prior, level, buckets=asked
                )
    assert codes[0, False].buckets is None and codes[width, False].buckets is None
    scalar = codes[0, True].buckets
    assert scalar.shape == codes[0, True].symbols.shape
    assert int(scalar.max()) < pixelmodel.N_BUCKETS and len(np.unique(scalar)) > 10
    assert np.array_equal(codes[width, True].buckets, scalar)
    for code in codes.values():
        assert np.array_equal(code.symbols, codes[0, True].symbols)
        assert np.array_equal(code.table_ids, codes[0, True].table_ids)


@pytest.mark.parametrize("width", WIDTHS)
def test_level_5_blend_at_the_extremes_in_lanes_and_scalar_loop(width):
    """Level 5's blend members at their clamps (black/white edges against a contrary plane 0,
    salt and pepper): the lanes' int32 weighted sums equal the scalar loop's."""
    rng = np.random.default_rng(3)
    px = (rng.integers(0, 2, (200, 260, 3)) * 255).astype(np.uint8)
    px[:, :130, 0] = 255 - px[:, :130, 1]
    px[50:90] = np.array([0, 255, 0], np.uint8)
    scalar = encode(px, 128, lanes=0)
    assert encode(px, 128, lanes=width) == scalar
    assert np.array_equal(decode(scalar, lanes=width), px)


@pytest.mark.parametrize("effort", FAST)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_lanes_independent_of_threads(threads, width, effort):
    px = smooth(400, 700, 3, seed=5)
    expected = encode(px, 128, lanes=0, effort=effort)
    with kernels.using_threads(threads):
        assert encode(px, 128, lanes=width, effort=effort) == expected
        assert np.array_equal(decode(expected, lanes=width), px)


def outcome(blob: bytes, lanes: int) -> tuple[str, object]:
    try:
        return "ok", decode(blob, lanes).tobytes()
    except CodecError as exc:
        return "error", str(exc)


@pytest.mark.parametrize("effort", FAST)
@pytest.mark.parametrize("width", WIDTHS)
def test_lanes_report_corrupt_streams_as_the_scalar_loop_does(width, effort):
    """The same first bad stream and code, or the same pixels where the damage goes unseen."""
    px = smooth(300, 400, 3, seed=9)
    blob = bytearray(encode(px, 128, lanes=0, effort=effort))
    rng = np.random.default_rng(0)
    seen = set()
    for k in range(24):
        bad = bytearray(blob)
        at = int(rng.integers(len(blob) // 4, len(blob)))
        bad[at] ^= 1 << int(rng.integers(0, 8))
        if k % 3 == 0:
            bad = bad[: len(bad) - int(rng.integers(1, 200))]
        scalar = outcome(bytes(bad), lanes=0)
        assert outcome(bytes(bad), lanes=width) == scalar, k
        seen.add(scalar[0])
    assert "error" in seen


@pytest.mark.parametrize("name", [n for n in NAMES if options(n).get("effort") in FAST])
def test_fast_golden_vectors_in_the_scalar_loop_too(name):
    """test_determinism checks the golden bytes with the lanes on (the default here)."""
    with np.load(GOLDEN) as f:
        px, stored = f[f"in_{name}"], f[f"blob_{name}"].tobytes()
        expected = f[f"blob_{encoded_name(name)}"].tobytes()
    opts = {"tile": 256, **options(name)}
    assert encode(px, lanes=0, **opts) == expected
    assert np.array_equal(decode(stored, lanes=0), px)


def tile_flag(blob: bytes) -> int:
    """The tile side a one-group learned blob was cut in (its group flags' bit 1)."""
    return 256 if container.parse(blob)[1][0] >> 1 & 1 else 128


def test_fast_levels_pick_128_tiles_under_32_tiles_of_256():
    for level in pixelmodel.FAST_LEVELS:
        assert learned.group_tile(300, 520, level) == 128  # 6 tiles of 256
        assert learned.group_tile(600, 1100, level) == 128  # 15 tiles of 256
        assert learned.group_tile(1024, 1024, level) == 128  # 16 tiles of 256
        assert learned.group_tile(1000, 1700, level) == 128  # 28 tiles of 256
        assert learned.group_tile(1000, 1800, level) == 256  # 32 tiles of 256
        assert learned.group_tile(1024, 2048, level) == 256  # 32 tiles of 256
        assert learned.group_tile(300, 520, level, 256) == 256
    assert learned.group_tile(300, 520, pixelmodel.LEVEL_DEFAULT) == 256
    assert learned.group_tile(300, 520, pixelmodel.LEVEL_MAX) == 256
    small, large = smooth(300, 520, 3, seed=1), smooth(1024, 2048, 1, seed=2)
    assert tile_flag(codec.encode(small, effort="fast", fallback="never")) == 128
    assert tile_flag(codec.encode(large, effort="fast", fallback="never")) == 256
    assert tile_flag(codec.encode(small, fallback="never")) == 256
    assert tile_flag(codec.encode(small, effort="fast", tile=256, fallback="never")) == 256
    numpy_tile = np.int64(256)
    assert tile_flag(codec.encode(small, effort="fast", tile=numpy_tile, fallback="never")) == 256
    for bad in (256.0, True, 64):
        with pytest.raises(CodecError, match="tile side"):
            codec.encode(small, effort="fast", tile=bad)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_kernels_build_without_lanes():
    """Targets without x86 vector lanes (PILC_NO_LANES stands in for them) build the scalar
    loops alone, warning-free."""
    src = Path(kernels.__file__).parent / "pilc_cpu.c"
    run = subprocess.run(
        ["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-DPILC_NO_LANES",
         '-DPILC_SOURCE_HASH="x"', str(src)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr


LANE_COPIES = r"""
#include <stdio.h>
#include <stdlib.h>
#include "pilc_model.h"
#include "pilc_fast_lanes.h"
// pl_copy_in / pl_copy_out at 8 and 16 lanes (8x8 transposes in groups of 8 lanes, ragged
// tails): every lane's tile arrives at its lane slots and comes back, on any x86-64.
int main(void) {
    srand(7);
    for (int trial = 0; trial < 400; trial++) {
        const int W = trial % 2 ? 16 : 8, n = 1 + rand() % W;
        const int64_t n_ch = 1 + rand() % 3, H = 20 + rand() % 60, Wd = 20 + rand() % 90;
        int64_t boxes[4 * PL_MAX_W], mh = 0, mw = 0;
        for (int t = 0; t < n; t++) {
            const int64_t y0 = rand() % H, x0 = rand() % Wd;
            boxes[4 * t] = y0;
            boxes[4 * t + 1] = x0;
            boxes[4 * t + 2] = 1 + rand() % (H - y0);
            boxes[4 * t + 3] = 1 + rand() % (Wd - x0);
            mh = boxes[4 * t + 2] > mh ? boxes[4 * t + 2] : mh;
            mw = boxes[4 * t + 3] > mw ? boxes[4 * t + 3] : mw;
        }
        uint8_t *px = malloc(n_ch * H * Wd), *back = calloc(n_ch * H * Wd, 1);
        for (int64_t k = 0; k < n_ch * H * Wd; k++) px[k] = (uint8_t)rand();
        void *mem = malloc(pl_bytes(W, n_ch, mh, mw));
        PlBatch B;
        pl_place(&B, mem, W, n_ch, mh, mw);
        pl_open(&B, boxes, 0, n);
        const PmImage im = {px, NULL, H * Wd, Wd}, out = {back, NULL, H * Wd, Wd};
        pl_copy_in(&B, &im, n_ch);
        for (int64_t c = 0; c < n_ch; c++)
            for (int l = 0; l < n; l++)
                for (int64_t i = 0; i < B.h[l]; i++)
                    for (int64_t j = 0; j < B.w[l]; j++)
                        if (B.pix[((c * B.hmax + i) * B.wmax + j) * W + l]
                            != px[c * H * Wd + (B.y0[l] + i) * Wd + B.x0[l] + j]) {
                            printf("copy in: trial %d lane %d (%d %d %d)\n", trial, l, (int)c,
                                   (int)i, (int)j);
                            return 1;
                        }
        pl_copy_out(&B, &out, n_ch);
        for (int64_t c = 0; c < n_ch; c++)
            for (int64_t y = 0; y < H; y++)
                for (int64_t x = 0; x < Wd; x++) {
                    int inside = 0;
                    for (int l = 0; l < n; l++)
                        inside |= y >= B.y0[l] && y < B.y0[l] + B.h[l] && x >= B.x0[l]
                                  && x < B.x0[l] + B.w[l];
                    const int64_t k = c * H * Wd + y * Wd + x;
                    if (back[k] != (inside ? px[k] : 0)) {
                        printf("copy out: trial %d at (%d %d %d)\n", trial, (int)c, (int)y, (int)x);
                        return 1;
                    }
                }
        free(px);
        free(back);
        free(mem);
    }
    printf("ok\n");
    return 0;
}
"""


def run_c_harness(tmp_path: Path, source: str, opt: str, *args: str) -> None:
    """Build a C harness against the kernel headers and run it: it must print "ok"."""
    src, exe = tmp_path / "harness.c", tmp_path / "harness"
    src.write_text(source)
    build = subprocess.run(
        ["gcc", opt, "-std=c11", "-I", str(Path(kernels.__file__).parent), str(src), "-o",
         str(exe)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr


@pytest.mark.skipif(shutil.which("gcc") is None or not FLAGS, reason="needs gcc on x86-64")
def test_lane_copies_at_every_width(tmp_path: Path):
    """The lane layout's block transposes at 8 and 16 lanes, run without AVX-512 (they are SSE2):
    the 16-lane kernels use them in two groups of 8, which a CPU without AVX-512 never runs."""
    run_c_harness(tmp_path, LANE_COPIES, "-O1")


LANE_DIVISIONS = r"""
#include <stdio.h>
#include "pilc_model.h"
#include "pilc_fast_lanes.h"
// The 8 lanes' float32 divisions against the integers they stand for, for every input they get:
// the bucket means (16 sum < 2^24, cnt 1..256, capped) and level 5's blend weights (s 0..4095).
__attribute__((target("avx2"))) static int check(const int32_t *recip) {
    int32_t out[8], in[8];
    for (int32_t s = 0; s < 4096 + 64; s += 8) {
        for (int l = 0; l < 8; l++) in[l] = s + l;
        _mm256_storeu_si256((__m256i *)out, pl_weight_8(_mm256_loadu_si256((const __m256i *)in)));
        for (int l = 0; l < 8; l++) {
            const int32_t want = recip[in[l] < 4095 ? in[l] : 4095];
            if (out[l] != want) {
                printf("weight of %d: %d, not %d\n", in[l], out[l], want);
                return 1;
            }
        }
    }
    for (int32_t cnt = 1; cnt <= 256; cnt++) {
        const __m256i c = _mm256_set1_epi32(cnt);
        for (int32_t sum = 0; sum < (1 << 20); sum += 8) {
            for (int l = 0; l < 8; l++) in[l] = sum + l;
            _mm256_storeu_si256((__m256i *)out,
                                pl_running_mean_8(_mm256_loadu_si256((const __m256i *)in), c));
            for (int l = 0; l < 8; l++) {
                const int32_t q = (16 * in[l]) / cnt;
                const int32_t want = q < PM_MEAN_MAX - 1 ? q : PM_MEAN_MAX - 1;
                if (out[l] != want) {
                    printf("mean of %d / %d: %d, not %d\n", in[l], cnt, out[l], want);
                    return 1;
                }
            }
        }
    }
    return 0;
}
int main(int argc, char **argv) {
    static int32_t recip[4096];
    FILE *f = fopen(argv[argc - 1], "rb");
    if (!f || fread(recip, 4, 4096, f) != 4096) return 2;
    fclose(f);
    if (check(recip)) return 1;
    printf("ok\n");
    return 0;
}
"""


@pytest.mark.skipif(shutil.which("gcc") is None or "avx2" not in FLAGS, reason="needs gcc, AVX2")
def test_lane_float32_divisions_are_exact_for_every_input(tmp_path: Path):
    """The lanes divide in float32 where the scalar loop uses integers or a table (bucket means,
    level 5's weights): every input those can see gives the same integer (the 16-lane build uses
    the same float32 operations; this CPU's 8 lanes stand for both)."""
    table = tmp_path / "recip.bin"
    table.write_bytes(pixelmodel.WEIGHT_OF_ERR.astype("<i4").tobytes())
    run_c_harness(tmp_path, LANE_DIVISIONS, "-O2", str(table))
