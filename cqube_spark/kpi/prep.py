"""Per-KPI fact builders: silver tables → one fact frame the generic engine can roll up.

Only what a spec cannot say lives here: attendance day columns (kept wide, see :mod:`.facts`), CRC visit
location join, exam question marks join, infrastructure weights, UDISE metric normalisation, DIKSHA district
names → codes, the exception report's per-source coverage. Every builder returns ``<base>_id``, ``date``
(DATE or NULL), its breakdown and measure columns and ``_file`` (attendance: the same fact held wide, a
:class:`~cqube_spark.kpi.facts.DayWide`); all are pure ``DataFrame`` transforms over the frames that
``read(source)`` returns (``None`` when a silver table does not exist).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import reduce
from typing import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cqube_spark.config import ConfigError
from cqube_spark.kpi.facts import FIRST, DayWide

Reader = Callable[[str], "DataFrame | None"]


class MissingSource(Exception):
    """A silver table the KPI needs does not exist yet: the KPI is skipped (and said so)."""


@dataclass
class PrepContext:
    read: Reader
    hierarchy: DataFrame
    dims: dict
    options: dict
    state: dict
    spec_path: str = "<inline>"

    def need(self, source: str) -> DataFrame:
        df = self.read(source)
        if df is None:
            raise MissingSource(source)
        return df


def col(df: DataFrame, name: str) -> Column:
    """A column by spec name: case-insensitive, spaces and punctuation as the silver safe names."""
    want = re.sub(r"[ ,;{}()\n\t=]", "_", name.strip()).lower()
    for c in df.columns:
        if c.lower() == want or c.lower() == name.lower():
            return F.col(f"`{c}`")
    raise KeyError(f"column {name!r} not in {df.columns}")


def has(df: DataFrame, name: str) -> bool:
    try:
        col(df, name)
        return True
    except KeyError:
        return False


def _file(df: DataFrame) -> Column:
    return col(df, "_file") if has(df, "_file") else F.lit(None).cast("string")


def code(df: DataFrame, name: str) -> Column:
    return col(df, name).cast("long").cast("string")


# -- attendance ------------------------------------------------------------------------------------------

def calendar_year_month(df: DataFrame, ay_col: str, month_col: str, start_month: int = 6) -> tuple[Column, Column]:
    """Calendar year and month: the silver ``year``/``month`` ints, else derived from the academic year."""
    m = col(df, "month").cast("int") if has(df, "month") else col(df, month_col).cast("int")
    if has(df, "year"):
        return col(df, "year").cast("int"), m
    first = F.substring(col(df, ay_col).cast("string"), 1, 4).cast("int")
    return F.when(m < start_month, first + 1).otherwise(first), m


def month_first(df: DataFrame, ay_col: str, month_col: str, start_month: int = 6) -> Column:
    """The first day of each attendance row's calendar month."""
    year, month = calendar_year_month(df, ay_col, month_col, start_month)
    return F.make_date(year, month, F.lit(1))


def attendance_wide(df: DataFrame, school: str, person: str, ay_col: str, month_col: str,
                    start_month: int = 6, person_alias: str = "person_id") -> DayWide:
    """The attendance fact as it arrives, one row per person, school and month: ``school_id,
    <person_alias>, _file``, ``_first`` (day 1 of the calendar month) and ``code__d1 .. code__d31`` (int;
    NULL for a blank day and for days the month does not have, such as 31 June). Its long form
    (:meth:`DayWide.long`) is one row per person and day with a code."""
    first = month_first(df, ay_col, month_col, start_month)
    n_days = F.dayofmonth(F.last_day(first))
    codes = [F.when(F.lit(d) <= n_days, col(df, str(d)).cast("int")) if has(df, str(d)) else F.lit(None).cast("int")
             for d in range(1, 32)]
    frame = df.select(code(df, school).alias("school_id"), col(df, person).cast("string").alias(person_alias),
                      _file(df).alias("_file"), first.alias(FIRST),
                      *[c.alias(DayWide.day("code", d)) for d, c in enumerate(codes, start=1)])
    return DayWide(frame, ("code",))


