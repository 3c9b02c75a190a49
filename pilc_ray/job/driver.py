"""The driver: enumerate the source, skip what is indexed, feed worker actors, write the index.

The driver only moves (id, uri) batches out and small index rows back; workers read inputs and
write blobs themselves. Batches are retried on another (or the restarted) actor when a worker
dies; a batch that keeps killing workers is split to single images so one poison image ends up
in the errors table instead of stalling the job.

Why hand-made actors and not Ray Data's actor-pool `map_batches`: see docs/pipeline.md (measured
in benchmarks/pipeline_throughput.py; `engine="data"` runs the Ray Data variant).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import socket
import sys
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import xxhash

from pilc_ray import index as ix
from pilc_ray import runs
from pilc_ray import storage as st
from pilc_ray.job.cluster import ensure_ray, node_shapes, pool_plan, pool_size
from pilc_ray.job.config import JobConfig, JobError
from pilc_ray.job.lease import DestLease, LeaseHeld, LeaseLost
from pilc_ray.job.progress import Progress
from pilc_ray.job.repair import repair_index
from pilc_ray.job.sources import Item, ObjectsSource, Source, open_source
from pilc_ray.job.worker import SHARD_SUFFIX, BatchCompressor, WorkerConfig

log = logging.getLogger("pilc_ray.job")


# --------------------------------------------------------------------------------------------
# resume: exact membership in a compact form (8 bytes of hash + the arrow ids, no Python set)


class IdSet:
    """Ids already indexed. Hash-sorted uint64 for speed; hits are confirmed against the ids."""

    def __init__(self, ids: pa.Array) -> None:
        self.ids = ids
        hashes = np.zeros(len(ids), np.uint64)
        for start in range(0, len(ids), 65536):  # chunks: never all ids as Python strings
            chunk = ids.slice(start, 65536).to_pylist()
            hashes[start : start + len(chunk)] = [xxhash.xxh3_64_intdigest(s.encode())
                                                  for s in chunk]
        self.order = np.argsort(hashes, kind="stable")
        self.hashes = hashes[self.order]

    def __len__(self) -> int:
        return len(self.ids)

    def contains(self, ids: list[str]) -> np.ndarray:
        if not len(self.ids) or not ids:
            return np.zeros(len(ids), dtype=bool)
        h = np.fromiter((xxhash.xxh3_64_intdigest(s.encode()) for s in ids), dtype=np.uint64,
                        count=len(ids))
        lo = np.searchsorted(self.hashes, h, "left")
        hi = np.searchsorted(self.hashes, h, "right")
        out = np.zeros(len(ids), dtype=bool)
        for i in np.nonzero(hi > lo)[0]:
            for j in range(lo[i], hi[i]):  # confirm: a 64-bit collision must not skip an image
                if self.ids[int(self.order[j])].as_py() == ids[i]:
                    out[i] = True
                    break
        return out


def pending_items(source: Source, done: IdSet, counts: dict[str, int]) -> Iterator[Item]:
    """Items of `source` not yet indexed (checked 8192 at a time against the index's ids)."""
    chunk: list[Item] = []

    def drain(chunk: list[Item]) -> Iterator[Item]:
        skip = done.contains([it.id for it in chunk])
        counts["already_indexed"] += int(skip.sum())
        yield from (it for it, s in zip(chunk, skip, strict=True) if not s)

    for it in source:
        counts["source_items"] += 1
        chunk.append(it)
        if len(chunk) >= 8192:
            yield from drain(chunk)
            chunk = []
    yield from drain(chunk)


def batched(items: Iterator[Item], batch_size: int, max_bytes: int,
            remaining: int | None = None, workers: int = 1) -> Iterator[list[Item]]:
    """Batches by count, closed early by bytes where input sizes are known.

    With `remaining` known, batches shrink near the end so the last ones spread over all
    workers instead of one worker finishing a full batch while the others idle.
    """
    batch: list[Item] = []
    nbytes = 0
    size = batch_size
    for it in items:
        if not batch and remaining is not None:
            size = max(1, min(batch_size, math.ceil(remaining / (2 * workers))))
        batch.append(it)
        nbytes += max(0, it.size)
        if len(batch) >= size or nbytes >= max_bytes:
            if remaining is not None:
                remaining = max(0, remaining - len(batch))
            yield batch
            batch, nbytes = [], 0
    if batch:
        yield batch


# --------------------------------------------------------------------------------------------
# the job


class CompressActor:
    """One per GPU (or per `cpus_per_worker` CPUs): holds the model; compresses batches."""

    def __init__(self, config: dict[str, Any], index: int) -> None:
        self.worker = BatchCompressor(config, name=f"{socket.gethostname()}:{os.getpid()}/w{index}")
        self.worker.warm_up()

    def ready(self) -> dict[str, Any]:
        return {"name": self.worker.name, "pid": os.getpid(), "model_id": self.worker.model_id}

    def compress(self, items: list[Item], attempt: int) -> dict[str, list[dict]]:
        return self.worker.compress(items, attempt)


@dataclass
class JobResult:
    """What `run_job` returns (the same as the job record written beside the index)."""

    record: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.record["status"] == "complete"

    def __getitem__(self, key: str) -> Any:
        return self.record[key]


def _new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


class Driver:
    def __init__(self, cfg: JobConfig) -> None:
        cfg.validate()  # again: its fields may have been changed since it was made
        self.cfg = cfg
        self.dest = st.normalize(cfg.dest)
        self.opts = st.StorageOptions.from_any(cfg.storage_options)
        self.storage = st.open_storage(self.dest, self.opts)
        self.run_id = _new_run_id()
        self.counts = dict.fromkeys(
            ("source_items", "already_indexed", "attempted", "compressed", "errors",
             "ignored_files", "retried_batches", "worker_failures", "split_batches"), 0)
        self.bytes = {"raw": 0, "compressed": 0}
        self.failures: list[dict] = []
        self.durations: dict[str, float] = {}
        self.worker_pids: list[int] = []
        self.in_flight: dict[int, int] = {}  # worker pid -> batches it is working on
        self._record_written = False
        self.interrupted_runs: list[str] = []
        self.repair: dict[str, int] = {}

    # ------------------------------------------------------------------------------------

    def run(self) -> JobResult:
        """Open the source, take DEST's lease, code what is not indexed yet, compact, report.

        The lease (pilc_ray/job/lease.py) keeps a second job off DEST while this one lives, so no
        job ever sweeps or indexes around another's work; a run record left "running" by a
        killed job is marked "interrupted" once the lease is ours."""
        cfg = self.cfg
        t_start = time.time()
        t0 = time.perf_counter()
        try:
            source = open_source(cfg.source, self.opts, cfg.all_files)
        except Exception as e:
            raise JobError(f"cannot open source: {e}") from e
        if isinstance(source, ObjectsSource) and cfg.engine == "data":
            raise JobError("engine 'data' reads files and URIs; use engine 'actors' for refs")
        self.source = source
        lease = self.lease = DestLease(self.dest, self.run_id, self.opts)
        try:
            lease.acquire()
        except LeaseHeld as e:
            raise JobError(str(e)) from None
        except Exception as e:  # DEST must take our objects: fail now, not after every batch
            raise JobError(f"cannot write to {self.dest}: {e}") from e
        self.sweep_before = self._sweep_cutoff(t_start)
        try:
            self.interrupted_runs = self._mark_interrupted_runs()
            self.storage.put(st.join(self.dest, "runs", f"{self.run_id}.json"), json.dumps(
                {"run_id": self.run_id, "status": "running", "config": cfg.describe()},
                default=str).encode())
            try:
                return self._run_leased(source, t_start, t0)
            except BaseException as e:
                if not self._record_written:  # failed before the coding loop: say so
                    self.durations["total_s"] = time.perf_counter() - t0
                    self._write_record(t_start, "failed", f"{type(e).__name__}: {e}", None, 0)
                if isinstance(e, st.StorageError | LeaseLost):
                    raise JobError(str(e)) from e
                raise
        finally:
            lease.release()

    def _sweep_cutoff(self, t_start: float) -> float:
        """Shards older than this, and named by no index row, are orphans the sweep deletes.

        Normally the run's start: a killed run's shards are older, this run's are newer. A
        lease taken over because it expired (not because its process is known dead) may have a
        live holder that is still writing: only shards from before its last renewal are swept
        (none if that is unknown); the rest wait for a later run."""
        lease = self.lease
        if lease.taken_over is None or lease.taken_over_reason == "dead":
            return t_start
        try:
            renewed = float(lease.taken_over.get("renewed_at") or 0.0)
        except (TypeError, ValueError):
            renewed = 0.0
        log.warning("took over an expired lease (run %s, last renewed %s): only shards older "
                    "than its last renewal are swept", lease.taken_over.get("run_id"),
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(renewed)))
        return min(t_start, renewed)

    def _mark_interrupted_runs(self) -> list[str]:
        """Run records still "running" belong to killed jobs (the lease is ours): mark them."""
        marked = []
        for rec in runs.read_runs(self.dest, self.opts):
            run_id = rec.get("run_id")
            if rec.get("status") == "running" and run_id and run_id != self.run_id:
                rec.update(status="interrupted",
                           error="the job ended without finishing (killed?); found by run "
                                 f"{self.run_id}")
                self.storage.put(st.join(self.dest, "runs", f"{run_id}.json"),
                                 json.dumps(rec, indent=2, default=str).encode())
                marked.append(str(run_id))
        if marked:
            log.warning("runs %s ended without finishing: marked interrupted", marked)
        return marked

    def _run_leased(self, source: Source, t_start: float, t0: float) -> JobResult:
        cfg = self.cfg
        status, error = "complete", None
        started_ray = False
        if ix.has_pending_parts(self.dest, self.opts):  # a killed run's rows: merge them first
            ix.compact(self.dest, self.opts, cfg.row_group_size, self.run_id)
        self.repair = repair_index(self.dest, self.opts, full=cfg.repair)
        done = IdSet(ix.indexed_ids(self.dest, self.opts))
        total = self._count(source)
        self.durations["enumerate_s"] = time.perf_counter() - t0
        items = pending_items(source, done, self.counts)
        first = next(items, None)  # nothing pending (empty source, all indexed): no Ray at all
        writer = ix.PartWriter(self.dest, self.run_id, self.opts, cfg.flush_rows,
                               cfg.flush_seconds)
        progress = self.progress = Progress(total, len(done), cfg.progress, cfg.log_every_s)
        t1 = time.perf_counter()
        try:
            if first is None:
                from codec.model import default_model

                self.model_id = default_model().model_id
                self.pool = {"workers": 0, "engine": cfg.engine}
            else:
                t_ray = time.perf_counter()
                started_ray = ensure_ray(cfg)
                self.durations["ray_start_s"] = time.perf_counter() - t_ray
                import ray

                self.ray_info = {"address": ray.get_runtime_context().gcs_address,
                                 "resources": ray.cluster_resources(), **node_shapes()}
                if started_ray and not (cfg.ray_address or os.environ.get("RAY_ADDRESS")):
                    progress.note(f"local Ray at {self.ray_info['address']} for this job "
                                  "(token auth on; it stops when the job ends)")
                pending = None if total is None else max(0, total - len(done))
                batches = batched(itertools.chain([first], items), cfg.batch_size,
                                  cfg.batch_max_bytes, pending, pool_size(cfg)[0])
                if isinstance(source, ObjectsSource):
                    batches = self._put_objects(batches)
                if cfg.engine == "data":
                    from pilc_ray.job.data_engine import run_data_engine

                    run_data_engine(self, batches, writer, progress)
                else:
                    self._run_actors(batches, writer, progress)
            self.lease.confirm()  # DEST still ours: else stop before writing index rows
            writer.flush()
        except BaseException as e:
            status, error = "failed", f"{type(e).__name__}: {e}"
            if self.lease.lost:  # another job owns DEST: write nothing; a rerun resumes
                log.error("stopped: %s", e)
            else:
                try:
                    writer.flush()  # keep every finished image: the rerun skips them
                except Exception:  # noqa: BLE001
                    log.exception("could not flush the index after a failure")
            raise
        finally:
            progress.close()
            self.durations["compress_s"] = time.perf_counter() - t1
            if status == "failed":
                self._write_record(t_start, status, error, None, 0)
                if started_ray:
                    import ray

                    ray.shutdown()
        t2 = time.perf_counter()
        compacted = ix.compact(self.dest, self.opts, cfg.row_group_size, self.run_id)
        pa.default_memory_pool().release_unused()  # hand the merge's buffers back to the OS
        self.durations["compact_s"] = time.perf_counter() - t2
        t3 = time.perf_counter()
        orphans, lost = 0, None
        if cfg.gc_orphans:
            try:
                self.lease.confirm()  # the sweep deletes: never in a DEST another job holds now
                orphans = self._gc_orphans(self.sweep_before)
            except LeaseLost as e:  # the index is written; the sweep is not ours to do
                lost = e
                status, error = "failed", str(e)
        self.durations["gc_s"] = time.perf_counter() - t3
        self.durations["total_s"] = time.perf_counter() - t0
        self.counts["ignored_files"] = getattr(source, "ignored", 0)
        record = self._write_record(t_start, status, error, compacted, orphans)
        if started_ray:
            import ray

            ray.shutdown()
        if lost is not None:
            raise lost
        if cfg.report:
            record["report"] = self._write_report(record)
        return JobResult(record)

    def _write_report(self, record: dict[str, Any]) -> dict[str, Any]:
        """report.json + report.html into DEST; a failure is logged, never fails the job."""
        t0 = time.perf_counter()
        try:
            from pilc_ray.reports.aggregate import write_report

            out = write_report(self.dest, self.opts, record=record,
                               compare=self.cfg.compare_sample)
        except Exception as e:  # noqa: BLE001 - the images are indexed; the report is extra
            log.warning("could not write the job report: %s: %s", type(e).__name__, e,
                        exc_info=True)
            return {"error": f"{type(e).__name__}: {e}"}
        self.durations["report_s"] = time.perf_counter() - t0
        return out

    def _count(self, source: Source) -> int | None:
        """Source size for the progress bar's ETA (a cheap listing pass; None for refs)."""
        if isinstance(source, ObjectsSource):
            v = source.values
            return len(v) if hasattr(v, "__len__") else None
        n = 0
        for _ in source:
            n += 1
        return n

    def _put_objects(self, batches: Iterator[list[Item]]) -> Iterator[list[Item]]:
        """Put in-driver images into the object store, so workers fetch them by ref."""
        import ray

        for batch in batches:
            yield [it if isinstance(it.ref, ray.ObjectRef)
                   else Item(it.id, it.uri, it.size, ray.put(it.ref)) for it in batch]

    # ------------------------------------------------------------------------------------

    def worker_config(self, threads: int, device: str = "cpu") -> dict[str, Any]:
        cfg = self.cfg
        return WorkerConfig(dest=self.dest, layout=cfg.layout, fallback=cfg.fallback,
                            tile=cfg.tile, effort=cfg.effort, jpeg=cfg.jpeg,
                            storage_options=self.opts.to_dict(),
                            threads=threads, verify=cfg.verify, device=device).to_dict()

    def _start_pool(self) -> list[Any]:
        import ray

        t0 = time.perf_counter()
        plan = pool_plan(self.cfg, ray.cluster_resources())
        cpus = self.cfg.cpus_per_worker
        threads = self.cfg.threads_per_worker or max(1, math.ceil(cpus))
        actors = []
        for group in plan:
            remote = ray.remote(CompressActor).options(
                num_cpus=group.cpus, num_gpus=group.gpus, max_restarts=-1, max_task_retries=0)
            actors += [remote.remote(self.worker_config(threads, group.device), len(actors) + i)
                       for i in range(group.count)]
        infos = ray.get([a.ready.remote() for a in actors])
        self.workers = [i["name"] for i in infos]
        self.worker_pids = [i["pid"] for i in infos]
        self.model_id = infos[0]["model_id"]
        gpu_workers = sum(g.count for g in plan if g.gpus > 0)
        self.pool = {"workers": len(actors), "cpus_per_worker": cpus,
                     "gpus_per_worker": plan[0].gpus, "gpu_workers": gpu_workers,
                     "cpu_workers": len(actors) - gpu_workers,
                     "threads_per_worker": threads, "engine": "actors"}
        self.durations["pool_start_s"] = time.perf_counter() - t0
        return actors

    def engine_planned(self, attempted: int, pool: dict[str, Any], model_id: str,
                       workers: list[str]) -> None:
        """The Ray Data engine's pool, before it runs (data_engine.EngineHost)."""
        self.counts["attempted"] += attempted
        self.pool = pool
        self.model_id = model_id
        self.workers = workers

    def pool_started(self, seconds: float) -> None:
        self.durations["pool_start_s"] = seconds

    def handle_result(self, result: dict, writer: ix.PartWriter, progress: Progress) -> None:
        self.lease.check()  # lost DEST to another job: stop (LeaseLost), index nothing more
        rows, errors = result["rows"], result["errors"]
        writer.add(rows, errors)
        raw = sum(r["raw_bytes"] for r in rows)
        comp = sum(r["compressed_bytes"] for r in rows)
        self.counts["compressed"] += len(rows)
        self.counts["errors"] += len(errors)
        self.bytes["raw"] += raw
        self.bytes["compressed"] += comp
        if len(self.failures) < 100:
            self.failures.extend({k: e[k] for k in ("id", "source_uri", "stage", "error")}
                                 for e in errors[: 100 - len(self.failures)])
        progress.update(len(rows) + len(errors), raw, comp, len(errors))

    def batch_failed(self, batch: list[Item], attempt: int, reason: str,
                     retry: deque, writer: ix.PartWriter, progress: Progress) -> None:
        """Retry a failed batch; after max_attempts split it, then give up per image."""
        if attempt < self.cfg.max_attempts:
            self.counts["retried_batches"] += 1
            delay = self.cfg.retry_backoff_s * 2 ** (attempt - 1)
            retry.append((time.monotonic() + delay, batch, attempt + 1))
            return
        if len(batch) > 1:
            self.counts["split_batches"] += 1
            for it in batch:
                retry.append((time.monotonic(), [it], 1))
            return
        it = batch[0]
        err = {"id": it.id, "source_uri": it.uri, "stage": "worker",
               "error": f"failed {attempt} times: {reason}"[:2000], "error_type": "WorkerFailure",
               "worker": "driver", "attempt": attempt, "time": time.time()}
        self.handle_result({"rows": [], "errors": [err]}, writer, progress)

    def _run_actors(self, batches: Iterator[list[Item]], writer: ix.PartWriter,
                    progress: Progress) -> None:
        import ray

        actors = self._start_pool()
        try:
            self._dispatch(actors, batches, writer, progress)
        finally:
            for a in actors:  # also on errors/interrupts: a long-lived Ray must not keep them
                ray.kill(a)

    def _dispatch(self, actors: list[Any], batches: Iterator[list[Item]],
                  writer: ix.PartWriter, progress: Progress) -> None:
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        progress.started()
        load = [0] * len(actors)
        slots = len(actors) * max(1, self.cfg.in_flight_per_worker)
        pending: dict[Any, tuple[list[Item], int, int]] = {}
        retry: deque = deque()
        exhausted = False
        while True:
            while len(pending) < slots:
                if retry and retry[0][0] <= time.monotonic():
                    _, batch, attempt = retry.popleft()
                elif not exhausted:
                    batch = next(batches, None)
                    if batch is None:
                        exhausted = True
                        continue
                    attempt = 1
                else:
                    break
                a = min(range(len(actors)), key=load.__getitem__)
                ref = actors[a].compress.remote(batch, attempt)
                pending[ref] = (batch, attempt, a)
                load[a] += 1
                self.in_flight[self.worker_pids[a]] = load[a]
                self.counts["attempted"] += len(batch) if attempt == 1 else 0
            if not pending:
                if exhausted and not retry:
                    break
                time.sleep(0.05)  # only retries waiting for their backoff
                continue
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.25)
            for ref in ready:
                batch, attempt, a = pending.pop(ref)
                load[a] -= 1
                self.in_flight[self.worker_pids[a]] = load[a]
                try:
                    result = ray.get(ref)
                except RayActorError as e:
                    self.counts["worker_failures"] += 1
                    self.batch_failed(batch, attempt, f"worker died: {str(e)[:300]}", retry,
                                      writer, progress)
                except RayTaskError as e:
                    self.batch_failed(batch, attempt, f"{type(e.cause).__name__}: {e.cause}",
                                      retry, writer, progress)
                else:
                    self.handle_result(result, writer, progress)
            progress.tick()
            self.lease.check()

    # ------------------------------------------------------------------------------------

    def _gc_orphans(self, since: float) -> int:
        """Delete shards no index row names (left by a killed run); never ones from this run."""
        if self.cfg.layout != "shards":
            return 0
        try:
            reader = ix.read_table(ix.resolve_index_uri(self.dest), self.opts, ["blob_uri"])
        except st.NotFound:
            return 0
        used = set(reader.column("blob_uri").unique().to_pylist())
        removed = 0
        for obj in self.storage.list_folder(st.join(self.dest, "shards")):
            if obj.uri.endswith(SHARD_SUFFIX) and obj.uri not in used and obj.mtime < since:
                self.storage.delete(obj.uri)
                removed += 1
        return removed

    def _lease_record(self) -> dict[str, Any] | None:
        """The stale lease this run took over (whose, why, what the sweep spared), if any, and
        whether this run lost its own."""
        lease = getattr(self, "lease", None)
        if lease is None:
            return None
        old = lease.taken_over
        return {"taken_over_run": old.get("run_id") if old else None,
                "taken_over_reason": lease.taken_over_reason,
                "swept_shards_older_than": time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(getattr(self, "sweep_before", 0.0))),
                "lost": lease.lost_to if lease.lost else None}

    def _write_record(self, t_start: float, status: str, error: str | None,
                      compacted: ix.CompactResult | None, orphans: int) -> dict[str, Any]:
        # throughput once workers are up (model load is a fixed cost, reported apart)
        compress_s = max(1e-9, self.durations.get("compress_s", 0.0)
                         - self.durations.get("pool_start_s", 0.0)
                         - self.durations.get("ray_start_s", 0.0))
        done = self.counts["compressed"]
        record = {
            "run_id": self.run_id, "status": status, "error": error,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "dest": self.dest, "index": ix.resolve_index_uri(self.dest),
            "errors_table": st.join(self.dest, ix.ERRORS_FILE),
            "config": self.cfg.describe(), "model_id": getattr(self, "model_id", None),
            "source": getattr(getattr(self, "source", None), "description", None),
            "pool": getattr(self, "pool", None), "workers": getattr(self, "workers", []),
            "ray": getattr(self, "ray_info", None),
            "counts": dict(self.counts, orphans_removed=orphans,
                           index_rows=compacted.rows if compacted else None,
                           errors_table_rows=compacted.errors if compacted else None,
                           duplicates_dropped=compacted.duplicates_dropped if compacted else None),
            "bytes": dict(self.bytes),
            "bpsp": None, "durations": self.durations,
            "throughput": {"images_per_s": done / compress_s,
                           "raw_mb_per_s": self.bytes["raw"] / compress_s / 1e6},
            "index_file": asdict(compacted) if compacted else None,
            "failures": self.failures,
            "repair": self.repair,
            "interrupted_runs": self.interrupted_runs,
            "lease": self._lease_record(),
            "skipped_files": [{"path": p, "reason": r}
                              for p, r in getattr(self.source, "skipped", [])[:1000]],
        }
        if self.bytes["raw"]:
            record["bpsp"] = 8 * self.bytes["compressed"] / self.bytes["raw"]
        body = json.dumps(record, indent=2, default=str).encode()
        self._record_written = True
        try:
            self.storage.put(st.join(self.dest, "runs", f"{self.run_id}.json"), body)
            lease = getattr(self, "lease", None)
            if not (lease and lease.lost):  # job.json is the holder's; ours is in runs/
                self.storage.put(st.join(self.dest, "job.json"), body)
        except Exception:  # noqa: BLE001
            log.exception("could not write the job record")
            print(body.decode(), file=sys.stderr)
        return record


def run_job(cfg: JobConfig) -> JobResult:
    """Run (or resume) a compression job; returns its record."""
    return Driver(cfg).run()
