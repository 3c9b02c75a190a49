"""Job progress: a terminal bar (images, MB, MB/s, ETA) or plain periodic lines for job logs."""

from __future__ import annotations

import sys
import time


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """mode "bar": tqdm on stderr; "log": one line every `every_s`; "none": silent."""

    def __init__(self, total: int | None, already: int, mode: str = "bar",
                 every_s: float = 30.0) -> None:
        if mode not in ("bar", "log", "none"):
            raise ValueError(f"progress must be bar, log or none, not {mode!r}")
        self.mode = mode
        self.total = None if total is None else max(0, total - already)
        self.already = already
        self.done = self.errors = 0
        self.raw = self.comp = 0
        self.t0 = time.monotonic()
        self.every_s = every_s
        self.last_line = self.t0
        self.bar = None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="img", dynamic_ncols=True, file=sys.stderr,
                            desc="starting workers", smoothing=0.05, mininterval=0.5)
        if already and mode != "none":
            self._print(f"resuming: {already} images already indexed are skipped")

    def started(self) -> None:
        """Workers are up: time throughput from here (model load is not the pipeline's rate)."""
        self.t0 = time.monotonic()
        if self.bar is not None:
            self.bar.set_description("compressing")
            self.bar.reset(total=self.total)

    def note(self, line: str) -> None:
        """One line for the user, above the bar (never into it); silent in mode "none"."""
        if self.mode != "none":
            self._print(f"[pilc] {line}")

    def _print(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def summary(self) -> str:
        dt = max(1e-9, time.monotonic() - self.t0)
        rate = self.raw / dt / 1e6
        eta = None
        if self.total is not None and self.done:
            eta = (self.total - self.done) * dt / self.done
        total = "?" if self.total is None else str(self.total)
        return (f"{self.done}/{total} images, {self.raw / 1e6:.1f} MB raw -> "
                f"{self.comp / 1e6:.1f} MB, {rate:.2f} MB/s, ETA {_fmt_eta(eta)}, "
                f"{self.errors} errors")

    def update(self, images: int, raw: int, comp: int, errors: int) -> None:
        self.done += images
        self.raw += raw
        self.comp += comp
        self.errors += errors
        if self.bar is not None:
            dt = max(1e-9, time.monotonic() - self.t0)
            self.bar.set_postfix_str(f"{self.raw / 1e6:.1f} MB, {self.raw / dt / 1e6:.2f} MB/s, "
                                     f"{self.errors} err", refresh=False)
            self.bar.update(images)
        self.tick()

    def tick(self) -> None:
        if self.mode == "log" and time.monotonic() - self.last_line >= self.every_s:
            self.last_line = time.monotonic()
            self._print(f"[pilc] {self.summary()}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.mode != "none":
            print(f"[pilc] done: {self.summary()}", file=sys.stderr, flush=True)