def attendance_long(df: DataFrame, school: str, person: str, ay_col: str, month_col: str,
                    start_month: int = 6, person_alias: str = "person_id") -> DataFrame:
    """One row per person and day with a code: ``school_id, <person_alias>, date, code, _file``."""
    return attendance_wide(df, school, person, ay_col, month_col, start_month, person_alias).long()


def student_attendance(pc: PrepContext) -> DayWide:
    df = pc.need("student_attendance")
    return attendance_wide(df, "SchoolId", "StudentId", "AcademicYear", "Month",
                           pc.state.get("academic_year_start_month", 6), "student_id")


def teacher_attendance(pc: PrepContext) -> DayWide:
    df = pc.need("teacher_attendance")
    return attendance_wide(df, "SCHCD", "TCHCD", "AC_YEAR", "MONTH",
                           pc.state.get("academic_year_start_month", 6), "teacher_id")


# -- CRC visits ------------------------------------------------------------------------------------------

def crc(pc: PrepContext) -> DataFrame:
    """One row per inspection: ``in_school`` = 1 when the visit's location was inside the school."""
    insp = pc.need("inspection_master")
    loc = pc.read("user_location_master")
    v = insp.select(col(insp, "InspectionId").alias("inspection_id"), code(insp, "SchoolId").alias("school_id"),
                    col(insp, "ObserverId").cast("string").alias("observer_id"),
                    col(insp, "VisitDate").cast("date").alias("date"), _file(insp).alias("_file"))
    if loc is None:
        return v.withColumn("in_school", F.lit(0))
    ls = (loc.select(col(loc, "InspectionId").alias("inspection_id"),
                     col(loc, "InSchoolLocation").cast("boolean").alias("_in"))
          .groupBy("inspection_id").agg(F.max(F.col("_in").cast("int")).alias("in_school")))
    return (v.join(ls, "inspection_id", "left")
             .withColumn("in_school", F.coalesce("in_school", F.lit(0))))


# -- PAT / SAT -------------------------------------------------------------------------------------------

def _exam(pc: PrepContext, prefix: str) -> DataFrame:
    res = pc.need(f"{prefix}_exam_result_trans")
    qst = pc.need(f"{prefix}_exam_qst_mst")
    mst = pc.need(f"{prefix}_exam_mst")
    subj_filter = pc.options.get("subjects", "all")
    q = qst.select(col(qst, "question_id").cast("int").alias("question_id"),
                   col(qst, "question_marks").cast("double").alias("max_marks"),
                   F.coalesce(col(qst, "indicator_title"), col(qst, "indicator")).alias("indicator"))
    mcols = [col(mst, "exam_id").cast("int").alias("exam_id"), col(mst, "exam_date").cast("date").alias("_mdate"),
             col(mst, "subject_name").alias("subject")]
    if has(mst, "semester"):
        mcols.append(col(mst, "semester").cast("int").alias("semester"))
    m = mst.select(*mcols)
    r = res.select(col(res, "exam_id").cast("int").alias("exam_id"), col(res, "exam_code").alias("exam_code"),
                   col(res, "student_uid").cast("string").alias("student_id"), code(res, "school_id").alias("school_id"),
                   col(res, "studying_class").cast("int").alias("grade"),
                   col(res, "question_id").cast("int").alias("question_id"),
                   col(res, "obtained_marks").cast("double").alias("obtained"),
                   (col(res, "exam_date").cast("date") if has(res, "exam_date") else F.lit(None).cast("date"))
                   .alias("_rdate"), _file(res).alias("_file"))
    f = (r.join(F.broadcast(q), "question_id", "inner").join(F.broadcast(m), "exam_id", "left")
          .withColumn("date", F.coalesce("_mdate", "_rdate")).drop("_mdate", "_rdate"))
    if subj_filter != "all":
        f = f.where(F.col("subject").isin(list(subj_filter)))
    if "semester" not in f.columns:
        f = f.withColumn("semester", F.lit(None).cast("int"))
    return f


def pat(pc: PrepContext) -> DataFrame:
    return _exam(pc, "periodic")


def sat(pc: PrepContext) -> DataFrame:
    return _exam(pc, "semester")


# -- infrastructure --------------------------------------------------------------------------------------

