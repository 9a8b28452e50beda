"""``program-user-events``: Kafka topic → ``sunbird_programs.program_enrollment``, nothing lost.

    cqube-spark run program-user-events                       # availableNow: everything new, then stop
    cqube-spark run program-user-events --continuous          # = --param continuous=true; SIGTERM/SIGINT stop it

Each micro-batch (``foreachBatch``):

1. the batch (already parsed and classified by ``transforms``) is persisted and counted per ``error_code``;
2. rejected events are MERGEd into the dead-letter Delta table (insert-only on topic/partition/offset);
3. valid events are mapped to the table's columns, reduced to the latest per (program_id, user_id), hash
   partitioned on that key and upserted by the executors with ``USING TIMESTAMP <event time>`` (``sink``);
   a failed write is retried ``writeRetries`` times with exponential backoff, then the batch fails;
4. one summary line is logged. Spark commits the batch's offsets to the checkpoint only when the function
   returned: a failed batch stops the query (exit 1) and the next run replays it from the checkpoint
   (at-least-once delivery + idempotent writes = effectively once).

Parameters (``modelParams``, see ``cqube_spark/config/schemas/program-user-events.params.schema.json``): the
topic defaults to ``${CQUBE_ENV:-dev}.ml.programUsers.raw``, the brokers to ``CQUBE_KAFKA_BOOTSTRAP``
(``127.0.0.1:9092``), the checkpoint to ``<lake>/checkpoints/program-user-events`` and the dead letters to
``<lake>/dead_letter/program_user_events``. Cassandra comes from ``CQUBE_CASSANDRA_HOSTS`` (exhaust settings).

Kafka going away: the run fails in bounded time (about ``kafkaTimeoutSeconds`` × (``kafkaRetries`` + 1),
3 minutes by default) with exit 1 and ``StreamFailed: Kafka at <brokers> unreachable ...`` in
``job_runs.error``; the running micro-batch is not committed and the next run replays it (nothing lost,
nothing doubled). Without the bounds Spark's Kafka source retried for Kafka's defaults and reported only
``TimeoutException: Timed out waiting for a node assignment``.

One query per checkpoint: a local checkpoint is locked (``flock`` on ``<checkpoint>.lock``, released when the
process ends, even by SIGKILL) for the query's life; a second query on it is refused with
:class:`StreamFailed` naming the checkpoint and the holder. (S3 checkpoints have no lock: run one job.)
"""
from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from cqube_spark import storage
from cqube_spark.streaming import dead_letter, sink, transforms

NAME = "program-user-events"
TOPIC_SUFFIX = ".ml.programUsers.raw"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"

DEFAULTS: dict[str, Any] = {
    "startingOffsets": "earliest",
    "maxOffsetsPerTrigger": 100000,
    "failOnDataLoss": True,
    "kafkaOptions": {},
    "continuous": False,
    "triggerInterval": "10 seconds",
    "keyspace": "sunbird_programs",
    "table": "program_enrollment",
    "createTable": True,
    "writePartitions": 0,
    "cassandraBatchSize": 10,
    "cassandraConcurrency": 32,
    "cassandraTimeoutSeconds": 30,
    "writeRetries": 3,
    "retryBackoffSeconds": 2.0,
    "stopTimeoutSeconds": 120,
    "kafkaTimeoutSeconds": 60,
    "kafkaRetries": 2,
}

# Set by SIGTERM/SIGINT in continuous mode (or by a caller that wants the running job to stop).
STOP = threading.Event()


class WriteFailed(RuntimeError):
    """A micro-batch's Cassandra write failed after its retries: the batch is not committed."""


@dataclass(frozen=True)
class Settings:
    topic: str
    bootstrap: str
    checkpoint: str
    dead_letters: str
    params: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.params[key]


def default_topic(env: Mapping[str, str] = os.environ) -> str:
    return (env.get("CQUBE_ENV") or "dev") + TOPIC_SUFFIX


