"""Single images back from a job's output: an index lookup, one ranged read, a checked decode.

    from pilc_ray.retrieval import open_archive
    pixels = open_archive("out/job").get("photos/beach.png")

`archive` is the library; `service` (the FastAPI app behind `pilc serve`, the `serve` extra) and
`deployment` (that app on Ray Serve) are imported by name, not here, so reading an archive
needs neither web framework.
"""

from pilc_ray.retrieval.archive import Archive, ArchiveError, open_archive

__all__ = ["Archive", "ArchiveError", "open_archive"]