def infra_weights(pc: PrepContext) -> dict[str, float]:
    """Configured weights (must add up to 100, else ConfigError), re-normalised over the state's active items."""
    opts = pc.options
    weights: dict[str, float] = {k: float(v) for k, v in (opts.get("weights") or {}).items()}
    if opts.get("weights_from"):
        wm = pc.read(opts["weights_from"])
        if wm is not None:
            rows = (wm.where(col(wm, "status") == 1)
                      .select(col(wm, "infrastructure").alias("k"), col(wm, "score").alias("w")).collect())
            if rows:
                weights = {r["k"]: float(r["w"]) for r in rows}
    total = sum(weights.values())
    if abs(total - 100.0) > 1e-9:
        raise ConfigError(pc.spec_path, "$.prep_options.weights",
                          f"infrastructure weights must add up to 100, got {total:g}")
    active = pc.state.get("optional_attributes", {}).get("infra_trans", {}) or {}
    kept = {k: w for k, w in weights.items() if active.get(k, True)}
    s = sum(kept.values())
    return {k: w * 100.0 / s for k, w in kept.items()} if s else {}


def infrastructure(pc: PrepContext) -> DataFrame:
    """Per school: each item 0/1 (value > 0), the weighted infra score, access to water and to toilets."""
    df = pc.need("infra_trans")
    weights = infra_weights(pc)
    items = [k for k in weights if has(df, k)]
    missing = [k for k in weights if not has(df, k)]
    if missing:
        raise ConfigError(pc.spec_path, "$.prep_options.weights", f"items not in infra_trans: {missing}")
    ind = {k: F.when(F.coalesce(col(df, k), F.lit(0)) > 0, 1).otherwise(0) for k in items}
    score = reduce(lambda a, b: a + b, [ind[k] * F.lit(weights[k]) for k in items], F.lit(0.0))
    cols = [code(df, "school_id").alias("school_id"), F.lit(None).cast("date").alias("date"),
            score.cast("double").alias("infra_score"), _file(df).alias("_file")]
    all_items = list((pc.options.get("weights") or {}).keys())
    for k in all_items:
        cols.append((ind[k] if k in ind else F.lit(None)).cast("int").alias(f"has_{k.lower()}"))
    for name, group in (pc.options.get("access") or {}).items():
        present = [ind[k] for k in group if k in ind]
        cols.append((F.greatest(*present) if len(present) > 1 else present[0] if present else F.lit(None))
                    .cast("int").alias(name))
    return df.select(*cols)


# -- UDISE -----------------------------------------------------------------------------------------------

def _metric_value(df: DataFrame, m: dict) -> Column | None:
    kind = m.get("kind", "yn")
    cols = [m["column"]] if "column" in m else list(m.get("numerator", [])) + list(m.get("denominator", []))
    if not all(has(df, c) for c in cols):
        return None
    if kind == "yn":
        return F.when(col(df, m["column"]) == 1, 1.0).otherwise(0.0)
    if kind == "value":
        cap = float(m.get("cap", 1))
        return F.least(F.coalesce(col(df, m["column"]).cast("double"), F.lit(0.0)) / F.lit(cap), F.lit(1.0))
    if kind == "ratio":
        num = reduce(lambda a, b: a + b, [F.coalesce(col(df, c).cast("double"), F.lit(0.0)) for c in m["numerator"]])
        den = reduce(lambda a, b: a + b, [F.coalesce(col(df, c).cast("double"), F.lit(0.0)) for c in m["denominator"]])
        return F.when(den > 0, F.least(num / den, F.lit(1.0))).otherwise(0.0)
    raise ConfigError("udise", "$.prep_options.indices", f"unknown metric kind {kind!r}")


