"""Publish fetches a small gold table in one collect and sorts it in Python: the same rows, in the same order
(ascending, NULLs first, strings by code point), as the streamed ``orderBy`` path it keeps for big tables."""
from __future__ import annotations

from cqube_spark.publish.job import sorted_rows

ROWS = [("month", "2020-07", "total", "school", "2902", None, 3.5),
        ("month", "2020-07", "total", "school", "2902", 4, 1.0),
        ("month", "2020-07", "total", "school", "2901", 9, None),
        ("month", "2020-06", "grade", "district", "29", 2, 2.0),
        ("window", "last_7_days", "total", "block", "Ärea", 1, 0.0),
        ("window", "last_7_days", "total", "block", "Zone", 1, 0.0),
        (None, "overall", "total", "state", "00", None, 7.0)]
ORDER = ["period_type", "period", "breakdown", "level", "id", "grade"]


def test_collected_and_streamed_rows_come_in_the_same_order(spark):
    df = spark.createDataFrame(ROWS, "period_type string, period string, breakdown string, level string, "
                                     "id string, grade int, value double").repartition(3)
    collected = sorted_rows(df, ORDER)
    streamed = list(sorted_rows(df, ORDER, max_rows=2))       # over the bound: the Spark sort
    assert isinstance(collected, list)
    assert collected == streamed
    assert [(r["period_type"], r["id"], r["grade"]) for r in collected] == [
        (None, "00", None), ("month", "29", 2), ("month", "2901", 9), ("month", "2902", None),
        ("month", "2902", 4), ("window", "Zone", 1), ("window", "Ärea", 1)]
