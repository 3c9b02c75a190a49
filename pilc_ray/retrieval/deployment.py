"""The retrieval service as a Ray Serve deployment, for users who already run a Ray cluster.

Same routes, auth, limits and metrics as `pilc serve` (it wraps `service.create_app`), but image
decodes go through `@serve.batch`: requests arriving together are decoded in one
`codec.decode_image_batch` pass (one network and coder pass for all learned blobs), which is
what a GPU coder needs to be busy. Python callers can skip HTTP: `handle.get.remote(id)`.

    from ray import serve
    from pilc_ray.retrieval.deployment import build_app
    serve.run(build_app("s3://bucket/job/", num_gpus=1, token="..."), route_prefix="/")

`num_gpus` (default 0) reserves GPUs per replica, so replicas land on GPU nodes; the codec decodes
on the CPU until its GPU coder lands (a separate issue), so today a GPU buys nothing but placement.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import numpy as np
from ray import serve

from codec.imagefile import RasterImage
from pilc_ray.retrieval.archive import ArchiveError, json_row, open_archive
from pilc_ray.retrieval.service import ServiceConfig, create_app

DEFAULT_MAX_BATCH = 8
DEFAULT_BATCH_WAIT_S = 0.005


@serve.deployment(name="pilc-images", max_ongoing_requests=64)
@serve.ingress()
class ImageDeployment:
    """One replica: an open Archive, the FastAPI app, and a batching decoder.

    user_config (changeable without restarting replicas): max_batch_size, batch_wait_timeout_s.
    """

    def __init__(self, index_uri: str, storage_options: dict | None = None,
                 service: dict | None = None, archive: dict | None = None) -> None:
        self.archive = open_archive(index_uri, storage_options, **(archive or {}))
        self.config = ServiceConfig(**(service or {}))
        self.batch_sizes: Counter[int] = Counter()

    def reconfigure(self, user_config: dict) -> None:
        self.decode_batch.set_max_batch_size(int(user_config.get("max_batch_size",
                                                                 DEFAULT_MAX_BATCH)))
        self.decode_batch.set_batch_wait_timeout_s(float(user_config.get(
            "batch_wait_timeout_s", DEFAULT_BATCH_WAIT_S)))

    @serve.batch(max_batch_size=DEFAULT_MAX_BATCH, batch_wait_timeout_s=DEFAULT_BATCH_WAIT_S)
    async def decode_batch(self, image_ids: list[str]) -> list[RasterImage | ArchiveError]:
        """One codec pass for the batch; per id an image or its error (others unaffected)."""
        self.batch_sizes[len(image_ids)] += 1
        return await asyncio.to_thread(self.archive.images, image_ids)

    async def load_image(self, image_id: str) -> RasterImage:
        result = await self.decode_batch(image_id)
        if isinstance(result, ArchiveError):
            raise result
        return result

    # Python API through a DeploymentHandle -----------------------------------------------------

    async def get(self, image_id: str) -> np.ndarray:
        """Pixels of one image (batched with concurrent calls)."""
        return (await self.load_image(image_id)).pixels

    async def meta(self, image_id: str) -> dict:
        return json_row(await asyncio.to_thread(self.archive.meta, image_id))

    def batch_stats(self) -> dict[int, int]:
        """How many batches of each size were decoded (to see batching work)."""
        return dict(self.batch_sizes)

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(self.archive, self.config, load_image=self.load_image)


def build_app(index_uri: str, *, storage_options: dict | None = None, token: str | None = None,
              num_replicas: int = 1, num_cpus: float = 1.0, num_gpus: float = 0.0,
              max_batch_size: int = DEFAULT_MAX_BATCH,
              batch_wait_timeout_s: float = DEFAULT_BATCH_WAIT_S,
              service: dict | None = None, archive: dict | None = None) -> Any:
    """A Serve application (pass it to `serve.run`).

    service: extra `ServiceConfig` fields (cache sizes, limits); archive: extra `Archive`
    options (index/blob cache bytes, max_image_samples, ...). S3 credentials come from each
    node's environment, as for the batch job.
    """
    service = {**(service or {}), "token": token}
    return ImageDeployment.options(
        num_replicas=num_replicas,
        ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus},
        user_config={"max_batch_size": max_batch_size,
                     "batch_wait_timeout_s": batch_wait_timeout_s},
    ).bind(index_uri, storage_options, service, archive)
