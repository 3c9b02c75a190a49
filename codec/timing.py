"""Per-stage time accounting of the codec, for reports and benchmarks.

Callers wrap codec calls in `collect()` and read back seconds per stage; stage names are fixed
(`STAGES`) so reports can rely on them. Outside `collect()` the `stage()` timer costs one
thread-local lookup, so the codec can always be instrumented.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

# predictor: prediction/residuals and pixel reconstruction; model: VQ encoder + integer decoder;
# coder: context modelling and rANS; container: headers, checksums, classical fallback.
STAGES = ("predictor", "model", "coder", "container")

_local = threading.local()


@contextmanager
def collect() -> Iterator[dict[str, float]]:
    """Accumulate stage seconds of every codec call made inside the block (this thread)."""
    totals = dict.fromkeys(STAGES, 0.0)
    outer = getattr(_local, "totals", None)
    _local.totals = totals
    try:
        yield totals
    finally:
        _local.totals = outer
        if outer is not None:
            for k, v in totals.items():
                outer[k] += v


class _Stage:
    """stage()'s timer: a plain class, as a generator-based context manager cost ~1.5 us a
    block, several times per image, which shows when small images are coded one at a time."""

    __slots__ = ("name", "totals", "t0")

    def __init__(self, name: str):
        self.name = name

    def __enter__(self) -> None:
        self.totals = getattr(_local, "totals", None)
        if self.totals is not None:
            self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        if self.totals is not None:
            self.totals[self.name] += time.perf_counter() - self.t0


def stage(name: str) -> _Stage:
    """Charge the time of the block to `name` when a `collect()` is active."""
    return _Stage(name)
