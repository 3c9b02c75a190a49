"""Job reports: streaming aggregation, old indexes, the job hook, compare sample, CLI, S3."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from codec.classical import encode_kind
from pilc_ray import api, testing
from pilc_ray import index as ix
from pilc_ray import storage as st
from pilc_ray.cli import main as pilc_main
from pilc_ray.job.worker import STAGE_COLUMNS, stage_shares
from pilc_ray.reports import aggregate as report
from pilc_ray.reports.compare import sample_rows
from pilc_ray.reports.html import render_html
from tests.pilc_ray.job.test_pipeline import FAST, make_folder

CODECS = ("learned", "png", "webp", "jxl", "jpeg")
MODES = ("RGB", "L", "RGBA", "L;16")


def synthetic_rows(n: int, seed: int = 0, t0: float = 1.7e9) -> list[dict]:
    """Index rows with varied codecs, modes, workers, runs, attempts, timings and bpsp."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        samples = int(rng.integers(100, 50_000))
        bpsp = float(rng.choice([rng.uniform(0, 8), rng.uniform(0, 30)]))
        comp = max(1, int(bpsp * samples / 8))
        codec_name = CODECS[i % 5]
        run = "run-a" if i < n // 2 else "run-b"  # ids ascend with i: rows stay in this order
        start = t0 if run == "run-a" else t0 + 3600
        rows.append({
            "id": f"img/{i:07d}.png", "source_uri": f"/src/{i}.png", "blob_uri": "/x.pshard",
            "offset": 0, "length": comp, "height": 10, "width": 10, "channels": 3,
            "mode": MODES[i % 4], "codec": codec_name, "passthrough": codec_name == "jpeg",
            "model_id": "m1" if codec_name == "learned" else None, "raw_bytes": samples,
            "compressed_bytes": comp, "samples": samples, "bpsp": 8 * comp / samples,
            "checksum": i, "worker": f"node{i % 3}:1/w{i % 2}", "attempt": 1 + (i % 17 == 0),
            "read_s": rng.uniform(0, .01), "decode_input_s": rng.uniform(0, .02),
            "encode_s": rng.uniform(.05, .2), "write_s": rng.uniform(0, .01), "batch_s": 1.0,
            "predictor_s": .01, "model_s": .02, "coder_s": .015, "container_s": .001,
            "created": start + float(rng.uniform(0, 200)), "run_id": run,
        })
    return rows


def write_index(dest: Path, rows: list[dict], row_group_size: int = 500,
                drop: tuple[str, ...] = ()) -> pa.Table:
    t = ix.rows_to_table(rows, ix.INDEX_SCHEMA, "synthetic")
    t = t.set_column(t.schema.get_field_index("run_id"), "run_id",
                     pa.array([r["run_id"] for r in rows])).drop_columns(list(drop))
    (dest / "index").mkdir(parents=True, exist_ok=True)
    pq.write_table(t, dest / ix.INDEX_FILE, row_group_size=row_group_size)
    return t


