"""The HTTP service over real HTTP: uvicorn on 127.0.0.1 (a thread, or `pilc serve` itself in a
subprocess), talked to with http.client so ids and paths go on the wire exactly as written."""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import uvicorn

import codec
from pilc_ray import testing
from pilc_ray.archive import Archive, open_archive
from pilc_ray.cli import main as pilc_main
from pilc_ray.service import ServiceConfig, create_app
from tests.test_archive import BAD_IDS, build_archive, expected, flip_byte_in_blob, sample_set

TOKEN = "test-token-0123456789"


@contextmanager
def http_server(app) -> Iterator[tuple[str, int]]:
    """Run `app` with uvicorn on a free loopback port in a thread; stop it afterwards."""
    port = testing.free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        thread.join(15)


class Client:
    """Keep-alive HTTP/1.1 client; paths are sent verbatim (no normalization)."""

    def __init__(self, addr: tuple[str, int], token: str | None = TOKEN) -> None:
        self.conn = http.client.HTTPConnection(*addr, timeout=30)
        self.token = token

    def request(self, path: str, method: str = "GET", headers: dict | None = None,
                body: bytes | None = None, token: str | None = "default"):
        h = dict(headers or {})
        tok = self.token if token == "default" else token
        if tok:
            h["Authorization"] = f"Bearer {tok}"
        self.conn.request(method, path, body=body, headers=h)
        r = self.conn.getresponse()
        data = r.read()
        if r.getheader("connection", "").lower() == "close":
            self.conn.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def json(self, path: str, **kw):
        status, headers, body = self.request(path, **kw)
        return status, headers, json.loads(body)


@pytest.fixture(scope="module")
def images() -> dict:
    return sample_set()


@pytest.fixture(scope="module")
def dest(tmp_path_factory, images) -> str:
    return build_archive(str(tmp_path_factory.mktemp("svc") / "job"), images)


@pytest.fixture(scope="module")
def served(dest):
    """(address, archive) of a token-protected server over the module's archive."""
    archive = Archive(dest)
    with http_server(create_app(archive, ServiceConfig(token=TOKEN))) as addr:
        yield addr, archive


def test_png_by_default_and_raw_npy_formats_exact(served, images):
    addr, _ = served
    c = Client(addr)
    for image_id, value in images.items():
        want = expected(value)
        status, h, body = c.request(f"/images/{image_id}")
        assert status == 200 and h["content-type"] == "image/png"
        assert codec.load_image(body) == want
        assert h["etag"].startswith('"') and "max-age=" in h["cache-control"]
        assert h["cache-control"].startswith("private")  # a token is configured
        status, h, body = c.request(f"/images/{image_id}?format=npy")
        assert status == 200 and np.array_equal(np.load(io.BytesIO(body)), want.pixels)
    status, h, body = c.request("/images/graphics/d.png?format=raw")
    assert status == 200 and h["content-type"] == "application/octet-stream"
    assert (h["x-image-shape"], h["x-image-dtype"], h["x-image-mode"]) == ("40,56", "uint16",
                                                                           "L;16")
    px = np.frombuffer(body, "<u2").reshape(40, 56)
    assert np.array_equal(px, images["graphics/d.png"].pixels)
    status, h, body = c.request("/images/photos/a.png", method="HEAD")
    assert status == 200 and body == b"" and h["content-type"] == "image/png"


def test_cache_hits_etag_revalidation_and_meta(served, images):
    addr, archive = served
    c = Client(addr)
    s1, h1, b1 = c.request("/images/misc/004.png")
    s2, h2, b2 = c.request("/images/misc/004.png")
    assert (s1, s2) == (200, 200) and b1 == b2 and h1["etag"] == h2["etag"]
    assert h2["x-cache"] == "hit"
    decodes = archive.stats()["decodes"]
    s3, h3, b3 = c.request("/images/misc/004.png", headers={"If-None-Match": h1["etag"]})
    assert s3 == 304 and b3 == b"" and h3["etag"] == h1["etag"]
    assert archive.stats()["decodes"] == decodes
    assert c.request("/images/misc/004.png?format=npy")[1]["etag"] != h1["etag"]
    status, h, row = c.json("/images/photos/a.png/meta")
    assert status == 200 and row["id"] == "photos/a.png" and row["mode"] == "RGB"
    assert (row["width"], row["height"]) == (56, 40)
    assert h1["etag"].strip('"').startswith(c.json("/images/misc/004.png/meta")[2]["checksum"])
    assert c.json("/images/photos/nope.png/meta")[0] == 404


