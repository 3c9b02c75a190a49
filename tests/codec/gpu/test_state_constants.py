"""The GPU backend sizes each lane's model state from Python mirrors of pilc_model.h's macros: a
mirror that drifts from its macro under-allocates the state the kernels write (silent corruption
on a device). Here gcc evaluates the macros themselves and the mirrors must agree."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from codec import pixelmodel
from codec.gpu import backend
from codec.kernels import SOURCE_DIR

MIRRORS = {
    "PM_NPM": backend.NPM,
    "PM_NB": pixelmodel.N_BUCKETS,
    "PM_NSTAT": backend.N_STATE,
    "PM_LL_NT": backend.LL_NT,
    "PM_LL_NS": backend.LL_NS,
    "PM_NL_NS": backend.NL_NS,
    "PM_LM_N": backend.LM_N,
}


def test_backend_state_sizes_match_the_kernel_macros(tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    src = tmp_path / "consts.c"
    body = "".join(f'    printf("{k} %lld\\n", (long long)({k}));\n' for k in MIRRORS)
    src.write_text(f'#include <stdio.h>\n#include "pilc_model.h"\nint main(void) {{\n{body}'
                   "    return 0;\n}\n")
    exe = tmp_path / "consts"
    subprocess.run(["gcc", "-std=c11", f"-I{SOURCE_DIR}", str(src), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    got = {name: int(v) for name, v in (line.split() for line in out.splitlines())}
    assert got == MIRRORS
