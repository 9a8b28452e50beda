"""Per-file log summaries (like upstream's ``log_summary``) and GE validation results: JSON files under
``<output>/log_summary/<source>/`` and the Delta tables ``meta/log_summary`` and ``meta/validation_results``."""
from __future__ import annotations

import datetime as dt
import json

from pyspark.sql import types as T

from cqube_spark import storage

SUMMARY_SCHEMA = T.StructType([
    T.StructField("run_id", T.StringType()), T.StructField("source", T.StringType()),
    T.StructField("file", T.StringType()), T.StructField("member", T.StringType()),
    T.StructField("sha256", T.StringType()), T.StructField("status", T.StringType()),
    T.StructField("total_rows", T.LongType()), T.StructField("blank_lines", T.LongType()),
    T.StructField("column_count_errors", T.LongType()), T.StructField("duplicates_identical", T.LongType()),
    T.StructField("duplicate_conflicts", T.LongType()), T.StructField("type_mismatches", T.LongType()),
    T.StructField("quarantined_rows", T.LongType()), T.StructField("processed_rows", T.LongType()),
    T.StructField("overlap_ignored", T.LongType()),
    T.StructField("nulls", T.MapType(T.StringType(), T.LongType())),
    T.StructField("quarantined_by_rule", T.MapType(T.StringType(), T.LongType())),
    T.StructField("violations_by_rule", T.MapType(T.StringType(), T.LongType())),
    T.StructField("error", T.StringType()),
    T.StructField("start_time", T.StringType()), T.StructField("end_time", T.StringType()),
    T.StructField("summary_json", T.StringType()),
])
VALIDATION_SCHEMA = T.StructType([
    T.StructField("run_id", T.StringType()), T.StructField("source", T.StringType()),
    T.StructField("file", T.StringType()), T.StructField("sha256", T.StringType()),
    T.StructField("suite", T.StringType()), T.StructField("success", T.BooleanType()),
    T.StructField("evaluated_expectations", T.LongType()), T.StructField("successful_expectations", T.LongType()),
    T.StructField("unexpected_by_expectation", T.MapType(T.StringType(), T.LongType())),
    T.StructField("result_json", T.StringType()),
])


def rejected_summary(row: dict) -> dict:
    kind = (row.get("error") or "rejected").split(":", 1)[0]
    now = dt.datetime.now().isoformat(timespec="seconds")
    return {"source": row.get("source"), "file": row.get("emission_path"), "member": row.get("member"),
            "sha256": row.get("sha256"), "run_id": row.get("run_id"), "status": "rejected",
            "error": row.get("error"), "total_rows": row.get("records") or 0, "quarantined_rows": 0,
            "quarantined_by_rule": {kind: 1}, "violations_by_rule": {kind: 1}, "processed_rows": 0,
            "start_time": now, "end_time": now}


def _name(s: dict) -> str:
    stem = (s.get("member") or s.get("file") or "file").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return f"{s['run_id']}_{(s.get('sha256') or 'nosha')[:12]}_{stem}"


def write(ctx, summaries: list[dict], validations: list[dict]) -> None:
    spark, store = ctx.spark, ctx.store
    out = ctx.roots["output"]
    for s in summaries:
        store.write_bytes(storage.join(out, "log_summary", s.get("source") or "_unknown", _name(s) + ".json"),
                          json.dumps(s, indent=2, sort_keys=True, default=str).encode())
    for v in validations:
        store.write_bytes(storage.join(out, "log_summary", v["source"], _name({**v, "member": v["file"]})
                                       + ".validation.json"),
                          json.dumps(v, indent=2, sort_keys=True, default=str).encode())
    if summaries:
        rows = []
        for s in summaries:
            rows.append(tuple(
                (json.dumps(s, sort_keys=True, default=str) if f.name == "summary_json"
                 else ({k: int(x) for k, x in (s.get(f.name) or {}).items()} if isinstance(f.dataType, T.MapType)
                       else (int(s[f.name]) if isinstance(f.dataType, T.LongType) and s.get(f.name) is not None
                             else s.get(f.name))))
                for f in SUMMARY_SCHEMA.fields))
        (spark.createDataFrame(rows, SUMMARY_SCHEMA).write.format("delta").mode("append")
         .save(ctx.lake("meta", "log_summary")))
    if validations:
        rows = []
        for v in validations:
            st = v.get("statistics") or {}
            unexpected = {f"{r['expectation']}:{r['column']}:{r['rule']}": int(r["unexpected_count"] or 0)
                          for r in v["results"]}
            rows.append((v["run_id"], v["source"], v["file"], v.get("sha256"), v["suite"], v["success"],
                         int(st.get("evaluated_expectations", 0)), int(st.get("successful_expectations", 0)),
                         unexpected, json.dumps(v, sort_keys=True, default=str)))
        (spark.createDataFrame(rows, VALIDATION_SCHEMA).write.format("delta").mode("append")
         .save(ctx.lake("meta", "validation_results")))
