"""Each indicator's spec + prep on tiny hand-made silver frames, against values worked out by hand / in Python.

Tiny state (cqube_spark.kpi.testing): S1, S2 in cluster C1; S3 in C2 (block B1, district D1); S4 in district
D2 whose cluster is missing from the master.
"""
from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F

from cqube_spark.config import ConfigError
from cqube_spark.kpi import engine, prep as P
from cqube_spark.kpi.spec import load_spec, load_specs, parse_spec
from cqube_spark.kpi.testing import attendance_frame, hierarchy_of

S1, S2, S3, S4 = "75010100101", "75010100102", "75010100201", "75020100101"


def run_kpi(spark, name, tables, as_of=None, state=None, spec=None):
    hier, dims = hierarchy_of(spark)
    spec = spec or load_spec(f"configs/kpis/{name}.yaml")
    pc = P.PrepContext(read=lambda s: tables.get(s), hierarchy=hier, dims=dims, options=spec.prep_options,
                       state=state or {}, spec_path=spec.path)
    fact = P.PREPS[spec.prep](pc)
    g, _ = engine.compute(spec, fact, hier, dims, as_of, "r")
    # Computed once here: every pick() below reads the materialised rows instead of re-running the plan.
    return spark.createDataFrame(g.collect(), g.schema)


def pick(g, level, uid, period="overall", breakdown="total", **bd):
    q = g.where((F.col("level") == level) & (F.col("id") == uid) & (F.col("period") == period)
                & (F.col("breakdown") == breakdown))
    for k, v in bd.items():
        q = q.where(F.col(k) == v)
    rows = q.collect()
    assert len(rows) == 1, (level, uid, period, breakdown, bd, rows)
    return rows[0]


def test_every_shipped_spec_is_valid():
    names = {s.name for s in load_specs()}
    assert names == {"student_attendance", "teacher_attendance", "crc", "pat", "sat", "infrastructure", "udise",
                     "diksha_content", "diksha_tpd", "exceptions"}


@pytest.mark.parametrize("doc,path", [
    ({"ratios": {"r": {"numerator": "nope", "denominator": "a"}}}, "$.ratios.r.numerator"),
    ({"outputs": ["zzz"]}, "$.outputs[0]"),
    ({"measures": {"a": {"agg": "sum"}}}, "$.measures.a"),
    ({"measures": {"a": {"agg": "median", "column": "x"}}}, "$.measures.a.agg"),
    ({"periods": {"windows": ["last_year"]}}, "$.periods.windows[0]"),
])
def test_bad_specs_name_the_path(doc, path):
    base = {"name": "k", "prep": "x", "levels": ["school", "state"], "periods": {"windows": ["overall"]},
            "measures": {"a": {"agg": "count"}}, "outputs": ["a"]}
    with pytest.raises(ConfigError) as e:
        parse_spec({**base, **doc}, "k.yaml")
    assert e.value.path == path


def test_teacher_attendance_weights_codes(spark):
    rows = [(11, int(S1), 2020, 7, [1, 3, 6, 7, 2, 4, 5, None], "ta.csv"),
            (12, int(S1), 2020, 7, [3, 3, 2], "ta.csv"),
            (13, int(S4), 2020, 7, [1, 1, 4], "ta.csv")]
    ta = attendance_frame(spark, rows, school="SCHCD", person="TCHCD", ay="AC_YEAR")
    g = run_kpi(spark, "teacher_attendance", {"teacher_attendance": ta})
    w = {1: 1, 6: 1, 7: 1, 3: 0.5}
    for level, uid, rs in [("school", S1, rows[:2]), ("state", "75", rows), ("district", "7502", rows[2:])]:
        codes = [c for r in rs for c in r[4] if c is not None]
        present = sum(w.get(c, 0) for c in codes)
        working = sum(1 for c in codes if c in (1, 2, 3, 4, 6, 7))
        r = pick(g, level, uid, "2020-07")
        assert (r["present"], r["working"], r["teachers"]) == (present, working, len(rs))
        assert r["attendance_pct"] == round(100 * present / working, 1)


