"""HTTP retrieval service: `create_app(archive)` is a FastAPI app, `pilc serve` runs it.

    GET /images/{id}[?format=png|raw|npy]   the image (PNG by default), ETag + Cache-Control
    GET /images/{id}/meta                    its index row as JSON
    GET /healthz                             liveness (no token needed)
    GET /metrics                             Prometheus text: requests, latency, caches, bytes

An uncached image costs one index lookup and one ranged read (see `archive.Archive`); encoded
responses are kept in a byte-bounded LRU, and concurrent misses of one image decode it once.
A pure-ASGI guard in front of every route does the bearer-token check, request limits and
metrics, so even refused requests are counted. Errors are JSON ``{"error", "message"}`` with
4xx for the client's mistakes and 500 only for ours (a blob failing its checksum included).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
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
from pilc_ray.archive import (
    FORMATS,
    MIB,
    Archive,
    ArchiveError,
    CorruptImage,
    LRUCache,
    Rendered,
    json_row,
    render,
    validate_id,
)

log = logging.getLogger(__name__)

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
        sent = {"status": 500, "bytes": 0}

        async def counting_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
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
            self.metrics.observe(route, sent["status"], time.perf_counter() - t0, sent["bytes"])

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
            log.error("%s %s -> %d %s: %s", request.method, request.url.path, e.status, e.code, e)
            if not isinstance(e, CorruptImage):  # storage details (paths, hosts) stay in the log
                message = f"{e.code.replace('_', ' ')}; see the server log"
        return _error(e.status, e.code, message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return _error(e.status_code, code, str(e.detail))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
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
                    fmt: str = Query("png", alias="format")) -> Response:
        if fmt not in FORMATS:
            return _error(400, "bad_format", f"format must be one of {sorted(FORMATS)}")
        validate_id(image_id)
        row = await svc.row(image_id)
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


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def add_serve_arguments(p: Any) -> None:
    """Flags of `pilc serve` (argparse parser)."""
    p.add_argument("index", help="job output (folder or s3:// prefix) or its index.parquet")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (also "
                   "PILC_SERVE_TOKEN or --token-file; prefer those: argv is visible to ps)")
    p.add_argument("--token-file", help="read the bearer token from this file")
    p.add_argument("--allow-anonymous", action="store_true",
                   help="serve a non-loopback --host without a token")
    p.add_argument("--cache-mb", type=int, default=256, help="encoded-response LRU cache")
    p.add_argument("--blob-cache-mb", type=int, default=64, help="compressed-blob LRU cache")
    p.add_argument("--index-cache-mb", type=int, default=64, help="index row-group LRU cache")
    p.add_argument("--max-image-mpix", type=float, default=256.0,
                   help="refuse images with more samples than this many million (413)")
    p.add_argument("--max-blob-mb", type=int, default=512, help="refuse bigger blobs (413)")
    p.add_argument("--cache-max-age", type=int, default=3600, help="Cache-Control max-age, s")
    p.add_argument("--log-level", default="info")


def _token(a: Any) -> str | None:
    import os

    if a.token_file:
        with open(a.token_file) as f:
            return f.read().strip() or None
    return a.token or os.environ.get("PILC_SERVE_TOKEN") or None


def run_server(a: Any) -> int:
    """`pilc serve`: open the archive, refuse an open non-loopback bind, run uvicorn."""
    import sys

    import uvicorn

    from pilc_ray.archive import open_archive
    from pilc_ray.jobcli import _store_options

    token = _token(a)
    if a.host not in LOOPBACK and not token and not a.allow_anonymous:
        print(f"pilc serve: refusing to serve {a.host} without a token (every image would be "
              "public); pass --token-file/PILC_SERVE_TOKEN, or --allow-anonymous",
              file=sys.stderr)
        return 2
    try:
        archive = open_archive(a.index, _store_options(a),
                               index_cache_bytes=a.index_cache_mb * MIB,
                               blob_cache_bytes=a.blob_cache_mb * MIB,
                               max_blob_bytes=a.max_blob_mb * MIB,
                               max_image_samples=int(a.max_image_mpix * 1e6))
    except FileNotFoundError as e:
        print(f"pilc serve: {e}", file=sys.stderr)
        return 1
    config = ServiceConfig(token=token, response_cache_bytes=a.cache_mb * MIB,
                           cache_max_age=a.cache_max_age)
    logging.basicConfig(level=a.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("serving %d images of %s on http://%s:%d (auth: %s)", len(archive), archive.uri,
             a.host, a.port, "bearer token" if token else "none")
    uvicorn.run(create_app(archive, config), host=a.host, port=a.port, log_level=a.log_level,
                access_log=False, server_header=False, limit_concurrency=1024,
                timeout_keep_alive=30)
    return 0
