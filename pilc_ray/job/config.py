"""The job's options (`JobConfig`: every one a CLI flag and a YAML key) and its one error type.

Its own module so the CLI glue, the pool planner and the driver share them without importing
each other.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from codec.container import EFFORTS
from codec.layout import TILE_SIZES
from pilc_ray import index as ix
from pilc_ray.storage import StorageOptions

DEVICES = ("auto", "cpu", "cuda", "emulated")
MIN_CPUS_PER_WORKER = 0.1  # below this a cluster's CPUs would start thousands of workers


@dataclass
class JobConfig:
    """A compression job. Every field has a CLI flag and a key in jobs/example_job.yaml."""

    source: Any
    dest: str
    workers: int | None = None  # default: one per GPU, else cluster CPUs / cpus_per_worker
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None  # None: 1 when the cluster has GPUs, else 0
    # "auto": a CUDA worker per GPU plus CPU workers on the CPUs those leave free; "cuda": GPU
    # workers only; "cpu": CPU workers only; "emulated": as auto, the GPU workers running the
    # CUDA kernels' host emulation (tests on clusters with declared, not real, GPUs)
    device: str = "auto"
    threads_per_worker: int | None = None  # codec threads; default ceil(cpus_per_worker)
    batch_size: int = 16
    batch_max_bytes: int = 256 << 20  # a batch closes early past this many input bytes
    layout: str = "shards"
    engine: str = "actors"  # "actors" (hand-made pool) or "data" (Ray Data map_batches)
    ray_address: str | None = None
    num_cpus: int | None = None  # for the embedded local Ray only
    storage_options: dict[str, Any] = field(default_factory=dict)
    fallback: str = "auto"
    # learned path's tile side: 256, or 128 for 4x more streams per image; None: the encoder's
    # choice (256, but 128 at the fast efforts for images under 32 tiles, learned.group_tile)
    tile: int | None = None
    effort: str = "default"  # learned path's level: "fastest", "fast", "default", "max" (FORMAT.md)
    jpeg: str = "passthrough"
    all_files: bool = False
    verify: bool = False
    max_attempts: int = 3
    in_flight_per_worker: int = 2
    progress: str = "bar"  # "bar", "log" (a line every log_every_s; for jobs) or "none"
    log_every_s: float = 30.0
    flush_rows: int = 20_000
    flush_seconds: float = 30.0
    row_group_size: int = ix.ROW_GROUP_SIZE
    gc_orphans: bool = True
    retry_backoff_s: float = 1.0
    report: bool = True  # write report.json + report.html into DEST at the end
    repair: bool = False  # also decode every indexed image first; rows that fail are redone
    compare_sample: int = 0  # report: also measure PNG/WebP/JPEG XL on this many images

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every option's type and range, checked once here for the CLI, YAML and the Python
        API alike: a wrong value is one clear JobConfigError naming the option, never a
        TypeError (or a hung job) deep inside the run."""
        for name, (kind, low, optional) in _NUMBERS.items():
            value = getattr(self, name)
            if value is None and optional:
                continue
            ok = (isinstance(value, int) if kind == "integer" else isinstance(value, int | float))
            if not ok or isinstance(value, bool) or not value >= low:  # `not >=`: also NaN
                what = f"{'an' if kind == 'integer' else 'a'} {kind} of at least {low}"
                raise JobConfigError(f"{name} must be {what}"
                                     f"{' (or unset)' if optional else ''}, not {value!r}")
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if type(value) not in {type(c) for c in choices} or value not in choices:
                raise JobConfigError(f"{name} must be one of {choices}, not {value!r}")
        for name in _FLAGS:
            if not isinstance(getattr(self, name), bool):
                raise JobConfigError(f"{name} must be true or false, not {getattr(self, name)!r}")
        if not isinstance(self.dest, (str, os.PathLike)) or not os.fspath(self.dest):
            raise JobConfigError(f"dest must be a folder or s3:// prefix, not {self.dest!r}")
        if isinstance(self.source, str | os.PathLike) and not os.fspath(self.source):
            raise JobConfigError("source must not be empty")
        if self.source is None:
            raise JobConfigError("give a source (folder, manifest or s3:// prefix)")
        if self.ray_address is not None and not isinstance(self.ray_address, str):
            raise JobConfigError(f"ray_address must be a string, not {self.ray_address!r}")
        if not isinstance(self.storage_options, dict | StorageOptions | None):
            raise JobConfigError("storage_options must be a mapping of option: value, not "
                                 f"{self.storage_options!r}")

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        if not isinstance(self.source, (str, os.PathLike)):
            d["source"] = f"<{type(self.source).__name__} of in-memory images/refs>"
        else:
            d["source"] = os.fspath(self.source)
        return d


class JobError(RuntimeError):
    """The job could not run at all (bad source, unreachable store, no workers)."""


class JobConfigError(JobError, ValueError):
    """An option of the wrong type or out of range (a JobError: the CLI prints it in one line;
    a ValueError: it is a bad value)."""


# name: (kind, least value, None allowed)
_NUMBERS: dict[str, tuple[str, float, bool]] = {
    "workers": ("integer", 1, True),
    "cpus_per_worker": ("number", MIN_CPUS_PER_WORKER, False),
    "gpus_per_worker": ("number", 0, True),
    "threads_per_worker": ("integer", 1, True),
    "batch_size": ("integer", 1, False),
    "batch_max_bytes": ("integer", 1, False),
    "num_cpus": ("integer", 1, True),
    "max_attempts": ("integer", 1, False),
    "in_flight_per_worker": ("integer", 1, False),
    "log_every_s": ("number", 0.1, False),
    "flush_rows": ("integer", 1, False),
    "flush_seconds": ("number", 0, False),
    "row_group_size": ("integer", 1, False),
    "retry_backoff_s": ("number", 0, False),
    "compare_sample": ("integer", 0, False),
}
_CHOICES: dict[str, tuple] = {
    "device": DEVICES,
    "layout": ("shards", "objects"),
    "engine": ("actors", "data"),
    "fallback": ("auto", "always", "never"),
    "tile": (None, *TILE_SIZES),
    "effort": EFFORTS,
    "jpeg": ("passthrough", "decode"),
    "progress": ("bar", "log", "none"),
}
_FLAGS = ("all_files", "verify", "gc_orphans", "report", "repair")
