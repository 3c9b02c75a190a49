"""HTTP retrieval service: `create_app(archive)` is a FastAPI app, `pilc serve` runs it.

    GET /images/{id}[?format=png|raw|npy|original]   the image, ETag + Cache-Control (default:
                                             the stored file for a passthrough JPEG, else PNG)
    GET /images/{id}/meta                    its index row as JSON
    GET /healthz                             liveness (no token needed)
    GET /metrics                             Prometheus text: requests, latency, caches, bytes

An uncached image costs one index lookup and one ranged read (see `archive.Archive`); encoded
responses are kept in a byte-bounded LRU, and concurrent misses of one image decode it once.
A pure-ASGI guard in front of every route does the bearer-token check, request limits and
metrics, so even refused requests are counted. Errors are JSON ``{"error", "message"}`` with
4xx for the client's mistakes and 500 only for ours (a blob failing its checksum included).
The guard also writes the access log (request id, method, path, status, bytes, ms; never a
header, so never the token).

Below the app, `pilc serve` runs uvicorn with `guarded_protocol(...)`: uvicorn's httptools protocol
plus what uvicorn lacks, so slow or greedy clients cannot shut others out (`ConnectionLimits`:
request-head size and time, idle keep-alive, connections in all and per client IP).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as prometheus_text
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.exceptions import HTTPException as StarletteHTTPException

from codec.imagefile import RasterImage
from pilc_ray.retrieval.archive import (
    FORMATS,
    MIB,
    Archive,
    ArchiveError,
    CorruptImage,
    LRUCache,
    Rendered,
    json_row,
    original_media_type,
    render,
    validate_id,
)

log = logging.getLogger(__name__)
access_log = logging.getLogger("pilc_ray.access")
# what ?format= may say: the rendered formats, and the stored file itself (passthrough images)
IMAGE_FORMATS = (*FORMATS, "original")
MAX_LOGGED_TARGET = 512  # characters of path + query in an access-log line

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class ServiceConfig:
    """Knobs of the HTTP layer (the Archive has its own: caches of blobs and index, limits)."""

    token: str | None = None  # bearer token; None = no auth (loopback use)
    response_cache_bytes: int = 256 * MIB
    cache_max_age: int = 3600  # seconds clients may reuse a response without revalidating
    max_request_bytes: int = 64 * 1024  # request bodies (no route takes one) above this: 413
    max_url_bytes: int = 4096  # path + query above this: 414
    decode_concurrency: int = 0  # images decoded at once; 0 = the archive's codec gate decides
    access_log: bool = True  # one INFO line per request on the "pilc_ray.access" logger
    extra_headers: dict[str, str] = field(default_factory=dict)


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status,
                        headers={"Cache-Control": "no-store"})


def _route_of(path: str) -> str:
    """Metric label of a path (bounded set: never the id itself)."""
    if path == "/healthz":
        return "healthz"
    if path == "/metrics":
        return "metrics"
    if path.startswith("/images/"):
        return "meta" if path.endswith("/meta") else "image"
    return "other"


# --------------------------------------------------------------------------------------------
# metrics


class Metrics:
    """Per-app Prometheus registry: HTTP counters here, archive and cache counters at scrape."""

    def __init__(self, archive: Archive, responses: LRUCache[Rendered]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("pilc_http_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("pilc_http_request_seconds", "HTTP request latency",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.sent = Counter("pilc_http_response_bytes", "Response body bytes sent", ["route"],
                            registry=self.registry)
        self.archive, self.responses = archive, responses
        self.registry.register(self)

    def observe(self, route: str, status: int, seconds: float, nbytes: int) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        self.sent.labels(route).inc(nbytes)

    def describe(self) -> list:
        return []  # collected at scrape time only

    def collect(self):  # noqa: ANN201 - prometheus_client collector protocol
        s = self.archive.stats()
        caches = {"response": self.responses.stats(), "blob": s["blob_cache"],
                  "index_row_group": s["row_group_cache"]}
        hits = CounterMetricFamily("pilc_cache_hits", "Cache hits", labels=["cache"])
        misses = CounterMetricFamily("pilc_cache_misses", "Cache misses", labels=["cache"])
        size = GaugeMetricFamily("pilc_cache_bytes", "Bytes held by a cache", labels=["cache"])
        for name, c in caches.items():
            hits.add_metric([name], c["hits"])
            misses.add_metric([name], c["misses"])
            size.add_metric([name], c["bytes"])
        yield from (hits, misses, size)
        reads = CounterMetricFamily("pilc_storage_reads", "Ranged reads from storage",
                                    labels=["kind"])
        reads.add_metric(["index"], s["index_opens"] + s["row_group_reads"])
        reads.add_metric(["blob"], s["blob_reads"])
        nread = CounterMetricFamily("pilc_storage_read_bytes", "Bytes read from storage",
                                    labels=["kind"])
        nread.add_metric(["index"], s["index_bytes"])
        nread.add_metric(["blob"], s["blob_bytes"])
        yield from (reads, nread)
        yield CounterMetricFamily("pilc_decodes", "Images decoded", value=s["decodes"])
        yield CounterMetricFamily("pilc_decode_seconds", "Time spent decoding",
                                  value=s["decode_seconds"])
        yield CounterMetricFamily("pilc_corrupt_blobs", "Blobs that failed verification",
                                  value=s["corrupt"])
        yield GaugeMetricFamily("pilc_index_rows", "Rows in the index", value=s["index_rows"])


# --------------------------------------------------------------------------------------------
# the guard: auth, limits, metrics


class Guard:
    """Pure ASGI middleware in front of all routes (cheap; sees refused requests too)."""

    def __init__(self, app: Any, config: ServiceConfig, metrics: Metrics) -> None:
        self.app, self.config, self.metrics = app, config, metrics
        self.token = config.token.encode() if config.token else None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        path, root = scope.get("path", ""), scope.get("root_path", "")
        route = _route_of(path[len(root):] if root and path.startswith(root) else path)
        request_id = os.urandom(8).hex()
        scope.setdefault("state", {})["request_id"] = request_id  # request.state.request_id
        sent = {"status": 500, "bytes": 0}

        async def counting_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
                message = {**message, "headers": [*message.get("headers", ()),
                                                  (b"x-request-id", request_id.encode())]}
            elif message["type"] == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            refusal = self._refuse(scope, route)
            if refusal is not None:
                await refusal(scope, receive, counting_send)
            else:
                await self.app(scope, receive, counting_send)
        finally:
            seconds = time.perf_counter() - t0
            self.metrics.observe(route, sent["status"], seconds, sent["bytes"])
            if self.config.access_log:
                _log_access(scope, request_id, sent["status"], sent["bytes"], seconds)

    def _refuse(self, scope: dict, route: str) -> Response | None:
        cfg = self.config
        url_len = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        if url_len > cfg.max_url_bytes:
            return _error(414, "uri_too_long", f"request URI is over {cfg.max_url_bytes} bytes")
        if scope["method"] not in ("GET", "HEAD"):
            return _error(405, "method_not_allowed", "only GET and HEAD are served")
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if b"transfer-encoding" in headers or (
                length is not None and (not length.isdigit()
                                        or int(length) > cfg.max_request_bytes)):
            return _error(413, "request_too_large",
                          f"request bodies are limited to {cfg.max_request_bytes} bytes")
        if self.token is not None and route != "healthz":
            auth = headers.get(b"authorization", b"")
            scheme, _, given = auth.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
                r = _error(401, "unauthorized", "a valid bearer token is required")
                r.headers["WWW-Authenticate"] = 'Bearer realm="pilc"'
                return r
        return None


def _log_access(scope: dict, request_id: str, status: int, nbytes: int, seconds: float) -> None:
    """One access-log line. Built from the request line and the client address only: no header
    is ever logged, so neither is the bearer token."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    client = scope.get("client")
    access_log.info("%s %s %s %s %d %dB %.1fms", request_id, client[0] if client else "-",
                    scope.get("method", "-"), _logged_target(scope), status, nbytes,
                    seconds * 1000)


