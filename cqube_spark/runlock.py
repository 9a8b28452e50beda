"""One run at a time per data root: an exclusive, named lock under ``<lake>/meta/_locks/<name>``.

    with runlock.hold(ctx, "intake"):      # raises LockHeld when another run holds it (after waiting)
        ...

The lock file holds its owner as JSON (pid, host, run id, since, heartbeat), so a refused run can say who
holds it and since when.

* **Local roots**: ``fcntl.flock`` on the lock file. The kernel drops the lock when its holder's process ends,
  SIGKILL included, so a crashed run never leaves a stale lock on this host: the stale rule is "a lock whose
  process is gone is free". (A root on a network filesystem is only as safe as its ``flock``; NFSv4 and
  most cluster filesystems honour it, some FUSE mounts do not.)
* **S3 roots**: a conditional create, ``PUT`` with ``If-None-Match: *`` (only one of two concurrent creates
  succeeds). The holder rewrites the heartbeat every ``stale/3`` seconds with ``If-Match`` on its own ETag; a
  lock whose heartbeat is older than ``staleSeconds`` is stale (its holder died without releasing it) and is
  deleted with ``If-Match`` on the ETag that was judged stale, so two breakers never delete a fresh lock.
  Limit: a server that ignores ``If-None-Match``/``If-Match`` (older MinIO, some gateways) gives no mutual
  exclusion; the local SeaweedFS and AWS S3 (since 2024) honour both.

Waiting is configurable: ``wait_seconds=0`` refuses at once, otherwise the run polls until the lock is free
or the wait is over. Re-entrant within a process: the runner takes a job's lock before the Spark session
starts (a refused run costs no JVM), and the job takes it again with ``reentrant=True`` (a no-op when this
process holds it already) so that a ``pipeline`` run, whose intake stage has no runner lock, holds it too. A
plain second ``hold`` in the same process conflicts like another process would.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
import time

from cqube_spark import storage

LOCKS = "_locks"
_HELD: dict[str, int] = {}          # lock URI → depth, for locks this process holds (re-entrant)
_HELD_LOCK = threading.Lock()


class LockHeld(RuntimeError):
    """Another run holds the lock (the message names it and since when)."""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def describe(name: str, owner: dict | None) -> str:
    if not owner:
        return f"another {name} holds the lock (its owner record is not written yet)"
    return (f"another {name} holds the lock since {owner.get('since')} "
            f"(run {owner.get('run_id')}, pid {owner.get('pid')} on {owner.get('host')})")


class _LocalLock:
    def __init__(self, path: str):
        self.path, self.fh = path, None

    def try_acquire(self, owner: dict) -> dict | None:
        import fcntl

        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            text = fh.read().strip()
            fh.close()
            try:
                return json.loads(text) if text else {}
            except ValueError:
                return {}
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(owner))
        fh.flush()
        os.fsync(fh.fileno())
        self.fh = fh
        return None

    def release(self) -> None:
        if self.fh is not None:
            self.fh.seek(0)
            self.fh.truncate()     # a free lock names no owner
            self.fh.flush()
            self.fh.close()        # drops the flock
            self.fh = None


class _S3Lock:
    def __init__(self, store: storage.Storage, uri: str, stale_seconds: float):
        loc = storage.parse_uri(uri)
        self.store, self.bucket, self.key, self.stale = store, loc.bucket, loc.key, stale_seconds
        self.etag, self.owner, self._stop, self._beat = None, None, threading.Event(), None
        self.lost: str | None = None

    def _put(self, owner: dict, **cond):
        return self.store.s3.put_object(Bucket=self.bucket, Key=self.key, Body=json.dumps(owner).encode(),
                                        ContentType="application/json", **cond)["ETag"]

    def try_acquire(self, owner: dict) -> dict | None:
        from botocore.exceptions import ClientError

        held: dict = {}
        for _ in range(3):
            try:
                self.etag = self._put(owner, IfNoneMatch="*")
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412",
                                                                     "ConditionalRequestConflict"):
                    raise
            else:
                self.owner = owner
                self._beat = threading.Thread(target=self._heartbeat, daemon=True, name="runlock-heartbeat")
                self._beat.start()
                return None
            try:
                got = self.store.s3.get_object(Bucket=self.bucket, Key=self.key)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    continue          # released in between: try again
                raise
            held = json.loads(got["Body"].read() or b"{}")
            beat = dt.datetime.fromisoformat(held.get("heartbeat") or held.get("since") or _now())
            age = (dt.datetime.now(dt.timezone.utc) - beat).total_seconds()
            if age <= self.stale:
                return held
            try:   # stale: its holder stopped beating; delete exactly the version judged stale
                self.store.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=got["ETag"])
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412", "NoSuchKey"):
                    raise
        return held

    def _heartbeat(self) -> None:
        from botocore.exceptions import ClientError

        while not self._stop.wait(max(self.stale / 3, 0.5)):
            try:
                self.owner["heartbeat"] = _now()
                self.etag = self._put(self.owner, IfMatch=self.etag)
            except ClientError as e:   # someone broke our lock: the run finishes, but this is logged
                self.lost = f"lock {self.key} was taken over: {e}"
                return
            except Exception:  # noqa: BLE001 - a failed beat is retried at the next one
                continue

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=10)
        if self.etag and not self.lost:
            from botocore.exceptions import ClientError
            try:
                self.store.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
            except ClientError:
                pass
        self.etag = None


class hold:
    """Context manager holding ``<lake>/meta/_locks/<name>`` for one run."""

    def __init__(self, ctx, name: str, wait_seconds: float | None = None, stale_seconds: float | None = None,
                 poll_seconds: float = 1.0, reentrant: bool = False):
        p = ctx.params
        self.reentrant = reentrant
        self.ctx, self.name = ctx, name
        self.wait = float(p.get("lockWaitSeconds", 0) if wait_seconds is None else wait_seconds)
        stale = float(p.get("lockStaleSeconds", 900) if stale_seconds is None else stale_seconds)
        self.poll = poll_seconds
        self.uri = storage.join(ctx.roots["lake"], "meta", LOCKS, name)
        loc = storage.parse_uri(self.uri)
        self.impl = _S3Lock(ctx.store, self.uri, stale) if loc.is_s3 else _LocalLock(loc.key)

    def __enter__(self):
        with _HELD_LOCK:
            if self.reentrant and _HELD.get(self.uri):
                _HELD[self.uri] += 1
                self.nested = True
                return self
        self.nested = False
        owner = {"name": self.name, "run_id": self.ctx.run_id, "pid": os.getpid(), "host": socket.gethostname(),
                 "since": _now()}
        owner["heartbeat"] = owner["since"]
        deadline = time.monotonic() + self.wait
        told = False
        while True:
            held = self.impl.try_acquire(owner)
            if held is None:
                with _HELD_LOCK:
                    _HELD[self.uri] = _HELD.get(self.uri, 0) + 1
                self.ctx.log.info("lock acquired", lock=self.uri)
                return self
            if time.monotonic() >= deadline:
                waited = f" (waited {self.wait:g} s)" if self.wait else ""
                raise LockHeld(f"{describe(self.name, held)}; lock {self.uri}{waited}. "
                               f"Try again when it ends (or set lockWaitSeconds to wait).")
            if not told:
                self.ctx.log.info("waiting for lock", lock=self.uri, holder=describe(self.name, held),
                                  wait_s=self.wait)
                told = True
            time.sleep(min(self.poll, max(deadline - time.monotonic(), 0.05)))

    def __exit__(self, *exc):
        with _HELD_LOCK:
            _HELD[self.uri] -= 1
            if _HELD[self.uri]:
                return False
            del _HELD[self.uri]
        lost = getattr(self.impl, "lost", None)
        self.impl.release()
        if lost:
            self.ctx.log.error("lock lost during the run", lock=self.uri, error=lost)
        return False