def udise(pc: PrepContext) -> DataFrame:
    """Per school and academic year: every index = 100 × Σ weight·metric / Σ weight (metrics in 0..1),
    plus enrolment totals from ``udise_sch_enr_fresh``."""
    start = pc.state.get("academic_year_start_month", 6)
    tables = {t: pc.read(t) for t in ("udise_sch_facility", "udise_sch_profile", "udise_sch_enr_fresh")}
    if tables["udise_sch_facility"] is None and tables["udise_sch_profile"] is None:
        raise MissingSource("udise_sch_facility")
    frames = []
    for t in ("udise_sch_facility", "udise_sch_profile"):
        df = tables[t]
        if df is None:
            continue
        cols = [code(df, "udise_sch_code").alias("school_id"), col(df, "ac_year").alias("ac_year"),
                _file(df).alias("_file")]
        for idx, spec in sorted((pc.options.get("indices") or {}).items()):
            metrics = [(m, _metric_value(df, m)) for m in spec["metrics"] if m.get("table", "udise_sch_facility") == t]
            metrics = [(m, v) for m, v in metrics if v is not None]
            if metrics:
                cols.append(reduce(lambda a, b: a + b, [v * F.lit(float(m.get("weight", 1))) for m, v in metrics])
                            .alias(f"_w_{idx}"))
                cols.append(F.lit(sum(float(m.get("weight", 1)) for m, _v in metrics)).alias(f"_t_{idx}"))
        frames.append(df.select(*cols))
    enr = tables["udise_sch_enr_fresh"]
    if enr is not None:
        boys = [c for c in enr.columns if re.fullmatch(r"(cpp|c\d+)_b", c)]
        girls = [c for c in enr.columns if re.fullmatch(r"(cpp|c\d+)_g", c)]
        s = lambda cs: reduce(lambda a, b: a + b, [F.coalesce(F.col(c), F.lit(0)) for c in cs], F.lit(0))  # noqa: E731
        frames.append(enr.select(code(enr, "udise_sch_code").alias("school_id"), col(enr, "ac_year").alias("ac_year"),
                                 _file(enr).alias("_file"), s(boys).alias("enrolment_boys"),
                                 s(girls).alias("enrolment_girls")))
    u = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)
    aggs = [F.sort_array(F.collect_set("_file")).alias("_files")]
    names = []
    for idx in sorted(pc.options.get("indices") or {}):
        if f"_w_{idx}" in u.columns:
            aggs.append((F.sum(f"_w_{idx}") / F.sum(f"_t_{idx}") * 100).alias(f"index_{idx}"))
        else:
            aggs.append(F.lit(None).cast("double").alias(f"index_{idx}"))
        names.append(f"index_{idx}")
    for c in ("enrolment_boys", "enrolment_girls"):
        aggs.append((F.sum(c) if c in u.columns else F.lit(None)).cast("long").alias(c))
    g = u.groupBy("school_id", "ac_year").agg(*aggs)
    ay = F.substring("ac_year", 1, 4).cast("int")
    return (g.withColumn("date", F.make_date(ay, F.lit(start), F.lit(1)))
             .withColumn("enrolment", F.col("enrolment_boys") + F.col("enrolment_girls"))
             .drop("ac_year"))


# -- DIKSHA ----------------------------------------------------------------------------------------------

def diksha_content(pc: PrepContext) -> DataFrame:
    """Content plays and time spent per district (matched by name to the district master) and day."""
    df = pc.need("diksha_summary_rollup")
    d = pc.dims["district"].select(F.col("id").alias("district_id"), F.lower(F.trim("name")).alias("_dn"))
    f = df.select(col(df, "Date").cast("date").alias("date"),
                  F.lower(F.trim(col(df, "derived_loc_district"))).alias("_dn"),
                  F.coalesce(col(df, "content_subject"), F.lit("unknown")).alias("subject"),
                  F.coalesce(F.regexp_extract(col(df, "collection_name"), r"(?i)class\s*([0-9]+)", 1)
                             .try_cast("int"), F.lit(None).cast("int")).alias("grade"),
                  F.coalesce(col(df, "content_medium"), F.lit("unknown")).alias("medium"),
                  F.coalesce(F.nullif(col(df, "object_type"), F.lit("")), col(df, "content_mimetype"),
                             F.lit("unknown")).alias("content_type"),
                  col(df, "object_id").alias("content_id"), col(df, "content_name").alias("content_name"),
                  col(df, "total_count").cast("long").alias("plays"),
                  col(df, "total_timespent").cast("double").alias("time_spent"), _file(df).alias("_file"))
    return f.join(F.broadcast(d), "_dn", "left").drop("_dn")


