"""The academic-year rule, in one place: a state's year runs from ``academic_year_start_month`` (state.yaml,
default 6 = June) of year Y to the month before it in Y+1, and is written ``Y-(Y+1)``, e.g. ``2020-21``.

Used by intake (a file's period date and input folder), silver (the calendar year of an attendance row)
and the KPI periods (which academic year a date falls in). Pure: Python and Spark Column versions.
"""
from __future__ import annotations

DEFAULT_START_MONTH = 6


def check_start_month(start_month: int) -> int:
    if not isinstance(start_month, int) or isinstance(start_month, bool) or not 1 <= start_month <= 12:
        raise ValueError(f"academic_year_start_month must be a month 1..12, got {start_month!r}")
    return start_month


def calendar_year(first_year: int, month: int, start_month: int = DEFAULT_START_MONTH) -> int:
    """The calendar year of ``month`` in the academic year that starts in ``first_year``:
    ``calendar_year(2020, 4, 6) == 2021`` (April of 2020-21 with a June start), ``calendar_year(2020, 4, 4) == 2020``."""
    return first_year if month >= check_start_month(start_month) else first_year + 1


def calendar_year_col(first_year, month, start_month: int = DEFAULT_START_MONTH):
    """:func:`calendar_year` on Spark columns (NULL in, NULL out)."""
    from pyspark.sql import functions as F

    return F.when(month < F.lit(check_start_month(start_month)), first_year + 1).otherwise(first_year)


def first_year_col(date, start_month: int = DEFAULT_START_MONTH):
    """The first calendar year of the academic year that ``date`` falls in (a Spark column)."""
    from pyspark.sql import functions as F

    y = F.year(date)
    return F.when(F.month(date) >= F.lit(check_start_month(start_month)), y).otherwise(y - 1)
