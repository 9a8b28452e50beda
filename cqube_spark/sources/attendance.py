"""Attendance (student, teacher): calendar year/month from the academic year, and the overlap rule.

* ``calendar_period``: academic year ``2020-21`` + month 6..12 → year 2020, month 1..5 → year 2021; adds
  int columns ``year`` and ``month``.
* ``last_loaded_day`` + ``apply_overlap``: for a key (school, academic year, month) already in silver, a new
  file contributes only the days after the last loaded day; values of earlier days are nulled out of the new
  rows (so a MERGE with ``coalesce(new, old)`` keeps what was loaded) and counted in ``_overlap_ignored``.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cqube_spark.academic_year import calendar_year_col


def calendar_period(df: DataFrame, academic_year: str, month: str, start_month: int = 6) -> DataFrame:
    """``year`` (calendar) and ``month`` from the academic year ``YYYY-YY`` and the month, for a state whose
    year starts in ``start_month`` (:mod:`cqube_spark.academic_year`)."""
    ay, m = F.col(academic_year), F.col(month).cast("int")
    first = F.substring(ay.cast("string"), 1, 4).try_cast("int")
    return (df.withColumn("year", calendar_year_col(first, m, start_month).cast("int"))
              .withColumn("month", m))


def _last_day_expr(day_columns: list[str]):
    return F.greatest(*[F.when(F.col(d).isNotNull(), F.lit(int(d))) for d in day_columns], F.lit(0))


def last_loaded_day(silver: DataFrame, key: list[str], day_columns: list[str]) -> DataFrame:
    """Per overlap key, the last day with any value in silver (``_last_day``)."""
    return silver.groupBy(*key).agg(F.max(_last_day_expr(day_columns)).alias("_last_day"))


def apply_overlap(df: DataFrame, last_days: DataFrame | None, key: list[str], day_columns: list[str]) -> DataFrame:
    """Null out day values at or before the key's last loaded day; ``_overlap_ignored`` counts them per row."""
    if last_days is None:
        return df.withColumn("_overlap_ignored", F.lit(0))
    ld = F.broadcast(last_days.select(*[F.col(k).alias(f"__ov_{k}") for k in key], "_last_day"))
    cond = [df[k].eqNullSafe(ld[f"__ov_{k}"]) for k in key]
    j = df.join(ld, cond, "left").drop(*[f"__ov_{k}" for k in key])
    last = F.coalesce(F.col("_last_day"), F.lit(0))
    ignored = sum((F.when(F.col(d).isNotNull() & (F.lit(int(d)) <= last), 1).otherwise(0) for d in day_columns),
                  F.lit(0))
    days = set(day_columns)
    cols = [(F.when(F.lit(int(c)) <= last, F.lit(None).cast(df.schema[c].dataType)).otherwise(F.col(c)).alias(c)
             if c in days else F.col(c)) for c in df.columns]
    j = j.select(*cols, ignored.alias("_overlap_ignored"), "_last_day")   # one projection, not 31 withColumn
    return j.drop("_last_day")
