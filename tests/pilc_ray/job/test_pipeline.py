"""The batch job end to end on a real local Ray (127.0.0.1, 2 CPUs, started once)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import codec
from codec import container
from codec.imagefile import RasterImage
from pilc_ray import api, testing
from pilc_ray import index as ix
from pilc_ray.cli import main as pilc_main
from pilc_ray.job.config import JobConfig, JobError
from pilc_ray.job.driver import Driver

FAST = {"cpus_per_worker": 0.5, "workers": 2, "progress": "none", "retry_backoff_s": 0.2}


@pytest.fixture(scope="session")
def ray_address():
    return testing.local_ray()


def test_local_ray_listens_on_loopback_only(ray_address):
    """The test cluster, started by the rule the job's embedded cluster uses
    (cluster.keep_ray_on_loopback), registers its GCS and its node on 127.0.0.1, not on the
    machine's interface address (where Ray would otherwise move them)."""
    import ray

    assert ray_address.rsplit(":", 1)[0] == "127.0.0.1"
    assert {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]} == {"127.0.0.1"}


def make_folder(root: Path, n: int = 8, size: int = 48, seed: int = 0) -> dict[str, np.ndarray]:
    """Mixed images (gray, RGB, RGBA, 16-bit) in nested folders; returns id -> pixels."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        h, w = size + 3 * i, size + 5 * (i % 3)
        y, x = np.mgrid[0:h, 0:w]
        base = (x * (i + 1) + y * 2 + rng.integers(0, 6, (h, w))) % 256
        kind = i % 4
        if kind == 0:
            img = RasterImage(base.astype(np.uint8), "L")
        elif kind == 1:
            img = RasterImage(np.stack([base, base // 2, 255 - base], -1).astype(np.uint8), "RGB")
        elif kind == 2:
            img = RasterImage(np.stack([base, base, base, base // 3], -1).astype(np.uint8), "RGBA")
        else:
            img = RasterImage((base * 257).astype(np.uint16), "L;16")
        rel = f"set{i % 2}/img_{i:03d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(codec.to_png_bytes(img))
        out[rel] = img.pixels
    return out


def assert_exact(dest: str, expected: dict[str, np.ndarray], opts=None, others=()) -> None:
    """Every image decodes alone (lookup + one ranged read), bit-exact, exactly once."""
    ids = ix.read_table(ix.resolve_index_uri(dest), opts, ["id"]).column("id").to_pylist()
    assert ids == sorted([*expected, *others]), "every image exactly once, sorted by id"
    for image_id, px in expected.items():
        img = api.read_image(dest, image_id, opts)
        assert img.pixels.dtype == px.dtype and np.array_equal(img.pixels, px), image_id


def test_folder_job_end_to_end_and_resume(tmp_path, ray_address):
    expected = make_folder(tmp_path / "src", n=9)
    buf = io.BytesIO()
    Image.fromarray(expected["set1/img_001.png"]).save(buf, "JPEG", quality=90)
    (tmp_path / "src" / "photo.jpg").write_bytes(buf.getvalue())
    dest = str(tmp_path / "job")
    r = api.compress(str(tmp_path / "src"), dest, batch_size=3, **FAST)
    assert r.ok and r["counts"]["compressed"] == 10 and r["counts"]["errors"] == 0
    assert_exact(dest, expected, others=["photo.jpg"])
    row = ix.lookup(dest, "photo.jpg")
    assert row["passthrough"] and row["codec"] == "jpeg"
    assert ix.read_blob(row) == buf.getvalue()
    for image_id in expected:
        row = ix.lookup(dest, image_id)
        assert row["model_id"] is None or row["model_id"] == r["model_id"]
        assert row["raw_bytes"] == expected[image_id].nbytes and row["bpsp"] > 0
    rec = json.loads((tmp_path / "job" / "job.json").read_text())
    assert rec["status"] == "complete" and rec["counts"]["index_rows"] == 10
    assert set(rec["durations"]) >= {"compress_s", "compact_s", "total_s"}
    # rerun: nothing to do, index unchanged
    r2 = api.compress(str(tmp_path / "src"), dest, **FAST)
    assert r2["counts"]["compressed"] == 0 and r2["counts"]["already_indexed"] == 10
    # a new image appears: only it is compressed
    extra = make_folder(tmp_path / "more", n=1, seed=5)
    (tmp_path / "src" / "late.png").write_bytes((tmp_path / "more" / "set0/img_000.png")
                                                .read_bytes())
    r3 = api.compress(str(tmp_path / "src"), dest, **FAST)
    assert r3["counts"]["compressed"] == 1
    expected["late.png"] = extra["set0/img_000.png"]
    ids = pq.read_table(tmp_path / "job" / ix.INDEX_FILE).column("id").to_pylist()
    assert ids == sorted([*expected, "photo.jpg"])
    assert api.verify(dest) == {"ok": 11, "bad": []}


def test_objects_layout_corrupt_inputs_and_cli(tmp_path, ray_address, capsys):
    expected = make_folder(tmp_path / "src", n=4)
    (tmp_path / "src" / "truncated.png").write_bytes(
        (tmp_path / "src" / "set0/img_000.png").read_bytes()[:60])
    (tmp_path / "src" / "garbage.png").write_bytes(b"this is not an image at all")
    (tmp_path / "src" / "empty.tif").write_bytes(b"")
    dest = str(tmp_path / "job")
    rc = pilc_main(["compress", str(tmp_path / "src"), "--out", dest, "--layout", "objects",
                    "--workers", "2", "--cpus-per-worker", "0.5", "--no-progress",
                    "--tile", "128"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "4 images compressed" in out and "3 errors" in out
    assert_exact(dest, expected)
    errs = {e["id"]: e for e in pq.read_table(tmp_path / "job" / ix.ERRORS_FILE).to_pylist()}
    assert set(errs) == {"truncated.png", "garbage.png", "empty.tif"}
    assert all(e["stage"] == "decode-input" and e["error"] for e in errs.values())
    assert "empty" in errs["empty.tif"]["error"]
    blobs = [p.read_bytes() for p in (tmp_path / "job" / "objects").rglob("*.pilc")]
    assert len(blobs) == 4
    # --tile 128 reached the workers: one-group learned blobs open their payload with the
    # group flags, whose bit 1 (256-pixel tiles) is clear
    one_group = [b for b in blobs if codec.info(b)["codec"] == "learned"
                 and codec.info(b)["mode"] in ("L", "RGB")]
    assert one_group and all(container.parse(b)[1][0] >> 1 == 0 for b in one_group)
    assert pilc_main(["verify", dest]) == 0
    assert pilc_main(["lookup", dest, "set1/img_001.png"]) == 0
    assert pilc_main(["lookup", dest, "nope"]) == 1


def test_empty_and_missing_sources(tmp_path, ray_address):
    (tmp_path / "empty").mkdir()
    r = api.compress(str(tmp_path / "empty"), str(tmp_path / "job"), **FAST)
    assert r.ok and r["counts"]["source_items"] == 0 and r["counts"]["index_rows"] == 0
    assert pq.read_table(tmp_path / "job" / ix.INDEX_FILE).num_rows == 0
    with pytest.raises(KeyError):
        ix.lookup(str(tmp_path / "job"), "anything")
    with pytest.raises(JobError, match="does not exist"):
        api.compress(str(tmp_path / "missing"), str(tmp_path / "job2"), **FAST)
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(JobError, match="cannot write"):
        api.compress(str(tmp_path / "empty"), str(tmp_path / "a_file" / "job"), **FAST)
    with pytest.raises(JobError, match="tile must be one of"):
        Driver(JobConfig(source=str(tmp_path / "empty"), dest=str(tmp_path / "job3"), tile=64))
    with pytest.raises(JobError, match="effort must be one of"):
        Driver(JobConfig(source=str(tmp_path / "empty"), dest=str(tmp_path / "job3"),
                         effort="turbo"))


def test_job_effort_reaches_blobs_index_and_report(tmp_path, ray_address):
    from pilc_ray.reports import aggregate as report

    expected = make_folder(tmp_path / "src", n=4, size=64)
    dest = str(tmp_path / "job")
    r = api.compress(str(tmp_path / "src"), dest, effort="fast", fallback="never", **FAST)
    assert r.ok and r["counts"]["compressed"] == 4
    assert_exact(dest, expected)
    rows = pq.read_table(tmp_path / "job" / ix.INDEX_FILE).to_pylist()
    learned = [row for row in rows if row["codec"] == "learned"]
    assert learned and {row["effort"] for row in learned} == {"fast"}
    assert all(row["effort"] is None for row in rows if row["codec"] != "learned")
    for row in learned:
        assert codec.info(ix.read_blob(row))["effort"] == "fast"
    groups = {g["name"]: g["images"] for g in report.build_report(dest)["by_effort"]}
    assert groups == {"fast": len(learned), **({"(none)": 4 - len(learned)} if len(learned) < 4
                                                 else {})}  # fmt: skip


def test_in_memory_images_and_object_refs(tmp_path, ray_address):
    import ray

    rng = np.random.default_rng(3)
    imgs = {f"mem/{i}": rng.integers(0, 255, (20 + i, 24, 3), dtype=np.uint8) for i in range(4)}
    refs = {k: ray.put(v) if i % 2 else v for i, (k, v) in enumerate(imgs.items())}
    dest = str(tmp_path / "job")
    r = api.compress(refs, dest, **FAST)
    assert r["counts"]["compressed"] == 4
    assert_exact(dest, imgs)
    assert ix.lookup(dest, "mem/1")["source_uri"] == "ray-object://mem/1"


def test_killed_worker_loses_nothing(tmp_path, ray_address):
    expected = make_folder(tmp_path / "src", n=24, size=256)  # ~2 s of work: time to aim
    dest = str(tmp_path / "job")
    driver = Driver(JobConfig(source=str(tmp_path / "src"), dest=dest, batch_size=2, **FAST))
    result: dict = {}
    th = threading.Thread(target=lambda: result.update(r=driver.run()))
    th.start()
    killed = None
    t0 = time.monotonic()
    while th.is_alive() and time.monotonic() - t0 < 120:
        busy = [pid for pid, n in driver.in_flight.items() if n > 0]
        if busy and getattr(driver, "progress", None) and driver.progress.done >= 2:
            killed = busy[0]
            os.kill(killed, signal.SIGKILL)  # the actor process, mid-batch
            break
        time.sleep(0.02)
    th.join(300)
    assert killed is not None, "job finished before a worker could be killed"
    rec = result["r"].record
    assert rec["counts"]["worker_failures"] >= 1 and rec["counts"]["retried_batches"] >= 1
    assert rec["counts"]["errors"] == 0 and rec["counts"]["index_rows"] == 24
    assert_exact(dest, expected)


def test_killed_driver_then_rerun_indexes_everything_once(tmp_path, ray_address):
    expected = make_folder(tmp_path / "src", n=30, size=256)
    dest = tmp_path / "job"
    cfg = tmp_path / "job.yaml"
    cfg.write_text("batch_size: 1\nflush_rows: 1\nworkers: 2\ncpus_per_worker: 0.5\n"
                   "progress: none\n")
    cmd = [sys.executable, "-m", "pilc_ray.cli", "compress", str(tmp_path / "src"), "--out",
           str(dest), "--config", str(cfg), "--ray-address", ray_address]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 180 and proc.poll() is None:
        if len(list((dest / ix.PARTS_DIR).glob("*.parquet"))) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"driver ended early: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (dest / ix.INDEX_FILE).exists()  # killed before compaction
    # a shard of a batch whose rows never reached the index: must not survive the rerun
    (dest / "shards" / "zz").mkdir(parents=True, exist_ok=True)
    (dest / "shards" / "zz" / "orphan.pshard").write_bytes(b"left by a killed run")
    old = time.time() - 60
    os.utime(dest / "shards" / "zz" / "orphan.pshard", (old, old))
    r = api.compress(str(tmp_path / "src"), str(dest), **FAST)
    assert r["counts"]["already_indexed"] >= 3
    assert r["counts"]["already_indexed"] + r["counts"]["compressed"] == 30
    assert r["counts"]["orphans_removed"] >= 1
    assert_exact(str(dest), expected)
    used = {row["blob_uri"] for row in pq.read_table(dest / ix.INDEX_FILE).to_pylist()}
    on_disk = {str(p) for p in (dest / "shards").rglob("*.pshard")}
    assert used <= on_disk and not (dest / "shards" / "zz" / "orphan.pshard").exists()
    # (a dying worker of the killed run may still land a shard after the rerun started; GC
    # leaves shards newer than its run's start alone, so the next run removes those)


def test_s3_source_and_dest_with_auth(tmp_path, ray_address):
    srv = testing.seaweed_s3()
    bucket = srv.make_bucket()
    expected = make_folder(tmp_path / "src", n=5)
    c = srv.client()
    for p in (tmp_path / "src").rglob("*.png"):
        c.put_object(Bucket=bucket, Key=f"in/{p.relative_to(tmp_path / 'src')}",
                     Body=p.read_bytes())
    c.put_object(Bucket=bucket, Key="in/broken.png", Body=b"\x89PNG nope")
    opts = srv.options()
    dest = f"s3://{bucket}/out"
    r = api.compress(f"s3://{bucket}/in/", dest, storage_options=opts, **FAST)
    assert r["counts"]["compressed"] == 5 and r["counts"]["errors"] == 1
    assert_exact(dest, expected, opts)
    assert api.verify(dest, opts)["ok"] == 5
    keys = {o["Key"] for o in c.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"]}
    assert {"out/job.json", "out/index/index.parquet", "out/index/errors.parquet"} <= keys
    r2 = api.compress(f"s3://{bucket}/in/", dest, storage_options=opts, **FAST)
    assert r2["counts"]["compressed"] == 0 and r2["counts"]["already_indexed"] == 5


def test_ray_data_engine(tmp_path, ray_address):
    expected = make_folder(tmp_path / "src", n=6)
    dest = str(tmp_path / "job")
    r = api.compress(str(tmp_path / "src"), dest, engine="data", batch_size=2, **FAST)
    assert r.ok and r["pool"]["engine"] == "data" and r["counts"]["compressed"] == 6
    # what the engine reports back through EngineHost lands in the job record
    assert r["counts"]["attempted"] == 6 and r["durations"]["pool_start_s"] == 0.0
    assert r["workers"] == [f"ray-data-actor-{i}" for i in range(r["pool"]["workers"])]
    assert r["model_id"]
    assert_exact(dest, expected)


HOLD_LEASE = """
import sys
from pilc_ray.job.lease import DestLease
lease = DestLease(sys.argv[1], "other-job")
lease.acquire()
print("held", flush=True)
sys.stdin.read()  # until the test kills us
"""


def test_second_job_on_a_live_dest_is_refused_and_a_dead_ones_lease_taken(tmp_path, ray_address):
    """Two jobs never share DEST (issue 16: the second one's sweep deleted the first one's
    unindexed shards): while another process holds DEST's lease the job refuses with a clear
    message and writes nothing; once that process is gone its lease is stale and taken over."""
    expected = make_folder(tmp_path / "src", n=4)
    dest = tmp_path / "job"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LEASE, str(dest)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(JobError, match="in use by job run other-job"):
            api.compress(str(tmp_path / "src"), str(dest), **FAST)
        assert not (dest / "shards").exists() and not (dest / "runs").exists()
        out = subprocess.run(
            [sys.executable, "-m", "pilc_ray.cli", "compress", str(tmp_path / "src"), "--out",
             str(dest), "--ray-address", ray_address, "--no-progress"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert out.returncode != 0 and "in use by job run other-job" in out.stderr
        assert "Traceback" not in out.stderr
    finally:
        holder.kill()
        holder.wait()
    r = api.compress(str(tmp_path / "src"), str(dest), **FAST)
    assert r.ok and r["counts"]["compressed"] == 4
    assert not (dest / "lease.json").exists()  # released at the end
    assert_exact(str(dest), expected)


def test_a_job_that_lost_its_lease_stops_without_writing_the_index(tmp_path, ray_address,
                                                                    monkeypatch):
    """While the job runs, another job takes DEST's lease over (as after ours expired: a
    paused or cut-off driver). The job must stop with a clear error and write no index rows,
    no job.json, and not sweep or release the other job's lease (it once only skipped the
    sweep, then indexed and compacted in a DEST another job owned); a rerun resumes."""
    expected = make_folder(tmp_path / "src", n=6)
    dest = tmp_path / "job"
    now = time.time()
    taker = {"run_id": "taker", "host": "another-host", "pid": 4242, "renewed_at": now,
             "expires_at": now + 600}
    handle = Driver.handle_result

    def taken_over_meanwhile(self, result, writer, progress):
        (dest / "lease.json").write_text(json.dumps(taker))
        return handle(self, result, writer, progress)

    monkeypatch.setattr(Driver, "handle_result", taken_over_meanwhile)
    with pytest.raises(JobError, match=r"lost the lease on .*\(run taker on host another-host\)"):
        api.compress(str(tmp_path / "src"), str(dest), batch_size=2, **FAST)
    assert not list((dest / "index").rglob("*.parquet"))  # neither the index nor parts
    assert not (dest / "job.json").exists()
    assert json.loads((dest / "lease.json").read_text())["run_id"] == "taker"
    (record,) = [json.loads(p.read_text()) for p in (dest / "runs").glob("*.json")]
    assert record["status"] == "failed" and "lost the lease" in record["error"]
    monkeypatch.undo()
    (dest / "lease.json").unlink()  # the other job finished
    r = api.compress(str(tmp_path / "src"), str(dest), batch_size=2, **FAST)
    assert r.ok and r["counts"]["compressed"] == 6
    assert_exact(str(dest), expected)


def test_rerun_repairs_rows_whose_blob_is_missing_or_corrupt(tmp_path, ray_address):
    expected = make_folder(tmp_path / "src", n=6)
    dest = tmp_path / "job"
    api.compress(str(tmp_path / "src"), str(dest), batch_size=2, **FAST)
    rows = pq.read_table(dest / ix.INDEX_FILE).to_pylist()
    lost = rows[0]
    Path(lost["blob_uri"]).unlink()  # a shard gone: its images are lost to a plain resume
    lost_ids = {r["id"] for r in rows if r["blob_uri"] == lost["blob_uri"]}
    r = api.compress(str(tmp_path / "src"), str(dest), **FAST)
    assert r["repair"]["missing_blobs"] == len(lost_ids) and r["counts"]["compressed"] == len(
        lost_ids)
    assert api.verify(str(dest)) == {"ok": 6, "bad": []}
    # a blob whose bytes are damaged: found by --repair's decode pass, coded again
    row = next(r for r in pq.read_table(dest / ix.INDEX_FILE).to_pylist() if not r["passthrough"])
    flip_at = row["offset"] + row["length"] - 3
    data = bytearray(Path(row["blob_uri"]).read_bytes())
    data[flip_at] ^= 0xFF
    Path(row["blob_uri"]).write_bytes(bytes(data))
    assert api.verify(str(dest))["bad"]
    r = api.compress(str(tmp_path / "src"), str(dest), repair=True, **FAST)
    assert r["repair"]["bad_blobs"] >= 1 and r["counts"]["compressed"] >= 1
    assert api.verify(str(dest)) == {"ok": 6, "bad": []}
    assert_exact(str(dest), expected)


def test_links_loops_and_fifos_in_the_source_are_skipped_with_a_trace(tmp_path, ray_address):
    """A symlink loop no longer kills the job before it starts (raw ELOOP); loops, broken
    links and FIFOs are listed with a reason in the job record and counted as ignored; a run
    record a killed job left "running" is marked interrupted."""
    expected = make_folder(tmp_path / "src", n=3)
    src = tmp_path / "src"
    (src / "set0" / "up").symlink_to("..")  # a cycle through the tree
    (src / "self.png").symlink_to("self.png")  # a link to itself: ELOOP
    (src / "gone.png").symlink_to("nowhere.png")
    os.mkfifo(src / "pipe.png")
    dest = tmp_path / "job"
    (dest / "runs").mkdir(parents=True)
    (dest / "runs" / "20260101T000000-dead00.json").write_text(
        json.dumps({"run_id": "20260101T000000-dead00", "status": "running"}))
    r = api.compress(str(src), str(dest), **FAST)
    assert r.ok and r["counts"]["compressed"] == 3
    reasons = {Path(s["path"]).name: s["reason"] for s in r["skipped_files"]}
    assert reasons["up"].startswith("symlink loop") and reasons["self.png"] == "symlink loop"
    assert reasons["gone.png"] == "broken symlink" and "FIFO" in reasons["pipe.png"]
    assert r["counts"]["ignored_files"] >= 4
    assert r["interrupted_runs"] == ["20260101T000000-dead00"]
    dead = json.loads((dest / "runs" / "20260101T000000-dead00.json").read_text())
    assert dead["status"] == "interrupted"
    assert_exact(str(dest), expected)


def test_embedded_ray_starts_quietly_and_says_where_it_is(tmp_path):
    """`pilc compress` without a cluster: Ray's token-auth warning must not land in the
    progress output; one line says where the job's local Ray is."""
    make_folder(tmp_path / "src", n=2)
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ADDRESS")}
    out = subprocess.run(
        [sys.executable, "-m", "pilc_ray.cli", "compress", str(tmp_path / "src"), "--out",
         str(tmp_path / "job"), "--workers", "1", "--cpus-per-worker", "0.5", "--quiet"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Token authentication" not in out.stderr
    assert "[pilc] local Ray at " in out.stderr and "2 images compressed" in out.stdout
