"""The generic rollup engine on a tiny hand-made state, checked against plain-Python computations.

Student attendance exercises: the long form (stack), pooled ratios at every level, nested distinct counts
(students over windows spanning months), windows relative to as-of, month grain, a breakdown from the
hierarchy, and a school whose cluster is missing (counted at block, district, state; not at cluster).
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from cqube_spark.kpi import engine, prep as P
from cqube_spark.kpi.spec import load_spec, parse_spec
from cqube_spark.kpi.testing import SCHOOLS, attendance_frame, hierarchy_of

SPEC = "configs/kpis/student_attendance.yaml"
# (student, school, calendar year, month, codes from day 1, file)
ROWS = [
    (1, 75010100101, 2020, 7, [1, 1, 2, None, 5, 1], "sa_07.csv"),
    (2, 75010100101, 2020, 7, [2, 2, 2], "sa_07.csv"),
    (3, 75010100102, 2020, 7, [1, 1, 1, 1], "sa_07.csv"),
    (4, 75020100101, 2020, 7, [1, 2], "sa_07.csv"),
    (1, 75010100101, 2020, 6, [1] * 29 + [2, 1], "sa_06.csv"),   # day 31 of June does not exist
    (5, 75010100201, 2020, 6, [2, 1, 1], "sa_06.csv"),
]
# school -> (cluster, block, district, management, category)
PARENTS = {str(c): (str(cl) if cl != 7502010009 else None, str(b), str(d), "Govt" if m == 1 else "Private", str(cat))
           for c, _n, d, b, cl, m, cat, _la, _lo in SCHOOLS}
WINDOW_DAYS = {"last_day": 1, "last_7_days": 7, "last_30_days": 30}


def expected(rows, as_of: dt.date, by=None):
    """Plain Python: {(level, id, period_type, period, group): (present, working, students, schools)}."""
    acc = defaultdict(lambda: [0, 0, set(), set()])
    for student, school, year, month, codes, _f in rows:
        for day, code in enumerate(codes, start=1):
            try:
                d = dt.date(year, month, day)
            except ValueError:
                continue
            if code is None or d > as_of:
                continue
            periods = [("month", f"{year:04d}-{month:02d}"), ("window", "overall")]
            for w, n in WINDOW_DAYS.items():
                if as_of - dt.timedelta(days=n - 1) <= d <= as_of:
                    periods.append(("window", w))
            cl, bl, di, mg, cat = PARENTS[str(school)]
            units = [("school", str(school)), ("cluster", cl), ("block", bl), ("district", di), ("state", "75")]
            group = {None: None, "school_management": mg, "school_category": cat}[by]
            for level, uid in units:
                if uid is None or (by and level == "school"):
                    continue
                for pt, p in periods:
                    a = acc[(level, uid, pt, p, group)]
                    a[0] += code == 1
                    a[1] += code in (1, 2)
                    if code in (1, 2):
                        a[2].add(student)
                        a[3].add(school)
    return {k: (v[0], v[1], len(v[2]), len(v[3]), round(100.0 * v[0] / v[1], 1) if v[1] else None)
            for k, v in acc.items() if v[1] or v[0]}


@pytest.fixture(scope="module")
def gold(spark):
    hier, dims = hierarchy_of(spark)
    sa = attendance_frame(spark, ROWS)
    spec = load_spec(SPEC)
    pc = P.PrepContext(read=lambda s: sa if s == "student_attendance" else None, hierarchy=hier, dims=dims,
                       options={}, state={})
    fact = P.PREPS[spec.prep](pc)
    g, as_of = engine.compute(spec, fact, hier, dims, None, "run-1")
    return g.cache(), as_of, spec, hier, dims, fact


def _actual(g, breakdown="total", by=None):
    rows = g.where(F.col("breakdown") == breakdown).collect()
    return {(r["level"], r["id"], r["period_type"], r["period"], r[by] if by else None):
            (r["present"], r["working"], r["students"], r["schools"], r["attendance_pct"]) for r in rows}


def test_as_of_defaults_to_latest_data_date(gold):
    _g, as_of, *_ = gold
    assert as_of == dt.date(2020, 7, 6)


def test_every_level_and_period_matches_plain_python(gold):
    g, as_of, *_ = gold
    assert _actual(g) == expected(ROWS, as_of)


@pytest.mark.parametrize("by", ["school_management", "school_category"])
def test_breakdowns_from_the_hierarchy(gold, by):
    g, as_of, *_ = gold
    assert _actual(g, by, by) == expected(ROWS, as_of, by)


def test_school_with_missing_cluster_counts_at_existing_levels_only(gold):
    g, *_ = gold
    t = g.where("breakdown = 'total' and period = 'overall'")
    assert t.where("level = 'school' and id = '75020100101'").count() == 1
    assert t.where("level = 'block' and id = '750201'").first()["students"] == 1
    assert t.where("level = 'cluster' and id = '7502010009'").count() == 0
    assert t.where("level = 'cluster' and id is null").count() == 0
    state = t.where("level = 'state'").first()
    assert state["schools"] == 4 and state["students"] == 5


def test_pooled_not_mean_of_school_percentages(gold):
    g, *_ = gold
    t = g.where("breakdown = 'total' and period = '2020-07'")
    schools = {r["id"]: r for r in t.where("level = 'school'").collect()}
    state = t.where("level = 'state'").first()
    mean_of_pcts = sum(r["attendance_pct"] for r in schools.values()) / len(schools)
    assert state["attendance_pct"] == round(100 * 8 / 13, 1)
    assert abs(state["attendance_pct"] - mean_of_pcts) > 1


def test_school_rows_keep_source_files_and_ids_names_coordinates(gold):
    g, *_ = gold
    s1 = g.where("level = 'school' and id = '75010100101' and period = 'overall' and breakdown = 'total'").first()
    assert s1["source_files"] == ["sa_06.csv", "sa_07.csv"]
    assert (s1["name"], s1["cluster_id"], s1["block_id"], s1["district_id"], s1["state_id"]) == \
        ("S1", "7501010001", "750101", "7501", "75")
    assert (s1["lat"], s1["lng"]) == (19.1, 73.1)
    c1 = g.where("level = 'cluster' and id = '7501010001' and period = 'overall' and breakdown = 'total'").first()
    assert (c1["lat"], c1["lng"]) == (19.2, 73.2)          # median of S1, S2
    assert c1["source_files"] is None


@pytest.mark.parametrize("rows", [ROWS, [r for r in ROWS if r[3] == 6]], ids=["two_months", "june_day_31"])
def test_latest_attendance_date_from_wide_rows_equals_the_long_form_max(spark, rows):
    hier, dims = hierarchy_of(spark)
    sa = attendance_frame(spark, rows)
    pc = P.PrepContext(read=lambda s: sa if s == "student_attendance" else None, hierarchy=hier, dims=dims,
                       options={}, state={})
    wide = P.PREPS["student_attendance"](pc)
    latest = engine.latest_date(wide)
    assert latest == engine.latest_date(wide.long())
    assert latest == max(dt.date(y, m, d) for _s, _c, y, m, codes, _f in rows
                         for d, code in enumerate(codes, start=1) if code is not None and (m, d) != (6, 31))


def test_facts_summary_gives_each_kpis_latest_date_and_files_in_one_job(spark):
    """The job's one pre-pass for every KPI = each KPI's own latest_date and lineage_files collects."""
    hier, dims = hierarchy_of(spark)
    sa = attendance_frame(spark, ROWS)
    june = attendance_frame(spark, [r for r in ROWS if r[3] == 6])
    pc = P.PrepContext(read=lambda s: sa, hierarchy=hier, dims=dims, options={}, state={})
    wide = P.PREPS["student_attendance"](pc)
    undated = spark.createDataFrame([("1", None)], "school_id string, date date")
    got = engine.facts_summary({"wide": (wide, [sa]), "long": (wide.long(), [june, sa]),
                                "undated": (undated, None), "no_files": (undated, [])})
    assert got == {"wide": (engine.latest_date(wide), engine.lineage_files([sa])),
                   "long": (engine.latest_date(wide.long()), ["sa_06.csv", "sa_07.csv"]),
                   "undated": (None, None), "no_files": (None, [])}
    assert engine.facts_summary({"wide": (wide, [june])}, latest=False) == {"wide": (None, ["sa_06.csv"])}


def test_lineage_as_a_bit_set_equals_the_set_per_row(spark, gold):
    g, _a, spec, hier, dims, fact = gold
    files = engine.lineage_files([attendance_frame(spark, ROWS)])
    assert files == ["sa_06.csv", "sa_07.csv"]
    bits, _ = engine.compute(spec, fact, hier, dims, None, "run-1", files=files)
    assert_df_equality(bits, g, ignore_row_order=True, ignore_nullable=True)


def test_lineage_bit_set_spans_several_words(spark):
    """150 known files (3 longs): a school fed by files 0, 63, 64, 127, 128 and 149 lists exactly those."""
    hier, dims = hierarchy_of(spark)
    names = [f"f{i:03d}.csv" for i in range(150)]
    used = [0, 63, 64, 127, 128, 149]
    rows = [(i, 75010100101, 2020, 7, [1, 2], names[k]) for i, k in enumerate(used)]
    rows.append((99, 75010100102, 2020, 7, [1], names[64]))
    spec = load_spec(SPEC)
    sa = attendance_frame(spark, rows)
    pc = P.PrepContext(read=lambda s: sa if s == "student_attendance" else None, hierarchy=hier, dims=dims,
                       options={}, state={})
    fact = P.PREPS[spec.prep](pc)
    g, _ = engine.compute(spec, fact, hier, dims, None, "r", files=names)
    school = {r["id"]: r["source_files"] for r in
              g.where("level = 'school' and breakdown = 'total' and period = 'overall'").collect()}
    assert school["75010100101"] == [names[k] for k in used]
    assert school["75010100102"] == [names[64]]
    assert g.where("level = 'state' and breakdown = 'total' and period = 'overall'").first()["students"] == 7


def test_explicit_as_of_moves_windows_and_drops_later_days(spark, gold):
    _g, _a, spec, hier, dims, fact = gold
    g, as_of = engine.compute(spec, fact, hier, dims, dt.date(2020, 6, 30), "run-2")
    assert as_of == dt.date(2020, 6, 30)
    assert _actual(g) == expected(ROWS, dt.date(2020, 6, 30))
    assert g.where("period = '2020-07'").count() == 0


def test_long_form_is_one_row_per_person_day_with_a_code(spark):
    df = attendance_frame(spark, [(7, 75010100101, 2021, 2, [1, None, 2] + [5] * 28, "f")])
    long = P.attendance_long(df, "SchoolId", "StudentId", "AcademicYear", "Month", 6, "student_id")
    expected_rows = [("75010100101", "7", dt.date(2021, 2, d), c, "f")
                     for d, c in [(1, 1), (3, 2)] + [(d, 5) for d in range(4, 29)]]    # Feb 2021 has 28 days
    exp = spark.createDataFrame(expected_rows, long.schema)
    assert_df_equality(long, exp, ignore_row_order=True, ignore_nullable=True)


def test_generic_measures_min_max_avg_sum_with_filters(spark):
    hier, dims = hierarchy_of(spark)
    spec = parse_spec({
        "name": "marks", "prep": "x", "levels": ["school", "district", "state"],
        "periods": {"windows": ["overall"]},
        "measures": {"hi": {"agg": "max", "column": "v"}, "lo": {"agg": "min", "column": "v"},
                     "mean": {"agg": "avg", "column": "v"}, "total": {"agg": "sum", "column": "v",
                                                                    "filter": {"column": "k", "ne": "x"}},
                     "n": {"agg": "count", "filter": {"any": [{"column": "v", "gt": 5}, {"column": "k", "eq": "x"}]}}},
        "outputs": ["hi", "lo", "mean", "total", "n"]})
    data = [("75010100101", 1.0, "a"), ("75010100101", 7.0, "x"), ("75010100102", 4.0, "b"),
            ("75020100101", 10.0, "a")]
    fact = spark.createDataFrame(data, "school_id string, v double, k string") \
        .withColumn("date", F.lit(None).cast("date")).withColumn("_file", F.lit("f"))
    g, as_of = engine.compute(spec, fact, hier, dims, None, "r")
    assert as_of is None
    got = {(r["level"], r["id"]): (r["hi"], r["lo"], r["mean"], r["total"], r["n"]) for r in g.collect()}
    vals = defaultdict(list)
    for sid, v, k in data:
        for unit in [("school", sid), ("district", PARENTS[sid][2]), ("state", "75")]:
            vals[unit].append((v, k))
    exp = {u: (max(v for v, _ in xs), min(v for v, _ in xs), sum(v for v, _ in xs) / len(xs),
               sum(v for v, k in xs if k != "x") if any(k != "x" for _, k in xs) else None,
               sum(1 for v, k in xs if v > 5 or k == "x")) for u, xs in vals.items()}
    assert got == exp


# -- the day-wide fact: the same gold as its long form --------------------------------------------------

def _wide_vs_long(spec, wide, hier, dims, as_of, files=None):
    g_wide, a_wide = engine.compute(spec, wide, hier, dims, as_of, "r", files=files)
    g_long, a_long = engine.compute(spec, wide.long(), hier, dims, as_of, "r", files=files)
    assert a_wide == a_long
    assert g_wide.count() > 0
    assert_df_equality(g_wide, g_long, ignore_row_order=True, ignore_nullable=True)


@pytest.mark.parametrize("kpi,as_of", [("student_attendance", dt.date(2020, 7, 3)),
                                        ("teacher_attendance", dt.date(2020, 6, 30))])
def test_day_wide_fact_gives_the_same_gold_as_its_long_form(spark, kpi, as_of):
    """Windows that cut a month, end before its first day, or lie past the data; weighted codes (teachers)."""
    hier, dims = hierarchy_of(spark)
    spec = load_spec(f"configs/kpis/{kpi}.yaml")
    rows = ROWS + [(6, 75010100102, 2020, 7, [3, 6, 7, 4, 1, 2, 3, None, 3], "sa_07b.csv")]
    names = ("SchoolId", "StudentId", "AcademicYear") if kpi == "student_attendance" else ("SCHCD", "TCHCD", "AC_YEAR")
    df = attendance_frame(spark, rows, *names)
    pc = P.PrepContext(read=lambda s: df if s == kpi else None, hierarchy=hier, dims=dims, options={}, state={})
    wide = P.PREPS[spec.prep](pc)
    assert isinstance(wide, P.DayWide)
    _wide_vs_long(spec, wide, hier, dims, as_of, files=["sa_06.csv", "sa_07.csv", "sa_07b.csv"])


@pytest.mark.parametrize("kpi,as_of", [("student_attendance", None), ("teacher_attendance", dt.date(2020, 7, 2))])
def test_entity_merge_base_equals_the_distinct_count_base(spark, kpi, as_of):
    """Step 2 without explode or distinct (``entity_base``, used when lineage is a bit set) gives the rows of
    the generic step 2 (periods exploded, ``count(distinct)``): a person in two files, two months and with
    no id."""
    hier, dims = hierarchy_of(spark)
    spec = load_spec(f"configs/kpis/{kpi}.yaml")
    rows = ROWS + [(1, 75010100101, 2020, 7, [None, None, 1, 1], "sa_07b.csv"),
                   (None, 75010100102, 2020, 7, [1, 2], "sa_07b.csv")]
    names = ("SchoolId", "StudentId", "AcademicYear") if kpi == "student_attendance" else ("SCHCD", "TCHCD", "AC_YEAR")
    df = attendance_frame(spark, rows, *names)
    pc = P.PrepContext(read=lambda s: df if s == kpi else None, hierarchy=hier, dims=dims, options={}, state={})
    fact = P.PREPS[spec.prep](pc)
    as_of = as_of or engine.latest_date(fact)
    files = engine.lineage_files([df])
    buckets = engine.bucket_aggregate(spec, fact, as_of)
    merged = engine.base_aggregate(spec, buckets, 6, files)
    generic = engine.base_aggregate(spec, buckets, 6, None)
    def plan(df):
        return df._jdf.queryExecution().optimizedPlan().toString().lower()
    assert "count(distinct" not in plan(merged) and "count(distinct" in plan(generic)
    assert merged.where("period_type = 'window'").count() > 0 and merged.where("period_type = 'month'").count() > 0
    assert_df_equality(merged, generic, ignore_row_order=True, ignore_nullable=True, ignore_column_order=True)


GENERIC_MEASURES = {
    # counts of days: computed from day masks on the wide rows
    "days": {"agg": "count"},
    "late": {"agg": "count", "filter": {"any": [{"column": "mins", "gt": 30}, {"column": "code", "eq": 2}]}},
    "other_kinds": {"agg": "count", "filter": {"all": [{"column": "kind", "ne": "x"}, {"column": "code", "in": [1, 2]}]}},
    "weighted": {"agg": "sum", "column": "code", "weights": {"1": 1, "2": 0.5, "7": 0.25}},
    "people": {"agg": "distinct_count", "column": "person_id", "filter": {"column": "code", "in": [1, 2]}},
    "schools": {"agg": "schools", "filter": {"column": "mins", "not_null": True}},
    # other measures: the long form
    "hi": {"agg": "max", "column": "mins"}, "lo": {"agg": "min", "column": "mins"},
    "mean": {"agg": "avg", "column": "mins"}, "total": {"agg": "sum", "column": "mins"},
    "amount": {"agg": "sum", "column": "amount"},
}


@pytest.mark.parametrize("grain,measures", [("academic_year", "day_counts"), ("day", "all")])
def test_day_wide_generic_measures_and_grains_match_the_long_form(spark, grain, measures):
    """Day counts over two day columns and a row column are bit counts of day masks; other measures and a
    day grain use the long form. Both give the gold of the long form."""
    hier, dims = hierarchy_of(spark)
    ms = {k: v for k, v in GENERIC_MEASURES.items() if measures == "all" or k in list(GENERIC_MEASURES)[:6]}
    spec = parse_spec({"name": "minutes", "prep": "x", "levels": ["school", "district", "state"],
                       "periods": {"grains": [grain], "windows": ["last_day", "last_7_days", "overall"]},
                       "measures": ms, "outputs": list(ms)})
    assert engine.day_maskable(spec) == (measures == "day_counts")
    data = [("75010100101", "p1", "a", dt.date(2020, 7, 1), {1: (1, 20), 2: (2, 40), 5: (7, None), 9: (1, None)}),
            ("75010100101", "p2", "x", dt.date(2020, 7, 1), {3: (1, 35), 8: (2, 5), 31: (3, 1)}),
            ("75010100102", "p1", "a", dt.date(2020, 6, 1), {29: (1, 50), 30: (2, 1)}),
            ("75020100101", "p3", "b", dt.date(2020, 7, 1), {})]
    flat = [(school, person, kind, first, "f.csv", *[v for d in range(1, 32) for v in days.get(d, (None, None))])
            for school, person, kind, first, days in data]
    day_schema = ", ".join(f"code__d{d} int, mins__d{d} int" for d in range(1, 32))
    frame = spark.createDataFrame(flat, f"school_id string, person_id string, kind string, _first date, "
                                        f"_file string, {day_schema}") \
        .withColumn("amount", F.lit(1.25).cast("decimal(10,2)"))
    wide = P.DayWide(frame, ("code", "mins"))
    assert wide.long().count() == sum(len(d) for *_x, d in data)
    _wide_vs_long(spec, wide, hier, dims, dt.date(2020, 7, 4))