def test_crc_visit_buckets_score_and_schools_per_crc(spark):
    insp, loc = [], []
    visits = {S1: [True, True, True, False], S2: [True], S4: [True] * 12}      # S3: no visit at all
    observers = {S1: 1001, S2: 1001, S4: 1002}
    i = 0
    for school, flags in visits.items():
        for k, inside in enumerate(flags):
            i += 1
            insp.append((i, observers[school], int(school), dt.date(2020, 7, 1 + k), "im.csv"))
            loc.append((i, i, inside))
    im = spark.createDataFrame(insp, "InspectionId long, ObserverId long, SchoolId long, VisitDate date, _file string")
    ul = spark.createDataFrame(loc, "UserLocationMasterId long, InspectionId long, InSchoolLocation boolean")
    g = run_kpi(spark, "crc", {"inspection_master": im, "user_location_master": ul})
    st = pick(g, "state", "75", "2020-07")
    assert (st["visits"], st["missed_visits"], st["schools_total"], st["crcs"]) == (16, 1, 4, 2)
    assert (st["visits_0"], st["visits_1_2"], st["visits_3_5"], st["visits_6_10"], st["visits_gt_10"]) == (1, 1, 1, 0, 1)
    assert (st["pct_schools_0_visits"], st["visit_score"], st["visits_per_school"], st["schools_per_crc"]) == \
        (25.0, 75.0, 4.0, 2.0)
    s3 = pick(g, "school", S3, "2020-07")                     # densified: a school without visits has a row
    assert (s3["visits"], s3["visits_0"], s3["schools_total"]) == (0, 1, 1)
    c1 = pick(g, "cluster", "7501010001", "2020-07")
    assert (c1["crcs"], c1["schools_total"], c1["visits"]) == (1, 2, 4)


def _exam_tables(spark, prefix="periodic", semester=False):
    code = "SAT" if semester else "PAT"
    mst_rows = [(1, 3, 1, f"{code}030101072020", dt.date(2020, 7, 1), "Subject1"),
                (2, 4, 1, f"{code}040101072020", dt.date(2020, 7, 1), "Subject1")]
    mst = spark.createDataFrame(mst_rows, "exam_id int, standard int, subject_id int, exam_code string, "
                                          "exam_date date, subject_name string")
    if semester:
        mst = mst.withColumn("semester", F.lit(1))
    qst = spark.createDataFrame([(101, 1, "LO-1", "LO-1", 10.0)] + [(200 + k, 2, f"LO-{k}", "x", 5.0) for k in range(9)],
                                "question_id int, exam_id int, indicator_title string, indicator string, "
                                "question_marks double")
    res = [(1, f"{code}030101072020", 1, int(S1), 3, 101, 10.0, "r.csv")] + \
          [(2, f"{code}040101072020", 2, int(S1), 4, 200 + k, 1.0, "r.csv") for k in range(9)]
    rt = spark.createDataFrame(res, "exam_id int, exam_code string, student_uid long, school_id long, "
                                    "studying_class int, question_id int, obtained_marks double, _file string")
    return {f"{prefix}_exam_mst": mst, f"{prefix}_exam_qst_mst": qst, f"{prefix}_exam_result_trans": rt}


def test_pat_rolls_grades_up_by_marks_not_by_mean_of_grade_percentages(spark):
    g = run_kpi(spark, "pat", _exam_tables(spark))
    g3 = pick(g, "state", "75", breakdown="grade", grade=3)
    g4 = pick(g, "state", "75", breakdown="grade", grade=4)
    total = pick(g, "state", "75")
    assert (g3["performance_pct"], g4["performance_pct"]) == (100.0, 20.0)
    assert total["performance_pct"] == round(100 * (10 + 9) / (10 + 45), 1) == 34.5   # not (100 + 20) / 2
    assert (total["students"], total["schools"]) == (2, 1)
    lo = pick(g, "school", S1, breakdown="indicator", grade=4, indicator="LO-3")
    assert (lo["obtained"], lo["maximum"], lo["performance_pct"]) == (1.0, 5.0, 20.0)
    assert pick(g, "state", "75", "2020-07", breakdown="exam", exam_code="PAT040101072020")["performance_pct"] == 20.0
    assert pick(g, "state", "75", "2020-21")["performance_pct"] == 34.5


def test_sat_by_semester(spark):
    g = run_kpi(spark, "sat", _exam_tables(spark, "semester", semester=True))
    assert pick(g, "district", "7501", breakdown="semester", semester=1)["performance_pct"] == 34.5


