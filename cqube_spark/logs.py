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
# field names whose values are masked whatever they hold; "key" only as a whole name or a key of a cipher or
# service (an ``unknown_foreign_key`` count or ``repeated_keys`` flag is not a secret)
_SECRET_KEY = re.compile(r"(pass(word)?|secret|token|credential|dsn|^key$|"
                         r"(api|access|private|pii|zip|encryption|signing)[_-]?key)", re.I)


# environment variables whose values are secrets wherever they appear (ids, hosts, ports, users are not)
SECRET_ENV = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|PII_KEY|ZIP_KEY|ENCRYPTION_KEY|PRIVATE_KEY|API_KEY|DSN)", re.I)
NOT_SECRET_ENV = re.compile(r"(_ID|_HOST|_HOSTS|_PORT|_USER|_USERNAME|_FILE|_ENDPOINT)$", re.I)


def register_secret(value: str | None) -> None:
    """Mask ``value`` in every log line from now on; for a URL or DSN with a password of 8 characters or more,
    the password alone too (a shorter one would mask common words: it is masked inside its whole DSN)."""
    if not value or len(value) < 4:
        return
    _SECRET_VALUES.add(value)
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(value).password if "://" in value else None
    except ValueError:
        password = None
    for m in re.finditer(r"(?:^|\s)password\s*=\s*(\S+)", value):  # libpq keyword form
        password = m.group(1).strip("'\"")
    if password and len(password) >= 8:  # a shorter one (e.g. a dev "cqube") only inside its whole DSN
        _SECRET_VALUES.add(password)
        _SECRET_VALUES.add(unquote(password))


def register_env_secrets(env=None) -> None:
    """Register the values of every secret-looking environment variable (``*PASSWORD*``, ``*SECRET*``,
    ``*TOKEN*``, ``CQUBE_PII_KEY``, ``*_DSN``, ...; not ``*_ID``/``*_HOST``/``*_USER``)."""
    import os

    for name, value in (os.environ if env is None else env).items():
        if SECRET_ENV.search(name) and not NOT_SECRET_ENV.search(name):
            register_secret(value)


def redact_text(text: str | None) -> str | None:
    """``text`` with every registered secret replaced by ``***`` (for error columns, messages, files)."""
    return redact(text) if isinstance(text, str) else text


def redact(value):
    if isinstance(value, dict):
        return {k: ("***" if _SECRET_KEY.search(str(k)) and v else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        for secret in sorted(_SECRET_VALUES, key=len, reverse=True):  # a DSN before the password inside it
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

    def emit(self, record):
        from cqube_spark import progress

        with progress.around_log():      # a live progress line (terminals only) is cleared, then redrawn
            super().emit(record)


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
