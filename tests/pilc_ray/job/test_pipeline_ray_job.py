"""`ray job submit -- python jobs/compress.py ...` against a real Ray head on loopback."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

import codec
from codec.imagefile import RasterImage
from pilc_ray import api, testing

ROOT = Path(__file__).resolve().parents[3]


def _start_head(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, int, int, str]:
    """`ray start --head --block` on fresh loopback ports; retried because a port picked by
    free_port can be taken by someone else before Ray binds it (the head then exits at once)."""
    ray_bin = Path(sys.executable).with_name("ray")
    for _ in range(3):
        port, dash = testing.free_port(), testing.free_port()
        temp = tempfile.mkdtemp(prefix="pr")  # own session dir and cluster-address file
        with log.open("ab") as out:
            head = subprocess.Popen(
                [str(ray_bin), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
                 f"--temp-dir={temp}",
                 f"--port={port}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                 "--include-dashboard=true", "--num-cpus=1", "--disable-usage-stats",
                 # own ports for everything with a fixed default: the session's Ray (or anyone's)
                 # may hold those, and a job agent that cannot bind never accepts jobs
                 *(f"--{flag}={testing.free_port()}" for flag in (
                     "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                     "runtime-env-agent-port", "metrics-export-port", "ray-client-server-port",
                     "object-manager-port", "node-manager-port"))],
                env=env, stdout=out, stderr=subprocess.STDOUT)
        t0 = time.monotonic()
        while head.poll() is None:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{dash}/api/version", timeout=1)
                return head, port, dash, temp
            except urllib.error.HTTPError:
                return head, port, dash, temp  # it answers (401 without the token)
            except OSError:
                if time.monotonic() - t0 > 90:
                    head.kill()
                    raise AssertionError(
                        "Ray head did not come up:\n" + log.read_text()[-4000:]) from None
                time.sleep(0.3)
        shutil.rmtree(temp, ignore_errors=True)
    raise AssertionError("ray start --head exited 3 times:\n" + log.read_text()[-4000:])


def test_ray_job_submit_runs_the_job_entrypoint(tmp_path):
    ray_bin = Path(sys.executable).with_name("ray")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    head, port, dash, temp = _start_head(env, tmp_path / "head.log")
    try:
        rng = np.random.default_rng(0)
        src = tmp_path / "src"
        src.mkdir()
        images = {}
        for i in range(3):
            px = rng.integers(0, 255, (30 + i, 40, 3), dtype=np.uint8)
            (src / f"{i}.png").write_bytes(codec.to_png_bytes(RasterImage(px, "RGB")))
            images[f"{i}.png"] = px
        dest = tmp_path / "job"
        for _ in range(15):  # the dashboard answers before its job agent is ready
            out = subprocess.run(
                [str(ray_bin), "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--",
                 sys.executable, str(ROOT / "jobs" / "compress.py"), str(src), "--out",
                 str(dest), "--workers", "1", "--cpus-per-worker", "0.5"],
                env=env, capture_output=True, text=True, timeout=300)
            if "No available agent" not in out.stderr + out.stdout:
                break
            time.sleep(2)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert "3 images compressed" in out.stdout
        assert "[pilc] done" in out.stdout + out.stderr  # log lines, not a bar, in a job log
        record = json.loads((dest / "job.json").read_text())
        assert record["status"] == "complete" and record["ray"]["address"].endswith(str(port))
        for image_id, px in images.items():
            assert np.array_equal(api.read_image(str(dest), image_id).pixels, px)
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        head.wait(60)
        shutil.rmtree(temp, ignore_errors=True)
