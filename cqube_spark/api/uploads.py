"""One-time upload grants, table ``api_upload`` in PostgreSQL (the same database as ``job_request``).

A grant: id, file name, declared size, the emission URI it writes, who asked, when it expires, and when it was
used. ``create`` inserts one; ``consume`` marks it used atomically (``UPDATE ... WHERE used_at IS NULL AND
expires_at > now()``) and says why not otherwise; ``get`` reads it for the acknowledgement. psycopg2 with bound
parameters only.
"""
from __future__ import annotations

import datetime as dt
import uuid
from contextlib import contextmanager
from typing import Iterator

DDL = """
CREATE TABLE IF NOT EXISTS api_upload (
  upload_id     text PRIMARY KEY,
  file_name     text NOT NULL,
  size_bytes    bigint NOT NULL,
  emission_uri  text NOT NULL,
  requested_by  text NOT NULL,
  created_at    timestamp NOT NULL,
  expires_at    timestamp NOT NULL,
  used_at       timestamp,
  received_bytes bigint
)"""
COLS = ("upload_id", "file_name", "size_bytes", "emission_uri", "requested_by", "created_at", "expires_at",
        "used_at", "received_bytes")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


@contextmanager
def connect(dsn: str) -> Iterator:
    import psycopg2

    conn = psycopg2.connect(dsn, connect_timeout=5, application_name="cqube-spark-api")
    try:
        yield conn
    finally:
        conn.close()


def ensure_table(conn) -> None:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('ddl:api_upload'))")
        cur.execute(DDL)


def create(conn, file_name: str, size_bytes: int, emission_root: str, requested_by: str, ttl_s: int) -> dict:
    upload_id = uuid.uuid4().hex
    now = utcnow()
    day = now.strftime("%Y-%m-%d")
    uri = f"{emission_root.rstrip('/')}/api/{day}/{upload_id}_{file_name}"
    row = (upload_id, file_name, size_bytes, uri, requested_by, now, now + dt.timedelta(seconds=ttl_s), None, None)
    with conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO api_upload ({', '.join(COLS)}) VALUES ({', '.join(['%s'] * len(COLS))})", row)
    return dict(zip(COLS, row))


def get(conn, upload_id: str) -> dict | None:
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(COLS)} FROM api_upload WHERE upload_id = %s", (upload_id,))
        rec = cur.fetchone()
    return dict(zip(COLS, rec)) if rec else None


def consume(conn, upload_id: str) -> tuple[dict | None, str]:
    """Mark the grant used. Returns (grant, "ok") or (grant or None, reason it cannot be used)."""
    with conn, conn.cursor() as cur:
        cur.execute(f"UPDATE api_upload SET used_at = %s WHERE upload_id = %s AND used_at IS NULL "
                    f"AND expires_at > %s RETURNING {', '.join(COLS)}", (utcnow(), upload_id, utcnow()))
        rec = cur.fetchone()
    if rec:
        return dict(zip(COLS, rec)), "ok"
    g = get(conn, upload_id)
    if g is None:
        return None, "unknown upload id"
    if g["used_at"] is not None:
        return g, "this upload URL was already used"
    return g, "this upload URL has expired"


def mark_received(conn, upload_id: str, received: int) -> None:
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE api_upload SET received_bytes = %s WHERE upload_id = %s", (received, upload_id))
