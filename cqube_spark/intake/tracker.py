"""``lake/meta/file_tracker``: one row per emitted file (CSV member, or the zip when it was refused whole).

Statuses: ``received`` (copied to input, not yet loaded), ``loaded``, ``rejected`` (hostile zip, manifest
mismatch, header mismatch, empty file), ``duplicate`` (content already loaded: not loaded twice),
``failed`` (an infrastructure error while loading). Upserted by ``file_id``.
"""
from __future__ import annotations

import datetime as dt
import hashlib

from pyspark.sql import functions as F
from pyspark.sql import types as T

SCHEMA = T.StructType([
    T.StructField("file_id", T.StringType(), False),
    T.StructField("sha256", T.StringType()),
    T.StructField("zip_sha256", T.StringType()),
    T.StructField("source", T.StringType()),
    T.StructField("emission_path", T.StringType()),
    T.StructField("zip_name", T.StringType()),
    T.StructField("member", T.StringType()),
    T.StructField("input_path", T.StringType()),
    T.StructField("rejected_path", T.StringType()),
    T.StructField("size_bytes", T.LongType()),
    T.StructField("zip_size_bytes", T.LongType()),
    T.StructField("status", T.StringType()),
    T.StructField("records", T.LongType()),
    T.StructField("loaded_rows", T.LongType()),
    T.StructField("quarantined_rows", T.LongType()),
    T.StructField("duplicate_rows", T.LongType()),
    T.StructField("overlap_ignored", T.LongType()),
    T.StructField("run_id", T.StringType()),
    T.StructField("received_at", T.TimestampType()),
    T.StructField("updated_at", T.TimestampType()),
    T.StructField("error", T.StringType()),
])
FIELDS = [f.name for f in SCHEMA.fields]


def file_id(run_id: str, emission_path: str, member: str | None) -> str:
    return hashlib.sha256(f"{run_id}\0{emission_path}\0{member or ''}".encode()).hexdigest()[:32]


def new_row(run_id: str, emission_path: str, member: str | None, **values) -> dict:
    now = dt.datetime.now()
    row = {k: None for k in FIELDS}
    row.update(file_id=file_id(run_id, emission_path, member), run_id=run_id, emission_path=emission_path,
               zip_name=emission_path.rsplit("/", 1)[-1], member=member, received_at=now, updated_at=now)
    row.update(values)
    return row


class FileTracker:
    def __init__(self, spark, path: str):
        self.spark, self.path = spark, path

    def exists(self) -> bool:
        from delta.tables import DeltaTable

        return DeltaTable.isDeltaTable(self.spark, self.path)

    def loaded(self) -> dict[tuple[str, str], str]:
        """(source, sha256) → input path of every file already loaded."""
        if not self.exists():
            return {}
        rows = (self.spark.read.format("delta").load(self.path).where("status = 'loaded'")
                .select("source", "sha256", "input_path").collect())
        return {(r.source, r.sha256): r.input_path for r in rows}

    def unfinished(self) -> list[dict]:
        """Files copied to input whose load did not finish (status ``received`` or ``failed``), oldest first:
        the next intake loads them (a crash or a failed load never strands a file in input/)."""
        if not self.exists():
            return []
        rows = (self.spark.read.format("delta").load(self.path)
                .where("status IN ('received', 'failed') AND input_path IS NOT NULL AND source IS NOT NULL")
                .orderBy("received_at", "file_id").collect())
        return [r.asDict() for r in rows]

    def known_emissions(self, prefix: str) -> set[str]:
        """Emission paths starting with ``prefix`` that the tracker already holds, whatever their status."""
        if not self.exists():
            return set()
        rows = (self.spark.read.format("delta").load(self.path).select("emission_path")
                .where(F.col("emission_path").startswith(prefix)).distinct().collect())
        return {r.emission_path for r in rows}

    def handled_emissions(self) -> dict[str, str]:
        """emission path → latest status (for cleanup)."""
        if not self.exists():
            return {}
        rows = (self.spark.read.format("delta").load(self.path)
                .selectExpr("emission_path", "status", "updated_at").collect())
        latest: dict[str, tuple] = {}
        for r in rows:
            if r.emission_path not in latest or r.updated_at > latest[r.emission_path][1]:
                latest[r.emission_path] = (r.status, r.updated_at)
        return {k: v[0] for k, v in latest.items()}

    def upsert(self, rows: list[dict]) -> None:
        if not rows:
            return
        from delta.tables import DeltaTable

        for r in rows:
            r["updated_at"] = dt.datetime.now()
        df = self.spark.createDataFrame([tuple(r.get(k) for k in FIELDS) for r in rows], SCHEMA)
        if not self.exists():
            df.write.format("delta").mode("append").save(self.path)
            return
        (DeltaTable.forPath(self.spark, self.path).alias("t")
         .merge(df.alias("s"), "t.file_id = s.file_id")
         .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