def diksha_tpd(pc: PrepContext) -> DataFrame:
    """TPD course enrolments per school (user → school through the TPD mapping)."""
    t = pc.need("diksha_tpd")
    mp = pc.need("diksha_tpd_mapping")
    m = mp.select(F.lower(col(mp, "Diksha UUID")).alias("user_id"), code(mp, "School UDISE ID").alias("school_id")) \
        .dropDuplicates(["user_id"])
    f = t.select(F.lower(col(t, "user uuid")).alias("user_id"), col(t, "Collection Id").alias("course_id"),
                 col(t, "Collection Name").alias("course_name"),
                 col(t, "Enrolment Date").cast("date").alias("date"),
                 col(t, "progress").cast("double").alias("progress"),
                 F.lower(F.trim(col(t, "certificate status"))).alias("certificate_status"), _file(t).alias("_file"))
    return f.join(F.broadcast(m), "user_id", "inner")


# -- exceptions: coverage of every school-level source ---------------------------------------------------

COVERAGE_SOURCES = {   # source -> (school column, how to date a row)
    "student_attendance": ("SchoolId", "attendance"),
    "teacher_attendance": ("SCHCD", "attendance"),
    "inspection_master": ("SchoolId", "VisitDate"),
    "periodic_exam_result_trans": ("school_id", "exam_date"),
    "semester_exam_result_trans": ("school_id", "exam_date"),
    "infra_trans": ("school_id", None),
    "udise_sch_facility": ("udise_sch_code", None),
}


def _coverage(pc: PrepContext, source: str, school: str, dating: str | None) -> DataFrame | None:
    df = pc.read(source)
    if df is None:
        return None
    if dating == "attendance":
        ay = "AcademicYear" if has(df, "AcademicYear") else "AC_YEAR"
        y, m = calendar_year_month(df, ay, "month", pc.state.get("academic_year_start_month", 6))
        date = F.make_date(y, m, F.lit(1))
    elif dating and has(df, dating):
        date = F.trunc(col(df, dating).cast("date"), "month")
    else:
        date = F.lit(None).cast("date")
    return (df.select(code(df, school).alias("school_id"), date.alias("date"), _file(df).alias("_file"))
              .distinct().withColumn("source", F.lit(source)))


def coverage(pc: PrepContext) -> DataFrame:
    sources = pc.options.get("sources") or sorted(COVERAGE_SOURCES)
    frames = [f for s in sources if (f := _coverage(pc, s, *COVERAGE_SOURCES[s])) is not None]
    if not frames:
        raise MissingSource(", ".join(sources))
    return reduce(lambda a, b: a.unionByName(b), frames)


def unknown_schools(pc: PrepContext, lake_read: Reader, quarantine_read: Reader) -> DataFrame | None:
    """Schools with data but not in the hierarchy: silver rows whose school is not in the school master, and
    quarantined rows rejected for an unknown school (rule ``unknown_foreign_key`` on the school column)."""
    known = pc.hierarchy.select("school_id")
    frames = []
    for source, (school, dating) in sorted(COVERAGE_SOURCES.items()):
        cov = _coverage(pc, source, school, dating)
        if cov is not None:
            frames.append(cov.join(known, "school_id", "left_anti").groupBy("source", "school_id", "date")
                          .agg(F.count(F.lit(1)).alias("rows")).withColumn("origin", F.lit("silver")))
        q = quarantine_read(source)
        if q is not None and has(q, school) and "violations" in q.columns:
            bad = F.exists("violations", lambda v: (v["rule"] == "unknown_foreign_key") & (v["column"] == school))
            frames.append(q.where(bad).select(F.lit(source).alias("source"),
                                              F.trim(col(q, school)).alias("school_id"),
                                              F.lit(None).cast("date").alias("date"))
                          .groupBy("source", "school_id", "date").agg(F.count(F.lit(1)).alias("rows"))
                          .withColumn("origin", F.lit("quarantine")))
    if not frames:
        return None
    u = reduce(lambda a, b: a.unionByName(b), frames)
    return (u.withColumn("period", F.coalesce(F.date_format("date", "yyyy-MM"), F.lit("overall")))
             .groupBy("source", "period", "school_id", "origin").agg(F.sum("rows").alias("rows")))


PREPS: dict[str, Callable[[PrepContext], "DataFrame | DayWide"]] = {
    "student_attendance": student_attendance,
    "teacher_attendance": teacher_attendance,
    "crc": crc,
    "pat": pat,
    "sat": sat,
    "infrastructure": infrastructure,
    "udise": udise,
    "diksha_content": diksha_content,
    "diksha_tpd": diksha_tpd,
    "coverage": coverage,
}
