"""Job report: one streaming pass over the index, reduced to a plain dict (report.json).

An index may have 100 M rows, so nothing here holds a column: batches of rows are read one row
group at a time and folded into fixed-size state (sums, counts per codec/mode/worker, a bpsp
histogram with fixed bins, images per second of each run). Percentiles come from the histogram.
The job records (job.json, runs/*.json) add what the index does not know: retries, worker
failures, cluster shape, durations. `reports.html` renders the dict; `pilc report` prints it.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pilc_ray import index as ix
from pilc_ray import runs
from pilc_ray import storage as st

REPORT_VERSION = 1
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
BPSP_STEP = 0.125  # histogram bins: [0, BPSP_MAX) in steps of BPSP_STEP, plus an overflow count
BPSP_MAX = 24.0  # 16-bit samples can exceed 16 bpsp when stored by a fallback; beyond: overflow
TIME_BUCKETS = 120  # points per run in the images/s time series
SERIES_CELLS = 20_000  # per run at most this many time cells: coarser cells for longer runs
STREAM_ROWS = 65_536  # rows per streamed batch (at most one row group of the index is read)
MAX_WORKERS_LISTED = 200  # per-worker table: the busiest ones (restarted actors get new names)
MAX_ERROR_EXAMPLES = 20

TIMING = ("read_s", "decode_input_s", "encode_s", "write_s")
GROUP_KEYS = ("codec", "mode", "effort")  # effort: null for classical and passthrough rows
STAGES = ("predictor_s", "model_s", "coder_s", "container_s")
_COLUMNS = ("raw_bytes", "compressed_bytes", "samples", "bpsp", "codec", "mode", "effort",
            "passthrough",
            "model_id", "worker", "attempt", "created", "run_id", *TIMING, *STAGES)


# --------------------------------------------------------------------------------------------
# locating a job's files


def locate(uri: str) -> tuple[str, str]:
    """(job folder, index file) from either: a DEST folder/prefix or its index.parquet."""
    uri = st.normalize(uri)
    if not uri.endswith(".parquet"):
        return uri, st.join(uri, ix.INDEX_FILE)
    if uri.endswith("/" + ix.INDEX_FILE):
        return uri[: -len(ix.INDEX_FILE) - 1], uri
    return uri.rsplit("/", 1)[0], uri


def iter_batches(pf: pq.ParquetFile, columns: list[str],
                 batch_rows: int = STREAM_ROWS) -> Iterator[pa.RecordBatch]:
    """The columns of `pf` that exist, `batch_rows` at a time, one row group after another.

    One reader per row group: a single `iter_batches` over the whole file keeps Arrow memory
    growing with the rows read (measured: +2.5 MB per 65,536 rows, pyarrow 26); per row group
    it stays flat.
    """
    have = [c for c in columns if c in pf.schema_arrow.names]
    for g in range(pf.metadata.num_row_groups):
        yield from pf.iter_batches(batch_size=batch_rows, row_groups=[g], columns=have)


# --------------------------------------------------------------------------------------------
# streaming aggregation of the index


def _np(col: pa.Array, dtype: Any, fill: Any = 0) -> np.ndarray:
    return pc.fill_null(col, fill).to_numpy(zero_copy_only=False).astype(dtype, copy=False)


class IndexAggregate:
    """Fixed-size summary of index rows; `add` batches in any order, then `result()`."""

    def __init__(self, series_cells: int = SERIES_CELLS) -> None:
        self.rows = 0
        self.passthrough = 0
        self.raw = self.comp = self.samples = 0
        self.bpsp_sum = 0.0
        self.bpsp_n = 0
        self.bpsp_min, self.bpsp_max = math.inf, -math.inf
        self.edges = np.arange(0.0, BPSP_MAX + BPSP_STEP / 2, BPSP_STEP)
        self.hist = np.zeros(len(self.edges) - 1, np.int64)
        self.overflow = 0
        self.time = dict.fromkeys(TIMING + STAGES, 0.0)
        self.stage_rows = 0  # rows whose stage columns are set (new indexes)
        self.retried_images = 0
        self.max_attempt = 0
        self.groups: dict[str, dict[str, list[float]]] = {k: defaultdict(lambda: [0, 0, 0, 0])
                                                         for k in GROUP_KEYS}
        self.models: dict[str, int] = defaultdict(int)
        # worker -> [images, raw bytes, busy seconds, first created (s), last created (s)]
        self.workers: dict[str, list[float]] = {}
        self.series: dict[str, _Series] = defaultdict(lambda: _Series(series_cells))

    def add(self, b: pa.RecordBatch | pa.Table) -> None:
        n = len(b)
        if not n:
            return
        names = b.schema.names
        self.rows += n
        raw = _np(b.column("raw_bytes"), np.int64)
        comp = _np(b.column("compressed_bytes"), np.int64)
        samples = _np(b.column("samples"), np.int64)
        self.raw += int(raw.sum())
        self.comp += int(comp.sum())
        self.samples += int(samples.sum())
        self.passthrough += int(_np(b.column("passthrough"), bool, False).sum())
        bpsp = _np(b.column("bpsp"), np.float64, np.nan)
        bpsp = bpsp[np.isfinite(bpsp)]
        if len(bpsp):
            self.bpsp_sum += float(bpsp.sum())
            self.bpsp_n += len(bpsp)
            self.bpsp_min = min(self.bpsp_min, float(bpsp.min()))
            self.bpsp_max = max(self.bpsp_max, float(bpsp.max()))
            self.hist += np.histogram(bpsp[bpsp < BPSP_MAX], self.edges)[0]
            self.overflow += int((bpsp >= BPSP_MAX).sum())
        for c in TIMING + STAGES:
            if c in names:
                self.time[c] += float(_np(b.column(c), np.float64).sum())
        if all(c in names for c in STAGES):
            self.stage_rows += n - b.column("model_s").null_count
        attempt = _np(b.column("attempt"), np.int64, 1)
        self.retried_images += int((attempt > 1).sum())
        self.max_attempt = max(self.max_attempt, int(attempt.max()))
        for key in GROUP_KEYS:
            if key in names:
                self._group(b, key, raw, comp, samples)
        for name, count in _counts(b.column("model_id")):
            self.models[name] += count
        busy = sum((_np(b.column(c), np.float64) for c in TIMING if c in names), np.zeros(n))
        secs = (_np(b.column("created").cast(pa.int64()), np.int64) // 1_000_000)
        self._workers(b.column("worker"), raw, busy, secs)
        self._series(b.column("run_id"), raw, secs)

    def _group(self, b: pa.RecordBatch | pa.Table, key: str, raw: np.ndarray, comp: np.ndarray,
               samples: np.ndarray) -> None:
        codes, uniques = _factorize(b.column(key))
        for i, name in enumerate(uniques):
            m = codes == i
            g = self.groups[key][v_key(name)]
            g[0] += int(m.sum())
            g[1] += int(raw[m].sum())
            g[2] += int(comp[m].sum())
            g[3] += int(samples[m].sum())

    def _workers(self, col: pa.Array, raw: np.ndarray, busy: np.ndarray,
                 secs: np.ndarray) -> None:
        codes, uniques = _factorize(col)
        for i, name in enumerate(uniques):
            m = codes == i
            w = self.workers.setdefault(v_key(name), [0, 0, 0.0, math.inf, -math.inf])
            w[0] += int(m.sum())
            w[1] += int(raw[m].sum())
            w[2] += float(busy[m].sum())
            w[3] = min(w[3], int(secs[m].min()))
            w[4] = max(w[4], int(secs[m].max()))

    def _series(self, col: pa.Array, raw: np.ndarray, secs: np.ndarray) -> None:
        codes, uniques = _factorize(col)
        for i, name in enumerate(uniques):
            m = codes == i
            self.series[v_key(name)].add(secs[m], raw[m])

    # ----------------------------------------------------------------------------------------

    def result(self) -> dict[str, Any]:
        rows = self.rows
        return {
            "images": {"indexed": rows, "passthrough": self.passthrough,
                       "compressed": rows - self.passthrough},
            "bytes": {"raw": self.raw, "compressed": self.comp, "samples": self.samples,
                      "ratio": self.raw / self.comp if self.comp else None,
                      "saved": self.raw - self.comp},
            "bpsp": self._bpsp(),
            "by_codec": _groups(self.groups["codec"]),
            "by_mode": _groups(self.groups["mode"]),
            "by_effort": _groups(self.groups["effort"]),
            "models": dict(sorted(self.models.items(), key=lambda kv: -kv[1])),
            "time_split": self._time_split(),
            "retried_images": self.retried_images,
            "max_attempt": self.max_attempt,
            "workers": self._worker_rows(),
            "time_series": self._time_series(),
        }

    def _bpsp(self) -> dict[str, Any]:
        n = self.bpsp_n
        cum = np.cumsum(self.hist)

        def pct(q: float) -> float | None:
            if not n:
                return None
            k = int(np.searchsorted(cum, q * n, "left"))  # bin holding the q-quantile
            return float(self.edges[k] + BPSP_STEP / 2) if k < len(self.hist) else None

        return {
            "aggregate": 8 * self.comp / self.samples if self.samples else None,
            "mean": self.bpsp_sum / n if n else None,
            "min": self.bpsp_min if n else None, "max": self.bpsp_max if n else None,
            "p10": pct(0.10), "p50": pct(0.50), "p90": pct(0.90),
            "histogram": {"start": 0.0, "step": BPSP_STEP, "counts": self.hist.tolist(),
                          "overflow": self.overflow},
        }

    def _time_split(self) -> dict[str, Any]:
        t = self.time
        staged = sum(t[c] for c in STAGES)
        seconds = {"read": t["read_s"], "decode_input": t["decode_input_s"]}
        if self.stage_rows:
            seconds.update({c[:-2]: t[c] for c in STAGES})
            seconds["encode_other"] = max(0.0, t["encode_s"] - staged)
        else:
            seconds["encode"] = t["encode_s"]
        seconds["write"] = t["write_s"]
        return {"seconds": seconds, "stage_rows": self.stage_rows,
                "note": "summed per-image shares of worker time (batch costs split by size); "
                        "codec stages from codec.timing" + ("" if self.stage_rows else
                                                            ": not in this index")}

    def _worker_rows(self) -> dict[str, Any]:
        rows = []
        for name, (n, raw, busy, first, last) in self.workers.items():
            rows.append({"worker": name, "images": n, "raw_bytes": raw, "busy_s": busy,
                         "images_per_busy_s": n / busy if busy > 0 else None,
                         "raw_mb_per_busy_s": raw / busy / 1e6 if busy > 0 else None,
                         "first": _iso(first), "last": _iso(last)})
        rows.sort(key=lambda r: -r["images"])
        return {"count": len(rows), "listed": rows[:MAX_WORKERS_LISTED]}

    def _time_series(self) -> list[dict[str, Any]]:
        out = [dict(run_id=run, **series.result()) for run, series in self.series.items()]
        return sorted(out, key=lambda r: r["start"])


class _Series:
    """Images and raw bytes per time cell of one run, in bounded memory.

    Cells start at one second and double in width whenever a run has more than `max_cells` of
    them, so a week-long run costs as much as a short one. The final width (smallest power of
    two that fits) does not depend on how the rows were batched.
    """

    def __init__(self, max_cells: int) -> None:
        self.width = 1
        self.max_cells = max_cells
        self.cells: dict[int, list[int]] = {}  # cell (seconds // width) -> [images, raw bytes]

    def add(self, secs: np.ndarray, raw: np.ndarray) -> None:
        ticks, inv = np.unique(secs // self.width, return_inverse=True)
        counts = np.bincount(inv, minlength=len(ticks))
        rawsum = np.bincount(inv, weights=raw, minlength=len(ticks))
        for t, c, r in zip(ticks.tolist(), counts.tolist(), rawsum.tolist(), strict=True):
            cell = self.cells.setdefault(t, [0, 0])
            cell[0] += c
            cell[1] += int(r)
        while len(self.cells) > self.max_cells:
            self.width *= 2
            merged: dict[int, list[int]] = {}
            for t, (c, r) in self.cells.items():
                cell = merged.setdefault(t // 2, [0, 0])
                cell[0] += c
                cell[1] += r
            self.cells = merged

    def result(self) -> dict[str, Any]:
        """At most TIME_BUCKETS points: images/s and raw MB/s per bucket, from the first cell."""
        ticks = np.array(sorted(self.cells), np.int64)
        counts = np.array([self.cells[t][0] for t in ticks.tolist()], np.float64)
        raw = np.array([self.cells[t][1] for t in ticks.tolist()], np.float64)
        span = int(ticks[-1] - ticks[0] + 1) * self.width
        per = max(1, math.ceil(span / TIME_BUCKETS / self.width))  # cells per bucket
        k = (ticks - ticks[0]) // per
        nb = int(k[-1]) + 1
        width = per * self.width
        n_b = np.bincount(k, weights=counts, minlength=nb)
        r_b = np.bincount(k, weights=raw, minlength=nb)
        return {"start": _iso(int(ticks[0]) * self.width), "bucket_s": width,
                "images": int(counts.sum()), "span_s": span,
                "images_per_bucket": n_b.astype(np.int64).tolist(),
                "images_per_s": (n_b / width).round(4).tolist(),
                "raw_mb_per_s": (r_b / width / 1e6).round(4).tolist()}


def v_key(v: Any) -> str:
    return "(none)" if v is None else str(v)


def _counts(col: pa.Array) -> list[tuple[str, int]]:
    return [(v_key(d["values"]), d["counts"]) for d in pc.value_counts(col).to_pylist()]


def _factorize(col: pa.Array) -> tuple[np.ndarray, list[Any]]:
    """(code per row, distinct values) of a string column; nulls are a value of their own."""
    enc = pc.dictionary_encode(col, null_encoding="encode")
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks()
    return enc.indices.to_numpy(zero_copy_only=False), enc.dictionary.to_pylist()


def _groups(g: dict[str, list[float]]) -> list[dict[str, Any]]:
    rows = [{"name": k, "images": n, "raw_bytes": raw, "compressed_bytes": comp,
             "bpsp": 8 * comp / s if s else None, "ratio": raw / comp if comp else None}
            for k, (n, raw, comp, s) in g.items()]
    return sorted(rows, key=lambda r: -r["images"])


def _iso(sec: float) -> str | None:
    if not math.isfinite(sec):
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec))


def aggregate_index(index_uri: str, options: Any = None,
                    batch_rows: int = STREAM_ROWS) -> dict[str, Any]:
    """Summary of every row of an index, streamed `batch_rows` at a time."""
    agg = IndexAggregate()
    pf = ix.open_parquet(index_uri, options)
    for b in iter_batches(pf, list(_COLUMNS), batch_rows):
        agg.add(b)
    out = agg.result()
    out["index_file"] = {"uri": index_uri, "rows": pf.metadata.num_rows,
                         "row_groups": pf.metadata.num_row_groups,
                         "stage_columns": all(c in pf.schema_arrow.names for c in STAGES)}
    return out


def aggregate_errors(errors_uri: str, options: Any = None) -> dict[str, Any]:
    """Inputs that are not indexed: counts by stage and type, plus the first few examples."""
    out: dict[str, Any] = {"total": 0, "by_stage": {}, "by_type": {}, "examples": []}
    try:
        pf = ix.open_parquet(errors_uri, options)
    except (st.NotFound, FileNotFoundError):
        return out
    stages: dict[str, int] = defaultdict(int)
    types: dict[str, int] = defaultdict(int)
    for b in iter_batches(pf, ["id", "stage", "error_type", "error"]):
        out["total"] += len(b)
        for name, count in _counts(b.column("stage")):
            stages[name] += count
        for name, count in _counts(b.column("error_type")):
            types[name] += count
        room = MAX_ERROR_EXAMPLES - len(out["examples"])
        if room > 0:
            for r in b.slice(0, room).to_pylist():
                out["examples"].append({"id": r["id"], "stage": r["stage"],
                                        "error": (r["error"] or "")[:300]})
    out["by_stage"] = dict(sorted(stages.items(), key=lambda kv: -kv[1]))
    out["by_type"] = dict(sorted(types.items(), key=lambda kv: -kv[1]))
    return out


# --------------------------------------------------------------------------------------------
# job records


def cluster_shape(record: dict | None) -> dict[str, Any] | None:
    """Nodes, CPUs, GPUs, memory and the worker pool, from a job record."""
    if not record:
        return None
    ray_info = record.get("ray") or {}
    res = ray_info.get("resources") or {}
    pool = record.get("pool") or {}
    if not res:  # no Ray was started (nothing to compress), or not recorded
        return None
    return {
        "nodes": ray_info.get("nodes") or sum(1 for k in res if k.startswith("node:")
                                              and k != "node:__internal_head__") or None,
        "cpus": _whole(res.get("CPU")), "gpus": _whole(res.get("GPU", 0)),
        "memory_gb": round(res["memory"] / 2**30, 1) if res.get("memory") else None,
        "object_store_gb": (round(res["object_store_memory"] / 2**30, 1)
                            if res.get("object_store_memory") else None),
        "node_shapes": ray_info.get("node_shapes"),
        "workers": pool.get("workers"), "engine": pool.get("engine"),
        "cpus_per_worker": pool.get("cpus_per_worker"),
        "gpus_per_worker": pool.get("gpus_per_worker"),
        "threads_per_worker": pool.get("threads_per_worker"),
        "address": ray_info.get("address"),
    }


def _whole(v: float | None) -> float | int | None:
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _run_row(r: dict) -> dict[str, Any]:
    c = r.get("counts") or {}
    tp = r.get("throughput") or {}
    return {"run_id": r.get("run_id"), "status": r.get("status"), "started": r.get("started"),
            "finished": r.get("finished"), "compressed": c.get("compressed"),
            "errors": c.get("errors"), "already_indexed": c.get("already_indexed"),
            "retried_batches": c.get("retried_batches"),
            "worker_failures": c.get("worker_failures"),
            "split_batches": c.get("split_batches"),
            "images_per_s": tp.get("images_per_s"), "raw_mb_per_s": tp.get("raw_mb_per_s"),
            "total_s": (r.get("durations") or {}).get("total_s"),
            "workers": (r.get("pool") or {}).get("workers")}


def summarize_runs(runs: list[dict], latest: dict | None) -> dict[str, Any]:
    """Runs of this DEST (a "running" one was killed, or is still going)."""
    rows = [_run_row(r) for r in runs]
    keys = ("retried_batches", "worker_failures", "split_batches")
    return {"count": len(rows), "runs": rows[-50:],
            "totals": {k: sum(r[k] or 0 for r in rows) for k in keys},
            "latest": _run_row(latest) if latest else None}


# --------------------------------------------------------------------------------------------
# the whole report


def build_report(uri: str, options: Any = None, *, record: dict | None = None,
                 compare: int = 0, batch_rows: int = STREAM_ROWS) -> dict[str, Any]:
    """The report of a job output (DEST or its index file), as a JSON-ready dict.

    `record`: the latest job record if the caller has it (the driver does), else job.json.
    `compare`: measure PNG/WebP/JPEG-XL on that many sampled images (pilc_ray.reports.compare).
    """
    t0 = time.perf_counter()
    dest, index_uri = locate(uri)
    if record is None:
        record = runs.read_json(st.join(dest, "job.json"), options)
    run_records = runs.read_runs(dest, options)
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dest": dest, "index": index_uri,
    }
    report.update(aggregate_index(index_uri, options, batch_rows))
    report["failures"] = aggregate_errors(index_uri.rsplit("/", 1)[0] + "/errors.parquet",
                                          options)
    report["runs"] = summarize_runs(run_records, record)
    # a rerun with nothing to do starts no Ray: show the cluster of the latest run that did
    report["cluster"] = next(
        (c for c in map(cluster_shape, [record, *run_records[::-1]]) if c), None)
    report["model_id"] = (record or {}).get("model_id") or next(
        (m for m in report["models"] if m != "(none)"), None)
    report["throughput"] = _throughput(report, record)
    report["job"] = ({k: record.get(k) for k in ("run_id", "status", "error", "started",
                                                  "finished", "source", "durations")}
                     | {"config": _config_summary(record.get("config") or {})}
                     if record else None)
    report["compare"] = None
    if compare:
        from pilc_ray.reports.compare import compare_sample

        report["compare"] = compare_sample(index_uri, options, compare)
    report["report_s"] = time.perf_counter() - t0
    return report


def _throughput(report: dict, record: dict | None) -> dict[str, Any]:
    """Latest run's rate (from its record) and each run's rate from index timestamps."""
    tp = (record or {}).get("throughput") or {}
    out = {"images_per_s": tp.get("images_per_s"), "raw_mb_per_s": tp.get("raw_mb_per_s"),
           "source": f"job record of run {(record or {}).get('run_id')}, once workers were up"
           if tp else None,
           "workers": report["workers"]["count"]}
    busy = [w for w in report["workers"]["listed"] if w["images_per_busy_s"]]
    if busy:
        out["per_worker_images_per_busy_s_median"] = float(np.median(
            [w["images_per_busy_s"] for w in busy]))
    return out


def _config_summary(cfg: dict) -> dict[str, Any]:
    keys = ("source", "dest", "layout", "engine", "batch_size", "fallback", "jpeg", "workers",
            "cpus_per_worker", "gpus_per_worker", "verify")
    return {k: cfg.get(k) for k in keys if k in cfg}


def write_report(uri: str, options: Any = None, *, record: dict | None = None,
                 compare: int = 0, html: bool = True) -> dict[str, Any]:
    """Build the report and put report.json (and report.html) into the job's DEST."""
    from pilc_ray.reports.html import render_html

    report = build_report(uri, options, record=record, compare=compare)
    dest = report["dest"]
    storage = st.open_storage(dest, options)
    out = {"json": st.join(dest, REPORT_JSON)}
    storage.put(out["json"], json.dumps(report, indent=1, default=str).encode())
    if html:
        out["html"] = st.join(dest, REPORT_HTML)
        storage.put(out["html"], render_html(report).encode())
    return out
