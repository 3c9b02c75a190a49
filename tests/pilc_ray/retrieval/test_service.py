"""The HTTP service over real HTTP: uvicorn on 127.0.0.1 (a thread, or `pilc serve` itself in a
subprocess), talked to with http.client so ids and paths go on the wire exactly as written."""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import re
import resource
import selectors
import signal
import socket
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
from pilc_ray.cli import main as pilc_main
from pilc_ray.retrieval.archive import Archive, open_archive
from pilc_ray.retrieval.service import ConnectionLimits, ServiceConfig, create_app, uvicorn_config
from tests.pilc_ray.retrieval.test_archive import (
    BAD_IDS,
    build_archive,
    expected,
    flip_byte_in_blob,
    sample_set,
)

TOKEN = "test-token-0123456789"


@contextmanager
def http_server(app, limits: ConnectionLimits | None = None) -> Iterator[tuple[str, int]]:
    """Run `app` on a free loopback port in a thread, with the uvicorn config `pilc serve`
    runs (guarded protocol and its limits); stop it afterwards."""
    port = testing.free_port()
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port, limits, log_config=None))
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
        status, h, body = c.request(f"/images/{image_id}" + ("?format=png" if isinstance(
            value, bytes) else ""))
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
    assert c.json("/healthz")[::2] == (200, {"status": "ok"})


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


@contextmanager
def pilc_serve(index: str, *args: str) -> Iterator[tuple[subprocess.Popen, Client]]:
    """`pilc serve INDEX ARGS` in a subprocess (token from the environment) and a client once
    it answers; SIGTERM afterwards. Its log (stdout and stderr) is left in proc.stdout."""
    port = testing.free_port()
    env = {**os.environ, "PILC_SERVE_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "pilc_ray.cli", "serve", index,
                             "--port", str(port), *args], env=env,
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
        yield proc, c
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def test_pilc_serve_command(dest, images, tmp_path):
    assert pilc_main(["serve", dest, "--host", "0.0.0.0"]) == 2  # open bind without a token
    with pilc_serve(str(Path(dest) / "index" / "index.parquet"), "--log-level",
                    "warning") as (_, c):
        status, h, body = c.request("/images/photos/g.jpg")
        assert status == 200 and body == images["photos/g.jpg"]  # the stored JPEG itself
        status, _, body = c.request("/images/photos/b.png")
        assert status == 200 and codec.load_image(body) == images["photos/b.png"]
        assert c.request("/images/photos/g.jpg", token=None)[0] == 401


def test_pilc_serve_logs_every_request_but_never_the_token(dest):
    with pilc_serve(dest) as (proc, c):
        ids = []
        for path, token in (("/images/misc/003.png", "default"), ("/images/nope.png", "default"),
                            ("/images/misc/003.png?format=npy", "default"),
                            ("/images/misc/003.png", "wrong-" + TOKEN)):
            status, h, body = c.request(path, token=token)
            ids.append((h["x-request-id"], path, status, len(body)))
    log = proc.stdout.read().decode()
    assert TOKEN not in log and "Bearer" not in log
    for request_id, path, status, nbytes in ids:
        line = re.search(rf"^.*{request_id} .*$", log, re.M)
        assert line, (request_id, log)
        m = re.search(r"(\S+) 127\.0\.0\.1 GET (\S+) (\d{3}) (\d+)B ([\d.]+)ms$", line[0])
        assert m and m.groups()[:4] == (request_id, path, str(status), str(nbytes)), line[0]
    assert [s for *_, s, _ in ids] == [200, 404, 200, 401]


# --------------------------------------------------------------------------------------------
# originals, connection limits, access log