def test_same_uncached_image_from_many_clients_decodes_once(served, images):
    addr, archive = served
    before = archive.stats()["decodes"]
    results: list = []

    def fetch() -> None:
        results.append(Client(addr).request("/images/photos/c.png?format=raw"))

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r[0] for r in results] == [200] * 8
    want = images["photos/c.png"].pixels.tobytes()
    assert all(r[2] == want for r in results)
    assert archive.stats()["decodes"] == before + 1  # in flight or cached: never twice
    kinds = sorted(r[1]["x-cache"] for r in results)
    assert kinds.count("miss") == 1 and set(kinds) <= {"miss", "hit", "coalesced"}


def test_bearer_token_required_except_healthz(served):
    addr, _ = served
    c = Client(addr, token=None)
    for path in ("/images/photos/a.png", "/images/photos/a.png/meta", "/metrics",
                 "/images/nope", "/anything"):
        status, h, body = c.json(path)
        assert status == 401 and body["error"] == "unauthorized"
        assert h["www-authenticate"].startswith("Bearer")
    assert c.request("/images/photos/a.png", token="wrong")[0] == 401
    assert c.request("/images/photos/a.png", headers={"Authorization": TOKEN})[0] == 401
    assert c.json("/healthz") == (200, c.json("/healthz")[1], {"status": "ok"})


def test_bad_requests_are_4xx_and_never_reach_storage(served):
    addr, archive = served
    c = Client(addr)
    before = archive.stats()
    quoted = {"a\x00b": "a%00b", "a\nb": "a%0Ab", "": ""}
    for bad in BAD_IDS:
        path = "/images/" + quoted.get(bad, bad)
        status, _, body = c.request(path)
        assert status in (400, 404), (bad, status)  # 404: no route matches (newline)
        assert json.loads(body)["error"] == ("invalid_id" if status == 400 else "not_found")
    assert c.json("/images/%2E%2E/%2E%2E/etc/passwd")[2]["error"] == "invalid_id"
    after = archive.stats()
    assert after["row_group_reads"] == before["row_group_reads"]
    assert after["blob_reads"] == before["blob_reads"]
    # unknown ids: 404 after the index lookup, and no blob read
    for path in ("/images/%2Fetc%2Fpasswd", "/images/photos/missing.png", "/images/zzz"):
        status, _, body = c.json(path)
        assert status == 404 and body["error"] == "not_found"
    assert archive.stats()["blob_reads"] == before["blob_reads"]
    status, _, body = c.json("/images/photos/a.png?format=gif")
    assert status == 400 and body["error"] == "bad_format"
    assert c.request("/images/" + "a" * 5000)[0] == 414
    assert c.request("/images/photos/a.png", method="POST", body=b"x")[0] == 405
    status, _, _ = c.request("/images/photos/a.png", body=b"x" * 70_000,
                             headers={"Content-Type": "application/octet-stream"})
    assert status == 413
    assert c.json("/nothing/here")[::2] == (404, {"error": "not_found", "message": "Not Found"})


def test_image_size_limits_give_413(dest):
    archive = Archive(dest, max_image_samples=1000)
    with http_server(create_app(archive)) as addr:
        c = Client(addr, token=None)
        status, _, body = c.json("/images/photos/a.png")
        assert status == 413 and body["error"] == "too_large"
        assert c.request("/images/misc/001.png")[0] == 200  # 24x32 = 768 samples
        assert c.request("/images/photos/a.png")[1]["cache-control"] == "no-store"
    assert archive.stats()["blob_reads"] == 1


