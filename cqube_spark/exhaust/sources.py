"""Parallel reads of Cassandra and Redis inside Spark executors (no Spark Cassandra Connector exists for
Spark 4 / Scala 2.13, so the split is done here, with the Python drivers, one connection per partition).

* ``program_enrollment``: a ``program_id`` filter is a single Cassandra partition; it is read in parallel by
  slicing the clustering key (``user_id``) into ranges (``enrollmentSlices``) — each Spark partition runs a
  prepared ``WHERE program_id = ? AND user_id >= ? AND user_id < ?`` and pages through it. Slices are cut on
  the leading hex digits (user ids are UUIDs); any other id still lands in exactly one slice.
* ``user_consent``: partitioned by ``user_id``, so consents of one object are found by splitting the token
  ring into ``tokenRanges`` ranges, each read with ``token(user_id) > ? AND token(user_id) <= ?
  AND object_id = ? ALLOW FILTERING`` (server-side filter). A ``user_id`` filter reads only those partitions.
* Redis ``user:<id>`` hashes: ``pii_lines`` fetches them with pipelined HMGETs in batches of
  ``redisBatchSize``, only for rows with an active consent, decrypts email/phone in the same partition and
  formats CSV lines there, so decrypted PII never goes through a Spark shuffle, cache or file.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any, Iterable, Iterator, Sequence

from cqube_spark.exhaust.settings import CassandraSettings

MIN_TOKEN, MAX_TOKEN = -(2 ** 63), 2 ** 63 - 1
UTC = dt.timezone.utc


# ----------------------------------------------------------------------------------------- splitting
def clustering_slices(n: int) -> list[tuple[str | None, str | None]]:
    """n half-open ranges [lo, hi) over text keys covering everything (None = unbounded)."""
    if n <= 1:
        return [(None, None)]
    bounds = sorted({format(i * 256 // n, "02x") for i in range(1, n)})
    edges: list[str | None] = [None, *bounds, None]
    return list(zip(edges[:-1], edges[1:]))


def token_ranges(n: int) -> list[tuple[int, int]]:
    """n ranges (lo, hi] over the Murmur3 ring, covering every token."""
    n = max(1, n)
    step = (MAX_TOKEN - MIN_TOKEN) // n
    edges = [MIN_TOKEN + i * step for i in range(n)] + [MAX_TOKEN]
    return list(zip(edges[:-1], edges[1:]))


def enrollment_schema(location_keys: Sequence[str]):
    from pyspark.sql import types as T

    s = T.StringType()
    fields = [T.StructField("program_id", s), T.StructField("program_externalId", s),
              T.StructField("program_name", s), T.StructField("pii_consent_required", T.BooleanType()),
              T.StructField("user_id", s), T.StructField("organisation_id", s),
              T.StructField("organisation_name", s), T.StructField("user_sub_type", s),
              T.StructField("user_type", s), T.StructField("created_at", T.DateType()),
              T.StructField("updated_at", T.DateType())]
    fields += [T.StructField(f"loc_{k}", s) for k in location_keys]
    return T.StructType(fields)


def consent_schema():
    from pyspark.sql import types as T

    return T.StructType([T.StructField("user_id", T.StringType()), T.StructField("status", T.StringType()),
                         T.StructField("last_updated_on", T.TimestampType())])


def _date(value) -> dt.date | None:
    if value is None:
        return None
    try:
        return value.date() if hasattr(value, "date") else value
    except (ValueError, OverflowError):  # a Cassandra date outside Python's range
        return None


def _ts(value) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# ------------------------------------------------------------------------------- executor functions
def _session(conf: CassandraSettings, fetch_size: int):
    from cassandra.query import tuple_factory

    cluster = conf.cluster()
    session = cluster.connect()
    session.row_factory = tuple_factory
    session.default_fetch_size = fetch_size
    session.default_timeout = 60
    return cluster, session


SAFE_KEY = re.compile(r"^[A-Za-z0-9_]+$")


def enrollment_cql(location_keys: Sequence[str]) -> str:
    """The partition read; map entries are selected server-side (``user_locations['k']``: cheaper to decode
    than the whole map). Keys are checked identifiers (allowlisted by the request validation)."""
    for k in location_keys:
        if not SAFE_KEY.match(k):
            raise ValueError(f"unsafe user_locations key {k!r}")
    locs = "".join(f", user_locations['{k}']" for k in location_keys)
    return ("SELECT program_externalid, program_name, pii_consent_required, user_id, organisation_id, "
            "organisation_name, user_sub_type, user_type, created_at, updated_at" + locs +
            " FROM sunbird_programs.program_enrollment WHERE program_id = ?")


def read_enrollment_slices(conf: CassandraSettings, program_id: str, location_keys: Sequence[str],
                           fetch_size: int = 5000):
    """mapPartitions function: (lo, hi) user_id slices of one program → enrollment tuples."""
    base = enrollment_cql(location_keys)

    def fn(slices: Iterable[tuple[str | None, str | None]]) -> Iterator[tuple]:
        slices = list(slices)
        if not slices:
            return
        cluster, session = _session(conf, fetch_size)
        try:
            prepared = {}
            for lo, hi in slices:
                shape = (lo is not None, hi is not None)
                if shape not in prepared:
                    cql = base + (" AND user_id >= ?" if shape[0] else "") + (" AND user_id < ?" if shape[1] else "")
                    prepared[shape] = session.prepare(cql)
                args = [program_id] + [v for v in (lo, hi) if v is not None]
                for r in session.execute(prepared[shape], args):
                    yield (program_id, *r[:8], _date(r[8]), _date(r[9]), *r[10:])
        finally:
            cluster.shutdown()

    return fn


def read_consent_ranges(conf: CassandraSettings, object_id: str, fetch_size: int = 5000):
    """mapPartitions function: token ranges (lo, hi] → (user_id, status, last_updated_on) of one object."""

    def fn(ranges: Iterable[tuple[int, int]]) -> Iterator[tuple]:
        ranges = list(ranges)
        if not ranges:
            return
        cluster, session = _session(conf, fetch_size)
        try:
            stmt = session.prepare(
                "SELECT user_id, status, last_updated_on FROM sunbird.user_consent "
                "WHERE token(user_id) > ? AND token(user_id) <= ? AND object_id = ? ALLOW FILTERING")
            for lo, hi in ranges:
                for r in session.execute(stmt, (lo, hi, object_id)):
                    yield (r[0], r[1], _ts(r[2]))
        finally:
            cluster.shutdown()

    return fn


def read_consent_users(conf: CassandraSettings, object_id: str, fetch_size: int = 5000):
    """mapPartitions function: user ids → their consent rows for one object (partition reads)."""

    def fn(user_ids: Iterable[str]) -> Iterator[tuple]:
        user_ids = list(user_ids)
        if not user_ids:
            return
        cluster, session = _session(conf, fetch_size)
        try:
            stmt = session.prepare(
                "SELECT user_id, status, last_updated_on FROM sunbird.user_consent "
                "WHERE user_id = ? AND object_id = ? ALLOW FILTERING")
            for uid in user_ids:
                for r in session.execute(stmt, (uid, object_id)):
                    yield (r[0], r[1], _ts(r[2]))
        finally:
            cluster.shutdown()

    return fn


def _partitions(spark, items: int, requested: int = 0) -> int:
    """Spark partitions for n read units: one connection per partition, so no more than the parallelism."""
    want = requested or spark.sparkContext.defaultParallelism
    return max(1, min(items, want))


def read_enrollment(spark, conf: CassandraSettings, program_id: str, location_keys: Sequence[str],
                    slices: int = 16, fetch_size: int = 5000, partitions: int = 0):
    parts = clustering_slices(slices)
    rdd = spark.sparkContext.parallelize(parts, _partitions(spark, len(parts), partitions)).mapPartitions(
        read_enrollment_slices(conf, program_id, location_keys, fetch_size))
    return spark.createDataFrame(rdd, enrollment_schema(location_keys), verifySchema=False)


def read_consent(spark, conf: CassandraSettings, object_id: str, user_ids: Sequence[str] = (),
                 ranges: int = 16, fetch_size: int = 5000, partitions: int = 0):
    if user_ids:
        ids = sorted(set(user_ids))
        rdd = spark.sparkContext.parallelize(ids, _partitions(spark, len(ids), partitions)).mapPartitions(
            read_consent_users(conf, object_id, fetch_size))
    else:
        parts = token_ranges(ranges)
        rdd = spark.sparkContext.parallelize(parts, _partitions(spark, len(parts), partitions)).mapPartitions(
            read_consent_ranges(conf, object_id, fetch_size))
    return spark.createDataFrame(rdd, consent_schema(), verifySchema=False)


# --------------------------------------------------------------------------------- PII + CSV lines
def csv_escape(value: str) -> str:
    if any(ch in value for ch in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def pii_lines(redis_url: str, pii_key: bytes | None, template: Sequence[tuple[str, Any]], quoted: Sequence[str],
              encrypted: Sequence[str], key_prefix: str = "user:", batch_size: int = 1000):
    """mapPartitions function: (segment texts..., _uid, _need_pii) rows → CSV text chunks.

    ``template`` (``report.csv_template``) says where the pre-joined non-PII segments and the PII fields go.
    For rows whose ``_need_pii`` is true, HMGET ``<key_prefix><_uid>`` firstname lastname email phone
    (pipelined per batch of ``batch_size``), decrypt the ``encrypted`` fields and quote the ``quoted`` ones.
    """
    quoted = frozenset(quoted)
    encrypted = frozenset(encrypted)
    template = list(template)
    n_seg = sum(1 for kind, _ in template if kind == "seg")
    uid_idx, need_idx = n_seg, n_seg + 1

    def fn(rows: Iterable) -> Iterator[str]:
        client = cipher = None
        batch: list = []

        def line(r, pii: dict | None) -> str:
            parts = []
            for kind, ref in template:
                if kind == "seg":
                    parts.append(r[ref])
                else:
                    v = pii.get(ref) if pii else None
                    parts.append(csv_escape(v) if v else "")
            return ",".join(parts)

        def flush() -> str:
            nonlocal client, cipher
            need = [r for r in batch if r[need_idx]]
            fetched: list = []
            if need:
                if client is None:
                    import redis

                    from cqube_spark.exhaust.crypto import PiiCipher, PiiError

                    if pii_key is None:
                        raise PiiError("CQUBE_PII_KEY is not set")
                    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=30)
                    cipher = PiiCipher(pii_key)
                pipe = client.pipeline(transaction=False)
                for r in need:
                    pipe.hmget(key_prefix + r[uid_idx], "firstname", "lastname", "email", "phone")
                fetched = pipe.execute()
            it = iter(fetched)
            out = []
            for r in batch:
                pii = None
                if r[need_idx]:
                    first, last, email, phone = next(it)
                    pii = {"username": " ".join(v.strip() for v in (first, last) if v and v.strip()) or None,
                           "email": email or None, "phone": phone or None}
                    for name in ("email", "phone"):
                        if name in encrypted and pii[name]:
                            pii[name] = cipher.decrypt(pii[name])
                    for name in quoted:
                        if pii.get(name):
                            pii[name] = f"'{pii[name]}'"
                out.append(line(r, pii))
            batch.clear()
            out.append("")
            return "\n".join(out)

        for row in rows:
            batch.append(row)
            if len(batch) >= batch_size:
                yield flush()
        if batch:
            yield flush()
        if client is not None:
            client.close()

    return fn