def _logged_target(scope: dict) -> str:
    """Path and query as sent (still percent-encoded), printable ASCII only and truncated: a
    client cannot forge log lines with a decoded newline nor flood the log with a long URI."""
    raw = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogateescape")
    if scope.get("query_string"):
        raw += b"?" + scope["query_string"]
    text = "".join(chr(b) if 33 <= b < 127 else f"%{b:02X}" for b in raw[:MAX_LOGGED_TARGET])
    return text + ("..." if len(raw) > MAX_LOGGED_TARGET else "")


# --------------------------------------------------------------------------------------------
# the app


class ImageService:
    """What the routes call: row lookups and rendered images behind an async single flight.

    load_image: async id -> RasterImage. Default: `archive.image` in a worker thread; the Ray
    Serve deployment passes its batched decoder instead.
    """

    def __init__(self, archive: Archive, config: ServiceConfig,
                 load_image: Callable[[str], Awaitable[RasterImage]] | None = None) -> None:
        self.archive, self.config = archive, config
        self.responses: LRUCache[Rendered] = LRUCache(config.response_cache_bytes,
                                                      lambda r: len(r.body) + 256)
        self._inflight: dict[Hashable, asyncio.Future] = {}
        self._limiter = (anyio.CapacityLimiter(config.decode_concurrency)
                         if config.decode_concurrency > 0 else None)
        self.load_image = load_image or self._load_in_thread

    async def _load_in_thread(self, image_id: str) -> RasterImage:
        return await anyio.to_thread.run_sync(self.archive.image, image_id,
                                              limiter=self._limiter)

    def _original(self, image_id: str) -> Rendered:
        """The stored file of a passthrough image, checked, never decoded (a JPEG stays the
        bytes the job was given: smaller than any re-encoding, and the same file)."""
        row, data = self.archive.original(image_id)
        return Rendered(data, original_media_type(row))

    async def row(self, image_id: str, full: bool = False) -> dict:
        fn = self.archive.meta if full else self.archive.locate
        return await anyio.to_thread.run_sync(fn, image_id)

    async def rendered(self, row: dict, fmt: str) -> tuple[Rendered, str]:
        """(body, "hit" | "miss" | "coalesced"): concurrent misses of one key share one decode,
        the later ones are "coalesced"."""
        image_id = row["id"]
        key = (image_id, fmt, row["checksum"])
        hit = self.responses.get(key)
        if hit is not None:
            self.responses.hits += 1
            return hit, "hit"
        fut = self._inflight.get(key)
        if fut is not None:
            return await asyncio.shield(fut), "coalesced"
        fut = self._inflight[key] = asyncio.get_running_loop().create_future()
        self.responses.misses += 1
        try:
            if fmt == "original":
                out = await anyio.to_thread.run_sync(self._original, image_id)
            else:
                img = await self.load_image(image_id)
                out = await anyio.to_thread.run_sync(render, img, fmt)
            self.responses.put(key, out)
            fut.set_result(out)
            return out, "miss"
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved here: waiters (if any) get it too
            raise
        finally:
            self._inflight.pop(key, None)


