"""Structured (JSON-lines) logging with the run id on every line, and secrets kept out.

``get_logger(run_id)`` returns a logger whose records print as one JSON object per line on stderr:
``{"ts": ..., "level": ..., "run_id": ..., "logger": ..., "msg": ..., **fields}``. Values of environment
variables registered with ``register_secret`` (and of keys that look like secrets) are replaced by ``***``.

``log_to_file(job)`` also writes the same lines to ``<log dir>/<job>/<YYYY-MM-DD>.log`` (log dir
``CQUBE_LOG_DIR``, default ``<CQUBE_DATA_ROOT>/logs``), one file per job and UTC day; files older than
``KEEP_DAYS`` (7) are deleted when a job starts logging. ``tail(job, n)`` reads the last lines back (the API).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sys
import time

_SECRET_VALUES: set[str] = set()
_SECRET_KEY = re.compile(r"(pass(word)?|secret|token|key|credential|dsn)", re.I)


def register_secret(value: str | None) -> None:
    if value and len(value) >= 4:
        _SECRET_VALUES.add(value)


def redact(value):
    if isinstance(value, dict):
        return {k: ("***" if _SECRET_KEY.search(str(k)) and v else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        for secret in _SECRET_VALUES:
            value = value.replace(secret, "***")
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "run_id": getattr(record, "run_id", None),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        payload.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            payload["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(redact(payload), default=str, sort_keys=False)


class RunLogger(logging.LoggerAdapter):
    """``log.info("loaded", rows=10)`` → one JSON line with run_id and rows."""

    def process(self, msg, kwargs):
        fields = {k: kwargs.pop(k) for k in list(kwargs) if k not in ("exc_info", "stack_info", "stacklevel", "extra")}
        kwargs["extra"] = {"run_id": self.extra.get("run_id"), "fields": fields}
        return msg, kwargs


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (so redirection and capture work)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def get_logger(run_id: str | None = None, name: str = "cqube") -> RunLogger:
    logger = logging.getLogger(name)
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return RunLogger(logger, {"run_id": run_id})


KEEP_DAYS = 7
_JOB_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def log_dir(base: str | None = None) -> str:
    return base or os.environ.get("CQUBE_LOG_DIR") or os.path.join(os.environ.get("CQUBE_DATA_ROOT", "./data"), "logs")


class _DailyFileHandler(logging.Handler):
    """Appends each record to <dir>/<job>/<UTC day>.log (the file is chosen per record: midnight rolls over)."""

    def __init__(self, folder: str):
        super().__init__()
        self.folder = folder

    def emit(self, record):
        try:
            day = time.strftime("%Y-%m-%d", time.gmtime(record.created))
            os.makedirs(self.folder, exist_ok=True)
            with open(os.path.join(self.folder, f"{day}.log"), "a", encoding="utf-8") as fh:
                fh.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging never breaks the job
            self.handleError(record)


def prune(folder: str, keep_days: int = KEEP_DAYS, today: dt.date | None = None) -> None:
    cutoff = (today or dt.datetime.now(dt.timezone.utc).date()) - dt.timedelta(days=keep_days)
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        try:
            if name.endswith(".log") and dt.date.fromisoformat(name[:-4]) < cutoff:
                os.remove(os.path.join(folder, name))
        except ValueError:
            continue


def log_to_file(job: str, name: str = "cqube", base: str | None = None) -> str:
    """Add (once) a per-job daily file handler to the logger; prune files older than KEEP_DAYS."""
    if not _JOB_NAME.match(job):
        raise ValueError(f"job name {job!r}: lower-case letters, digits, '-' or '_'")
    folder = os.path.join(os.path.abspath(log_dir(base)), job)
    logger = logging.getLogger(name)
    get_logger(None, name)
    if not any(isinstance(h, _DailyFileHandler) and h.folder == folder for h in logger.handlers):
        for h in [h for h in logger.handlers if isinstance(h, _DailyFileHandler)]:
            logger.removeHandler(h)
        handler = _DailyFileHandler(folder)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
    os.makedirs(folder, exist_ok=True)
    prune(folder)
    return folder


def tail(job: str, lines: int, day: str | None = None, base: str | None = None) -> list[str]:
    """The last ``lines`` lines of a job's log of ``day`` (default: the newest day with a file)."""
    if not _JOB_NAME.match(job):
        raise ValueError(f"job name {job!r}: lower-case letters, digits, '-' or '_'")
    folder = os.path.join(os.path.abspath(log_dir(base)), job)
    if day is not None:
        dt.date.fromisoformat(day)
        path = os.path.join(folder, f"{day}.log")
    else:
        days = sorted(n for n in os.listdir(folder) if n.endswith(".log")) if os.path.isdir(folder) else []
        if not days:
            raise FileNotFoundError(f"no log files for job {job!r}")
        path = os.path.join(folder, days[-1])
    if not os.path.exists(path):
        raise FileNotFoundError(f"no log file for job {job!r} on {day}")
    with open(path, encoding="utf-8", errors="replace") as fh:
        return [ln.rstrip("\n") for ln in fh.readlines()[-lines:]]
