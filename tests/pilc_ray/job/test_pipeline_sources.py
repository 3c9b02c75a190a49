"""Sources (folders, manifests) and the worker's batch function, without Ray."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import codec
from codec.imagefile import RasterImage
from pilc_ray import api
from pilc_ray import index as ix
from pilc_ray.job.sources import Item, ManifestSource, SourceError, open_source
from pilc_ray.job.worker import BatchCompressor, read_shard_toc, shard_name


def _png(path, seed=0, shape=(20, 30, 3)):
    px = np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(codec.to_png_bytes(RasterImage(px, "RGB" if len(shape) == 3 else "L")))
    return px


def test_folder_source_is_recursive_sorted_and_skips_non_images(tmp_path):
    _png(tmp_path / "b" / "2.png")
    _png(tmp_path / "a.PNG")
    _png(tmp_path / "b" / "c" / "1.tif")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    src = open_source(str(tmp_path))
    assert [it.id for it in src] == ["a.PNG", "b/2.png", "b/c/1.tif"]
    assert src.ignored == 1
    assert [it.id for it in open_source(str(tmp_path), all_files=True)][-1] == "notes.txt"
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "missing"))


def test_manifests_text_csv_parquet(tmp_path):
    _png(tmp_path / "imgs" / "x.png")
    (tmp_path / "list.txt").write_text("# comment\nimgs/x.png\n\n/abs/y.png\ns3://b/k.png\n")
    items = list(open_source(str(tmp_path / "list.txt")))
    assert [i.id for i in items] == ["imgs/x.png", "/abs/y.png", "s3://b/k.png"]
    assert items[0].uri == str(tmp_path / "imgs" / "x.png")
    assert items[2].uri == "s3://b/k.png"
    (tmp_path / "m.csv").write_text("ID,uri,extra\nfirst,imgs/x.png,1\n,imgs/z.png,2\n")
    assert [(i.id, i.uri.endswith("x.png")) for i in open_source(str(tmp_path / "m.csv"))] == [
        ("first", True), ("imgs/z.png", False)]
    pq.write_table(pa.table({"uri": ["imgs/x.png", "s3://b/q.png"], "id": ["p1", None]}),
                   tmp_path / "m.parquet")
    assert [i.id for i in open_source(str(tmp_path / "m.parquet"))] == ["p1", "s3://b/q.png"]
    (tmp_path / "bad.csv").write_text("path\nx.png\n")
    with pytest.raises(SourceError, match="'uri' column"):
        list(ManifestSource(str(tmp_path / "bad.csv")))
    with pytest.raises(SourceError, match="does not exist"):
        list(ManifestSource(str(tmp_path / "nope.txt")))
    (tmp_path / "weird.txt").write_text("gs://bucket/x.png\n")
    with pytest.raises(SourceError, match="scheme"):
        list(open_source(str(tmp_path / "weird.txt")))


def test_worker_batch_shards_jpeg_passthrough_and_bad_inputs(tmp_path):
    a = _png(tmp_path / "in" / "a.png", 1)
    b = _png(tmp_path / "in" / "b.png", 2, (17, 9))
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=85)
    (tmp_path / "in" / "c.jpg").write_bytes(buf.getvalue())
    (tmp_path / "in" / "d.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    items = [Item(p.name, str(p), p.stat().st_size) for p in sorted((tmp_path / "in").iterdir())]
    items.append(Item("e.png", str(tmp_path / "in" / "e.png")))  # missing file
    w = BatchCompressor({"dest": str(tmp_path / "out")})
    out = w.compress(items)
    rows = {r["id"]: r for r in out["rows"]}
    errs = {e["id"]: e for e in out["errors"]}
    assert set(rows) == {"a.png", "b.png", "c.jpg"} and set(errs) == {"d.png", "e.png"}
    assert errs["d.png"]["stage"] == "decode-input" and errs["e.png"]["stage"] == "read"
    assert "no such file" in errs["e.png"]["error"]
    assert rows["c.jpg"]["passthrough"] and rows["c.jpg"]["codec"] == "jpeg"
    shard = rows["a.png"]["blob_uri"]
    assert shard.endswith(shard_name(["a.png", "b.png", "c.jpg"]))
    data = open(shard, "rb").read()
    assert sorted(t[0] for t in read_shard_toc(data)) == ["a.png", "b.png", "c.jpg"]
    for r, px in ((rows["a.png"], a), (rows["b.png"], b)):
        assert np.array_equal(codec.decode(ix.read_blob(r)), px)
    assert ix.read_blob(rows["c.jpg"]) == buf.getvalue()  # stored as-is, byte for byte
    assert api.decode_blob(rows["c.jpg"], buf.getvalue()).pixels.shape == a.shape
    # a retry of the same batch overwrites the same shard: nothing orphaned
    w.compress(items, attempt=2)
    assert len(list((tmp_path / "out" / "shards").rglob("*.pshard"))) == 1
    # objects layout and jpeg=decode
    w2 = BatchCompressor({"dest": str(tmp_path / "out2"), "layout": "objects", "jpeg": "decode"})
    out2 = w2.compress(items[:3])
    assert len({r["blob_uri"] for r in out2["rows"]}) == 3
    assert all(r["offset"] == 0 and not r["passthrough"] for r in out2["rows"])


def test_gpu_worker_writes_the_cpu_workers_bytes(tmp_path):
    """A worker whose codec runs on a device (here the CUDA kernels' host emulation) stores
    the same blobs a CPU worker stores."""
    paths = [_png(tmp_path / "in" / f"{k}.png", k, (40 + 7 * k, 33 + 5 * k)) for k in range(3)]
    items = [Item(f"{k}.png", str(tmp_path / "in" / f"{k}.png")) for k in range(3)]
    blobs = {}
    for device in ("cpu", "emulated"):
        w = BatchCompressor({"dest": str(tmp_path / device), "device": device, "layout": "objects"})
        w.warm_up()
        rows = w.compress(items)["rows"]
        blobs[device] = {r["id"]: ix.read_blob(r) for r in rows}
    assert blobs["cpu"] == blobs["emulated"] and len(blobs["cpu"]) == len(paths)


@pytest.mark.parametrize(
    ("resources", "device", "workers", "expected"),
    [
        ({"CPU": 96, "GPU": 8}, "auto", None, [(8, 1.0, "cuda"), (88, 0.0, "cpu")]),
        ({"CPU": 96, "GPU": 8}, "cuda", None, [(8, 1.0, "cuda")]),
        ({"CPU": 96, "GPU": 8}, "cpu", None, [(96, 0.0, "cpu")]),
        ({"CPU": 8, "GPU": 8}, "auto", None, [(8, 1.0, "cuda")]),
        ({"CPU": 16, "GPU": 2}, "auto", 5, [(2, 1.0, "cuda"), (3, 0.0, "cpu")]),
        ({"CPU": 16, "GPU": 2}, "emulated", None, [(2, 1.0, "emulated"), (14, 0.0, "cpu")]),
        ({"CPU": 4}, "auto", None, [(4, 0.0, "cpu")]),
    ],
)
def test_pool_plan_fills_gpus_then_the_cpus_they_leave(resources, device, workers, expected):
    from pilc_ray.job.cluster import pool_plan
    from pilc_ray.job.config import JobConfig

    cfg = JobConfig(source="x", dest="y", device=device, workers=workers)
    plan = pool_plan(cfg, resources)
    assert [(g.count, g.gpus, g.device) for g in plan] == expected


def test_pool_plan_refuses_what_the_cluster_cannot_give():
    from pilc_ray.job.cluster import pool_plan
    from pilc_ray.job.config import JobConfig

    with pytest.raises(ValueError, match="device must be one of"):
        pool_plan(JobConfig(source="x", dest="y", device="tpu"), {"CPU": 2})
    with pytest.raises(ValueError, match="GPUs"):
        pool_plan(JobConfig(source="x", dest="y", gpus_per_worker=2), {"CPU": 2, "GPU": 1})


def test_truncated_jpeg_goes_to_errors_not_the_index(tmp_path):
    """Passthrough JPEGs are decoded once on ingest: a truncated one is an input error."""
    a = _png(tmp_path / "in" / "a.png", 3, (64, 48))
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=90)
    good = buf.getvalue()
    (tmp_path / "in" / "good.jpg").write_bytes(good)
    (tmp_path / "in" / "cut.jpg").write_bytes(good[: len(good) // 2])
    items = [Item(n, str(tmp_path / "in" / n)) for n in ("good.jpg", "cut.jpg")]
    out = BatchCompressor({"dest": str(tmp_path / "out")}).compress(items)
    assert [r["id"] for r in out["rows"]] == ["good.jpg"]
    (err,) = out["errors"]
    assert err["id"] == "cut.jpg" and err["stage"] == "decode-input"
    assert "truncated" in err["error"]


FRESH_PASSTHROUGH = """
import json, sys
from pilc_ray.job.sources import Item
from pilc_ray.job.worker import BatchCompressor
out = BatchCompressor({"dest": sys.argv[2]}).compress([Item("big.jpg", sys.argv[1])])
print(json.dumps({"rows": [r["id"] for r in out["rows"]],
                  "errors": [e["error"] for e in out["errors"]]}))
"""


def test_jpeg_passthrough_uses_the_one_pixel_limit_in_a_fresh_worker(tmp_path):
    """A 13500 x 13500 JPEG (over Pillow's own bomb limit, under PILC_MAX_SAMPLES) is stored
    as-is by a fresh worker process, not refused as a "decompression bomb" until some PNG had
    lifted Pillow's limit (issue 16 item 4); PILC_MAX_SAMPLES refuses it before decoding."""
    import json
    import os
    import subprocess
    import sys

    big = tmp_path / "big.jpg"
    Image.new("L", (13500, 13500)).save(big, "JPEG", quality=50)  # 2 MB, half a second

    def fresh(env: dict[str, str]) -> dict:
        out = subprocess.run(
            [sys.executable, "-c", FRESH_PASSTHROUGH, str(big), str(tmp_path / "out")],
            capture_output=True, text=True, env={**os.environ, **env}, timeout=120, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    assert fresh({}) == {"rows": ["big.jpg"], "errors": []}
    got = fresh({"PILC_MAX_SAMPLES": "1000000"})
    assert got["rows"] == [] and "more than 1000000 samples" in got["errors"][0], got


def test_the_main_job_needs_no_training_serving_or_s3_packages(tmp_path):
    """README's first command installs only the `ray` extra: samples, compress and verify must
    run without torch, fastapi/uvicorn or boto3 ever being imported (starlette and anyio are
    left out of the check: Ray's serializer imports starlette wherever it is installed)."""
    import subprocess
    import sys

    script = f"""
import sys
from pilc_ray.cli import main
assert main(["samples", {str(tmp_path / "s")!r}, "--count", "3"]) == 0
assert main(["compress", {str(tmp_path / "s")!r}, "--out", {str(tmp_path / "j")!r},
             "--workers", "1", "--cpus-per-worker", "0.5", "--no-progress"]) == 0
assert main(["verify", {str(tmp_path / "j")!r}]) == 0
print(sorted(m for m in ("torch", "fastapi", "uvicorn", "boto3") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
