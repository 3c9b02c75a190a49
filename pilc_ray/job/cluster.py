"""Ray for the job: joining or starting a cluster, and planning the worker pool on its resources.

Apart from the driver so the Ray Data engine plans its pool the same way without importing the
driver (the two once imported each other).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from pilc_ray.job.config import DEVICES, JobConfig


def ensure_ray(cfg: JobConfig) -> bool:
    """Connect to the given cluster, the job's cluster (RAY_ADDRESS), or start a local one.

    Returns True when this call started Ray (so the job shuts it down at the end).
    """
    import ray

    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
    if cfg.ray_address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=cfg.ray_address, **quiet)
        return True
    # Embedded: a new local Ray ("local": never join some other `ray start` cluster on this
    # machine by accident), bound to loopback, no dashboard. Token auth stays on, said
    # explicitly: with RAY_AUTH_MODE unset Ray warns about its default into the progress bar.
    if "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
        refresh_ray_auth_config()
    keep_ray_on_loopback()
    ray.init(address="local", num_cpus=cfg.num_cpus, include_dashboard=False,
             _node_ip_address="127.0.0.1",
             **quiet)
    return True


def keep_ray_on_loopback() -> None:
    """Make a Ray started here listen and register on 127.0.0.1 only.

    On Linux Ray turns `_node_ip_address="127.0.0.1"` into the primary interface's address
    (ray._private.services.resolve_ip_for_localhost), so the embedded cluster's GCS and raylet
    would listen there. Its switch for single-machine clusters (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER
    off, Ray's default on macOS and Windows) keeps them on loopback: set in the environment for
    the processes Ray starts, and on the constant this process already read at import.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    try:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    except (ImportError, AttributeError):
        pass


def refresh_ray_auth_config() -> None:
    """Make this process's Ray core see the auth settings just put in the environment.

    Ray reads RAY_AUTH_MODE into a cached config when it is imported; Ray's own
    `_enable_token_auth` re-initializes it the same way after changing the variable.
    """
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):
        pass


def node_shapes() -> dict[str, Any]:
    """Cluster shape for the job record: live nodes, grouped by (CPUs, GPUs, memory)."""
    import ray

    shapes: dict[tuple, int] = {}
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    for n in nodes:
        r = n.get("Resources") or {}
        key = (r.get("CPU", 0.0), r.get("GPU", 0.0), round(r.get("memory", 0.0) / 2**30, 1))
        shapes[key] = shapes.get(key, 0) + 1
    return {"nodes": len(nodes), "node_shapes": [
        {"count": c, "cpus": k[0], "gpus": k[1], "memory_gb": k[2]} for k, c in shapes.items()]}


@dataclass(frozen=True)
class WorkerGroup:
    """Workers of one shape: how many, what each reserves, where its codec runs."""

    count: int
    cpus: float
    gpus: float
    device: str  # codec device: "cpu", "cuda" or "emulated"


def pool_plan(cfg: JobConfig, resources: dict[str, float]) -> list[WorkerGroup]:
    """The worker pool for a cluster's resources: a GPU worker per gpus_per_worker GPUs (CUDA
    codec), then CPU workers on the CPUs they leave free (device "auto"/"emulated"), or CPU
    workers alone (no GPUs, or device "cpu"). `workers` caps the total, GPU workers first."""
    if cfg.device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, not {cfg.device!r}")
    cpus = cfg.cpus_per_worker
    n_gpu = resources.get("GPU", 0.0)
    gpus = cfg.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if n_gpu > 0 and cfg.device != "cpu" else 0.0
    groups = []
    gpu_workers = int(n_gpu // gpus) if gpus > 0 else 0
    if gpus > 0 and gpu_workers == 0:
        raise ValueError(f"gpus_per_worker={gpus} but the cluster has {n_gpu} GPUs")
    if gpu_workers:
        if cfg.workers:
            gpu_workers = min(gpu_workers, cfg.workers)
        groups.append(WorkerGroup(gpu_workers, cpus, gpus,
                                  "emulated" if cfg.device == "emulated" else "cuda"))
    if cfg.device in ("auto", "cpu", "emulated") or not gpu_workers:
        left = resources.get("CPU", 1.0) - gpu_workers * cpus
        n_cpu = int(left // max(cpus, 1e-3))
        if not gpu_workers:
            n_cpu = max(1, n_cpu)  # a CPU-only cluster always gets a worker
        if cfg.workers:
            n_cpu = max(0, cfg.workers - gpu_workers)
        if n_cpu:
            groups.append(WorkerGroup(n_cpu, cpus, 0.0, "cpu"))
    return groups


def pool_size(cfg: JobConfig) -> tuple[int, float, float]:
    """(workers in all, CPUs each, GPUs of the first group): batching sizes with this."""
    import ray

    plan = pool_plan(cfg, ray.cluster_resources())
    return sum(g.count for g in plan), cfg.cpus_per_worker, plan[0].gpus
