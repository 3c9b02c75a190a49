"""cluster.yaml and the example job config, checked offline (no cloud, no network)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]


def _cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_matches_rays_schema():
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    cfg = _cluster()
    jsonschema.validate(cfg, schema)  # the schema the cluster launcher ships
    filled = prepare_config(cfg)  # merged with the AWS defaults, as `ray up` does
    validate_config(filled)  # Ray's own checks (node types, head type, worker bounds)
    assert filled["docker"]["image"] == cfg["docker"]["image"]


def test_cluster_yaml_shape():
    cfg = _cluster()
    assert cfg["provider"]["type"] == "aws"
    image = cfg["docker"]["image"]
    assert image.startswith("rayproject/ray:") and image.endswith("-gpu")
    import ray

    assert image.split(":")[1].startswith(ray.__version__)  # image Ray == the Ray we pin
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and "GPU" not in head["resources"]
    assert not head["node_config"]["InstanceType"].startswith(("g", "p"))
    gpu = [t for n, t in types.items() if n != cfg["head_node_type"]]
    assert gpu and all(t["node_config"]["InstanceType"].startswith(("g", "p")) for t in gpu)
    assert all(t["min_workers"] == 0 and t["max_workers"] >= 1 for t in gpu)  # autoscaling
    assert any("pip install" in c and "/home/ray/pilc_ray" in c for c in cfg["setup_commands"])
    assert cfg["file_mounts"] == {"/home/ray/pilc_ray": "."}


def test_example_job_config_loads(tmp_path):
    import argparse

    from pilc_ray.job.cli import add_compress_arguments, config_from_args

    p = argparse.ArgumentParser()
    add_compress_arguments(p)
    a = p.parse_args(["--config", str(ROOT / "jobs" / "example_job.yaml"), "--workers", "3"])
    cfg = config_from_args(a)
    assert cfg.source.startswith("s3://") and cfg.workers == 3 and cfg.layout == "shards"
    assert cfg.storage_options["region"] == "us-east-1"
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: x\ndest: y\nbatchsize: 3\n")
    from pilc_ray.job.config import JobError

    with pytest.raises(JobError, match="batchsize"):
        config_from_args(p.parse_args(["--config", str(bad)]))
    assert os.path.exists(ROOT / "jobs" / "compress.py")
