"""A variant of codec/pixelmodel.py for an experiment: the shipped source with exact text
replacements or patches from experiments/, imported from a temporary folder. numba caches a
variant's kernels beside that copy, so each run compiles it afresh (which compile-time probes
want) while the codec's own kernels stay cached. Every replacement must match the shipped source
exactly once, so a probe whose anchor drifted fails loudly instead of measuring the unchanged
model."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_variant(name: str, replacements: list[tuple[str, str]], tmp: Path):
    """Import pixelmodel.py with each (old, new) replaced, as module `name` from tmp."""
    src = (ROOT / "codec" / "pixelmodel.py").read_text()
    for old, new in replacements:
        if src.count(old) != 1:
            raise SystemExit(f"{name}: anchor found {src.count(old)} times: {old[:60]!r}")
        src = src.replace(old, new)
    (tmp / f"{name}.py").write_text(src)
    return _import(name, tmp)


def load_patched(name: str, patches: list[str], tmp: Path):
    """Import pixelmodel.py with experiments/<patch> applied in order, as module `name`."""
    src = tmp / f"{name}.py"
    src.write_text((ROOT / "codec" / "pixelmodel.py").read_text())
    for patch in patches:
        subprocess.run(["patch", "-s", str(src), str(ROOT / "experiments" / patch)], check=True)
    return _import(name, tmp)


def _import(name: str, tmp: Path):
    if str(tmp) not in sys.path:
        sys.path.insert(0, str(tmp))
    return importlib.import_module(name)
