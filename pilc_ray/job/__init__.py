"""The batch job: sources -> worker actors -> shards + index rows in DEST.

    from pilc_ray.job import JobConfig, run_job
    result = run_job(JobConfig(source="photos/", dest="out/job"))

Modules: `config` (options), `sources` (what to compress), `worker` (one batch: read, encode,
write the shard), `driver` (the run: resume, actor pool, retries, compaction, job record),
`cluster` (Ray and the pool plan), `data_engine` (the Ray Data variant), `lease`, `progress`,
`repair`, and `cli` (flags + YAML for `pilc compress` and jobs/compress.py).
"""

from pilc_ray.job.cluster import WorkerGroup, pool_plan
from pilc_ray.job.config import JobConfig, JobError
from pilc_ray.job.driver import Driver, JobResult, run_job

__all__ = ["Driver", "JobConfig", "JobError", "JobResult", "WorkerGroup", "pool_plan", "run_job"]
