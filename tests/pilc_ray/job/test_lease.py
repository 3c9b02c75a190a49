"""DEST's lease (pilc_ray.job.lease) on real S3-compatible servers: the s3_server and s3_bucket
fixtures come from tests/pilc_ray/conftest.py (moto, then SeaweedFS with auth). The lease held
against a running job across processes is tested with the job, in test_pipeline.py."""

from __future__ import annotations

import time

import pytest

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
