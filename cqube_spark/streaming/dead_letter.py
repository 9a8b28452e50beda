"""The dead-letter Delta table of rejected events (``<lake>/dead_letter/program_user_events`` by default).

One row per rejected Kafka message: the raw bytes (``key``, ``value``) and their text (``raw``), where it
came from (``topic``, ``partition``, ``offset``, ``kafka_timestamp``), why (``error_code``, ``reason``) and
when (``batch_id``, ``run_id``, ``dead_lettered_at``). The write is a MERGE on (topic, partition, offset)
that only inserts, so a replayed micro-batch (after a failure, or from a reset checkpoint) adds nothing twice;
the MERGE condition carries the batch's offset range so Delta skips the files of other ranges.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cqube_spark.streaming.schema import DEAD_LETTER


def with_context(df: DataFrame, batch_id: int, run_id: str) -> DataFrame:
    """Rejected rows (``transforms.dead_letters``) + batch id, run id and the time they were kept."""
    return df.select(*[c for c in DEAD_LETTER.fieldNames() if c in df.columns],
                     F.lit(batch_id).cast("long").alias("batch_id"), F.lit(run_id).alias("run_id"),
                     F.current_timestamp().alias("dead_lettered_at")).select(*DEAD_LETTER.fieldNames())


def ensure(spark, path: str) -> None:
    from delta.tables import DeltaTable

    (DeltaTable.createIfNotExists(spark).location(path).addColumns(DEAD_LETTER)
     .property("description", "rejected program-user events (raw message, Kafka position, reason)").execute())


def append(spark, df: DataFrame, path: str) -> None:
    """Insert the rows whose (topic, partition, offset) is not in the table yet."""
    from delta.tables import DeltaTable

    ensure(spark, path)
    bounds = df.groupBy("topic", "partition").agg(F.min("offset").alias("lo"), F.max("offset").alias("hi")).collect()
    if not bounds:
        return
    ranges = " OR ".join(
        f"(t.topic = '{_sql_str(b['topic'])}' AND t.partition = {int(b['partition'])} "
        f"AND t.offset BETWEEN {int(b['lo'])} AND {int(b['hi'])})" for b in bounds)
    (DeltaTable.forPath(spark, path).alias("t")
     .merge(df.alias("s"), f"({ranges}) AND t.topic = s.topic AND t.partition = s.partition "
                           "AND t.offset = s.offset")
     .whenNotMatchedInsertAll().execute())


def _sql_str(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("'", "\\'")