def resolve(params: Mapping[str, Any], lake_root: str, env: Mapping[str, str] = os.environ) -> Settings:
    """Parameters with defaults; topic/brokers/locations resolved from the environment and the lake."""
    p = {**DEFAULTS, **params}
    return Settings(
        topic=p.get("topic") or default_topic(env),
        bootstrap=p.get("bootstrapServers") or env.get("CQUBE_KAFKA_BOOTSTRAP") or DEFAULT_BOOTSTRAP,
        checkpoint=storage.spark_path(p.get("checkpointLocation") or storage.join(lake_root, "checkpoints", NAME)),
        dead_letters=storage.spark_path(p.get("deadLetterLocation")
                                        or storage.join(lake_root, "dead_letter", "program_user_events")),
        params=p,
    )


def kafka_options(s: Settings) -> dict[str, str]:
    """Options of the Kafka source. An unreachable broker fails the run in bounded time: each offsets lookup
    of the driver and each fetch of an executor waits ``kafkaTimeoutSeconds``, the driver's lookup is tried
    ``kafkaRetries`` + 1 times (Kafka/Spark defaults otherwise: 60 s, 120 s polls, 3 attempts)."""
    timeout_ms = int(float(s["kafkaTimeoutSeconds"]) * 1000)
    opts = {"kafka.bootstrap.servers": s.bootstrap, "subscribe": s.topic, "startingOffsets": s["startingOffsets"],
            "failOnDataLoss": str(bool(s["failOnDataLoss"])).lower(),
            "kafka.default.api.timeout.ms": str(timeout_ms),
            "kafka.request.timeout.ms": str(min(timeout_ms, 30000)),  # the admin client refuses request > api
            "kafkaConsumer.pollTimeoutMs": str(timeout_ms),
            "fetchOffset.numRetries": str(int(s["kafkaRetries"]) + 1)}
    if s["maxOffsetsPerTrigger"]:
        opts["maxOffsetsPerTrigger"] = str(int(s["maxOffsetsPerTrigger"]))
    for key, value in (s["kafkaOptions"] or {}).items():  # explicit consumer options win
        opts[key if key.startswith("kafka.") else f"kafka.{key}"] = str(value)
    return opts


def kafka_stream(spark, s: Settings):
    """The Kafka source as a streaming DataFrame (key, value, topic, partition, offset, timestamp, ...)."""
    return spark.readStream.format("kafka").options(**kafka_options(s)).load()


@dataclass
class Totals:
    batches: int = 0
    input: int = 0
    valid: int = 0
    upserted: int = 0
    superseded_in_batch: int = 0
    dead_letters: int = 0
    write_retries: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def as_counters(self) -> dict[str, Any]:
        return {"rows": self.input, "batches": self.batches, "valid": self.valid, "upserted": self.upserted,
                "superseded_in_batch": self.superseded_in_batch, "dead_letters": self.dead_letters,
                "write_retries": self.write_retries, "dead_letter_reasons": dict(sorted(self.reasons.items()))}


