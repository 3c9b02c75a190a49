"""DEST's lease (pilc_ray.job.lease) on local disks and real S3-compatible servers: the
s3_server and s3_bucket fixtures come from tests/pilc_ray/conftest.py (moto, then SeaweedFS with
auth). The lease held against a running job across processes, and a job that loses its lease
mid-run, are tested with the job, in test_pipeline.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pilc_ray import api, testing
from pilc_ray import storage as st
from pilc_ray.job.lease import DestLease, LeaseHeld


def test_lease_is_exclusive_on_s3_and_expires(s3_server, s3_bucket):
    """DEST's lease on a real S3 server: a conditional create (If-None-Match: *) lets one job
    in; a live holder is refused to the next; an expired lease is taken over."""
    dest = f"s3://{s3_bucket}/job"
    s3 = st.S3Storage(st.StorageOptions(**s3_server.options()))
    assert s3.put_if_absent(f"{dest}/x", b"one") and not s3.put_if_absent(f"{dest}/x", b"two")
    assert s3.get(f"{dest}/x") == b"one"
    opts = s3_server.options()
    first = DestLease(dest, "run-a", opts, ttl_s=0.5, renew_s=60)
    first.acquire()
    second = DestLease(dest, "run-b", opts)
    with pytest.raises(LeaseHeld, match="in use by job run run-a"):
        second.acquire()
    first._stop.set()  # run-a stops renewing (as a killed job does) ...
    time.sleep(0.7)  # ... and its lease expires
    second.acquire()
    assert second.taken_over["run_id"] == "run-a" and second.holder()["run_id"] == "run-b"
    first.renew()  # the old holder notices it lost the lease instead of overwriting it
    assert first.lost and second.holder()["run_id"] == "run-b"
    second.release()
    assert second.holder() is None


def _stale_lease(run_id: str = "stale-run") -> bytes:
    """A lease another host's job left: expired, its holder not known dead."""
    now = time.time()
    return json.dumps({"run_id": run_id, "host": "another-host", "pid": 4242,
                       "renewed_at": now - 200, "expires_at": now - 110}).encode()


class _PausedAfterStaleRead:
    """A job's storage that, once it has read the stale lease, waits until told to go on: the
    moment another job can take the same stale lease over."""

    def __init__(self, inner: st.Storage) -> None:
        self.inner = inner
        self.paused, self.go_on = threading.Event(), threading.Event()

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def _read(self, data: bytes) -> None:
        if b"stale-run" in data and not self.paused.is_set():
            self.paused.set()
            assert self.go_on.wait(60)

    def get(self, uri: str) -> bytes:
        data = self.inner.get(uri)
        self._read(data)
        return data

    def get_versioned(self, uri: str) -> tuple[bytes, str]:
        data, tag = self.inner.get_versioned(uri)
        self._read(data)
        return data, tag


@pytest.fixture(params=["local", "moto", "seaweed"])
def lease_dest(request, tmp_path) -> tuple[str, dict | None]:
    """DEST for a lease: a local folder, or a prefix on one of the S3 servers."""
    if request.param == "local":
        return str(tmp_path / "job"), None
    server = testing.moto_s3() if request.param == "moto" else testing.seaweed_s3()
    return f"s3://{server.make_bucket()}/job", server.options()


def test_two_jobs_taking_over_one_stale_lease_never_both_hold_it(lease_dest):
    """Job A reads the stale lease and, before it replaces it, job B takes it over: A must
    not then hold DEST too (issue 16 item 1: taking over was a delete and a create, so A's
    delete removed B's fresh lease and both jobs held DEST). A takeover replaces exactly the
    version it judged stale (If-Match on S3, a locked compare locally)."""
    dest, opts = lease_dest
    st.open_storage(dest, opts).put(st.join(dest, "lease.json"), _stale_lease())
    a, b = DestLease(dest, "run-a", opts), DestLease(dest, "run-b", opts)
    a.storage = paused = _PausedAfterStaleRead(a.storage)
    outcome: list[BaseException | None] = []

    def take_a() -> None:
        try:
            a.acquire()
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 - the test reads it
            outcome.append(e)

    thread = threading.Thread(target=take_a)
    thread.start()
    try:
        assert paused.paused.wait(60)  # A has judged the lease stale ...
        b.acquire()  # ... and B takes it over meanwhile
        assert b.taken_over["run_id"] == "stale-run"
    finally:
        paused.go_on.set()
        thread.join(60)
    try:
        assert isinstance(outcome[0], LeaseHeld), outcome
        assert "in use by job run run-b" in str(outcome[0])
        assert b.holder()["run_id"] == "run-b" and b.taken_over_reason == "expired"
        b.renew()
        assert not b.lost and b.holder()["run_id"] == "run-b"
    finally:
        a.release()  # holds nothing: must not delete B's lease
        assert b.holder()["run_id"] == "run-b"
        b.release()
    assert b.holder() is None


RACE = """
import sys, time
from pilc_ray.job.lease import DestLease, LeaseHeld
lease = DestLease(sys.argv[1], sys.argv[2])
time.sleep(max(0.0, float(sys.argv[3]) - time.time()))
try:
    lease.acquire()
    print("held", flush=True)
    time.sleep(2)
except LeaseHeld:
    print("refused", flush=True)
"""


def test_processes_racing_for_a_stale_lease_one_wins(tmp_path):
    """Six processes start taking over the same stale lease at the same instant: one holds
    DEST, the others are refused."""
    dest = tmp_path / "job"
    dest.mkdir()
    (dest / "lease.json").write_bytes(_stale_lease())
    start = time.time() + 3.0
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(dest), f"run-{i}", str(start)],
                              stdout=subprocess.PIPE, text=True) for i in range(6)]
    said = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert said == ["held"] + ["refused"] * 5, said


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_taking_over_an_expired_lease_spares_shards_its_holder_may_still_index(tmp_path):
    """A lease that only expired may belong to a job that is alive (paused, cut off from the
    store) and still writing: the job that takes it over sweeps only orphan shards from before
    that lease's last renewal. A lease whose process is known dead (this host, pid gone) spares
    nothing: every orphan older than the run goes, as before."""
    (tmp_path / "empty").mkdir()
    dest = tmp_path / "job"
    api.compress(str(tmp_path / "empty"), str(dest), progress="none")  # an index, no Ray
    now = time.time()
    shards = dest / "shards" / "ab"
    shards.mkdir(parents=True)
    old, new = shards / "old.pshard", shards / "new.pshard"
    for path, age in ((old, 600), (new, 100)):  # the stale lease was last renewed 200 s ago
        path.write_bytes(b"orphan")
        os.utime(path, (now - age, now - age))
    (dest / "lease.json").write_bytes(_stale_lease("paused-run"))
    r = api.compress(str(tmp_path / "empty"), str(dest), progress="none")
    assert r.ok and not old.exists() and new.exists() and r["counts"]["orphans_removed"] == 1
    assert r["lease"]["taken_over_run"] == "paused-run"
    assert r["lease"]["taken_over_reason"] == "expired"
    assert not (dest / "lease.json").exists()
    # the holder's process is known dead: its shards are orphans, whatever their age
    (dest / "lease.json").write_text(json.dumps({
        "run_id": "dead-run", "host": socket.gethostname(), "pid": _dead_pid(),
        "renewed_at": now - 200, "expires_at": now + 600}))
    r = api.compress(str(tmp_path / "empty"), str(dest), progress="none")
    assert r["lease"]["taken_over_reason"] == "dead"
    assert r["counts"]["orphans_removed"] == 1 and not new.exists()
    assert Path(dest / "job.json").exists()
