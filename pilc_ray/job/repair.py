"""Finding index rows whose image cannot come back, so a rerun codes those images again.

Why: an index row pointing at a missing shard (deleted by another job before issue 16's lease,
or by hand) or at bytes that fail their checksum is a lost image that a plain rerun skips,
since the id is indexed. Every job checks the cheap part (every blob object the index names
still exists: one listing of DEST's blob folders); `--repair` also decodes every row, as
`pilc verify` does. The rows found are dropped from the index before the job reads which ids
are done, and their images are coded again from the source.
"""

from __future__ import annotations

import logging
from typing import Any

from pilc_ray import index as ix
from pilc_ray import storage as st

log = logging.getLogger("pilc_ray.job.repair")

BLOB_FOLDERS = ("shards", "objects")


def missing_blob_ids(dest: str, options: Any = None) -> list[str]:
    """Ids of index rows whose blob object is not in DEST (one listing per blob folder)."""
    dest = st.normalize(dest)
    storage = st.open_storage(dest, options)
    table = ix.read_table(st.join(dest, ix.INDEX_FILE), options, ["id", "blob_uri"])
    present = set()
    for folder in BLOB_FOLDERS:
        present.update(o.uri for o in storage.list_folder(st.join(dest, folder)))
    ids = table.column("id").to_pylist()
    uris = table.column("blob_uri").to_pylist()
    return [i for i, u in zip(ids, uris, strict=True) if u not in present]


def bad_blob_ids(dest: str, options: Any = None) -> list[str]:
    """Ids of rows that do not decode to their checksum (a full `pilc verify` pass)."""
    from pilc_ray.integrity import verify

    return [b["id"] for b in verify(dest, options)["bad"]]


def repair_index(dest: str, options: Any = None, full: bool = False) -> dict[str, int]:
    """Drop the rows of lost images from the compacted index; counts of what was found."""
    if not st.open_storage(dest, options).exists(st.join(st.normalize(dest), ix.INDEX_FILE)):
        return {"missing_blobs": 0, "bad_blobs": 0, "rows_dropped": 0}  # nothing indexed yet
    missing = missing_blob_ids(dest, options)
    bad = sorted(set(bad_blob_ids(dest, options)) - set(missing)) if full else []
    dropped = ix.drop_ids(dest, missing + bad, options)
    if dropped:
        log.warning("repair: %d index rows name missing blobs, %d fail their checksum; their "
                    "images are coded again", len(missing), len(bad))
    return {"missing_blobs": len(missing), "bad_blobs": len(bad), "rows_dropped": dropped}