class BatchWriter:
    """The ``foreachBatch`` function: dead letters to Delta, latest valid events to Cassandra, a summary."""

    def __init__(self, ctx, s: Settings, cassandra_conf, totals: Totals):
        self.ctx, self.s, self.totals = ctx, s, totals
        self.writer = sink.write_partition(
            cassandra_conf, sink.insert_cql(s["keyspace"], s["table"]), batch_size=int(s["cassandraBatchSize"]),
            concurrency=int(s["cassandraConcurrency"]), request_timeout=float(s["cassandraTimeoutSeconds"]))

    def __call__(self, df, batch_id: int) -> None:
        from pyspark import StorageLevel

        t0 = time.monotonic()
        spark = df.sparkSession
        df = df.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            counts = {r["error_code"]: r["count"] for r in df.groupBy("error_code").count().collect()}
            total = sum(counts.values())
            if not total:
                return
            valid_n = counts.pop(None, 0)
            dead_n = sum(counts.values())
            if dead_n:
                dead_letter.append(spark, dead_letter.with_context(transforms.dead_letters(df), batch_id,
                                                                   self.ctx.run_id), self.s.dead_letters)
            upserted = self.write(df, batch_id) if valid_n else 0
        finally:
            df.unpersist()
        t = self.totals
        t.batches += 1
        t.input += total
        t.valid += valid_n
        t.upserted += upserted
        t.superseded_in_batch += valid_n - upserted
        t.dead_letters += dead_n
        for code, n in counts.items():
            t.reasons[code] = t.reasons.get(code, 0) + n
        self.ctx.log.info("micro-batch", batch_id=batch_id, input=total, valid=valid_n, upserted=upserted,
                          superseded_in_batch=valid_n - upserted, dead_letters=dead_n,
                          reasons=dict(sorted(counts.items())), duration_s=round(time.monotonic() - t0, 3))

    def write(self, df, batch_id: int) -> int:
        parts = int(self.s["writePartitions"]) or df.sparkSession.sparkContext.defaultParallelism
        rows = (transforms.to_enrollment(transforms.valid(df))
                .repartition(parts, "program_id", "user_id")      # the window below reuses this partitioning
                .transform(transforms.latest_per_key)
                .sortWithinPartitions("program_id"))              # same-partition rows → one UNLOGGED batch
        retries, backoff = int(self.s["writeRetries"]), float(self.s["retryBackoffSeconds"])
        for attempt in range(retries + 1):
            try:
                return int(sum(rows.rdd.mapPartitions(self.writer).collect()))
            except Exception as e:  # noqa: BLE001 - any failure: retry, then fail the batch
                reason = short_reason(e)
                if attempt >= retries:
                    self.ctx.log.error("micro-batch write failed", batch_id=batch_id, attempts=attempt + 1,
                                       error=reason)
                    raise WriteFailed(f"micro-batch {batch_id}: Cassandra write failed after {attempt + 1} "
                                      f"attempt(s): {reason}") from None
                delay = min(backoff * (2 ** attempt), 60.0)
                self.totals.write_retries += 1
                self.ctx.log.warning("micro-batch write failed, retrying", batch_id=batch_id,
                                     attempt=attempt + 1, retry_in_s=delay, error=reason)
                time.sleep(delay)
        raise AssertionError("unreachable")


class StreamFailed(RuntimeError):
    """The streaming query stopped with an error (offsets of the failed batch are not committed)."""


def failure_line(e: BaseException, s: Settings | None = None) -> str:
    text = str(e)
    for line in text.splitlines():
        if "WriteFailed:" in line:
            return line[line.index("WriteFailed:"):].strip()[:500]
    if s is not None:
        kafka = kafka_failure(text, s)
        if kafka:
            return kafka
    return short_reason(e)


KAFKA_UNREACHABLE = ("TimeoutException", "Cannot fetch record for offset", "Failed to get records",
                     "could not be established", "Timed out")


def kafka_failure(text: str, s: Settings) -> str | None:
    """A Kafka client error of the query as one line naming the brokers (never the consumer options)."""
    for line in text.splitlines():
        i = line.find("org.apache.kafka.common.errors.")
        if i < 0:
            i = line.find("Cannot fetch record for offset")
        if i < 0:
            continue
        detail = line[i:].replace("org.apache.kafka.common.errors.", "").split(" SQLSTATE")[0].strip()[:300]
        if any(m in detail for m in KAFKA_UNREACHABLE):
            attempts = int(s["kafkaRetries"]) + 1
            return (f"Kafka at {s.bootstrap} unreachable: no answer within {float(s['kafkaTimeoutSeconds']):g} s "
                    f"({attempts} attempt(s), kafkaTimeoutSeconds/kafkaRetries); offsets of the running "
                    f"micro-batch are not committed, the next run replays it: {detail}")
        return f"Kafka at {s.bootstrap} failed: {detail}"
    return None


def short_reason(e: BaseException) -> str:
    """The most telling line of a (possibly py4j-wrapped) exception, e.g. the executor's Python error."""
    text = str(e)
    for marker in ("NoHostAvailable", "OperationTimedOut", "Unavailable", "WriteTimeout", "ConnectionRefused",
                   "ConnectionShutdown", "InvalidRequest"):
        for line in text.splitlines():
            if marker in line:
                return line.strip()[:300]
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(e).__name__}: {first}"[:300]


