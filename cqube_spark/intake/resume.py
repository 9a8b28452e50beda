"""Resuming a file whose load was interrupted (19.1, 19.7): before it loads again, the rows an earlier,
killed load of the same file appended to the append-only tables are removed, so bronze and quarantine hold
the file once. Silver needs nothing: its MERGE on the keys is idempotent.

The rows are found by ``_file`` (the file's input parts path, the same for every attempt), which the
tables keep statistics for, so the delete touches only that file's Parquet files.
"""
from __future__ import annotations

from pyspark.sql import functions as F


def forget_partial_load(ctx, spec, parts_uri: str) -> dict[str, int]:
    """Delete ``_file = parts_uri`` from ``bronze/<source>`` and ``quarantine/<source>``; returns the rows
    removed per table (0 when the earlier attempt died before writing there)."""
    from delta.tables import DeltaTable

    removed = {}
    for layer in ("bronze", "quarantine"):
        path = ctx.lake(layer, spec.name)
        if not DeltaTable.isDeltaTable(ctx.spark, path):
            continue
        table = DeltaTable.forPath(ctx.spark, path)
        cond = F.col("_file") == F.lit(parts_uri)
        n = table.toDF().where(cond).count()      # (resumes are rare: no empty commit when nothing is there)
        if n:
            table.delete(cond)
        removed[layer] = n
    if any(removed.values()):
        ctx.log.warning("partial load removed before resuming", file=parts_uri, source=spec.name, rows=removed)
    return removed
