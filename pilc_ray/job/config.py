"""The job's options (`JobConfig`: every one a CLI flag and a YAML key) and its one error type.

Its own module so the CLI glue, the pool planner and the driver share them without importing
each other.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from codec.layout import DEFAULT_TILE
from pilc_ray import index as ix


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
    tile: int = DEFAULT_TILE  # learned path's tile side: 256, or 128 for 4x more streams per image
    effort: str = "default"  # learned path's level: "fast", "default" or "max" (FORMAT.md)
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

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        if not isinstance(self.source, (str, os.PathLike)):
            d["source"] = f"<{type(self.source).__name__} of in-memory images/refs>"
        else:
            d["source"] = os.fspath(self.source)
        return d


class JobError(RuntimeError):
    """The job could not run at all (bad source, unreachable store, no workers)."""