def create_app(archive: Archive, config: ServiceConfig | None = None, *,
               load_image: Callable[[str], Awaitable[RasterImage]] | None = None) -> FastAPI:
    """The FastAPI app serving `archive` (run it with uvicorn, or inside Ray Serve)."""
    config = config or ServiceConfig()
    svc = ImageService(archive, config, load_image)
    metrics = Metrics(archive, svc.responses)
    app = FastAPI(title="pilc image retrieval", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.service, app.state.metrics = svc, metrics
    privacy = "private" if config.token else "public"
    cache_control = f"{privacy}, max-age={config.cache_max_age}"

    @app.exception_handler(ArchiveError)
    async def archive_error(request: Request, e: ArchiveError) -> JSONResponse:
        message = str(e)
        if e.status >= 500:
            log.error("%s %s %s -> %d %s: %s", _request_id(request), request.method,
                      request.url.path, e.status, e.code, e)
            if not isinstance(e, CorruptImage):  # storage details (paths, hosts) stay in the log
                message = f"{e.code.replace('_', ' ')}; see the server log"
        return _error(e.status, e.code, message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return _error(e.status_code, code, str(e.detail))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception) -> JSONResponse:
        log.exception("%s %s %s failed", _request_id(request), request.method,
                      request.url.path)
        return _error(500, "internal", f"internal error ({type(e).__name__}); see the server log")

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus() -> Response:
        body = await anyio.to_thread.run_sync(prometheus_text, metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.api_route("/images/{image_id:path}/meta", methods=["GET", "HEAD"])
    async def meta(image_id: str) -> JSONResponse:
        validate_id(image_id)
        row = await svc.row(image_id, full=True)
        return JSONResponse(json_row(row), headers={"Cache-Control": cache_control})

    @app.api_route("/images/{image_id:path}", methods=["GET", "HEAD"])
    async def image(request: Request, image_id: str,
                    fmt: str | None = Query(None, alias="format")) -> Response:
        if fmt is not None and fmt not in IMAGE_FORMATS:
            return _error(400, "bad_format", f"format must be one of {sorted(IMAGE_FORMATS)}")
        validate_id(image_id)
        row = await svc.row(image_id)
        fmt = fmt or default_format(row)
        archive.check_limits(row)
        etag = f'"{row["checksum"]:016x}-{fmt}"'
        headers = {"ETag": etag, "Cache-Control": cache_control, **config.extra_headers}
        if _etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        out, how = await svc.rendered(row, fmt)
        headers.update(out.headers)
        headers["X-Cache"] = how
        return Response(out.body, media_type=out.media_type, headers=headers)

    app.add_middleware(Guard, config=config, metrics=metrics)
    return app


def _request_id(request: Request) -> str:
    """The guard's id of this request, so an error in the log matches its access-log line."""
    return getattr(request.state, "request_id", "-")


def default_format(row: dict) -> str:
    """What a request without ?format= gets: a passthrough image's stored file (the JPEG the
    job was given), else a PNG of the exact pixels."""
    return "original" if row.get("passthrough") else "png"


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


# --------------------------------------------------------------------------------------------
# connections: what uvicorn does not bound


@dataclass(frozen=True)
class ConnectionLimits:
    """What one connection may cost before its request reaches the app (`pilc serve` only;
    under Ray Serve its proxy owns the connections).

    Without these, 1,030 connections that never finish their headers made every valid request
    get 503 (uvicorn counted them against its concurrency limit and never timed them out), and
    a 64 MB header was read into memory before any auth.
    """

    max_header_bytes: int = 16 * 1024  # request line + headers; above: 431, connection closed
    header_timeout_s: float = 10.0  # to complete a request head, from connect / last response
    keep_alive_s: float = 5.0  # idle keep-alive connections are closed after this
    max_connections: int = 4096  # open connections; a new one beyond is refused at once
    max_client_connections: int = 64  # per client IP; 0 = no cap (e.g. behind a proxy)
    max_inflight: int = 1024  # requests being answered at once; more get 503
    linger_s: float = 1.0  # after a 431: keep reading (and dropping) so the client sees it


def _raw_response(status: int, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 error response (JSON like the app's), for the protocol layer to
    send before any request reached the app; it always closes the connection."""
    body = json.dumps({"error": code, "message": message}).encode()
    reason = {408: "Request Timeout", 431: "Request Header Fields Too Large",
              503: "Service Unavailable"}[status]
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\ncache-control: no-store\r\n"
            "connection: close\r\n\r\n").encode() + body


class _RateLimitedWarning:
    """At most one warning per `every_s` for a kind of refusal, with the count since the last:
    under attack, refusals come by the thousand and must not flood the log."""

    def __init__(self, what: str, every_s: float = 10.0) -> None:
        self.what, self.every_s, self.count, self.last = what, every_s, 0, -float("inf")

    def __call__(self, detail: str) -> None:
        self.count += 1
        now = time.monotonic()
        if self.last == -float("inf"):
            log.warning("%s (%s); more are summed up every %g s", self.what, detail,
                        self.every_s)
        elif now - self.last >= self.every_s:
            log.warning("%d %s in the last %.0f s (latest: %s)", self.count, self.what,
                        now - self.last, detail)
        else:
            return
        self.count, self.last = 0, now


def guarded_protocol(limits: ConnectionLimits) -> type:
    """uvicorn's httptools protocol class with `limits` enforced (pass it as Config(http=...)).

    Each call gives a new class with its own per-client counts: one class per server. A
    connection refused for being over a cap is closed before it reads anything and does not
    count against the others, so a flood of them cannot push established clients into 503s.
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    per_client: dict[str, int] = {}
    refused = _RateLimitedWarning("connections refused (connection caps)")
    too_slow = _RateLimitedWarning("connections closed: request head not complete in time")
    too_big = _RateLimitedWarning("requests refused: request head too large (431)")

    class GuardedProtocol(HttpToolsProtocol):
        """Counts the bytes and time a request head takes; caps connections at accept."""

        def connection_made(self, transport: Any) -> None:  # noqa: ANN401 - asyncio API
            self._ip, self._refused, self._lingering = None, False, False
            self._head_pending, self._head_bytes, self._head_timer = True, 0, None
            peer = transport.get_extra_info("peername")
            ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
            cap = limits.max_client_connections
            if len(self.connections) >= limits.max_connections or (
                    cap and per_client.get(ip, 0) >= cap):
                self.transport, self._refused = transport, True
                refused(f"{ip}: {per_client.get(ip, 0)} open from it, "
                        f"{len(self.connections)} in all")
                transport.write(_raw_response(503, "too_many_connections",
                                              "too many open connections; retry later"))
                transport.close()
                return
            self._ip = ip
            per_client[ip] = per_client.get(ip, 0) + 1
            super().connection_made(transport)
            self._await_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            if self._refused:
                return  # never admitted: nothing of the parent's state to undo
            if self._ip is not None:
                left = per_client.get(self._ip, 1) - 1
                if left > 0:
                    per_client[self._ip] = left
                else:
                    per_client.pop(self._ip, None)
                self._ip = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            """Feeds the parser, but never more than `max_header_bytes` of one request head:
            httptools would buffer a header of any size before calling back."""
            if self._refused or self._lingering:
                return  # dropped: the connection is going away
            while data:
                if self._head_pending:
                    room = limits.max_header_bytes - self._head_bytes
                    if room <= 0:
                        self._head_too_large()
                        return
                    part, data = data[:room], data[room:]
                    self._head_bytes += len(part)
                else:
                    part, data = data, b""
                super().data_received(part)
                if self.transport.is_closing():
                    return

        def on_headers_complete(self) -> None:
            self._head_pending, self._head_bytes = False, 0
            self._cancel_head_timer()
            # uvicorn's own limit counts open connections too (idle ones shut everyone out);
            # 0 makes its check refuse this request, None lets it through
            self.limit_concurrency = 0 if len(self.tasks) >= limits.max_inflight else None
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._head_pending, self._head_bytes = True, 0
            self._await_head()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._await_head()

        def _await_head(self) -> None:
            """Start the head clock when the connection waits for a request: at connect, or
            once the last request is read and answered. A slow answer is not the client's."""
            answering = self.cycle is not None and not self.cycle.response_complete
            if (self._head_pending and not answering and self._head_timer is None
                    and not self.transport.is_closing()):
                self._head_timer = self.loop.call_later(limits.header_timeout_s,
                                                        self._head_timeout)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            if self.transport.is_closing() or not self._head_pending:
                return
            if self._head_bytes:  # a partial head: say why; an idle connection just closes
                too_slow(f"{self._ip}: {self._head_bytes} bytes in "
                         f"{limits.header_timeout_s:g} s")
                self.transport.write(_raw_response(
                    408, "request_timeout", f"request head not complete within "
                    f"{limits.header_timeout_s:g} s"))
            self.transport.close()

        def _head_too_large(self) -> None:
            """431, then linger: drop what the client still sends for a moment, so that it
            reads the answer instead of a connection reset."""
            too_big(f"{self._ip}: over {limits.max_header_bytes} bytes")
            self._cancel_head_timer()
            if self.cycle is not None and not self.cycle.response_complete:
                self.transport.close()  # a pipelined head mid-response: no room for a 431
                return
            self._lingering = True
            self.transport.write(_raw_response(
                431, "headers_too_large",
                f"request line and headers are limited to {limits.max_header_bytes} bytes"))
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(limits.linger_s, self.transport.close)

    return GuardedProtocol


def uvicorn_config(app: Any, host: str = "127.0.0.1", port: int = 8080,
                   limits: ConnectionLimits | None = None, **options: Any) -> Any:
    """The uvicorn.Config `pilc serve` runs (tests start the same one): the guarded protocol,
    no websockets (nothing to upgrade to), uvicorn's access log off (the guard writes ours)."""
    import uvicorn

    limits = limits or ConnectionLimits()
    return uvicorn.Config(app, host=host, port=port, http=guarded_protocol(limits), ws="none",
                          lifespan="off", access_log=False, server_header=False,
                          timeout_keep_alive=limits.keep_alive_s, **options)


def _raise_fd_limit(want: int) -> int:
    """Raise the soft open-files limit towards `want` (bounded by the hard one); returns it.
    Each connection is a file descriptor: at the usual soft 1024, accept() would fail long
    before `max_connections`."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def add_serve_arguments(p: Any) -> None:
    """Flags of `pilc serve` (argparse parser)."""
    d = ConnectionLimits()
    p.add_argument("index", help="job output (folder or s3:// prefix) or its index.parquet")
    p.add_argument("--host", default="127.0.0.1",
                   help="bind address (default: %(default)s, loopback only)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default: %(default)s)")
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (also "
                   "PILC_SERVE_TOKEN or --token-file; prefer those: argv is visible to ps)")
    p.add_argument("--token-file", help="read the bearer token from this file")
    p.add_argument("--allow-anonymous", action="store_true",
                   help="serve a non-loopback --host without a token")
    p.add_argument("--cache-mb", type=int, default=256,
                   help="encoded-response LRU cache, MiB (default: %(default)s)")
    p.add_argument("--blob-cache-mb", type=int, default=64,
                   help="compressed-blob LRU cache, MiB (default: %(default)s)")
    p.add_argument("--index-cache-mb", type=int, default=64,
                   help="index row-group LRU cache, MiB (default: %(default)s)")
    p.add_argument("--max-image-mpix", type=float, default=256.0,
                   help="refuse images with more samples than this many million (413; "
                        "default: %(default)s)")
    p.add_argument("--max-blob-mb", type=int, default=512,
                   help="refuse bigger blobs (413; default: %(default)s)")
    p.add_argument("--cache-max-age", type=int, default=3600,
                   help="Cache-Control max-age, seconds (default: %(default)s)")
    p.add_argument("--max-header-kb", type=int, default=d.max_header_bytes // 1024,
                   help="request line + headers above this many KiB get 431 before auth "
                        "(default: %(default)s)")
    p.add_argument("--header-timeout", type=float, default=d.header_timeout_s,
                   help="seconds a client has to send a complete request head, from connecting "
                        "or from the previous response (default: %(default)s)")
    p.add_argument("--keep-alive", type=float, default=d.keep_alive_s,
                   help="idle keep-alive connections are closed after this many seconds "
                        "(default: %(default)s)")
    p.add_argument("--max-connections", type=int, default=d.max_connections,
                   help="open connections in all; new ones beyond are refused (default: "
                        "%(default)s)")
    p.add_argument("--max-client-connections", type=int, default=d.max_client_connections,
                   help="open connections per client IP; 0: no cap, e.g. behind a proxy that "
                        "connects from one address (default: %(default)s)")
    p.add_argument("--no-access-log", dest="access_log", action="store_false",
                   help="do not log one line per request (request id, client, method, path, "
                        "status, bytes, ms; never headers or the token)")
    p.add_argument("--log-level", default="info",
                   help="debug, info (default: access log included), warning, error")


# flag: (least, most) its value may be; checked before anything starts
SERVE_RANGES: dict[str, tuple[float, float]] = {
    "port": (1, 65535), "cache_mb": (0, float("inf")), "blob_cache_mb": (0, float("inf")),
    "index_cache_mb": (0, float("inf")), "max_image_mpix": (1e-6, float("inf")),
    "max_blob_mb": (1, float("inf")), "cache_max_age": (0, float("inf")),
    "max_header_kb": (1, float("inf")), "header_timeout": (0.001, float("inf")),
    "keep_alive": (0.001, float("inf")), "max_connections": (1, float("inf")),
    "max_client_connections": (0, float("inf")),
}


def check_serve_arguments(a: Any) -> str | None:
    """What is wrong with `pilc serve`'s numeric flags (a port past 65535, a negative cache),
    or None: refused before the archive is opened, not as a bind error after."""
    for name, (low, high) in SERVE_RANGES.items():
        value = getattr(a, name)
        if not low <= value <= high:  # `not`: also NaN
            flag = "--" + name.replace("_", "-")
            span = f"at least {low:g}" if high == float("inf") else f"{low:g} to {high:g}"
            return f"{flag} must be {span}, not {value:g}"
    return None


def _token(a: Any) -> str | None:
    if a.token_file:
        with open(a.token_file) as f:
            return f.read().strip() or None
    return a.token or os.environ.get("PILC_SERVE_TOKEN") or None


def run_server(a: Any) -> int:
    """`pilc serve`: open the archive, refuse an open non-loopback bind, run uvicorn."""
    import sys

    import uvicorn

    from pilc_ray.retrieval.archive import open_archive
    from pilc_ray.storage_flags import store_options

    token = _token(a)
    if a.host not in LOOPBACK and not token and not a.allow_anonymous:
        print(f"pilc: error: refusing to serve {a.host} without a token (every image would be "
              "public); pass --token-file/PILC_SERVE_TOKEN, or --allow-anonymous",
              file=sys.stderr)
        return 2
    try:
        archive = open_archive(a.index, store_options(a),
                               index_cache_bytes=a.index_cache_mb * MIB,
                               blob_cache_bytes=a.blob_cache_mb * MIB,
                               max_blob_bytes=a.max_blob_mb * MIB,
                               max_image_samples=int(a.max_image_mpix * 1e6))
    except FileNotFoundError as e:
        print(f"pilc: error: {e}", file=sys.stderr)
        return 1
    config = ServiceConfig(token=token, response_cache_bytes=a.cache_mb * MIB,
                           cache_max_age=a.cache_max_age, access_log=a.access_log)
    logging.basicConfig(level=a.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limits = _limits_from_args(a)
    log.info("serving %d images of %s on http://%s:%d (auth: %s)", len(archive), archive.uri,
             a.host, a.port, "bearer token" if token else "none")
    uvicorn.Server(uvicorn_config(create_app(archive, config), a.host, a.port, limits,
                                  log_level=a.log_level)).run()
    return 0


def _limits_from_args(a: Any) -> ConnectionLimits:
    """The flags' limits, with max_connections lowered to what the open-files limit allows
    (each connection is a descriptor; the archive and uvicorn need some of their own)."""
    fds = _raise_fd_limit(a.max_connections + 256)
    max_connections = max(16, min(a.max_connections, fds - 128))
    if max_connections < a.max_connections:
        log.warning("open-files limit %d: at most %d connections", fds, max_connections)
    return ConnectionLimits(max_header_bytes=a.max_header_kb * 1024,
                            header_timeout_s=a.header_timeout, keep_alive_s=a.keep_alive,
                            max_connections=max_connections,
                            max_client_connections=a.max_client_connections)
