"""Write program enrollments, consents (Cassandra) and user hashes (Redis, PII encrypted) — used by the
integration tests, the demo and ``scripts/bench/exhaust.py``. Bulk paths: ``execute_concurrent_with_args``
on prepared statements, Redis pipelines.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Mapping

from cqube_spark.exhaust.crypto import PiiCipher

ENROLL_CQL = ("INSERT INTO sunbird_programs.program_enrollment (program_id, program_externalid, program_name, "
              "pii_consent_required, user_id, user_locations, organisation_id, organisation_name, user_sub_type, "
              "user_type, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
CONSENT_CQL = ("INSERT INTO sunbird.user_consent (user_id, consumer_id, object_id, object_type, status, created_on, "
               "last_updated_on) VALUES (?, ?, ?, ?, ?, ?, ?)")


def enrollment_args(e: Mapping[str, Any]) -> tuple:
    return (e["program_id"], e.get("program_externalId"), e.get("program_name"), e.get("pii_consent_required"),
            e["user_id"], e.get("user_locations"), e.get("organisation_id"), e.get("organisation_name"),
            e.get("user_sub_type"), e.get("user_type"), e.get("created_at"), e.get("updated_at"))


def consent_args(c: Mapping[str, Any]) -> tuple:
    return (c["user_id"], c.get("consumer_id", "ml"), c["object_id"], c.get("object_type", "Program"),
            c.get("status", "ACTIVE"), c.get("created_on"), c.get("last_updated_on"))


def _insert(session, cql: str, args, concurrency: int, batch_rows: int) -> int:
    """Prepared inserts, ``batch_rows`` rows per UNLOGGED batch (rows of one partition make one mutation;
    on a single node a multi-partition batch only saves round trips), sent concurrently."""
    from cassandra.concurrent import execute_concurrent
    from cassandra.query import BatchStatement, BatchType

    stmt = session.prepare(cql)
    count = 0

    def statements():
        nonlocal count
        batch, n = BatchStatement(batch_type=BatchType.UNLOGGED), 0
        for a in args:
            batch.add(stmt, a)
            n += 1
            count += 1
            if n == batch_rows:
                yield batch, ()
                batch, n = BatchStatement(batch_type=BatchType.UNLOGGED), 0
        if n:
            yield batch, ()

    for _ in execute_concurrent(session, statements(), concurrency=concurrency, raise_on_first_error=True,
                                results_generator=True):
        pass
    return count


def insert_enrollments(session, rows: Iterable[Mapping[str, Any]], concurrency: int = 16,
                       batch_rows: int = 20) -> int:
    return _insert(session, ENROLL_CQL, (enrollment_args(r) for r in rows), concurrency, batch_rows)


def insert_consents(session, rows: Iterable[Mapping[str, Any]], concurrency: int = 16, batch_rows: int = 20) -> int:
    return _insert(session, CONSENT_CQL, (consent_args(r) for r in rows), concurrency, batch_rows)


def put_users(client, users: Iterable[Mapping[str, Any]], cipher: PiiCipher, prefix: str = "user:",
              batch: int = 1000) -> int:
    """HSET user:<id> firstname lastname email phone (email/phone encrypted)."""
    n = 0
    pipe = client.pipeline(transaction=False)
    for u in users:
        mapping = {k: u[k] for k in ("firstname", "lastname") if u.get(k) is not None}
        for k in ("email", "phone"):
            if u.get(k) is not None:
                mapping[k] = cipher.encrypt(u[k])
        mapping["userid"] = u["user_id"]
        pipe.hset(prefix + u["user_id"], mapping=mapping)
        n += 1
        if n % batch == 0:
            pipe.execute()
    pipe.execute()
    return n


def utc(y: int, m: int, d: int, hh: int = 10) -> dt.datetime:
    return dt.datetime(y, m, d, hh, 0, tzinfo=dt.timezone.utc)
