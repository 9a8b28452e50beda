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
