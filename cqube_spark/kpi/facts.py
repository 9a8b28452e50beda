"""A fact held in wide form: one row per unit, entity and month with one column per day.

Attendance arrives as one row per student (or teacher), school and month with the codes of days 1..31 in
columns. The engine's fact is long (one row per person and day), but exploding 1.2M wide rows into ~25M
person-days only for step 1 of the engine to group them back into (school, month, person) buckets costs
more than the whole rest of the KPI. :class:`DayWide` keeps the rows wide: the engine computes every
bucket partial from the day columns of the row (see ``engine.bucket_aggregate``) and only asks for the long
form (:meth:`DayWide.long`) where it needs single days (a grain finer than the month, exact distinct counts).
"""
from __future__ import annotations

from dataclasses import dataclass
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

FIRST = "_first"


@dataclass(frozen=True)
class DayWide:
    """The long fact ``(..., date, <day columns>, _file)`` as wide rows.

    ``frame`` holds the long fact's other columns (``<base>_id``, the entity, breakdowns, ``_file``), ``_first``
    (the DATE of day 1; every day of a row lies in the calendar month of ``_first``) and, for each name in
    ``day_columns``, the columns ``<name>__d1`` .. ``<name>__d<days>``. Day ``d`` exists (is a row of the long
    fact) when its first day column is not NULL; the prep sets days past the month's end to NULL.
    """
    frame: DataFrame
    day_columns: tuple[str, ...]
    days: int = 31

    @staticmethod
    def day(name: str, d: int) -> str:
        return f"{name}__d{d}"

    def exists(self, d: int) -> Column:
        return F.col(self.day(self.day_columns[0], d)).isNotNull()

    def date(self, d: int) -> Column:
        return F.date_add(F.col(FIRST), d - 1)

    @property
    def row_columns(self) -> list[str]:
        """The columns that are the same for every day of a row (``_first`` and the day columns excluded)."""
        per_day = {self.day(n, d) for n in self.day_columns for d in range(1, self.days + 1)}
        return [c for c in self.frame.columns if c != FIRST and c not in per_day]

    @property
    def columns(self) -> list[str]:
        """The long fact's columns, so callers can treat both forms alike (``"_file" in fact.columns``)."""
        rc = self.row_columns
        return [*[c for c in rc if c != "_file"], "date", *self.day_columns, *(["_file"] if "_file" in rc else [])]

    def long(self) -> DataFrame:
        """One row per existing day (``stack`` inside the scan: no UDF, no shuffle)."""
        rc = self.row_columns
        pairs = ", ".join(f"{d}, " + ", ".join(f"`{self.day(n, d)}`" for n in self.day_columns)
                          for d in range(1, self.days + 1))
        names = ", ".join(["_day", *[f"`{n}`" for n in self.day_columns]])
        stacked = self.frame.select(*rc, FIRST, F.expr(f"stack({self.days}, {pairs}) as ({names})"))
        return (stacked.where(F.col(self.day_columns[0]).isNotNull())
                .select(*[c for c in rc if c != "_file"], F.date_add(FIRST, F.col("_day") - 1).alias("date"),
                        *self.day_columns, *(["_file"] if "_file" in rc else [])))

    def latest(self) -> DataFrame:
        """One row, ``d``: the latest date with a row (``max(date)`` of the long form), in one narrow pass over
        the wide rows."""
        last = F.greatest(*[F.when(self.exists(d), F.lit(d)) for d in range(1, self.days + 1)])
        return self.frame.select(F.max(F.date_add(F.col(FIRST), last - 1)).alias("d"))

