"""Run records (DEST/runs/<run_id>.json, one small JSON per run): written by the job's driver,
read by the report and by the next run (which marks killed runs as interrupted).

Below both, so neither the job nor the report reads the other's files through the other.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pilc_ray import storage as st

log = logging.getLogger("pilc_ray.runs")


def read_json(uri: str, options: Any) -> dict | None:
    """A small JSON object from storage; None when it is missing or unreadable (logged)."""
    try:
        return json.loads(st.open_storage(uri, options).get(uri))
    except st.NotFound:
        return None
    except (st.StorageError, ValueError) as e:
        log.warning("cannot read %s: %s", uri, e)
        return None


def read_runs(dest: str, options: Any = None) -> list[dict]:
    """Every run record under DEST/runs/, oldest first (one small JSON per run)."""
    storage = st.open_storage(dest, options)
    runs = []
    for obj in storage.list_folder(st.join(dest, "runs")):
        if obj.uri.endswith(".json"):
            rec = read_json(obj.uri, options)
            if rec:
                runs.append(rec)
    return sorted(runs, key=lambda r: r.get("run_id", ""))