def test_corrupt_blob_is_500_with_message_logged_not_cached(tmp_path, images, caplog):
    dest = build_archive(str(tmp_path / "job"), images)
    archive = Archive(dest)
    flip_byte_in_blob(archive.meta("photos/b.png"))
    with http_server(create_app(archive)) as addr, caplog.at_level(logging.ERROR):
        c = Client(addr, token=None)
        for _ in range(2):  # a failure is not cached: checked again, fails again
            status, h, body = c.request("/images/photos/b.png")
            assert status == 500 and h["content-type"] == "application/json"
            err = json.loads(body)
            assert err["error"] == "corrupt_blob" and "photos/b.png" in err["message"]
            assert "failed verification" in err["message"]
        assert c.request("/images/photos/c.png")[0] == 200
        metrics = c.request("/metrics")[2].decode()
    assert "pilc_corrupt_blobs_total 2.0" in metrics
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("corrupt blob" in m and "photos/b.png" in m for m in logged)


def _metric(text: str, name: str) -> float:
    """The value of one sample, `name` being the metric with its labels as printed."""
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == name:
            return float(value)
    raise KeyError(name)


def test_metrics_prometheus_text(dest):
    archive = Archive(dest)
    with http_server(create_app(archive, ServiceConfig(token=TOKEN))) as addr:
        c = Client(addr)
        c.request("/images/misc/000.png")
        c.request("/images/misc/000.png")
        c.request("/images/nope.png")
        c.request("/images/misc/000.png", token=None)
        status, h, body = c.request("/metrics")
    text = body.decode()
    assert status == 200 and h["content-type"].startswith("text/plain")
    assert _metric(text, 'pilc_http_requests_total{route="image",status="200"}') == 2
    assert _metric(text, 'pilc_http_requests_total{route="image",status="404"}') == 1
    assert _metric(text, 'pilc_http_requests_total{route="image",status="401"}') == 1
    assert _metric(text, 'pilc_http_request_seconds_count{route="image"}') == 4
    assert _metric(text, 'pilc_cache_hits_total{cache="response"}') == 1
    assert _metric(text, 'pilc_cache_misses_total{cache="response"}') == 1
    assert _metric(text, 'pilc_storage_reads_total{kind="blob"}') == 1
    assert _metric(text, 'pilc_http_response_bytes_total{route="image"}') > 100
    assert 'pilc_http_request_seconds_bucket{le="0.005",route="image"}' in text


def test_s3_archive_served(tmp_path, images):
    srv = testing.moto_s3()
    opts = srv.options()
    dest = build_archive(f"s3://{srv.make_bucket()}/served", images, opts)
    with http_server(create_app(open_archive(dest, opts))) as addr:
        c = Client(addr, token=None)
        status, _, body = c.request("/images/photos/a.png")
        assert status == 200 and codec.load_image(body) == images["photos/a.png"]
        assert c.json("/images/misc/005.png/meta")[2]["blob_uri"].startswith("s3://")
        assert c.request("/images/photos/zz.png")[0] == 404


def test_pilc_serve_command(dest, images, tmp_path):
    assert pilc_main(["serve", dest, "--host", "0.0.0.0"]) == 2  # open bind without a token
    port = testing.free_port()
    env = {**os.environ, "PILC_SERVE_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "pilc_ray.cli", "serve",
                             str(Path(dest) / "index" / "index.parquet"), "--port", str(port),
                             "--log-level", "warning"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                c = Client(("127.0.0.1", port))
                if c.request("/healthz", token=None)[0] == 200:
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(proc.stdout.read().decode()) from None
                time.sleep(0.2)
        status, _, body = c.request("/images/photos/g.jpg")
        assert status == 200 and codec.load_image(body) == expected(images["photos/g.jpg"])
        assert c.request("/images/photos/g.jpg", token=None)[0] == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