def _infra(spark):
    cols = ["NoOfToilet", "handwash_yn", "HaveCCTV", "HaveLibrary", "HaveDrinkingWater", "tap_water_functional",
            "HaveElectricity", "playground_yn", "boys_functional_toilet", "girls_functional_toilet", "HaveCWSNToilet"]
    rows = [(int(S1), 2, 1, 0, 1, 1, 0, 1, 1, 3, 0, 1), (int(S2), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
            (int(S3), 1, 1, 1, 1, 1, 4, 1, 1, 1, 1, 1)]
    df = spark.createDataFrame([r + ("it.csv",) for r in rows], "school_id long, " + ", ".join(f"{c} int" for c in cols)
                               + ", _file string")
    return df, cols, rows


def test_infrastructure_score_access_and_item_shares(spark):
    df, cols, rows = _infra(spark)
    spec = load_spec("configs/kpis/infrastructure.yaml")
    weights = spec.prep_options["weights"]
    g = run_kpi(spark, "infrastructure", {"infra_trans": df})
    scores = {r[0]: sum(weights[c] for c, v in zip(cols, r[1:]) if v > 0) for r in rows}
    assert scores[int(S3)] == 100 and scores[int(S2)] == 0
    for (level, uid), members in {("school", S1): [S1], ("district", "7501"): [S1, S2, S3]}.items():
        r = pick(g, level, uid)
        assert r["infra_score"] == round(sum(scores[int(s)] for s in members) / len(members), 1)
    d1 = pick(g, "district", "7501")
    assert (d1["schools"], d1["water_access_pct"], d1["toilet_access_pct"], d1["pct_library"]) == \
        (3, round(200 / 3, 1), round(200 / 3, 1), round(200 / 3, 1))


def test_infrastructure_weights_must_add_up_to_100(spark):
    df, _c, _r = _infra(spark)
    spec = load_spec("configs/kpis/infrastructure.yaml")
    bad = dict(spec.prep_options, weights={**spec.prep_options["weights"], "HaveCCTV": 6})
    spec_bad = spec.__class__(**{**spec.__dict__, "prep_options": bad})
    with pytest.raises(ConfigError, match="add up to 100, got 101"):
        run_kpi(spark, "infrastructure", {"infra_trans": df}, spec=spec_bad)


def test_infrastructure_weights_from_the_emitted_master_and_state_deactivation(spark):
    df, _c, _r = _infra(spark)
    wm = spark.createDataFrame([("HaveLibrary", "study", 50, 1), ("HaveElectricity", "energy", 50, 1),
                                ("HaveCCTV", "x", 30, 0)], "infrastructure string, infrastructure_category string, "
                                                           "score int, status int")
    g = run_kpi(spark, "infrastructure", {"infra_trans": df, "infrastructure_master": wm})
    assert pick(g, "school", S1)["infra_score"] == 100.0 and pick(g, "school", S2)["infra_score"] == 0.0
    state = {"optional_attributes": {"infra_trans": {"HaveLibrary": False}}}
    g2 = run_kpi(spark, "infrastructure", {"infra_trans": df, "infrastructure_master": wm}, state=state)
    assert pick(g2, "school", S1)["infra_score"] == 100.0       # electricity re-normalised to 100


def test_udise_indices_and_enrolment(spark):
    fac = spark.createDataFrame([(int(S1), "2020-21", 1, 1, 1, 2, 4, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 250, "f.csv"),
                                 (int(S2), "2020-21", 2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 0, "f.csv")],
                                "udise_sch_code long, ac_year string, electricity_yn int, drink_water_yn int, "
                                "toilet_yn int, toiletb_fun int, toiletb int, toiletg_fun int, toiletg int, "
                                "handwash_yn int, playground_yn int, ramps_yn int, hm_room_yn int, medchk_yn int, "
                                "dewormtab_yn int, library_yn int, desktop_yn int, lib_books int, _file string")
    enr = spark.createDataFrame([(int(S1), "2020-21", 1, 1, 10, 12), (int(S1), "2020-21", 1, 2, 5, 3)],
                                "udise_sch_code long, ac_year string, item_group int, item_id int, c1_b int, c1_g int")
    g = run_kpi(spark, "udise", {"udise_sch_facility": fac, "udise_sch_enr_fresh": enr})
    s1 = pick(g, "school", S1, "2020-21")
    # infrastructure metrics present: electricity 2, water 2, toilet 2, functional ratio 2 (4/6), handwash 1 (no),
    # playground 1, ramps 1, hm room 1
    exp = 100 * (2 + 2 + 2 + 2 * (4 / 6) + 0 + 1 + 1 + 1) / 12
    assert s1["infrastructure_index"] == round(exp, 1)
    assert (s1["enrolment"], s1["girls_pct"]) == (30, round(100 * 15 / 30, 1))
    # learning resources: library 2 (yes) + lib_books 250/500 x1 + desktop 1 = 3.5 of 4 present weights
    assert s1["learning_resources_index"] == round(100 * 3.5 / 4, 1)
    d1 = pick(g, "district", "7501", "2020-21")
    assert d1["infrastructure_index"] == round(exp / 2, 1) and d1["schools"] == 2


def test_diksha_content_by_district_name_and_top_contents(spark):
    rows = []
    for i in range(12):
        rows.append((dt.date(2020, 7, 1 + i % 3), "d1" if i % 2 else "D2", "Science", f"Class {3 + i % 2} Science",
                     "Hindi", "video/mp4", f"do_{i:02d}", f"content{i}", 10 + i, 60.0 * (i + 1), "ds.csv"))
    ds = spark.createDataFrame(rows, "Date date, derived_loc_district string, content_subject string, "
                                     "collection_name string, content_medium string, content_mimetype string, "
                                     "object_id string, content_name string, total_count long, "
                                     "total_timespent double, _file string") \
        .withColumn("object_type", F.lit(None).cast("string"))
    g = run_kpi(spark, "diksha_content", {"diksha_summary_rollup": ds})
    st = pick(g, "state", "75")
    assert (st["plays"], st["time_spent"]) == (sum(10 + i for i in range(12)), sum(60.0 * (i + 1) for i in range(12)))
    d1 = pick(g, "district", "7501")
    assert d1["plays"] == sum(10 + i for i in range(12) if i % 2)
    assert pick(g, "state", "75", "2020-07-02", breakdown="grade", grade=4)["plays"] == sum(
        10 + i for i in range(12) if i % 3 == 1 and i % 2 == 1)
    top = g.where("level = 'state' and period = 'overall' and breakdown = 'top_contents'").collect()
    assert sorted(r["content_id"] for r in top) == [f"do_{i:02d}" for i in range(2, 12)]
    assert pick(g, "state", "75", "last_day")["plays"] == sum(10 + i for i in range(12) if i % 3 == 2)


def test_diksha_tpd_completion_and_certificates(spark):
    u = ["00000000-0000-4000-8000-00000000000%d" % k for k in range(4)]
    mp = spark.createDataFrame([(u[0], int(S1)), (u[1], int(S1)), (u[2], int(S4)), (u[3], int(S3))],
                               "Diksha_UUID string, School_UDISE_ID long")
    t = spark.createDataFrame([(u[0], "c1", "Course 1", dt.date(2020, 7, 1), 100.0, "Issued", "t.csv"),
                               (u[1], "c1", "Course 1", dt.date(2020, 7, 2), 50.0, "", "t.csv"),
                               (u[2], "c1", "Course 1", dt.date(2020, 7, 2), 100.0, "Issued", "t.csv"),
                               (u[2], "c2", "Course 2", dt.date(2020, 7, 3), 0.0, None, "t.csv")],
                              "user_uuid string, Collection_Id string, Collection_Name string, Enrolment_Date date, "
                              "progress double, certificate_status string, _file string")
    g = run_kpi(spark, "diksha_tpd", {"diksha_tpd": t, "diksha_tpd_mapping": mp})
    st = pick(g, "state", "75")
    assert (st["enrolments"], st["completions"], st["certificates"], st["users"], st["schools"]) == (4, 2, 2, 3, 2)
    assert st["completion_pct"] == 50.0
    c1 = pick(g, "school", S1, breakdown="course", course_id="c1")
    assert (c1["enrolments"], c1["completion_pct"]) == (2, 50.0)


def test_exceptions_schools_without_data_per_source_and_month(spark):
    sa = attendance_frame(spark, [(1, int(S1), 2020, 7, [1], "a.csv"), (2, int(S2), 2020, 7, [1], "a.csv"),
                                  (3, int(S1), 2020, 6, [1], "b.csv")])
    it = spark.createDataFrame([(int(S3), "i.csv")], "school_id long, _file string")
    spec = load_spec("configs/kpis/exceptions.yaml")
    spec = spec.__class__(**{**spec.__dict__, "prep_options": {"sources": ["student_attendance", "infra_trans"]}})
    g = run_kpi(spark, "exceptions", {"student_attendance": sa, "infra_trans": it}, spec=spec)
    jul = pick(g, "state", "75", "2020-07", breakdown="source", source="student_attendance")
    assert (jul["no_data"], jul["schools_total"], jul["no_data_pct"]) == (2, 4, 50.0)
    jun = pick(g, "district", "7501", "2020-06", breakdown="source", source="student_attendance")
    assert (jun["no_data"], jun["schools_total"]) == (2, 3)
    infra = pick(g, "state", "75", "overall", breakdown="source", source="infra_trans")
    assert (infra["no_data"], infra["has_data"]) == (3, 1)
    assert pick(g, "school", S3, "2020-07", breakdown="source", source="student_attendance")["no_data"] == 1


def test_unknown_schools_from_silver_and_quarantine(spark):
    hier, dims = hierarchy_of(spark)
    sa = attendance_frame(spark, [(1, 99999999999, 2020, 7, [1], "a.csv"), (2, int(S1), 2020, 7, [1], "a.csv")])
    q = spark.createDataFrame([("88888888888", [("unknown_foreign_key", "SchoolId", "x")])],
                              "SchoolId string, violations array<struct<rule:string,column:string,reason:string>>")
    pc = P.PrepContext(read=lambda s: sa if s == "student_attendance" else None, hierarchy=hier, dims=dims,
                       options={}, state={})
    u = P.unknown_schools(pc, None, lambda s: q if s == "student_attendance" else None)
    got = sorted(tuple(r) for r in u.select("source", "period", "school_id", "origin", "rows").collect())
    assert got == [("student_attendance", "2020-07", "99999999999", "silver", 1),
                   ("student_attendance", "overall", "88888888888", "quarantine", 1)]
