"""Named fault points for crash, failure and concurrency tests (off unless ``CQUBE_FAULT`` names one).

    faults.point("intake.before_load")      # in the code, where a crash or failure is worth testing

``CQUBE_FAULT=<name>`` raises :class:`InjectedFault` at that point; ``CQUBE_FAULT=kill:<name>`` kills the
process there with SIGKILL (no cleanup, no finally blocks: a crash); ``CQUBE_FAULT=wait:<name>`` pauses
there until the file ``CQUBE_FAULT_RELEASE`` exists (at most ``CQUBE_FAULT_WAIT_MAX`` seconds, 600), so a
test can hold a process at a known step while it starts another (or stops a service); on arrival it creates
``<CQUBE_FAULT_RELEASE>.waiting``. Tests set it for one run to prove that
the next run recovers; nothing else reads it.

Points: ``intake.locked`` (the intake lock is held, nothing read yet), ``intake.copy`` (before each accepted
file is copied to input/), ``intake.after_copy``, ``intake.load`` (before each file's load),
``intake.after_bronze``, ``intake.after_quarantine``, ``intake.after_silver``, ``intake.before_bookkeeping``,
``publish.after_staging`` (the run is staged under ``_runs/<run_id>/``, readers not yet switched),
``exhaust.claimed`` (a request is read from ``job_request`` and marked PROCESSING; nothing read from
Cassandra or Redis yet), ``exhaust.before_redis`` (the request's Cassandra rows are read and counted; no PII
fetched from Redis, no zip written yet).
"""
from __future__ import annotations

import os
import signal
import time


class InjectedFault(RuntimeError):
    pass


def point(name: str) -> None:
    fault = os.environ.get("CQUBE_FAULT")
    if not fault:
        return
    if fault == name:
        raise InjectedFault(f"fault injected at {name}")
    if fault == f"kill:{name}":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault == f"wait:{name}":
        release = os.environ.get("CQUBE_FAULT_RELEASE", "")
        deadline = time.monotonic() + float(os.environ.get("CQUBE_FAULT_WAIT_MAX", 600))
        if release:
            open(release + ".waiting", "a").close()
        while release and not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.2)
