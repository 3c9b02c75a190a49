"""The retrieval service as a Ray Serve deployment on a real local Ray (127.0.0.1, 2 CPUs):
HTTP through Serve's proxy with the same auth and errors, and batched decoding via a handle."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from pilc_ray import testing
from tests.pilc_ray.retrieval.test_archive import build_archive, expected, sample_set
from tests.pilc_ray.retrieval.test_service import TOKEN, Client

pytest.importorskip("ray.serve", reason="ray[serve] is not installed")
pytestmark = pytest.mark.serve

APP = "pilc-images-test"


@pytest.fixture(scope="module")
def images() -> dict:
    return sample_set(seed=1, extra=8)


@pytest.fixture(scope="module")
def serve_app(tmp_path_factory, images):
    from ray import serve

    from pilc_ray.retrieval.deployment import build_app

    dest = build_archive(str(tmp_path_factory.mktemp("serve") / "job"), images)
    testing.local_ray()
    port = testing.free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        # a batch fires when 4 requests wait or 1 s after the first: long enough that the
        # concurrent calls below always fill batches, short for a lone request
        serve.run(build_app(dest, token=TOKEN, num_cpus=0.5, max_batch_size=4,
                            batch_wait_timeout_s=1.0), name=APP, route_prefix="/")
        yield serve.get_app_handle(APP), ("127.0.0.1", port)
    finally:
        serve.shutdown()


def test_http_through_serve_proxy(serve_app, images):
    handle, addr = serve_app
    c = Client(addr)
    status, h, body = c.request("/images/photos/a.png?format=npy")
    assert status == 200, body
    assert np.array_equal(np.load(io.BytesIO(body)), images["photos/a.png"].pixels)
    assert c.request("/images/photos/a.png", token=None)[0] == 401
    status, _, body = c.request("/images/photos/none.png")
    assert status == 404 and json.loads(body)["error"] == "not_found"
    assert c.request("/images/../secret")[0] == 400
    assert c.request("/images/photos/a.png?format=tiff")[0] == 400
    assert json.loads(c.request("/images/photos/b.png/meta")[2])["mode"] == "L"
    assert c.request("/healthz", token=None)[0] == 200
    metrics = c.request("/metrics")[2].decode()
    assert 'pilc_http_requests_total{route="image",status="200"} 1.0' in metrics


def test_concurrent_handle_calls_are_decoded_in_batches(serve_app, images):
    handle, _ = serve_app
    before = handle.batch_stats.remote().result()
    ids = [f"misc/{i:03d}.png" for i in range(6)] + ["misc/999.png", "photos/g.jpg"]
    calls = [handle.get.remote(i) for i in ids]  # all in flight at once
    for image_id, call in zip(ids[:6], calls[:6], strict=True):
        assert np.array_equal(call.result(timeout_s=60), images[image_id].pixels)
    with pytest.raises(Exception, match="no image with id"):  # fails alone, not its batch
        calls[6].result(timeout_s=60)
    jpeg = calls[7].result(timeout_s=60)
    assert np.array_equal(jpeg, expected(images["photos/g.jpg"]).pixels)
    after = handle.batch_stats.remote().result()
    new = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert sum(k * v for k, v in new.items()) == 8 and new.get(4, 0) >= 1, new
    assert handle.meta.remote("photos/g.jpg").result()["passthrough"] is True
