"""The ``job_request`` table in PostgreSQL: create, submit, claim, finish, status.

psycopg2 with bound parameters only; the one identifier (the table name) is a constant. Request ids are a
stable hash of tag, job, requester, channel, day and the canonical request data, so the same request on the
same day maps to the same row.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo

from cqube_spark.exhaust import settings
from cqube_spark.exhaust.filters import canonical_json

DDL_FILE = Path(__file__).resolve().parents[2] / "configs" / "exhaust" / "job_request.sql"
SUBMITTED, PROCESSING, SUCCESS, FAILED = "SUBMITTED", "PROCESSING", "SUCCESS", "FAILED"
COLUMNS = ("tag", "request_id", "job_id", "status", "request_data", "requested_by", "requested_channel",
           "dt_job_submitted", "download_urls", "dt_file_created", "dt_job_completed", "execution_time",
           "err_message", "iteration", "encryption_key", "batch_number", "processed_batches")

# request_data as text: parsed (and validated) by the job, never by the driver library
SELECT_COLUMNS = ", ".join("request_data::text AS request_data" if c == "request_data" else c for c in COLUMNS)


@dataclass
class JobRequest:
    tag: str
    request_id: str
    job_id: str
    status: str
    request_data: Any
    requested_by: str
    requested_channel: str
    dt_job_submitted: dt.datetime | None = None
    download_urls: list[str] | None = None
    dt_file_created: dt.datetime | None = None
    dt_job_completed: dt.datetime | None = None
    execution_time: int | None = None
    err_message: str | None = None
    iteration: int = 0
    encryption_key: str | None = None
    batch_number: int | None = None
    processed_batches: str | None = None

    def __repr__(self) -> str:  # never print the encryption key
        return f"JobRequest(tag={self.tag!r}, request_id={self.request_id!r}, status={self.status!r})"


def today(tz: str | None = None) -> dt.date:
    return dt.datetime.now(ZoneInfo(tz or os.environ.get("CQUBE_TIMEZONE", "Asia/Kolkata"))).date()


def request_id(tag: str, job_id: str, requested_by: str, channel: str, day: dt.date, request_data: Any) -> str:
    """Stable id: sha256 over the parts (request data canonicalised), 32 upper-case hex characters."""
    data = json.loads(request_data) if isinstance(request_data, str) else request_data
    text = "\x1f".join([tag, job_id, requested_by, channel, day.isoformat(), canonical_json(data)])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32].upper()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class PostgresFailed(RuntimeError):
    """PostgreSQL failed under a run (server stopped, connection lost): the message names the endpoint
    (host:port/database, never the DSN's password) and the server's first line."""


def endpoint(dsn: str | None = None) -> str:
    """``host:port/database`` of a DSN (no user, no password)."""
    from psycopg2.extensions import parse_dsn

    try:
        d = parse_dsn(dsn or settings.postgres_dsn())
    except Exception:  # noqa: BLE001 - a DSN psycopg2 cannot parse is reported by connect() itself
        return "?"
    return f"{d.get('host', 'localhost')}:{d.get('port', 5432)}/{d.get('dbname', '')}"


def failure(e: BaseException, doing: str) -> PostgresFailed:
    """A :class:`PostgresFailed` for a psycopg2 error; the first one of the chain gives the reason (a closed
    connection's ``connection already closed`` hides the ``server closed the connection`` behind it)."""
    import psycopg2

    root = e
    while isinstance(root.__context__, psycopg2.Error):
        root = root.__context__
    first = (str(root).strip().splitlines() or [""])[0]
    return PostgresFailed(f"PostgreSQL at {endpoint()} failed while {doing}: {type(root).__name__}: {first}")


@contextmanager
def connect(dsn: str | None = None) -> Iterator[Any]:
    import psycopg2

    conn = psycopg2.connect(dsn or settings.postgres_dsn(), connect_timeout=10,
                            application_name="cqube-spark-exhaust")
    try:
        yield conn
    finally:
        conn.close()


def ensure_table(conn) -> None:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("ddl:job_request"),))
        cur.execute(DDL_FILE.read_text())


def _row(cur, rec) -> JobRequest:
    names = [d.name for d in cur.description]
    return JobRequest(**dict(zip(names, rec)))


