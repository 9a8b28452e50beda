"""Duplicates among the rows that passed the row-level rules (pure DataFrame → DataFrame).

* identical rows (same values in every active column): the first (by ``_file``, ``_line``) is kept, the
  others are marked ``duplicate_identical`` (counted, not loaded, not quarantined);
* same business key, different values: every row of the key is marked ``duplicate_conflict`` (quarantined);
* ``unique_value_per_key`` checks (school master: one lat/long per school): rows whose value set is shared
  by different keys are marked ``duplicate_conflict`` as well.

Adds ``_dup``: ``keep`` | ``identical`` | ``conflict`` and, for conflicts, one violation in ``_violations``.

Rows are compared by a 64-bit hash of their values. The keys that occur more than once are found by a
narrow aggregation (:func:`duplicate_keys`: keys, count, conflict); only the rows of those keys are ranked
(a window on the key), so a file without duplicates is never sorted or shuffled as whole rows. The caller
may compute the duplicate keys once, count them, and pass both in.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from cqube_spark.quality.rules import VIOLATIONS, _violation, typed_name
from cqube_spark.quality.spec import SourceSpec

DUP_PREFIX = "__dk_"
BROADCAST_MAX_KEYS = 200_000    # duplicate keys up to this many are broadcast to the rows (no shuffle of rows)


def _value_hash(spec: SourceSpec):
    values = [typed_name(c.name) for c in spec.active_columns if c.name not in spec.keys]
    return F.xxhash64(*[F.col(v) for v in values]) if values else F.lit(0)


def duplicate_keys(df: DataFrame, spec: SourceSpec) -> DataFrame:
    """Keys with more than one row: ``__dk_<i>`` (key values), ``__n`` (rows), ``__conflict`` (values differ)."""
    keys = [F.col(typed_name(k)).alias(f"{DUP_PREFIX}{i}") for i, k in enumerate(spec.keys)]
    h = _value_hash(spec)
    return (df.groupBy(*keys)
            .agg(F.count(F.lit(1)).alias("__n"), (F.min(h) != F.max(h)).alias("__conflict"))
            .where(F.col("__n") > 1))


def mark_duplicates(df: DataFrame, spec: SourceSpec, dup_keys: DataFrame | None = None,
                    n_dup_keys: int | None = None) -> DataFrame:
    """``df`` + ``_dup``. ``dup_keys``/``n_dup_keys``: :func:`duplicate_keys` of ``df`` and its row count,
    when the caller has computed them (no key repeated: no join at all; few: the keys are broadcast)."""
    if n_dup_keys == 0:
        out = df.withColumn("_dup", F.lit("keep"))
    else:
        dk = duplicate_keys(df, spec) if dup_keys is None else dup_keys
        if n_dup_keys is not None and n_dup_keys <= BROADCAST_MAX_KEYS:
            dk = F.broadcast(dk)
        out = _rank_duplicates(df, spec, dk)
    for chk in spec.checks:
        if chk["rule"] == "unique_value_per_key":
            out = shared_values(out, spec, chk["columns"])
    return out


def _rank_duplicates(df: DataFrame, spec: SourceSpec, dk: DataFrame) -> DataFrame:
    keys = [F.col(typed_name(k)) for k in spec.keys]
    cond = [df[typed_name(k)].eqNullSafe(dk[f"{DUP_PREFIX}{i}"]) for i, k in enumerate(spec.keys)]
    j = df.join(dk, cond, "left").drop(*[f"{DUP_PREFIX}{i}" for i in range(len(spec.keys))], "__n")
    single = j.where(F.col("__conflict").isNull()).withColumn("_dup", F.lit("keep")).drop("__conflict")
    rn = F.row_number().over(Window.partitionBy(*keys).orderBy("_file", "_line"))
    conflict = _violation("duplicate_conflict", ",".join(spec.keys),
                          F.concat(F.lit("same key ("), F.concat_ws(", ", *[F.coalesce(k.cast("string"), F.lit("NULL"))
                                                                           for k in keys]),
                                   F.lit(") with different values")))
    multi = (j.where(F.col("__conflict").isNotNull())
             .withColumn("_dup", F.when(F.col("__conflict"), "conflict").when(rn > 1, "identical").otherwise("keep"))
             .withColumn(VIOLATIONS, F.when(F.col("__conflict"), F.array_union(F.col(VIOLATIONS), F.array(conflict)))
                         .otherwise(F.col(VIOLATIONS)))
             .drop("__conflict"))
    return single.unionByName(multi)


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
