"""The S3 flags (--endpoint-url, --region) of every command that reads or writes a job's output.

Below the job, retrieval and report commands alike, so none of them borrows another's CLI glue.
"""

from __future__ import annotations

import argparse
from typing import Any

STORE_KEYS = ("endpoint_url", "region")


def add_store_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint-url", help="S3-compatible endpoint (default: AWS / environment)")
    p.add_argument("--region", help="S3 region")


def store_options(a: argparse.Namespace) -> dict[str, Any]:
    """The storage options the flags that were given ask for."""
    return {k: getattr(a, k) for k in STORE_KEYS if getattr(a, k, None)}
