"""pilc_ray: the batch job (`pilc_ray.api.compress`) and single-image retrieval.

    archive = pilc_ray.open_archive("out/job")     # or s3://bucket/prefix/, or its index.parquet
    pixels = archive.get("photos/beach.png")

By role: `job/` (sources -> workers -> DEST), `retrieval/` (archive, HTTP service, Ray Serve),
`reports/`; `storage`, `index`, `runs` and `integrity` shared below them; `cli` and `api` on
top (docs/architecture.md).
"""

from typing import Any

__all__ = ["open_archive"]


def __getattr__(name: str) -> Any:
    """Lazy exports: `import pilc_ray` stays cheap (no pyarrow/codec until used)."""
    if name == "open_archive":
        from pilc_ray.retrieval.archive import open_archive

        return open_archive
    raise AttributeError(f"module 'pilc_ray' has no attribute {name!r}")
