"""Fixtures the pilc_ray tests share: a real S3-compatible server (moto, then SeaweedFS with
auth; each started once per process by pilc_ray.testing) and a fresh bucket on it."""

from __future__ import annotations

import pytest

from pilc_ray import testing


@pytest.fixture(scope="module", params=["moto", "seaweed"])
def s3_server(request) -> testing.S3Server:
    return testing.moto_s3() if request.param == "moto" else testing.seaweed_s3()


@pytest.fixture()
def s3_bucket(s3_server) -> str:
    return s3_server.make_bucket()
