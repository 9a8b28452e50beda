"""Upsert enrollments into Cassandra from the executors (python cassandra-driver, one connection per task).

Why ``USING TIMESTAMP <event time>`` and not a lightweight transaction
----------------------------------------------------------------------
"A late older event must not overwrite a newer one" needs a comparison with what is stored. Options:

* LWT ``UPDATE ... IF updated_at <= ?`` / ``INSERT ... IF NOT EXISTS``: a Paxos round (4 round trips, serial
  per partition) for every event, and ``updated_at`` is a *date*: two updates on the same day cannot be
  ordered by it, so it would need an extra column the exhaust does not know about.
* ``USING TIMESTAMP``: every cell carries a write timestamp and Cassandra keeps the cell with the highest one
  (last write wins). Writing each event with its own event time (``updatedAt`` in microseconds; else
  ``createdAt``; else the Kafka timestamp) makes "latest event wins" Cassandra's normal reconciliation: no
  read, no Paxos, order of arrival irrelevant, and a replay writes identical cells (idempotent), which is
  what at-least-once delivery needs. An INSERT of the full row also writes nulls (tombstones) at that
  timestamp and replaces the whole ``user_locations`` map (collection tombstone at timestamp - 1), so a newer
  event fully replaces an older one and an older one changes nothing.

  The price: every writer of ``program_enrollment`` must use event-time timestamps (a plain write stamped
  with "now" would shadow every event older than now), and two different events of the same key with the same
  ``updatedAt`` millisecond are resolved cell by cell. Within a micro-batch ``latest_per_key`` keeps one row per
  key (event time, then Kafka position), so only such same-millisecond events in *different* batches can mix.

Rows of one Spark partition are sorted by ``program_id`` and sent as small UNLOGGED batches of rows of the
same Cassandra partition (one mutation per batch on the server), ``execute_concurrent`` keeping
``concurrency`` requests in flight. Any failure raises: the task fails, the micro-batch fails, and Spark does
not commit its offsets.
"""
from __future__ import annotations

import re
from typing import Iterable, Iterator

from cqube_spark.exhaust.settings import CassandraSettings
from cqube_spark.streaming.schema import ENROLLMENT

# program_enrollment's columns (configs/exhaust/schema.cql; unquoted CQL names are lower case).
TABLE_COLUMNS = tuple(f.lower() for f in ENROLLMENT.fieldNames() if f != "write_ts")

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")


def insert_cql(keyspace: str, table: str) -> str:
    """The prepared upsert: every column of ``program_enrollment`` + ``USING TIMESTAMP ?``."""
    for name in (keyspace, table):
        if not _IDENT.match(name):
            raise ValueError(f"not a valid CQL identifier: {name!r}")
    cols = ", ".join(TABLE_COLUMNS)
    marks = ", ".join("?" for _ in TABLE_COLUMNS)
    return f"INSERT INTO {keyspace}.{table} ({cols}) VALUES ({marks}) USING TIMESTAMP ?"


def row_args(row) -> tuple:
    """An enrollment Row (schema.ENROLLMENT order: the table's columns, then write_ts) → bind values."""
    values = tuple(row)
    locations = values[5]
    return values[:5] + (dict(locations) if locations else None,) + values[6:]


def group_rows(rows: Iterable, batch_size: int) -> Iterator[list[tuple]]:
    """Rows sorted by program_id → lists of bind tuples: consecutive rows of one program, at most batch_size."""
    pending: list[tuple] = []
    for row in rows:
        args = row_args(row)
        if pending and (args[0] != pending[0][0] or len(pending) >= batch_size):
            yield pending
            pending = []
        pending.append(args)
    if pending:
        yield pending


def group_statements(rows: Iterable, prepared, batch_size: int) -> Iterator:
    """Bound inserts, or UNLOGGED batches of rows of one Cassandra partition (program_id)."""
    from cassandra.query import BatchStatement, BatchType

    for group in group_rows(rows, batch_size):
        if len(group) == 1:
            yield prepared.bind(group[0])
            continue
        batch = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=prepared.consistency_level)
        for args in group:
            batch.add(prepared, args)
        yield batch


def write_partition(conf: CassandraSettings, cql: str, batch_size: int = 10, concurrency: int = 32,
                    request_timeout: float = 30.0):
    """mapPartitions function: enrollment rows → [rows written]. Raises on the first failed write."""

    def fn(rows: Iterable) -> Iterator[int]:
        from cassandra import ConsistencyLevel
        from cassandra.concurrent import execute_concurrent

        it = iter(rows)
        try:
            first = next(it)
        except StopIteration:
            yield 0
            return
        cluster = conf.cluster()
        try:
            session = cluster.connect()
            session.default_timeout = request_timeout
            prepared = session.prepare(cql)
            prepared.consistency_level = ConsistencyLevel.LOCAL_QUORUM
            written = 0

            def counted():
                nonlocal written
                for row in _chain(first, it):
                    written += 1
                    yield row

            statements = ((s, None) for s in group_statements(counted(), prepared, max(1, batch_size)))
            for ok, result in execute_concurrent(session, statements, concurrency=concurrency,
                                                 raise_on_first_error=True, results_generator=True):
                if not ok:  # raise_on_first_error raises already; keep the guarantee explicit
                    raise result
            yield written
        finally:
            cluster.shutdown()

    return fn


def _chain(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest


def ensure_table(conf: CassandraSettings, keyspace: str, table: str, timeout: float = 60) -> None:
    """CREATE KEYSPACE/TABLE IF NOT EXISTS from the exhaust's ``configs/exhaust/schema.cql`` definitions
    (the keyspace and table names swapped in when they are not the defaults)."""
    from cqube_spark.exhaust.cli import CQL_FILE, cql_statements

    wanted = []
    for stmt in cql_statements(CQL_FILE.read_text()):
        if "sunbird_programs" not in stmt:
            continue
        stmt = stmt.replace("sunbird_programs.program_enrollment", f"{keyspace}.{table}")
        stmt = re.sub(r"\bsunbird_programs\b", keyspace, stmt)
        wanted.append(stmt)
    if len(wanted) < 2:
        raise RuntimeError(f"{CQL_FILE}: no sunbird_programs keyspace/table definitions found")
    cluster = conf.cluster()
    try:
        session = cluster.connect()
        for stmt in wanted:
            session.execute(stmt, timeout=timeout)
    finally:
        cluster.shutdown()
