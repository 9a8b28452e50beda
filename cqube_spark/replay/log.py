"""``lake/meta/replay_log``: one row per replay, retention pass, vacuum or refused request (upserted by id).

Statuses: ``REFUSED`` (invalid request, nothing deleted), ``PLANNED`` (validated, undo point recorded),
``RUNNING`` (deleting / recomputing), ``DONE``, ``UNDOING``, ``UNDONE``. A row left ``PLANNED``/``RUNNING``
by a crash is resumed by the next replay run. JSON columns hold the request, the resolved facts (files,
exam codes), the Delta version of every target table before (``versions_json``) and after
(``post_versions_json``) the replay, and the rows each table lost (``deleted_json``).
Each replay's row is also written as ``<output>/data_replay/<replay_id>.json``.
"""
from __future__ import annotations

import datetime as dt
import json

from pyspark.sql import functions as F
from pyspark.sql import types as T

from cqube_spark import storage

SCHEMA = T.StructType([
    T.StructField("replay_id", T.StringType(), False),
    T.StructField("kind", T.StringType()),            # replay | retention | vacuum | refused
    T.StructField("status", T.StringType()),
    T.StructField("requested_by", T.StringType()),
    T.StructField("reason", T.StringType()),
    T.StructField("request_file", T.StringType()),
    T.StructField("request_sha256", T.StringType()),
    T.StructField("request_json", T.StringType()),
    T.StructField("resolved_json", T.StringType()),
    T.StructField("versions_json", T.StringType()),
    T.StructField("post_versions_json", T.StringType()),
    T.StructField("deleted_json", T.StringType()),
    T.StructField("periods_json", T.StringType()),
    T.StructField("run_id", T.StringType()),
    T.StructField("created_at", T.TimestampType()),
    T.StructField("updated_at", T.TimestampType()),
    T.StructField("done_at", T.TimestampType()),
    T.StructField("undone_at", T.TimestampType()),
    T.StructField("error", T.StringType()),
])
FIELDS = [f.name for f in SCHEMA.fields]
OPEN = ("PLANNED", "RUNNING")


def new_row(replay_id: str, kind: str, status: str, **values) -> dict:
    now = dt.datetime.now().replace(microsecond=0)
    row = {k: None for k in FIELDS}
    row.update(replay_id=replay_id, kind=kind, status=status, created_at=now, updated_at=now)
    row.update(values)
    return row


class ReplayLog:
    def __init__(self, ctx):
        self.ctx = ctx
        self.spark = ctx.spark
        self.path = ctx.lake("meta", "replay_log")

    def exists(self) -> bool:
        from delta.tables import DeltaTable

        return DeltaTable.isDeltaTable(self.spark, self.path)

    def upsert(self, row: dict) -> None:
        from delta.tables import DeltaTable

        row["updated_at"] = dt.datetime.now().replace(microsecond=0)
        df = self.spark.createDataFrame([tuple(row.get(k) for k in FIELDS)], SCHEMA)
        if not self.exists():
            df.write.format("delta").mode("append").save(self.path)
        else:
            (DeltaTable.forPath(self.spark, self.path).alias("t")
             .merge(df.alias("s"), F.col("t.replay_id") == F.col("s.replay_id"))
             .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
        self.write_metadata(row)

    def write_metadata(self, row: dict) -> None:
        if row.get("kind") == "vacuum":
            return
        doc = {k: (v.isoformat() if isinstance(v, (dt.datetime, dt.date)) else v) for k, v in row.items()}
        for k in list(doc):
            if k.endswith("_json"):
                text = doc.pop(k)
                try:
                    doc[k[:-5]] = json.loads(text) if text else text
                except json.JSONDecodeError:          # a refused request's raw text
                    doc[k[:-5]] = text
        from cqube_spark import safenames

        out = self.ctx.roots["output"]
        name = f"{safenames.segment(row['replay_id'], 'replay_id')}.json"
        uri = safenames.within(out, storage.join(out, "data_replay", name), "replay_id")
        self.ctx.store.write_bytes(uri, (json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n").encode())

    def rows(self, where=None) -> list[dict]:
        if not self.exists():
            return []
        df = self.spark.read.format("delta").load(self.path)
        if where is not None:
            df = df.where(where)
        return [r.asDict() for r in df.orderBy("created_at", "replay_id").collect()]

    def get(self, replay_id: str) -> dict | None:
        rows = self.rows(F.col("replay_id") == F.lit(replay_id))
        return rows[0] if rows else None

    def open_replays(self) -> list[dict]:
        return self.rows(F.col("status").isin(*OPEN) & F.col("kind").isin("replay", "retention"))
