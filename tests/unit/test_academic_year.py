"""One academic-year rule for intake, silver and the KPI periods: a June state and an April state."""
import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from cqube_spark import academic_year as AY
from cqube_spark.intake.job import period_date
from cqube_spark.kpi import periods
from cqube_spark.quality.spec import load_spec, parse_state
from cqube_spark.sources import attendance


@pytest.mark.parametrize("start,month,year", [(6, 6, 2020), (6, 12, 2020), (6, 4, 2021), (6, 5, 2021),
                                              (4, 4, 2020), (4, 5, 2020), (4, 3, 2021), (4, 1, 2021)])
def test_calendar_year_of_a_month_in_2020_21(start, month, year):
    assert AY.calendar_year(2020, month, start) == year


def test_start_month_must_be_a_month():
    with pytest.raises(ValueError, match="academic_year_start_month must be a month 1..12, got 13"):
        AY.calendar_year(2020, 4, 13)


def test_the_column_rule_agrees_with_the_python_rule_and_the_kpi_periods(spark):
    rows = [(m, s) for s in (4, 6) for m in range(1, 13)]
    df = spark.createDataFrame(rows, "m int, s int")
    for start in (4, 6):
        sub = df.where(F.col("s") == start)
        got = sub.select("m", AY.calendar_year_col(F.lit(2020), F.col("m"), start).alias("year"))
        want = spark.createDataFrame([(m, AY.calendar_year(2020, m, start)) for m, s in rows if s == start],
                                     "m int, year int")
        assert_df_equality(got, want, ignore_nullable=True, ignore_row_order=True)
        # and back: the date of that month falls in the academic year that starts in 2020
        dates = got.select(periods.academic_year_start(F.make_date("year", "m", F.lit(1)), start).alias("first"))
        assert {r.first for r in dates.collect()} == {2020}


def test_silver_calendar_period_and_intake_period_date_follow_the_state(spark):
    spec = load_spec("configs/sources/student_attendance.yaml")
    header = "|".join(c.name for c in spec.columns)
    april = "1|1|75010100101||2020-21|4|" + "|".join(["1"] * 31)
    today = dt.date(2026, 1, 1)
    assert period_date(spec, header, april, today) == dt.date(2021, 4, 1)              # June state
    assert period_date(spec, header, april, today, start_month=4) == dt.date(2020, 4, 1)  # April state
    df = spark.createDataFrame([("2020-21", 4), ("2020-21", 5), ("2020-21", 3)], "ay string, m int")
    out = attendance.calendar_period(df, "ay", "m", start_month=4)
    expected = spark.createDataFrame([("2020-21", 4, 2020, 4), ("2020-21", 5, 2020, 5), ("2020-21", 3, 2021, 3)],
                                     "ay string, m int, year int, month int")
    assert_df_equality(out, expected, ignore_nullable=True)
    assert parse_state({"state": {"academic_year_start_month": 4}}).academic_year_start_month == 4
    assert parse_state(None).academic_year_start_month == 6