def await_stop(query, log, stop_timeout: float) -> None:
    """Continuous mode: run until SIGTERM/SIGINT (or ``STOP``), let the running micro-batch finish, stop."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda signum, frame: STOP.set())
    try:
        while query.isActive and not STOP.is_set():
            query.awaitTermination(1)  # raises StreamingQueryException when the query failed
        if query.isActive:
            log.info("stop requested: letting the running micro-batch finish", timeout_s=stop_timeout)
            deadline = time.monotonic() + stop_timeout
            while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
                time.sleep(0.2)
            query.stop()  # an interrupted batch is not committed: the next run replays it
            log.info("stream stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def is_spark_55271(e: BaseException) -> bool:
    """Spark 4.1.1's Kafka source NPE in progress reporting (SPARK-55271 / SPARK-57438): after a restart the
    replayed micro-batch (planned but not committed by the failed run) is written and committed, then
    ``KafkaMicroBatchStream.metrics`` fails on its still-unset latest offsets and the query dies."""
    text = str(e)
    return "IterableOps.map" in text and 'scala.Option.get()" is null' in text


def start_with_workaround(writer, continuous: bool, s: Settings, log):
    """Start the query and wait for it (availableNow: until done; continuous: until a stop signal).

    A failure matching SPARK-55271 restarts the query once: the replayed batch is committed by then and the
    next start plans its batches normally. Any other failure raises ``StreamFailed``.
    """
    for attempt in (1, 2):
        query = writer.start()
        try:
            if continuous:
                await_stop(query, log, float(s["stopTimeoutSeconds"]))
            else:
                query.awaitTermination()
            return query
        except Exception as e:  # StreamingQueryException: keep the telling line, not the JVM stack
            if attempt == 1 and is_spark_55271(e):
                log.warning("query failed in Kafka source metrics after the replayed batch (SPARK-55271): "
                            "restarting it once")
                continue
            raise StreamFailed(failure_line(e, s)) from None
        finally:
            if query.isActive:  # e.g. KeyboardInterrupt in availableNow mode
                query.stop()
    raise AssertionError("unreachable")


class checkpoint_lock:
    """Exclusive, non-blocking lock of a local checkpoint for the life of one query (no-op on S3)."""

    def __init__(self, checkpoint: str):
        self.checkpoint = checkpoint
        self.fh = None

    def __enter__(self):
        import fcntl

        loc = storage.parse_uri(self.checkpoint)
        if loc.is_s3:
            return self
        path = loc.key.rstrip("/") + ".lock"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.fh = open(path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "unknown"
            self.fh.close()
            self.fh = None
            raise StreamFailed(f"checkpoint {self.checkpoint} is in use by another streaming query ({holder}); "
                               "refusing to start a second query on it") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
        self.fh.flush()
        return self

    def __exit__(self, *exc):
        if self.fh is not None:
            self.fh.close()  # releases the flock
            self.fh = None


def run(ctx) -> dict[str, Any]:
    from cqube_spark.exhaust import settings as services
    from cqube_spark.exhaust.job import python_workers_like_driver

    s = resolve(ctx.params, ctx.roots["lake"])
    spark = ctx.spark
    python_workers_like_driver(spark)
    cassandra = services.cassandra()
    if s["createTable"]:
        sink.ensure_table(cassandra, s["keyspace"], s["table"])
    totals = Totals()
    stream = kafka_stream(spark, s).transform(transforms.parse_events).transform(transforms.classify)
    writer = (stream.writeStream.foreachBatch(BatchWriter(ctx, s, cassandra, totals))
              .option("checkpointLocation", s.checkpoint))
    continuous = bool(s["continuous"])
    writer = writer.trigger(processingTime=s["triggerInterval"]) if continuous else writer.trigger(availableNow=True)
    STOP.clear()
    ctx.log.info("stream start", topic=s.topic, bootstrap=s.bootstrap, checkpoint=s.checkpoint,
                 dead_letters=s.dead_letters, table=f"{s['keyspace']}.{s['table']}",
                 mode="continuous" if continuous else "availableNow")
    with checkpoint_lock(s.checkpoint):
        query = start_with_workaround(writer, continuous, s, ctx.log)
    counters = totals.as_counters()
    progress = query.lastProgress
    if progress and progress.get("sources"):
        counters["end_offsets"] = progress["sources"][0].get("endOffset")
    counters["topic"] = s.topic
    return counters
