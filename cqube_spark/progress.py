"""Live progress of a long run on a terminal: one line on stderr, redrawn in place beside the JSON log.

    progress.stage("intake")                       # a stage starts (its clock starts)
    progress.step("file 12 of 34", "student_attendance")
    progress.done()                                # the line is removed

Shown only when stderr is a terminal (and ``CQUBE_PROGRESS`` is not ``0``); piped or under a scheduler
nothing is written and the log stays plain JSON lines. The log handler clears the line before each log
record and redraws it after (:func:`around_log`), so the two never mix on screen.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager

_LOCK = threading.RLock()
_STATE: dict = {"stage": None, "t0": None, "run_t0": None, "step": "", "what": "", "shown": False}


def enabled() -> bool:
    try:
        return os.environ.get("CQUBE_PROGRESS", "1") != "0" and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _line() -> str:
    now = time.monotonic()
    run = now - (_STATE["run_t0"] or now)
    stage = now - (_STATE["t0"] or now)
    parts = [f"[cqube {int(run) // 60:02d}:{int(run) % 60:02d}]", f"{_STATE['stage'] or ''} {stage:5.1f}s"]
    if _STATE["step"]:
        parts.append(_STATE["step"])
    if _STATE["what"]:
        parts.append(_STATE["what"])
    return " | ".join(parts)


def _draw() -> None:
    if _STATE["stage"] is None or not enabled():
        return
    sys.stderr.write("\r\033[K" + _line()[:200])
    sys.stderr.flush()
    _STATE["shown"] = True


def _clear() -> None:
    if _STATE["shown"]:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()
        _STATE["shown"] = False


def stage(name: str) -> None:
    """A stage starts: the line shows its name and elapsed time (and the run's)."""
    with _LOCK:
        now = time.monotonic()
        _STATE.update(stage=name, t0=now, step="", what="")
        _STATE["run_t0"] = _STATE["run_t0"] or now
        _draw()


def step(step: str, what: str = "") -> None:
    """Where the stage is, e.g. ``step("file 3 of 34", "school_master")`` or ``step("KPI 2 of 10", "pat")``."""
    with _LOCK:
        _STATE.update(step=step, what=what)
        _draw()


def done() -> None:
    with _LOCK:
        _clear()
        _STATE.update(stage=None, t0=None, run_t0=None, step="", what="")


@contextmanager
def around_log():
    """Clear the progress line while a log record is written, then draw it again."""
    with _LOCK:
        shown = _STATE["shown"]
        _clear()
        try:
            yield
        finally:
            if shown:
                _draw()
