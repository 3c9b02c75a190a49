"""An exclusive, expiring claim on a job's DEST, so two jobs never write one archive at once.

Why: a second job's orphan sweep deleted shards a first, live job had written but not yet
indexed, and both reported success (issue 16). A job creates DEST/lease.json only if it is
absent (a hard link locally, `If-None-Match: *` on S3: of two racing jobs one wins), renews it
while it runs, and deletes it at the end. A lease past its expiry, or one held by a process of
this host that is gone, is stale: the next job takes it over, so a killed job never locks DEST
for longer than the expiry (a killed job on this host not even that long).

Every change to an existing lease is a compare-and-replace on the version that was read
(`Storage.put_if_match`: `If-Match: <ETag>` on S3, a locked compare of the bytes locally), never
a delete and a re-create: of two jobs taking over the same stale lease only one can win (a
delete let both), and a holder's renewal cannot overwrite the job that took its lease over.
A holder that finds its lease taken (or cannot renew it for a whole expiry) is `lost`: the
driver stops without writing the index (`LeaseLost`), a rerun resumes.
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


class LeaseLost(Exception):
    """This job's lease was taken over by another job (or could not be renewed in time)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    return True


def stale_reason(holder: dict[str, Any], now: float | None = None) -> str | None:
    """Why a lease no longer protects anything: "dead" (its process on this host is gone),
    "expired" (not renewed in time; its holder may still be alive), or None (it is live)."""
    now = time.time() if now is None else now
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        if not _pid_alive(holder["pid"]):
            return "dead"
    if float(holder.get("expires_at", 0)) < now:
        return "expired"
    return None


def is_stale(holder: dict[str, Any], now: float | None = None) -> bool:
    """Whether a lease no longer protects anything: expired, or its process on this host died."""
    return stale_reason(holder, now) is not None


def _parse(data: bytes) -> dict[str, Any]:
    try:
        holder = json.loads(data)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


class DestLease:
    """Held from `acquire()` to `release()`; a daemon thread renews it meanwhile."""

    def __init__(self, dest: str, run_id: str, options: Any = None, ttl_s: float | None = None,
                 renew_s: float | None = None) -> None:
        self.dest = st.normalize(dest)
        self.uri = st.join(self.dest, LEASE_FILE)
        self.storage = st.open_storage(self.dest, options)
        self.run_id = run_id
        self.ttl_s = TTL_S if ttl_s is None else ttl_s
        self.renew_s = RENEW_S if renew_s is None else renew_s
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the renewal thread and confirm() take turns
        self._thread: threading.Thread | None = None
        self._tag: str | None = None  # the version of lease.json we wrote last
        self._renewed = 0.0  # time.monotonic() of our last write that took
        self.taken_over: dict[str, Any] | None = None  # the stale lease this one replaced
        self.taken_over_reason: str | None = None  # "dead" or "expired"
        self.lost = False
        self.lost_to: str | None = None  # why (the run that holds DEST now, or the delay)

    def _body(self) -> bytes:
        now = time.time()
        return json.dumps({
            "run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(),
            "renewed_at": now, "expires_at": now + self.ttl_s,
        }).encode()

    def holder(self) -> dict[str, Any] | None:
        """The lease as stored now (None: no lease; {} if unreadable)."""
        try:
            return self._read()[0]
        except st.NotFound:
            return None
        except st.StorageError:
            return {}

    def _read(self) -> tuple[dict[str, Any], str]:
        data, tag = self.storage.get_versioned(self.uri)
        return _parse(data), tag

    def _held(self, tag: str) -> None:
        self._tag = tag
        self._renewed = time.monotonic()
        self._thread = threading.Thread(target=self._renew_loop, name="pilc-lease", daemon=True)
        self._thread.start()

    def acquire(self) -> None:
        """Take DEST, or raise LeaseHeld naming the live job that has it."""
        for _ in range(5):
            if self.storage.put_if_absent(self.uri, self._body()):
                # read back: a store that ignores If-None-Match lets a racing job overwrite us
                current, tag = self._read()
                if current.get("run_id") != self.run_id:
                    raise LeaseHeld(f"{self.dest}: another job took the lease at the same time")
                self._held(tag)
                return
            try:
                current, tag = self._read()
            except st.NotFound:
                continue  # released between our two calls: try again
            if current.get("run_id") == self.run_id:  # our own write, its answer lost: ours
                self._held(tag)
                return
            reason = stale_reason(current) if current else "unreadable"
            if reason is None:
                left = float(current.get("expires_at", 0)) - time.time()
                raise LeaseHeld(
                    f"{self.dest} is in use by job run {current.get('run_id')} on host "
                    f"{current.get('host')} (pid {current.get('pid')}); wait for it to finish, "
                    f"or, if it was killed, up to {max(0, left):.0f} s for its lease to expire"
                )
            # replace exactly the stale version we read: a racing job replacing it too, or its
            # holder renewing it, makes this fail, and we look again
            if self.storage.put_if_match(self.uri, self._body(), tag) is None:
                continue
            mine, tag = self._read()  # read back: a store that ignores If-Match
            if mine.get("run_id") != self.run_id:
                raise LeaseHeld(f"{self.dest}: another job took the lease at the same time")
            log.warning("took over the %s lease of %s: %s", reason, self.dest, current)
            self.taken_over, self.taken_over_reason = current, reason
            self._held(tag)
            return
        raise LeaseHeld(f"could not take the lease on {self.dest}: another job keeps taking it")

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew_s):
            try:
                self.renew()
            except Exception as e:  # noqa: BLE001 - a transient store error: try next round
                log.warning("could not renew the lease on %s: %s", self.dest, e)
            if self.lost:
                return

    def renew(self) -> None:
        """Push the expiry forward, only over the version we wrote last; if another job has
        replaced it, or no write took for a whole expiry, the lease is `lost`."""
        with self._lock:
            if self.lost or self._tag is None:
                return
            if time.monotonic() - self._renewed > self.ttl_s:
                self._lose(f"not renewed for {self.ttl_s:g} s (it may have been taken over)")
                return
            new_tag = self.storage.put_if_match(self.uri, self._body(), self._tag)
            if new_tag is not None:
                self._tag, self._renewed = new_tag, time.monotonic()
                return
            try:
                current, tag = self._read()
            except st.NotFound:
                self._lose("deleted")
                return
            if current.get("run_id") == self.run_id:  # ours after all (a retried write)
                self._tag = tag
                return
            self._lose(f"run {current.get('run_id')} on host {current.get('host')}")

    def _lose(self, why: str) -> None:
        self.lost, self.lost_to = True, why
        self._stop.set()
        log.error("lost the lease on %s: %s", self.dest, why)

    def confirm(self) -> None:
        """Renew now, and raise LeaseLost if the lease is no longer ours (before the index is
        written: a job that lost DEST must not index or sweep in it)."""
        if not self.lost:
            self.renew()
        self.check()

    def check(self) -> None:
        """Raise LeaseLost if the renewal found the lease taken (cheap: no store call)."""
        if self.lost:
            raise LeaseLost(f"lost the lease on {self.dest} ({self.lost_to}): another job may "
                            "write there now, so this one stopped without writing the index; "
                            "rerun it once DEST is free (the images of this run are coded again)")

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still the version we wrote."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        with self._lock:
            if self._tag is None or self.lost:
                return
            try:
                self.storage.delete_if_match(self.uri, self._tag)
            except st.StorageError as e:  # it expires on its own
                log.warning("could not release the lease on %s: %s", self.dest, e)
            self._tag = None
