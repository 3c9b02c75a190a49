"""An exclusive, expiring claim on a job's DEST, so two jobs never write one archive at once.

Why: a second job's orphan sweep deleted shards a first, live job had written but not yet
indexed, and both reported success (issue 16). A job now creates DEST/lease.json only if it is
absent (a hard link locally, `If-None-Match: *` on S3: of two racing jobs one wins), renews it
while it runs, and deletes it at the end. A lease past its expiry, or one held by a process of
this host that is gone, is stale: the next job takes it over, so a killed job never locks DEST
for longer than the expiry (a killed job on this host not even that long).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import Any

from pilc_ray import storage as st

log = logging.getLogger("pilc_ray.job.lease")

LEASE_FILE = "lease.json"
TTL_S = 90.0  # a lease not renewed for this long is stale
RENEW_S = 20.0


class LeaseHeld(Exception):
    """DEST is in use by another live job."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    return True


def is_stale(holder: dict[str, Any], now: float | None = None) -> bool:
    """Whether a lease no longer protects anything: expired, or its process on this host died."""
    now = time.time() if now is None else now
    if float(holder.get("expires_at", 0)) < now:
        return True
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        return not _pid_alive(holder["pid"])
    return False


class DestLease:
    """Held from `acquire()` to `release()`; a daemon thread renews it meanwhile."""

    def __init__(self, dest: str, run_id: str, options: Any = None, ttl_s: float = TTL_S,
                 renew_s: float = RENEW_S) -> None:
        self.dest = st.normalize(dest)
        self.uri = st.join(self.dest, LEASE_FILE)
        self.storage = st.open_storage(self.dest, options)
        self.run_id = run_id
        self.ttl_s = ttl_s
        self.renew_s = renew_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.taken_over: dict[str, Any] | None = None  # the stale lease this one replaced
        self.lost = False

    def _body(self) -> bytes:
        now = time.time()
        return json.dumps({
            "run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(),
            "renewed_at": now, "expires_at": now + self.ttl_s,
        }).encode()

    def holder(self) -> dict[str, Any] | None:
        """The lease as stored now (None: no lease; {} if unreadable)."""
        try:
            return json.loads(self.storage.get(self.uri))
        except st.NotFound:
            return None
        except (ValueError, st.StorageError):
            return {}

    def acquire(self) -> None:
        """Take DEST, or raise LeaseHeld naming the live job that has it."""
        for _ in range(3):
            if self.storage.put_if_absent(self.uri, self._body()):
                # read back: a store that ignores If-None-Match lets a racing job overwrite us
                if (self.holder() or {}).get("run_id") != self.run_id:
                    raise LeaseHeld(f"{self.dest}: another job took the lease at the same time")
                self._start_renewal()
                return
            current = self.holder()
            if current is None:
                continue  # released between our two calls: try again
            if current and not is_stale(current):
                left = float(current.get("expires_at", 0)) - time.time()
                raise LeaseHeld(
                    f"{self.dest} is in use by job run {current.get('run_id')} on host "
                    f"{current.get('host')} (pid {current.get('pid')}); wait for it to finish, "
                    f"or, if it was killed, up to {max(0, left):.0f} s for its lease to expire"
                )
            log.warning("taking over the stale lease of %s: %s", self.dest, current)
            self.taken_over = current
            self.storage.delete(self.uri)  # a racing job may delete it too: put_if_absent decides
        raise LeaseHeld(f"could not take the lease on {self.dest}: another job keeps taking it")

    def _start_renewal(self) -> None:
        self._thread = threading.Thread(target=self._renew_loop, name="pilc-lease", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew_s):
            try:
                self.renew()
            except Exception as e:  # noqa: BLE001 - a transient store error: try next round
                log.warning("could not renew the lease on %s: %s", self.dest, e)

    def renew(self) -> None:
        """Push the expiry forward, unless another job has taken the lease (then `lost`)."""
        current = self.holder()
        if current is not None and current.get("run_id") not in (None, self.run_id):
            self.lost = True
            log.error("lost the lease on %s to run %s", self.dest, current.get("run_id"))
            self._stop.set()
            return
        self.storage.put(self.uri, self._body())

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        current = self.holder()
        if current is not None and current.get("run_id") == self.run_id:
            self.storage.delete(self.uri)
