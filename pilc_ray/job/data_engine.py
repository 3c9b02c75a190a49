"""The same job on Ray Data: an actor pool running `BatchCompressor` through `map_batches`.

Kept as `engine="data"` so the choice stays measurable (benchmarks/pipeline_throughput.py).
Ray Data restarts killed actors and retries their blocks itself (max_restarts/max_task_retries
-1); each output row carries one batch's index and error rows as JSON, so the driver handles
results exactly as with the hand-made pool. In-memory refs are not supported here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from pilc_ray.job.cluster import pool_plan
from pilc_ray.job.sources import Item
from pilc_ray.job.worker import BatchCompressor

if TYPE_CHECKING:
    from pilc_ray.index import PartWriter
    from pilc_ray.job.config import JobConfig
    from pilc_ray.job.progress import Progress


class EngineHost(Protocol):
    """What the engine needs from the job that runs it (the driver is one): the options, a
    worker's config, and three reports back: the pool it plans, the pool's start time, and each
    batch's result. The engine keeps no counts or records of its own."""

    cfg: JobConfig

    def worker_config(self, threads: int, device: str = "cpu") -> dict[str, Any]: ...

    def engine_planned(self, attempted: int, pool: dict[str, Any], model_id: str,
                       workers: list[str]) -> None: ...

    def pool_started(self, seconds: float) -> None: ...

    def handle_result(self, result: dict, writer: PartWriter, progress: Progress) -> None: ...


class DataWorker:
    """Ray Data callable class: one instance per pool actor, model loaded once."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.worker = BatchCompressor(config)
        self.worker.warm_up()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [Item(str(i), str(u), int(s))
                 for i, u, s in zip(batch["id"], batch["uri"], batch["size"], strict=True)]
        out = self.worker.compress(items)
        return {"result": np.array([json.dumps(out)], dtype=object)}


def run_data_engine(host: EngineHost, batches: Iterator[list[Item]], writer: PartWriter,
                    progress: Progress) -> None:
    import ray

    from codec.model import default_model

    cfg = host.cfg
    # Ray Data runs one actor shape: the plan's first group (GPU workers where there are GPUs)
    group = pool_plan(cfg, ray.cluster_resources())[0]
    n, cpus, gpus = group.count, group.cpus, group.gpus
    threads = cfg.threads_per_worker or max(1, math.ceil(cpus))
    items = [{"id": it.id, "uri": it.uri, "size": it.size} for b in batches for it in b]
    host.engine_planned(len(items),
                        {"workers": n, "cpus_per_worker": cpus, "gpus_per_worker": gpus,
                         "threads_per_worker": threads, "engine": "data"},
                        default_model().model_id, [f"ray-data-actor-{i}" for i in range(n)])
    if not items:
        return
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    blocks = max(1, min(len(items) // max(1, cfg.batch_size), 4 * n * 8))
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    ds = ds.map_batches(DataWorker, batch_size=cfg.batch_size, batch_format="numpy",
                        fn_constructor_kwargs={"config": host.worker_config(threads,
                                                                            group.device)},
                        compute=ray.data.ActorPoolStrategy(size=n), num_cpus=cpus,
                        num_gpus=gpus)
    progress.started()
    host.pool_started(0.0)  # Ray Data starts its actors inside the stream
    for out in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
        for payload in out["result"]:
            host.handle_result(json.loads(payload), writer, progress)
