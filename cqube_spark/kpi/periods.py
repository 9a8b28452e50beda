"""Time grains and windows, always relative to an ``as_of`` date (never the wall clock).

Windows (inclusive, ending at ``as_of``): ``last_day`` = as_of; ``last_7_days`` = as_of-6 .. as_of;
``last_30_days`` = as_of-29 .. as_of; ``overall`` = everything up to as_of (and undated rows, e.g. a
snapshot such as infrastructure). Rows dated after ``as_of`` are ignored by every period.

Grain keys: ``day`` ``YYYY-MM-DD``; ``week`` the Monday that starts the ISO week, ``YYYY-MM-DD``;
``month`` ``YYYY-MM``; ``academic_year`` ``YYYY-YY`` (June..May by default, ``state.academic_year_start_month``).
"""
from __future__ import annotations

import datetime as dt

from pyspark.sql import Column
from pyspark.sql import functions as F

from cqube_spark import academic_year

WINDOW_DAYS = {"last_day": 1, "last_7_days": 7, "last_30_days": 30}


def window_bounds(window: str, as_of: dt.date | None) -> tuple[dt.date | None, dt.date | None]:
    """(first, last) dates of a window; ``overall`` has no first date."""
    if window == "overall" or as_of is None:
        return None, as_of
    return as_of - dt.timedelta(days=WINDOW_DAYS[window] - 1), as_of


def in_window(date: Column, window: str, as_of: dt.date | None) -> Column:
    first, last = window_bounds(window, as_of)
    if window == "overall":
        return F.lit(True) if last is None else (date.isNull() | (date <= F.lit(last)))
    if last is None:
        return F.lit(False)
    return date.isNotNull() & (date >= F.lit(first)) & (date <= F.lit(last))


def day_range(window: str, as_of: dt.date | None, first: Column) -> tuple[Column, Column]:
    """The window's days as numbers counted from ``first`` (day 1 = ``first``): ``lo .. hi``, empty when
    ``lo > hi``. Same days as :func:`in_window` over ``date_add(first, n - 1)``."""
    if window == "overall":
        return F.lit(1), (F.datediff(F.lit(as_of), first) + 1 if as_of is not None else F.lit(2 ** 30))
    lo, hi = window_bounds(window, as_of)
    if hi is None:
        return F.lit(1), F.lit(0)
    return F.datediff(F.lit(lo), first) + 1, F.datediff(F.lit(hi), first) + 1


def academic_year_start(date: Column, start_month: int = 6) -> Column:
    """The first calendar year of the academic year of ``date`` (:mod:`cqube_spark.academic_year`)."""
    return academic_year.first_year_col(date, start_month)


def bucket(date: Column, grain: str | None, start_month: int = 6) -> Column:
    """The first day of the grain's period that contains ``date`` (NULL stays NULL)."""
    if grain is None:
        return F.lit(None).cast("date")
    if grain == "day":
        return date
    if grain == "week":
        return F.date_trunc("week", date).cast("date")
    if grain == "month":
        return F.trunc(date, "month")
    if grain == "academic_year":
        return F.make_date(academic_year_start(date, start_month), F.lit(start_month), F.lit(1))
    raise ValueError(grain)


def period_key(b: Column, grain: str, start_month: int = 6) -> Column:
    """The published period label of a grain, from a bucket date of that grain or a finer one."""
    if grain in ("day", "week"):
        d = b if grain == "day" else F.date_trunc("week", b).cast("date")
        return F.date_format(d, "yyyy-MM-dd")
    if grain == "month":
        return F.date_format(b, "yyyy-MM")
    if grain == "academic_year":
        s = academic_year_start(b, start_month)
        return F.concat(s.cast("string"), F.lit("-"), F.lpad(((s + 1) % 100).cast("string"), 2, "0"))
    raise ValueError(grain)
