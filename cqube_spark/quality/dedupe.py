"""Duplicates among the rows that passed the row-level rules (pure DataFrame → DataFrame).

* identical rows (same values in every active column): the first (by ``_file``, ``_line``) is kept, the
  others are marked ``duplicate_identical`` (counted, not loaded, not quarantined);
* same business key, different values: every row of the key is marked ``duplicate_conflict`` (quarantined);
* ``unique_value_per_key`` checks (school master: one lat/long per school): rows whose value set is shared
  by different keys are marked ``duplicate_conflict`` as well.

Adds ``_dup``: ``keep`` | ``identical`` | ``conflict`` and, for conflicts, one violation in ``_violations``.
One shuffle on the key (the second window reuses the key partitioning).
"""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from cqube_spark.quality.rules import VIOLATIONS, _violation, typed_name
from cqube_spark.quality.spec import SourceSpec


def mark_duplicates(df: DataFrame, spec: SourceSpec) -> DataFrame:
    keys = [F.col(typed_name(k)) for k in spec.keys]
    values = [typed_name(c.name) for c in spec.active_columns if c.name not in spec.keys]
    h = F.xxhash64(*[F.col(v) for v in values]) if values else F.lit(0)
    by_key = Window.partitionBy(*keys)
    by_row = Window.partitionBy(*keys, *[F.col(v) for v in values]).orderBy("_file", "_line")
    out = (df.withColumn("__h", h)
           .withColumn("__conflict", F.min("__h").over(by_key) != F.max("__h").over(by_key))
           .withColumn("__rn", F.row_number().over(by_row)))
    conflict = _violation("duplicate_conflict", ",".join(spec.keys),
                          F.concat(F.lit("same key ("), F.concat_ws(", ", *[F.coalesce(k.cast("string"), F.lit("NULL"))
                                                                           for k in keys]),
                                   F.lit(") with different values")))
    out = (out.withColumn("_dup", F.when(F.col("__conflict"), "conflict")
                          .when(F.col("__rn") > 1, "identical").otherwise("keep"))
           .withColumn(VIOLATIONS, F.when(F.col("__conflict"), F.array_union(F.col(VIOLATIONS), F.array(conflict)))
                       .otherwise(F.col(VIOLATIONS)))
           .drop("__h", "__conflict", "__rn"))
    for chk in spec.checks:
        if chk["rule"] == "unique_value_per_key":
            out = shared_values(out, spec, chk["columns"])
    return out


def shared_values(df: DataFrame, spec: SourceSpec, columns: list[str]) -> DataFrame:
    """Rows (still ``keep``) whose ``columns`` values are shared with a different key → conflict."""
    cols = [F.col(typed_name(c)) for c in columns]
    kh = F.xxhash64(*[F.col(typed_name(k)) for k in spec.keys])
    present = F.lit(True)
    for c in cols:
        present = present & c.isNotNull()
    w = Window.partitionBy(*cols)
    kept = F.col("_dup") == "keep"
    kh_kept = F.when(kept & present, kh)
    shared = present & kept & (F.min(kh_kept).over(w) != F.max(kh_kept).over(w))
    v = _violation("duplicate_conflict", ",".join(columns),
                   F.concat(F.lit(f"{'/'.join(columns)} ("),
                            F.concat_ws(", ", *[c.cast("string") for c in cols]),
                            F.lit(f") shared by different {'/'.join(spec.keys)}")))
    return (df.withColumn("__shared", shared)
            .withColumn(VIOLATIONS, F.when(F.col("__shared"), F.array_union(F.col(VIOLATIONS), F.array(v)))
                        .otherwise(F.col(VIOLATIONS)))
            .withColumn("_dup", F.when(F.col("__shared"), "conflict").otherwise(F.col("_dup")))
            .drop("__shared"))
