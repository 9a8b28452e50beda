"""Replay requests: every form, every refusal (pure), and the plan's predicates on tiny frames (chispa)."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from cqube_spark.replay import request as R


def refused(doc, match: str, source: str = "req.json"):
    with pytest.raises(R.RequestError) as e:
        R.parse_request(doc, source)
    assert match in str(e.value), str(e.value)
    assert str(e.value).startswith(f"{source}: at ")
    return e.value


# ------------------------------------------------------------------------------------------------ forms

def test_attendance_and_crc_by_year_and_months():
    r = R.parse_request({"student_attendance": {"year": "2020", "months": ["01", "03"]},
                         "teacher_attendance": {"year": 2020, "months": [3, "1"]},
                         "crc": {"year": "2020", "months": ["02"]}})
    assert r.groups == {"student_attendance": {"year": 2020, "months": [1, 3]},
                        "teacher_attendance": {"year": 2020, "months": [1, 3]},
                        "crc": {"year": 2020, "months": [2]}}


def test_date_ranges_semester_exam_codes_batches_and_selections():
    r = R.parse_request({"diksha_summary_rollup": {"from_date": "2020-07-01", "to_date": "2020-07-31"},
                         "crc": {"from_date": "2020-07-03", "to_date": "2020-07-03"},
                         "semester": {"semester": [2, 1], "academic_year": "2020-21"},
                         "periodic_assessment_test": {"exam_code": ["PAT010201012021", "PAT010101012021"]},
                         "diksha_tpd": {"batch_id": ["046789546783", "03052315462389"]},
                         "udise": {"selection": "yes"}, "Infrastructure": {"selection": "Yes"},
                         "static": {"selection": "no"},
                         "requested_by": "admin@state", "reason": "wrong July file"})
    assert r.groups["diksha_summary_rollup"] == {"from_date": "2020-07-01", "to_date": "2020-07-31"}
    assert r.groups["crc"] == {"from_date": "2020-07-03", "to_date": "2020-07-03"}
    assert r.groups["semester"] == {"semester": [1, 2], "exam_code": [], "academic_year": "2020-21"}
    assert r.groups["periodic_assessment_test"] == {"exam_code": ["PAT010101012021", "PAT010201012021"]}
    assert r.groups["diksha_tpd"] == {"batch_id": ["03052315462389", "046789546783"]}
    assert r.groups["udise"] == {"selection": "yes"} and r.groups["infrastructure"] == {"selection": "yes"}
    assert "static" not in r.groups                      # "no" = untouched
    assert (r.requested_by, r.reason) == ("admin@state", "wrong July file")
    assert R.ReplayRequest.from_json(r.to_json()).groups == r.groups


def test_seed_document_with_empty_placeholders_selects_only_what_is_filled():
    doc = {"student_attendance": {"year": "2020", "months": ["01", "03"]},
           "teacher_attendance": {"year": "2020", "months": []},
           "diksha_summary_rollup": {"from_date": "", "to_date": ""},
           "semester": {"semester": []}, "periodic_assessment_test": {"exam_code": []},
           "diksha_tpd": {"batch_id": []}, "udise": {"selection": "no"}, "Infrastructure": {"selection": "no"},
           "static": {"selection": "no"}}
    assert set(R.parse_request(doc).groups) == {"student_attendance"}


def test_tables_per_source_exist_as_specs():
    from pathlib import Path

    specs = {p.stem for p in (Path(__file__).resolve().parents[2] / "configs" / "sources").glob("*.yaml")}
    for group, tables in R.GROUP_TABLES.items():
        assert set(tables) <= specs, group


def test_load_request_bytes_and_academic_year():
    r = R.load_request(json.dumps({"crc": {"year": "2021", "months": ["1"]}}).encode(), "x.json")
    assert r.groups == {"crc": {"year": 2021, "months": [1]}}
    assert R.academic_year(2020, 6) == "2020-21" and R.academic_year(2021, 5) == "2020-21"
    assert R.academic_year(2020, 1) == "2019-20"


# ------------------------------------------------------------------------------------------------ refusals

def test_refusals_name_the_file_the_path_and_the_problem():
    refused({"foo": {"year": "2020"}}, "$.foo: unknown source 'foo'")
    refused({"student_attendance": {"year": "2020", "months": ["13"]}}, "$.student_attendance.months[0]: month 13")
    refused({"student_attendance": {"year": "2020", "months": ["00"]}}, "month 0 is outside 1..12")
    refused({"teacher_attendance": {"year": "2020", "months": ["x1"]}}, "expected a month 1..12")
    refused({"crc": {"year": "20x0", "months": ["1"]}}, "$.crc.year: expected a year")
    refused({"diksha_summary_rollup": {"from_date": "2020-02-01", "to_date": "2020-01-01"}}, "wrong way round")
    refused({"diksha_summary_rollup": {"from_date": "2020-02-31", "to_date": "2020-03-01"}},
            "$.diksha_summary_rollup.from_date: expected a date YYYY-MM-DD")
    refused({"diksha_summary_rollup": {"from_date": "2020-02-01"}}, "missing key: 'to_date'")
    refused({"student_attendance": {"year": "2020", "months": "01"}}, "$.student_attendance.months")
    refused({"student_attendance": {"year": "2020", "months": ["01"], "day": 3}}, "unexpected key")
    refused({"udise": {"selection": "maybe"}}, "$.udise.selection")
    refused({"semester": {"semester": [3]}}, "semester 3 is not 1 or 2")
    refused({"semester": {"semester": [1], "academic_year": "2020"}}, "expected an academic year")
    refused({"periodic_assessment_test": {"exam_code": [""]}}, "expected a non-empty code")
    refused({"udise": {"selection": "no"}}, "selects nothing")
    refused({}, "selects nothing")
    refused(["student_attendance"], "expected a JSON object")
    refused({"student_attendance": {"year": "2020", "months": ["01"]},
             "Student_Attendance": {"year": "2020", "months": ["02"]}}, "given twice")
    with pytest.raises(R.RequestError, match=r"bad\.json: at line 1 column 2: invalid JSON"):
        R.load_request(b"{oops", "bad.json")


def test_one_bad_source_refuses_the_whole_request():
    doc = {"student_attendance": {"year": "2020", "months": ["06"]},
           "teacher_attendance": {"year": "2020", "months": ["14"]}}
    refused(doc, "$.teacher_attendance.months[0]")


# ------------------------------------------------------------------------------------------------ predicates

def _ids(df, pred):
    return sorted(r[0] for r in df.where(pred).select(df.columns[0]).collect())


def test_attendance_predicates_typed_raw_and_lineage(spark):
    req = R.parse_request({"student_attendance": {"year": "2020", "months": ["06", "01"]}})
    silver = spark.createDataFrame([(1, 2020, 6, "a"), (2, 2020, 7, "a"), (3, 2020, 1, "b"), (4, 2021, 6, "c"),
                                    (5, None, None, "c")], "id int, year int, month int, _file string")
    raw = spark.createDataFrame([(1, "2020-21", "6", "a"), (2, "2020-21", "06", "a"), (3, "2019-20", "1", "b"),
                                 (4, "2020-21", "1", "b"), (5, "2020-21", "x", "q"), (6, None, None, "q")],
                                "id int, AcademicYear string, Month string, _file string")
    (t,) = R.plan(req, {"lineage": {"student_attendance": ["q"]}, "files": {"student_attendance": ["a", "b"]}})
    assert _ids(silver, t.typed) == [1, 3]
    assert _ids(raw, t.raw) == [1, 2, 3, 5, 6]          # raw values, and every row of fully-deleted file q
    tracker = spark.createDataFrame([("f1", "student_attendance", "a"), ("f2", "student_attendance", "z"),
                                     ("f3", "teacher_attendance", "a")], "file_id string, source string, input_path string")
    assert _ids(tracker, t.tracker) == ["f1"]


def test_teacher_attendance_uses_its_own_raw_columns(spark):
    from chispa import assert_df_equality

    req = R.parse_request({"teacher_attendance": {"year": "2021", "months": ["03"]}})
    (t,) = R.plan(req)
    raw = spark.createDataFrame([("2020-21", "3"), ("2021-22", "3"), ("2020-21", "4")], "AC_YEAR string, MONTH string")
    assert_df_equality(raw.where(t.raw), spark.createDataFrame([("2020-21", "3")], "AC_YEAR string, MONTH string"))


def test_dated_predicates_for_crc_and_diksha(spark):
    req = R.parse_request({"crc": {"year": "2020", "months": ["07"]},
                           "diksha_summary_rollup": {"from_date": "2020-07-10", "to_date": "2020-07-12"}})
    targets = {t.table: t for t in R.plan(req)}
    assert set(targets) == {"inspection_master", "user_location_master", "diksha_summary_rollup"}
    visits = spark.createDataFrame([(1, dt.date(2020, 7, 1)), (2, dt.date(2020, 7, 31)), (3, dt.date(2020, 8, 1)),
                                    (4, None)], "id int, VisitDate date")
    assert _ids(visits, targets["inspection_master"].typed) == [1, 2]
    raw = spark.createDataFrame([(1, "2020-07-01"), (2, "2020-8-01"), (3, "bad"), (4, None)], "id int, VisitDate string")
    assert _ids(raw, targets["inspection_master"].raw) == [1]
    loc = spark.createDataFrame([(1, dt.datetime(2020, 7, 15, 12, 0)), (2, dt.datetime(2020, 6, 15, 12, 0))],
                                "id int, CreatedOn timestamp")
    assert _ids(loc, targets["user_location_master"].typed) == [1]
    loc_raw = spark.createDataFrame([(1, "2020-07-31 23:59:00"), (2, "2020-07-31")], "id int, CreatedOn string")
    assert _ids(loc_raw, targets["user_location_master"].raw) == [1]
    d = spark.createDataFrame([(1, dt.date(2020, 7, 9)), (2, dt.date(2020, 7, 10)), (3, dt.date(2020, 7, 12)),
                               (4, dt.date(2020, 7, 13))], "id int, Date date")
    assert _ids(d, targets["diksha_summary_rollup"].typed) == [2, 3]


def test_exam_predicates_use_resolved_codes_and_ids(spark):
    req = R.parse_request({"semester": {"semester": [1], "academic_year": "2020-21"},
                           "periodic_assessment_test": {"exam_code": ["PAT0101"]}})
    resolved = {"exam_codes": {"semester": ["SAT01"], "periodic_assessment_test": ["PAT0101"]},
                "exam_ids": {"semester": ["7"], "periodic_assessment_test": ["9"]}}
    t = {x.table: x for x in R.plan(req, resolved)}
    mst = spark.createDataFrame([(7, "SAT01", 1, "2020-21"), (8, "SAT02", 1, "2019-20"), (10, "SAT03", 2, "2020-21")],
                                "exam_id int, exam_code string, semester int, assessment_year string")
    assert _ids(mst, t["semester_exam_mst"].typed) == [7]
    res = spark.createDataFrame([(1, "SAT01"), (2, "SAT02")], "id int, exam_code string")
    assert _ids(res, t["semester_exam_result_trans"].typed) == [1]
    qst = spark.createDataFrame([(1, 7), (2, 8)], "question_id int, exam_id int")
    assert _ids(qst, t["semester_exam_qst_mst"].typed) == [1]
    qraw = spark.createDataFrame([(1, " 9"), (2, "8")], "question_id int, exam_id string")
    assert _ids(qraw, t["periodic_exam_qst_mst"].raw) == [1]
    pres = spark.createDataFrame([(1, "PAT0101"), (2, "PAT0102"), (3, None)], "id int, exam_code string")
    assert _ids(pres, t["periodic_exam_result_trans"].typed) == [1]


def test_batch_ids_and_full_refresh(spark):
    req = R.parse_request({"diksha_tpd": {"batch_id": ["B1"]}, "static": {"selection": "yes"}})
    t = {x.table: x for x in R.plan(req)}
    tpd = spark.createDataFrame([(1, "B1"), (2, "B2")], "id int, Batch_Id string")
    assert _ids(tpd, t["diksha_tpd"].typed) == [1]
    assert t["school_master"].full and not t["diksha_tpd"].full
    sm = spark.createDataFrame([(1,), (2,)], "id int")
    assert _ids(sm, t["school_master"].typed) == [1, 2]
    tracker = spark.createDataFrame([("f1", "school_master", "p"), ("f2", "student_attendance", "p")],
                                    "file_id string, source string, input_path string")
    assert _ids(tracker, t["school_master"].tracker) == ["f1"]


def test_periods_for_retention_skips():
    req = R.parse_request({"student_attendance": {"year": "2020", "months": ["06", "07"]},
                           "diksha_summary_rollup": {"from_date": "2020-07-01", "to_date": "2020-07-02"},
                           "diksha_tpd": {"batch_id": ["B"]}})
    assert R.periods(req) == [
        {"group": "diksha_summary_rollup", "from_date": "2020-07-01", "to_date": "2020-07-02"},
        {"group": "diksha_tpd", "codes": ["B"], "semester": None},
        {"group": "student_attendance", "month": "2020-06"},
        {"group": "student_attendance", "month": "2020-07"}]