def test_streaming_aggregate_equals_whole_table_statistics(tmp_path):
    t = write_index(tmp_path, synthetic_rows(3000), row_group_size=500)
    small = report.aggregate_index(str(tmp_path / ix.INDEX_FILE), batch_rows=257)
    big = report.aggregate_index(str(tmp_path / ix.INDEX_FILE), batch_rows=1 << 20)
    assert small == big  # batches fold into the same fixed-size state
    col = {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.column_names}
    n = len(t)
    assert small["images"] == {"indexed": n, "passthrough": int(col["passthrough"].sum()),
                               "compressed": n - int(col["passthrough"].sum())}
    assert small["bytes"]["raw"] == col["raw_bytes"].sum()
    assert small["bytes"]["compressed"] == col["compressed_bytes"].sum()
    bp = small["bpsp"]
    assert bp["aggregate"] == pytest.approx(8 * col["compressed_bytes"].sum()
                                            / col["samples"].sum())
    assert bp["mean"] == pytest.approx(col["bpsp"].astype(np.float64).mean(), rel=1e-6)
    over = int((col["bpsp"] >= report.BPSP_MAX).sum())
    assert over > 0 and bp["histogram"]["overflow"] == over
    assert sum(bp["histogram"]["counts"]) == n - over
    assert abs(bp["p50"] - float(np.median(col["bpsp"]))) <= report.BPSP_STEP
    by_codec = {g["name"]: g for g in small["by_codec"]}
    assert {k: g["images"] for k, g in by_codec.items()} == {c: n // 5 for c in CODECS}
    assert by_codec["learned"]["compressed_bytes"] == col["compressed_bytes"][
        col["codec"] == "learned"].sum()
    assert small["models"] == {"m1": n // 5, "(none)": n - n // 5}
    assert small["retried_images"] == int((col["attempt"] > 1).sum())
    secs = small["time_split"]["seconds"]
    assert secs["read"] == pytest.approx(col["read_s"].astype(np.float64).sum(), rel=1e-6)
    assert secs["model"] == pytest.approx(n * 0.02, rel=1e-5)
    assert secs["encode_other"] == pytest.approx(
        col["encode_s"].astype(np.float64).sum() - n * 0.046, rel=1e-5)
    workers = {w["worker"]: w for w in small["workers"]["listed"]}
    assert len(workers) == 6 and sum(w["images"] for w in workers.values()) == n
    w = workers["node0:1/w0"]
    m = col["worker"] == "node0:1/w0"
    busy = sum(col[c][m].astype(np.float64).sum() for c in report.TIMING)
    assert w["images"] == m.sum() and w["busy_s"] == pytest.approx(busy, rel=1e-6)
    series = {s["run_id"]: s for s in small["time_series"]}
    assert set(series) == {"run-a", "run-b"}
    for run, s in series.items():
        assert s["images"] == int((col["run_id"] == run).sum())
        assert len(s["images_per_s"]) <= report.TIME_BUCKETS
        assert sum(s["images_per_bucket"]) == s["images"]
        assert sum(s["images_per_s"]) * s["bucket_s"] == pytest.approx(s["images"], abs=0.1)


def test_time_series_cells_coarsen_for_long_runs(tmp_path):
    rows = synthetic_rows(2000)
    for i, r in enumerate(rows):  # run-a spans 10 hours, one image every 18 s
        if r["run_id"] == "run-a":
            r["created"] = 1.7e9 + 18 * i
    t = write_index(tmp_path, rows, row_group_size=300)
    results = []
    for batch_rows in (97, 4096):
        agg = report.IndexAggregate(series_cells=50)
        for b in report.iter_batches(ix.open_parquet(str(tmp_path / ix.INDEX_FILE)),
                                     list(report._COLUMNS), batch_rows):
            agg.add(b)
        results.append(agg.result()["time_series"])
    assert results[0] == results[1]
    a = {s["run_id"]: s for s in results[0]}["run-a"]
    assert agg.series["run-a"].width == 512 and len(agg.series["run-a"].cells) <= 50  # 256: 71
    assert a["images"] == 1000 and a["span_s"] >= 18 * 999
    assert len(a["images_per_s"]) <= report.TIME_BUCKETS and a["bucket_s"] % 512 == 0
    assert sum(a["images_per_bucket"]) == 1000
    assert a["images_per_s"][1] == pytest.approx(a["images_per_bucket"][1] / a["bucket_s"],
                                                 abs=1e-4)
    assert len(t) == 2000


def test_old_index_without_stage_columns_reports_and_compacts(tmp_path):
    rows = synthetic_rows(400)
    write_index(tmp_path, rows, drop=STAGE_COLUMNS)
    r = report.build_report(str(tmp_path))
    assert r["index_file"]["stage_columns"] is False and r["time_split"]["stage_rows"] == 0
    assert "encode" in r["time_split"]["seconds"] and "model" not in r["time_split"]["seconds"]
    assert r["images"]["indexed"] == 400 and r["job"] is None and r["cluster"] is None
    assert "<img" in render_html(r)
    # a new run appends parts with the new columns: compaction merges old and new rows
    w = ix.PartWriter(str(tmp_path), "run-new")
    w.add([dict(synthetic_rows(1, seed=2)[0], id="zz/new.png")], [])
    w.flush()
    ix.compact(str(tmp_path), row_group_size=128)
    t = pq.read_table(tmp_path / ix.INDEX_FILE)
    assert t.schema.equals(ix.INDEX_SCHEMA) and len(t) == 401
    assert t.column("model_s").null_count == 400
    r = report.build_report(str(tmp_path / ix.INDEX_FILE))
    assert r["time_split"]["stage_rows"] == 1 and "model" in r["time_split"]["seconds"]


def test_stage_shares_split_batch_time_by_samples():
    stages = {"predictor": 1.0, "model": 2.0, "coder": 4.0, "container": 0.5}
    parts = [stage_shares(stages, s / 400) for s in (100, 300)]
    assert parts[0] == {"predictor_s": 0.25, "model_s": 0.5, "coder_s": 1.0,
                        "container_s": 0.125}
    assert {k: parts[0][k] + parts[1][k] for k in parts[0]} == {
        f"{k}_s": v for k, v in stages.items()}
    assert set(STAGE_COLUMNS) <= set(ix.INDEX_SCHEMA.names)


def test_compare_sample_rows_are_deterministic_and_skip_jpegs(tmp_path):
    write_index(tmp_path, synthetic_rows(1000), row_group_size=64)
    uri = str(tmp_path / ix.INDEX_FILE)
    picked = sample_rows(uri, None, 12)
    assert [r["id"] for r in picked] == [r["id"] for r in sample_rows(uri, None, 12)]
    assert len(picked) == 12 and len({r["id"] for r in picked}) == 12
    assert not any(r["passthrough"] for r in picked)
    assert picked[0]["id"] < "img/0000100" and picked[-1]["id"] > "img/0000900"  # spread
    assert sample_rows(uri, None, 0) == []


def _html_images(page: str) -> list[tuple[str, int, int, str]]:
    """(alt, width, height, decoded PNG size) of every inline plot."""
    out = []
    for m in re.finditer(r'<img class="plot" src="data:image/png;base64,([^"]+)" '
                         r'width="(\d+)" height="(\d+)" alt="([^"]+)">', page):
        with Image.open(io.BytesIO(base64.b64decode(m.group(1)))) as im:
            out.append((m.group(4), int(m.group(2)), int(m.group(3)), im.size))
    return out


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A real job (local Ray) with a JPEG, a broken input and the compare sample on."""
    testing.local_ray()
    root = tmp_path_factory.mktemp("report-job")
    expected = make_folder(root / "src", n=7)
    buf = io.BytesIO()
    Image.fromarray(expected["set1/img_001.png"]).save(buf, "JPEG", quality=90)
    (root / "src" / "photo.jpg").write_bytes(buf.getvalue())
    (root / "src" / "broken.png").write_bytes(b"\x89PNG nope")
    dest = root / "job"
    result = api.compress(str(root / "src"), str(dest), batch_size=3, compare_sample=3, **FAST)
    return dest, result, expected


def test_job_writes_report_json_and_html(job):
    dest, result, expected = job
    assert result.ok and result["report"] == {"json": str(dest / "report.json"),
                                              "html": str(dest / "report.html")}
    r = json.loads((dest / "report.json").read_text())
    t = pq.read_table(dest / ix.INDEX_FILE)
    assert r["images"] == {"indexed": 8, "passthrough": 1, "compressed": 7}
    assert r["bytes"]["raw"] == pc_sum(t, "raw_bytes")
    assert r["bytes"]["compressed"] == pc_sum(t, "compressed_bytes")
    assert r["failures"]["total"] == 1 and r["failures"]["by_stage"] == {"decode-input": 1}
    assert r["model_id"] == result["model_id"] and r["job"]["run_id"] == result["run_id"]
    c = r["cluster"]
    assert c["nodes"] == 1 and c["cpus"] == 2 and c["gpus"] == 0 and c["workers"] == 2
    assert c["node_shapes"] == [{"count": 1, "cpus": 2.0, "gpus": 0.0,
                                 "memory_gb": c["node_shapes"][0]["memory_gb"]}]
    assert r["throughput"]["images_per_s"] == result["throughput"]["images_per_s"]
    assert sum(w["images"] for w in r["workers"]["listed"]) == 8
    assert r["time_series"][0]["images"] == 8
    # stage timings: every coded image has them; shares of a batch follow its samples
    rows = t.to_pylist()
    coded = [x for x in rows if not x["passthrough"]]
    assert all(x[c] is not None and x[c] >= 0 for x in coded for c in STAGE_COLUMNS)
    assert r["time_split"]["stage_rows"] == 8
    for shard in {x["blob_uri"] for x in coded}:
        batch = [x for x in coded if x["blob_uri"] == shard]
        per_sample = {round(x["model_s"] / x["samples"], 9) for x in batch}
        assert len(per_sample) == 1 or np.ptp(list(per_sample)) <= 1e-6 * max(per_sample)
        assert sum(sum(x[c] for c in STAGE_COLUMNS) for x in batch) <= \
            sum(x["encode_s"] for x in batch) * 1.001 + 1e-6
    # the side-by-side sample: our bytes are the indexed blobs, peers are the classical codecs
    cmp = r["compare"]
    assert cmp["n"] == 3 and cmp["peers"] == ["png", "webp", "jxl"]
    by_id = {x["id"]: x for x in rows}
    for im in cmp["images"]:
        assert not by_id[im["id"]]["passthrough"]
        assert im["pilc"] == by_id[im["id"]]["compressed_bytes"]
        img = api.read_image(str(dest), im["id"])
        assert im["png"] == len(encode_kind(img, "png"))
        assert (im["webp"] is None) == (img.mode == "L;16")  # WebP has no 16-bit
        assert im["jxl"] > 0
    page = (dest / "report.html").read_text()
    plots = _html_images(page)
    assert len(plots) == 6 and all(alt and size == (w, h) for alt, w, h, size in plots)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched


def pc_sum(t: pa.Table, col: str) -> int:
    return int(np.asarray(t.column(col)).sum())


def test_report_failure_is_logged_not_fatal(job, caplog):
    dest, _, _ = job
    (dest / "report.json").unlink()
    (dest / "report.json").mkdir()  # the report can no longer be written there
    try:
        with caplog.at_level(logging.WARNING, logger="pilc_ray.job"):
            r = api.compress(str(dest.parent / "src"), str(dest), **FAST)
    finally:
        (dest / "report.json").rmdir()
    assert r.ok and r["counts"]["already_indexed"] == 8
    assert "error" in r["report"] and "could not write the job report" in caplog.text
    rebuilt = report.build_report(str(dest))  # job.json is now that run's, which had no Ray
    assert rebuilt["job"]["run_id"] == r["run_id"] and rebuilt["cluster"]["cpus"] == 2
    r = api.compress(str(dest.parent / "src"), str(dest), report=False, **FAST)
    assert r.ok and "report" not in r.record and not (dest / "report.json").exists()


def test_cli_report_from_folder_or_index_file(job, tmp_path, capsys):
    dest, _, _ = job
    out_html, out_json = tmp_path / "r.html", tmp_path / "r.json"
    assert pilc_main(["report", str(dest), "--html", str(out_html), "--json",
                      str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "images indexed" in text and "stored as" in text and "time split" in text
    r = json.loads(out_json.read_text())
    assert r["images"]["indexed"] == 8 and r["compare"] is None
    assert len(_html_images(out_html.read_text())) == 5  # no compare plot without a sample
    assert pilc_main(["report", str(dest / ix.INDEX_FILE), "--compare-sample", "2"]) == 0
    assert "side by side on 2 sampled images" in capsys.readouterr().out
    assert pilc_main(["report", str(tmp_path / "nothing-here")]) == 1


def test_report_on_s3(tmp_path):
    srv = testing.moto_s3()
    bucket = srv.make_bucket()
    opts = srv.options()
    write_index(tmp_path, synthetic_rows(300))
    s3 = st.open_storage(f"s3://{bucket}", opts)
    s3.put(f"s3://{bucket}/job/{ix.INDEX_FILE}", (tmp_path / ix.INDEX_FILE).read_bytes())
    s3.put(f"s3://{bucket}/job/job.json", json.dumps({
        "run_id": "run-b", "status": "complete", "model_id": "m1",
        "ray": {"resources": {"CPU": 64.0, "GPU": 8.0, "node:10.0.0.1": 1.0,
                              "node:10.0.0.2": 1.0}},
        "pool": {"workers": 8, "gpus_per_worker": 1.0, "engine": "actors"}}).encode())
    out = report.write_report(f"s3://{bucket}/job/", opts)
    assert out == {"json": f"s3://{bucket}/job/report.json",
                   "html": f"s3://{bucket}/job/report.html"}
    r = json.loads(s3.get(out["json"]))
    assert r["images"]["indexed"] == 300 and r["model_id"] == "m1"
    assert r["cluster"]["nodes"] == 2 and r["cluster"]["gpus"] == 8 and r["job"]["run_id"] == \
        "run-b"
    assert len(_html_images(s3.get(out["html"]).decode())) == 5
    assert pilc_main(["report", f"s3://{bucket}/job/{ix.INDEX_FILE}", "--endpoint-url",
                      srv.endpoint_url, "--json", f"s3://{bucket}/again.json"]) == 0
    assert json.loads(s3.get(f"s3://{bucket}/again.json"))["images"]["indexed"] == 300