def get(conn, request_id_: str, tag: str | None = None) -> JobRequest | None:
    with conn, conn.cursor() as cur:
        if tag is None:
            cur.execute(f"SELECT {SELECT_COLUMNS} FROM job_request WHERE request_id = %s "
                        "ORDER BY dt_job_submitted DESC LIMIT 1", (request_id_,))
        else:
            cur.execute(f"SELECT {SELECT_COLUMNS} FROM job_request WHERE tag = %s AND request_id = %s",
                        (tag, request_id_))
        rec = cur.fetchone()
        return _row(cur, rec) if rec else None


def submit(conn, *, tag: str, job_id: str, requested_by: str, channel: str, request_data: Any,
           encryption_key: str | None, day: dt.date | None = None) -> tuple[JobRequest, str]:
    """Insert a SUBMITTED request, or return the existing one of the same day.

    Returns (request, outcome) where outcome is ``created``, ``existing`` or ``resubmitted`` (a FAILED row
    is set back to SUBMITTED with a fresh iteration count).
    """
    data = json.loads(request_data) if isinstance(request_data, str) else request_data
    rid = request_id(tag, job_id, requested_by, channel, day or today(), data)
    now = utcnow()
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO job_request (tag, request_id, job_id, status, request_data, requested_by, "
            "requested_channel, dt_job_submitted, iteration, encryption_key) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 0, %s) ON CONFLICT (tag, request_id) DO NOTHING",
            (tag, rid, job_id, SUBMITTED, json.dumps(data), requested_by, channel, now, encryption_key))
        created = cur.rowcount == 1
        outcome = "created"
        if not created:
            cur.execute("SELECT status FROM job_request WHERE tag = %s AND request_id = %s FOR UPDATE",
                        (tag, rid))
            (status,) = cur.fetchone()
            outcome = "existing"
            if status == FAILED:
                cur.execute(
                    "UPDATE job_request SET status = %s, iteration = 0, err_message = NULL, "
                    "dt_job_submitted = %s, encryption_key = %s, download_urls = NULL, "
                    "dt_job_completed = NULL, execution_time = NULL WHERE tag = %s AND request_id = %s",
                    (SUBMITTED, now, encryption_key, tag, rid))
                outcome = "resubmitted"
    return get(conn, rid, tag), outcome


def insert_raw(conn, req: JobRequest) -> None:
    """Insert a row as given (no validation): for operators and tests simulating upstream writers."""
    values = [getattr(req, c) for c in COLUMNS]
    values[COLUMNS.index("request_data")] = (req.request_data if isinstance(req.request_data, str)
                                             else json.dumps(req.request_data))
    values[COLUMNS.index("dt_job_submitted")] = req.dt_job_submitted or utcnow()
    with conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO job_request ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})",
                    values)


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def try_lock_job(conn, job_id: str) -> bool:
    """Session-level advisory lock: one run of a job at a time (held until the connection closes)."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", (_lock_key("run:" + job_id),))
        return bool(cur.fetchone()[0])


def pending(conn, job_id: str, max_iterations: int) -> list[JobRequest]:
    """SUBMITTED rows, FAILED ones still under the retry limit, and PROCESSING ones left by a crashed run
    (callers hold the job lock, so no other run is working on them)."""
    with conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT {SELECT_COLUMNS} FROM job_request WHERE job_id = %s AND "
            "(status IN (%s, %s) OR (status = %s AND iteration < %s)) "
            "ORDER BY dt_job_submitted, tag, request_id",
            (job_id, SUBMITTED, PROCESSING, FAILED, max_iterations))
        return [_row(cur, r) for r in cur.fetchall()]


def mark_processing(conn, req: JobRequest) -> None:
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE job_request SET status = %s WHERE tag = %s AND request_id = %s",
                    (PROCESSING, req.tag, req.request_id))


def mark_success(conn, req: JobRequest, urls: list[str], file_created: dt.datetime, execution_ms: int) -> None:
    with conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE job_request SET status = %s, download_urls = %s, dt_file_created = %s, "
            "dt_job_completed = %s, execution_time = %s, err_message = NULL "
            "WHERE tag = %s AND request_id = %s",
            (SUCCESS, urls, file_created, utcnow(), execution_ms, req.tag, req.request_id))


def mark_failed(conn, req: JobRequest, message: str, execution_ms: int) -> None:
    with conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE job_request SET status = %s, err_message = %s, iteration = iteration + 1, "
            "dt_job_completed = %s, execution_time = %s, download_urls = NULL "
            "WHERE tag = %s AND request_id = %s",
            (FAILED, message[:1000], utcnow(), execution_ms, req.tag, req.request_id))
