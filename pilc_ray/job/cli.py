"""Command-line glue for the batch job, shared by `pilc compress` and jobs/compress.py.

A YAML job config (jobs/example_job.yaml) gives defaults; flags given on the command line win.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codec.container import EFFORT_CHOICES, EFFORT_HELP
from codec.layout import TILE_SIZES
from pilc_ray.storage_flags import STORE_KEYS, add_store_arguments

if TYPE_CHECKING:  # the job needs the `ray` extra; `pilc encode` and friends do not
    from pilc_ray.job.config import JobConfig

def add_compress_arguments(p: argparse.ArgumentParser) -> None:
    # SOURCE is optional to argparse only because --config may give it; usage says it is needed
    p.usage = "%(prog)s SOURCE --out DEST [--config JOB.yaml] [options]"
    p.add_argument("source", nargs="?", metavar="SOURCE",
                   help="folder, manifest (.txt/.csv/.parquet with a uri column) or "
                        "s3://prefix/ (required, unless --config gives `source`)")
    p.add_argument("--out", dest="dest", metavar="DEST",
                   help="destination folder or s3://bucket/prefix/ (required, unless --config "
                        "gives `dest`)")
    p.add_argument("--config", metavar="JOB.yaml",
                   help="YAML job config (flags override its keys)")
    p.add_argument("--workers", type=int, help="worker actors (default: one per GPU, else per "
                   "--cpus-per-worker CPUs)")
    p.add_argument("--ray-address", help="Ray cluster to join (default: RAY_ADDRESS or start a "
                   "local Ray)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the embedded local Ray")
    p.add_argument("--layout", choices=("shards", "objects"),
                   help="shards (default): each batch's blobs packed in one object; objects: "
                        "one object per image")
    p.add_argument("--engine", choices=("actors", "data"),
                   help="actors (default): the job's own pool of worker actors; data: Ray Data "
                        "map_batches")
    p.add_argument("--batch-size", type=int, help="images per batch (and per shard)")
    p.add_argument("--cpus-per-worker", type=float,
                   help="CPUs each worker actor reserves (default: 1)")
    p.add_argument("--gpus-per-worker", type=float,
                   help="GPUs each GPU worker reserves (default: 1 when the cluster has GPUs)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "emulated"),
                   help="auto (default): a CUDA worker per GPU plus CPU workers on the CPUs "
                        "they leave free; cuda: GPU workers only; cpu: CPU workers only")
    p.add_argument("--threads-per-worker", type=int,
                   help="codec threads in each worker (default: --cpus-per-worker, rounded up)")
    p.add_argument("--jpeg", choices=("passthrough", "decode"),
                   help="JPEG inputs: store the file as-is (default) or compress its pixels")
    p.add_argument("--fallback", choices=("auto", "always", "never"),
                   help="classical codecs (PNG, WebP, ...) tried against the learned blob, the "
                        "smallest kept: auto (where they may win; default), always, never")
    p.add_argument("--effort", choices=EFFORT_CHOICES, help=EFFORT_HELP)
    p.add_argument("--tile", type=int, choices=TILE_SIZES,
                   help="learned path's tile side: 256 (default, fewer bytes) or 128 (4x more "
                   "independent streams per image)")
    p.add_argument("--all-files", action="store_const", const=True,
                   help="take every file of a folder/prefix, not only image extensions")
    p.add_argument("--verify", action="store_const", const=True,
                   help="decode each blob again before storing it")
    p.add_argument("--repair", action="store_const", const=True,
                   help="first decode every indexed image; those that fail their checksum are "
                        "coded again (rows whose blob is missing are redone on every run)")
    p.add_argument("--max-attempts", type=int,
                   help="tries of a failed batch before it is split and its images tried alone "
                        "(default: 3)")
    p.add_argument("--quiet", action="store_const", const=True,
                   help="no progress bar: a plain status line every 30 s (for job logs)")
    p.add_argument("--no-progress", action="store_const", const=True,
                   help="no progress output at all (neither bar nor status lines)")
    p.add_argument("--json", action="store_const", const=True, help="print the job record")
    p.add_argument("--compare-sample", type=int, metavar="N",
                   help="report: also compress N sampled images with PNG, WebP and JPEG XL")
    p.add_argument("--no-report", dest="report", action="store_const", const=False,
                   help="do not write report.json/report.html into DEST")
    add_store_arguments(p)


def _read_config(path: str, error: type[Exception]) -> dict[str, Any]:
    """A YAML job config as a mapping; an unreadable file or bad YAML is `error`, one line
    with where the YAML goes wrong (not the parser's traceback)."""
    import yaml

    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"cannot read job config {path}: {getattr(e, 'strerror', None) or e}"
                    ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(e, "problem", None) or str(e)
        raise error(f"{path} is not valid YAML: {what}{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{path}: a job config is a mapping of options (key: value lines)")
    return data


def config_from_args(a: argparse.Namespace) -> JobConfig:
    """YAML config (if any) overlaid with the flags that were given."""
    from pilc_ray.job.config import JobConfig, JobError

    data: dict[str, Any] = {}
    if a.config:
        data = _read_config(a.config, JobError)
    known = {f.name for f in fields(JobConfig)}
    unknown = set(data) - known
    if unknown:
        raise JobError(f"unknown job config keys: {sorted(map(str, unknown))}")
    if not isinstance(data.get("storage_options") or {}, dict):
        raise JobError("storage_options must be a mapping of option: value")
    store = dict(data.get("storage_options") or {})
    for k in STORE_KEYS:
        if getattr(a, k, None):
            store[k] = getattr(a, k)
    data["storage_options"] = store
    for f in known - {"storage_options"}:
        v = getattr(a, f, None)
        if v is not None:
            data[f] = v
    if a.quiet:
        data["progress"] = "log"
    if a.no_progress:
        data["progress"] = "none"
    if not data.get("source"):
        raise JobError("give a SOURCE (folder, manifest or s3:// prefix)")
    if not data.get("dest"):
        raise JobError("give --out DEST (folder or s3:// prefix)")
    return JobConfig(**data)


def run_compress(a: argparse.Namespace) -> int:
    from pilc_ray.job.config import JobError
    from pilc_ray.job.driver import run_job

    try:
        cfg = config_from_args(a)
        result = run_job(cfg)
    except JobError as e:
        print(f"pilc: error: {' '.join(str(e).split())}", file=sys.stderr)  # one line
        return 2
    except KeyboardInterrupt:
        print("pilc compress: interrupted; finished images are indexed, rerun the same command "
              "to resume", file=sys.stderr)
        return 130
    r = result.record
    c = r["counts"]
    if getattr(a, "json", False):
        print(json.dumps(r, indent=2, default=str))
    bpsp = f"{r['bpsp']:.3f} bpsp" if r["bpsp"] else "no new images"
    print(f"{c['compressed']} images compressed ({bpsp}), {c['already_indexed']} already "
          f"indexed, {c['errors']} errors; {r['throughput']['raw_mb_per_s']:.2f} MB/s with "
          f"{r['pool']['workers'] if r['pool'] else 0} workers")
    print(f"index: {r['index']} ({c['index_rows']} rows)")
    if c["errors_table_rows"]:
        print(f"errors: {r['errors_table']} ({c['errors_table_rows']} inputs not indexed)")
    print(f"job record: {r['dest']}/job.json")
    rep = r.get("report") or {}
    if rep.get("html"):
        print(f"report: {rep['html']}")
    elif rep.get("error"):
        print(f"report: not written ({rep['error']})", file=sys.stderr)
    return 0 if result.ok else 1