def test_passthrough_jpeg_served_as_its_stored_file(served, images):
    addr, _ = served
    c = Client(addr)
    jpeg = images["photos/g.jpg"]
    for path in ("/images/photos/g.jpg", "/images/photos/g.jpg?format=original"):
        status, h, body = c.request(path)
        assert status == 200 and h["content-type"] == "image/jpeg" and body == jpeg
        assert h["etag"].endswith('-original"')
    status, h, body = c.request("/images/photos/g.jpg", method="HEAD")
    assert status == 200 and h["content-type"] == "image/jpeg" and body == b""
    status, h, body = c.request("/images/photos/g.jpg?format=png")  # decoded on request
    assert h["content-type"] == "image/png" and len(body) > len(jpeg)
    assert codec.load_image(body) == expected(jpeg)
    # coded from pixels: no original file is kept, and a PNG is not passed off as one
    status, h, err = c.json("/images/photos/a.png?format=original")
    assert status == 406 and err["error"] == "unsupported_format"
    assert "original file is not stored" in err["message"]
    assert c.request("/images/photos/a.png")[1]["content-type"] == "image/png"


def _raise_open_files(n: int) -> None:
    """Room for n more descriptors in this process (client sockets plus the server's)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256 if hard == resource.RLIM_INFINITY else min(hard, n + 256)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _slow_connections(port: int, n: int, sources: list[str]) -> list[socket.socket]:
    """n connections from loopback addresses `sources` (round robin) that each send part of a
    request head and never finish it."""
    socks = []
    for i in range(n):
        s = socket.socket()
        s.bind((sources[i % len(sources)], 0))
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        try:
            s.sendall(b"GET /images/photos/a.png HTTP/1.1\r\nHost: x\r\nX-Wait: for-ever")
        except OSError:
            pass  # refused and reset already: counted as closed below
        socks.append(s)
    return socks


def _wait_closed(socks: list[socket.socket], timeout: float) -> tuple[int, list[bytes]]:
    """(how many the server closed within timeout, what each closed one received)."""
    sel = selectors.DefaultSelector()
    got: dict[socket.socket, bytes] = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        got[s] = b""
    closed: list[bytes] = []
    deadline = time.monotonic() + timeout
    while got and time.monotonic() < deadline:
        for key, _ in sel.select(0.1):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if data:
                got[s] += data
                continue
            sel.unregister(s)
            closed.append(got.pop(s))
    sel.close()
    return len(closed), closed


def _timed_request(addr: tuple[str, int], client: Client | None = None) -> tuple[int, float]:
    t0 = time.monotonic()
    status = (client or Client(addr)).request("/images/misc/000.png")[0]
    return status, time.monotonic() - t0


def test_slow_clients_do_not_shut_out_authenticated_requests(dest):
    """500 connections that never finish their request head (the issue's were 1,030 and
    made every valid request 503), all held open at once, while authenticated clients keep
    getting 200 at once. They come from 10 loopback addresses (all of 127/8 is loopback on
    Linux), 50 each, under the per-client cap: from one address the cap would refuse most of
    them and the server would never hold 500."""
    _raise_open_files(1200)
    limits = ConnectionLimits(header_timeout_s=3.0)
    sources = [f"127.0.0.{i}" for i in range(2, 12)]
    assert 500 / len(sources) <= limits.max_client_connections
    app = create_app(Archive(dest), ServiceConfig(token=TOKEN))
    with http_server(app, limits) as addr:
        early = Client(addr)  # a keep-alive client connected before the attack
        assert early.request("/healthz")[0] == 200
        socks = _slow_connections(addr[1], 500, sources)
        try:
            t_open = time.monotonic()
            for _ in range(10):  # fresh connections, and the established one
                for status, seconds in (_timed_request(addr), _timed_request(addr, early)):
                    assert status == 200 and seconds < 1.0
            # all 500 are still open: nothing was refused to make room for the requests
            shut, _ = _wait_closed(socks, 0.2)
            assert shut == 0 and time.monotonic() - t_open < 3.0
            # each gets 408 at the header deadline, and is closed
            left = 3.0 + 2.0 - (time.monotonic() - t_open)
            shut, answers = _wait_closed(socks, left)
            assert shut == 500
            assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers)
            assert _timed_request(addr)[0] == 200
        finally:
            for s in socks:
                s.close()


def test_one_clients_slow_connections_are_held_to_its_cap(dest):
    """From one address, past the per-client cap, slow connections are refused at once; the
    ones let in get 408 at the header deadline; other clients are served throughout."""
    _raise_open_files(1200)
    limits = ConnectionLimits(header_timeout_s=3.0)
    app = create_app(Archive(dest), ServiceConfig(token=TOKEN))
    with http_server(app, limits) as addr:
        socks = _slow_connections(addr[1], 500, ["127.0.0.2"])
        try:
            t_open = time.monotonic()
            for _ in range(3):
                status, seconds = _timed_request(addr)
                assert status == 200 and seconds < 1.0
            # the attacker's address is held to its per-client cap: the rest are refused at once
            cap = ConnectionLimits().max_client_connections
            shut, _ = _wait_closed(socks[cap:], 1.0)
            assert shut == 500 - cap
            # the ones let in get 408 at the header deadline, and are closed
            left = 3.0 + 2.0 - (time.monotonic() - t_open)
            shut, answers = _wait_closed(socks[:cap], left)
            assert shut == cap
            assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers)
            assert _timed_request(addr)[0] == 200
        finally:
            for s in socks:
                s.close()


def test_connection_cap_refuses_new_connections_not_requests_of_open_ones(dest):
    """Over the global cap, new connections are refused; open ones keep being served (where
    uvicorn's own limit answered every request on every connection with 503)."""
    _raise_open_files(400)
    limits = ConnectionLimits(max_connections=100, header_timeout_s=5.0)
    with http_server(create_app(Archive(dest), ServiceConfig(token=TOKEN)), limits) as addr:
        early = Client(addr)
        assert early.request("/images/misc/001.png")[0] == 200
        socks = _slow_connections(addr[1], 150, [f"127.0.0.{i}" for i in range(2, 5)])
        try:
            for _ in range(5):
                status, seconds = _timed_request(addr, early)
                assert status == 200 and seconds < 1.0
            shut, answers = _wait_closed(socks, 1.0)
            assert shut == 150 - 99  # 99 slow ones + the early client fill the 100
            late = socket.create_connection(addr, timeout=5)
            assert late.recv(200).startswith(b"HTTP/1.1 503 ")
            late.close()
        finally:
            for s in socks:
                s.close()


def _raw_head(addr: tuple[str, int], head: bytes) -> bytes:
    """Send a request head on a fresh connection (from a thread, ignoring a reset: the server
    may stop reading) and return the first bytes of the answer."""
    s = socket.create_connection(addr, timeout=10)

    def send() -> None:
        try:
            s.sendall(head)
        except OSError:
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        return s.recv(4096)
    finally:
        sender.join(10)
        s.close()


def test_request_head_over_the_limit_gets_431_before_auth(served):
    addr, _ = served
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
    start = b"GET /images/misc/002.png HTTP/1.1\r\nHost: x\r\n" + auth
    # 15 KB of headers are fine
    ok = _raw_head(addr, start + b"X-Pad: " + b"a" * 15_000 + b"\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 ")
    # an 8 MB header (the was 64 MB) is refused after the first 16 KB, token or not
    result: dict = {}
    big = threading.Thread(target=lambda: result.update(answer=_raw_head(
        addr, start + b"X-Big: " + b"a" * (8 << 20) + b"\r\n\r\n")))
    big.start()
    status, seconds = _timed_request(addr)  # others are not slowed meanwhile
    big.join(20)
    assert status == 200 and seconds < 1.0
    answer = result["answer"]
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "headers_too_large"
    no_token = b"GET /images/misc/002.png HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    assert _raw_head(addr, no_token).startswith(b"HTTP/1.1 431 ")
