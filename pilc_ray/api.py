"""Python API of the batch job: `compress(source, dest, ...)`, and reading single images back.

    from pilc_ray.api import compress, read_image
    result = compress("photos/", "out/job", workers=2)       # or "s3://bucket/prefix/"
    img = read_image("out/job", "holiday/beach.png")          # index lookup + one ranged read
"""

from __future__ import annotations

from typing import Any

from codec.imagefile import RasterImage
from pilc_ray import index as ix
from pilc_ray.integrity import decode_blob, iter_index, verify
from pilc_ray.job.config import JobConfig
from pilc_ray.job.driver import JobResult, run_job

__all__ = ["compress", "decode_blob", "iter_index", "read_blob", "read_image", "verify"]


def compress(source: Any, dest: str, **options: Any) -> JobResult:
    """Compress every image of `source` into `dest` (see `JobConfig` for the options).

    source: folder, manifest (.txt/.csv/.parquet), ``s3://`` prefix, or a list/dict of images
    or Ray ObjectRefs. Rerunning with the same dest skips images already indexed.
    """
    return run_job(JobConfig(source=source, dest=str(dest), **options))


def read_blob(dest: str, image_id: str, storage_options: Any = None) -> tuple[dict, bytes]:
    """(index row, blob) of one image: a lookup reading one row group, then one ranged read."""
    row = ix.lookup(dest, image_id, storage_options)
    return row, ix.read_blob(row, storage_options)


def read_image(dest: str, image_id: str, storage_options: Any = None) -> RasterImage:
    """One image back from a job's output, exactly as it was compressed."""
    row, blob = read_blob(dest, image_id, storage_options)
    return decode_blob(row, blob)
