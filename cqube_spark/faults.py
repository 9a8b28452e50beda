"""Named fault points for crash and failure tests (off unless ``CQUBE_FAULT`` names one).

    faults.point("intake.before_load")      # in the code, where a crash or failure is worth testing

``CQUBE_FAULT=<name>`` raises :class:`InjectedFault` at that point; ``CQUBE_FAULT=kill:<name>`` kills the
process there with SIGKILL (no cleanup, no finally blocks: a crash). Tests set it for one run to prove that
the next run recovers; nothing else reads it.
"""
from __future__ import annotations

import os
import signal


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
