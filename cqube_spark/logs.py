"""Structured (JSON-lines) logging with the run id on every line, and secrets kept out.

``get_logger(run_id)`` returns a logger whose records print as one JSON object per line on stderr:
``{"ts": ..., "level": ..., "run_id": ..., "logger": ..., "msg": ..., **fields}``. Values of environment
variables registered with ``register_secret`` (and of keys that look like secrets) are replaced by ``***``.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time

_SECRET_VALUES: set[str] = set()
_SECRET_KEY = re.compile(r"(pass(word)?|secret|token|key|credential|dsn)", re.I)


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
