"""The API's state in PostgreSQL (the same database as ``job_request``): one-time upload grants (``api_upload``)
and the link-signing secret every API process shares (``api_secret``).

A grant: id, file name, declared size, the emission URI it writes, who asked, when it expires, and when it was
used. ``create`` inserts one; ``consume`` marks it used atomically (``UPDATE ... WHERE used_at IS NULL AND
expires_at > now()``) and says why not otherwise; ``release`` gives an upload that failed before its bytes were
stored its link back; ``get`` reads it for the acknowledgement. ``shared_secret`` returns the signing secret,
made once (``INSERT ... ON CONFLICT DO NOTHING``), so a link signed by one API process verifies in every other
and after a restart. psycopg2 with bound parameters only.
"""
from __future__ import annotations

import datetime as dt
import secrets
import uuid
from contextlib import contextmanager
from typing import Iterator

from cqube_spark.intake import ONE_TIME

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
SECRET_DDL = "CREATE TABLE IF NOT EXISTS api_secret (name text PRIMARY KEY, value text NOT NULL)"
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
        cur.execute(SECRET_DDL)


def create(conn, file_name: str, size_bytes: int, emission_root: str, requested_by: str, ttl_s: int) -> dict:
    upload_id = uuid.uuid4().hex
    now = utcnow()
    day = now.strftime("%Y-%m-%d")
    uri = f"{emission_root.rstrip('/')}/{ONE_TIME}/{day}/{upload_id}_{file_name}"   # intake takes each key once
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


def release(conn, upload_id: str) -> None:
    """The upload failed before its bytes were stored (wrong size, a broken connection, a storage error):
    the link may be used again until it expires."""
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE api_upload SET used_at = NULL WHERE upload_id = %s AND received_bytes IS NULL",
                    (upload_id,))


def shared_secret(conn, name: str = "link-signing") -> str:
    """The secret named ``name``, created at random by the first process that asks."""
    with conn, conn.cursor() as cur:
        cur.execute("INSERT INTO api_secret (name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                    (name, secrets.token_hex(32)))
        cur.execute("SELECT value FROM api_secret WHERE name = %s", (name,))
        return cur.fetchone()[0]


def mark_received(conn, upload_id: str, received: int) -> None:
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE api_upload SET received_bytes = %s WHERE upload_id = %s", (received, upload_id))
