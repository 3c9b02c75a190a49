"""Load test of `pilc serve`: N concurrent keep-alive clients on loopback, bounded requests.

Writes an archive of photo-like sample images with the job's own worker code (or uses --dest),
starts `pilc serve` as a subprocess on 127.0.0.1 (bearer token on, as in production), and for
each case and client count sends a fixed number of requests, recording per-request latency.

Cases:
  hit       PNG responses already in the server's response cache (index lookup + cache)
  revalidate  If-None-Match with the current ETag -> 304 (index lookup only)
  miss-png  every request decodes: response and blob caches off (one ranged blob read, decode,
            PNG encode); index row groups stay cached, as in any long-running server
  miss-raw  the same, raw pixels instead of PNG (decode cost alone)

    python benchmarks/serve_load.py --out benchmarks/results/serve_load.md

Loopback only, and bounded: every case stops after --requests (hit/revalidate) or
--miss-requests requests; each request has a 60 s timeout.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"
TOKEN = "bench-token"


def build_dest(dest: str, count: int) -> list[str]:
    """Sample images compressed exactly as a job stores them; returns their ids."""
    from pilc_ray import index as ix
    from pilc_ray.job.sources import Item
    from pilc_ray.job.worker import BatchCompressor, WorkerConfig
    from pilc_ray.samples import sample_images

    comp = BatchCompressor(WorkerConfig(dest=dest))
    writer = ix.PartWriter(dest, "bench")
    items = [Item(f"samples/{name}.png", f"mem://{name}", -1, img)
             for name, img in sample_images(count)]
    for i in range(0, len(items), 8):
        out = comp.compress(items[i : i + 8])
        writer.add(out["rows"], out["errors"])
    writer.flush()
    ix.compact(dest)
    return [it.id for it in items]


def ids_of(dest: str) -> list[str]:
    from pilc_ray.retrieval.archive import open_archive

    return [r["id"] for r in open_archive(dest).iter_rows(columns=[])]


class Server:
    """`pilc serve` in a subprocess on a free loopback port."""

    def __init__(self, dest: str, *flags: str) -> None:
        from pilc_ray.testing import free_port

        self.port = free_port()
        env = {**os.environ, "PILC_SERVE_TOKEN": TOKEN}
        self.cmd = [sys.executable, "-m", "pilc_ray.cli", "serve", dest, "--host", HOST,
                    "--port", str(self.port), "--log-level", "warning", *flags]
        self.proc = subprocess.Popen(self.cmd, env=env)
        deadline = time.monotonic() + 60
        while True:
            try:
                c = http.client.HTTPConnection(HOST, self.port, timeout=5)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("pilc serve did not start") from None
                time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


@dataclass
class Result:
    case: str
    clients: int
    requests: int
    seconds: float
    latencies: list[float]
    statuses: dict[int, int]
    cache: dict[str, int]
    body_bytes: int


def run_case(port: int, case: str, paths: list[str], clients: int, requests: int,
             etags: dict[str, str]) -> Result:
    """`requests` requests spread over `clients` threads, each with one keep-alive connection."""
    per = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]
    lat: list[list[float]] = [[] for _ in range(clients)]
    statuses: list[dict[int, int]] = [{} for _ in range(clients)]
    cache: list[dict[str, int]] = [{} for _ in range(clients)]
    nbytes = [0] * clients
    start = threading.Barrier(clients + 1)

    def client(k: int) -> None:
        rng = random.Random(k)
        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        start.wait()
        for _ in range(per[k]):
            path = rng.choice(paths)
            headers = {"Authorization": f"Bearer {TOKEN}"}
            if case == "revalidate":
                headers["If-None-Match"] = etags[path]
            t0 = time.perf_counter()
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            body = r.read()
            lat[k].append(time.perf_counter() - t0)
            statuses[k][r.status] = statuses[k].get(r.status, 0) + 1
            x = r.getheader("X-Cache", "-")
            cache[k][x] = cache[k].get(x, 0) + 1
            nbytes[k] += len(body)
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0

    def merge(ds: list[dict]) -> dict:
        out: dict = {}
        for d in ds:
            for key, v in d.items():
                out[key] = out.get(key, 0) + v
        return out

    return Result(case, clients, requests, wall, [x for li in lat for x in li], merge(statuses),
                  merge(cache), sum(nbytes))


def fetch_etags(port: int, paths: list[str]) -> dict[str, str]:
    """One request per path: fills the response cache and records ETags."""
    out = {}
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    for p in paths:
        conn.request("GET", p, headers={"Authorization": f"Bearer {TOKEN}"})
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"{p}: HTTP {r.status}")
        out[p] = r.getheader("ETag")
    return out


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines()
                   if x.startswith("MemTotal")) / 2**20
    except (OSError, StopIteration):
        mem = float("nan")
    return (f"{platform.platform()}, {cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, "
            f"Python {platform.python_version()}")


def default_model():  # noqa: ANN201 - imported late: the codec loads its kernels
    from codec.model import default_model as dm

    return dm()


def report(results: list[Result], args: argparse.Namespace, n_images: int, raw_mb: float,
           wall: float) -> str:
    lines = [
        "# Retrieval service load test (`pilc serve`)",
        "",
        f"Command: `python benchmarks/serve_load.py {shlex.join(sys.argv[1:])}`  ",
        f"Machine: {machine()}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; total run {wall:.0f} s; "
        f"codec model {default_model().model_id}; load average (1 min) {args.load[0]:.1f} "
        f"at the start, {os.getloadavg()[0]:.1f} at the end",
        "",
        f"- archive: {n_images} photo-like sample images (`pilc_ray.samples`: RGB, L, RGBA and "
        f"flat graphics, 32x32 to 700x500), {raw_mb:.1f} MB of pixels, written by the job's "
        "worker code (shards + compacted index)",
        "- server: `pilc serve` subprocess on 127.0.0.1 with a bearer token; the load "
        "generator (Python threads, one keep-alive connection each) runs on the same machine, "
        "so both share its cores",
        "- latency: from sending the request to the last body byte, per request; req/s: "
        "requests / wall time of the case; X-Cache `coalesced`: the request waited for an "
        "identical one's decode instead of decoding again",
        "",
        "| case | clients | requests | req/s | p50 ms | p99 ms | MB/s (bodies) | statuses | "
        "X-Cache |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lat = np.array(r.latencies) * 1000
        st = " ".join(f"{k}:{v}" for k, v in sorted(r.statuses.items()))
        xc = " ".join(f"{k}:{v}" for k, v in sorted(r.cache.items()))
        lines.append(f"| {r.case} | {r.clients} | {r.requests} | {r.requests / r.seconds:.0f} | "
                     f"{np.percentile(lat, 50):.1f} | {np.percentile(lat, 99):.1f} | "
                     f"{r.body_bytes / r.seconds / 1e6:.1f} | {st} | {xc} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dest", help="existing job output to serve (default: build samples)")
    ap.add_argument("--images", type=int, default=48, help="sample images to build")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests", type=int, default=2000, help="per hit/revalidate case")
    ap.add_argument("--miss-requests", type=int, default=120, help="per miss case")
    ap.add_argument("--out", help="markdown report path")
    args = ap.parse_args()
    clients = [int(x) for x in args.clients.split(",")]
    args.load = os.getloadavg()  # the machine may be shared: say how busy it was
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pilc-serve-load-") as tmp:
        dest = args.dest or str(Path(tmp) / "job")
        ids = ids_of(dest) if args.dest else build_dest(dest, args.images)
        from pilc_ray.retrieval.archive import open_archive

        archive = open_archive(dest)
        raw_mb = sum(r["raw_bytes"] for r in archive.iter_rows(columns=["raw_bytes"])) / 1e6
        paths = [f"/images/{i}" for i in ids]
        results: list[Result] = []
        srv = Server(dest)
        try:
            etags = fetch_etags(srv.port, paths)
            for case in ("hit", "revalidate"):
                for n in clients:
                    results.append(run_case(srv.port, case, paths, n, args.requests, etags))
                    print(results[-1].case, n, f"{args.requests / results[-1].seconds:.0f}/s",
                          flush=True)
        finally:
            srv.stop()
        srv = Server(dest, "--cache-mb", "0", "--blob-cache-mb", "0")
        try:
            for case, suffix in (("miss-png", ""), ("miss-raw", "?format=raw")):
                fetch_etags(srv.port, [p + suffix for p in paths])  # compile every kernel once
                for n in clients:
                    results.append(run_case(srv.port, case, [p + suffix for p in paths], n,
                                            args.miss_requests, {}))
                    print(case, n, f"{args.miss_requests / results[-1].seconds:.1f}/s",
                          flush=True)
        finally:
            srv.stop()
        text = report(results, args, len(ids), raw_mb, time.perf_counter() - t_start)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    bad = [r for r in results if set(r.statuses) - {200, 304}]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
