"""The driver's pieces that run without Ray: the resume set (IdSet) of ids already indexed."""

from __future__ import annotations

import pyarrow as pa

from pilc_ray.job.driver import IdSet


def test_idset_is_exact():
    ids = pa.array([f"k{i}" for i in range(5000)])
    s = IdSet(ids)
    probe = ["k0", "k4999", "k5000", "", "k17", "K17"]
    assert s.contains(probe).tolist() == [True, True, False, False, True, False]
    assert IdSet(pa.array([], pa.string())).contains(["a"]).tolist() == [False]
