"""The report's consent rules, labels, ordering, quoting and sort on tiny frames (chispa)."""
import datetime as dt

import pytest
from chispa import assert_df_equality

from cqube_spark.exhaust import report, sources
from cqube_spark.exhaust.filters import ReportFilter
from cqube_spark.exhaust.job import DEFAULTS
from cqube_spark.config import load_job_config
from cqube_spark.runner import resolve_config_path

UTC = dt.timezone.utc
LOCS = ["state_name", "district_name", "block_name", "cluster_name", "school_code", "school_name"]


@pytest.fixture(scope="module")
def params():
    return {**DEFAULTS, **load_job_config(resolve_config_path("program-user-exhaust")).model_params}


def enrollment(spark, rows, keys=LOCS):
    full = []
    for r in rows:
        locs = r.get("locs", {})
        full.append((r.get("program_id", "P1"), "EXT-1", r.get("program_name", "Prog"), r.get("pii"), r["user_id"],
                     r.get("org", "O1"), "Org", "hm", "teacher", None, r.get("updated_at"),
                     *[locs.get(k) for k in keys]))
    return spark.createDataFrame(full, sources.enrollment_schema(keys))


def consent(spark, rows):
    return spark.createDataFrame(rows, sources.consent_schema())


def test_consent_status_active_any_case_latest_dates(spark):
    c = consent(spark, [
        ("u1", "Active", dt.datetime(2023, 1, 2, 10, tzinfo=UTC)),
        ("u1", "revoked", dt.datetime(2023, 3, 1, 10, tzinfo=UTC)),
        ("u2", "REVOKED", dt.datetime(2023, 2, 1, 10, tzinfo=UTC)),
        ("u2", "revoked", dt.datetime(2023, 2, 5, 10, tzinfo=UTC)),
        ("u3", " ACTIVE ", None),
    ])
    got = report.consent_status(c).orderBy("user_id")
    want = spark.createDataFrame([
        ("u1", True, dt.datetime(2023, 1, 2, 10, tzinfo=UTC)),
        ("u2", False, dt.datetime(2023, 2, 5, 10, tzinfo=UTC)),
        ("u3", True, None),
    ], "user_id string, consent_active boolean, consent_date timestamp")
    assert_df_equality(got, want, ignore_nullable=True)


def test_consent_rules_per_row(spark):
    e = enrollment(spark, [
        {"user_id": "a-not-required", "pii": False},
        {"user_id": "b-null-required", "pii": None},
        {"user_id": "c-required-no-row", "pii": True},
        {"user_id": "d-required-revoked", "pii": True},
        {"user_id": "e-required-active", "pii": True, "locs": {"district_name": "D1"}},
        {"user_id": "f-not-required-active", "pii": False},
    ])
    c = consent(spark, [
        ("d-required-revoked", "revoked", dt.datetime(2023, 2, 4, 20, tzinfo=UTC)),  # 5 Feb in Asia/Kolkata
        ("e-required-active", "active", dt.datetime(2023, 2, 3, 10, tzinfo=UTC)),
        ("f-not-required-active", "active", dt.datetime(2023, 2, 3, 10, tzinfo=UTC)),
    ])
    rows = report.report_rows(e, report.consent_status(c), LOCS).orderBy("user_id")
    got = rows.select("user_id", "username", "phone", "email", "consentflag", "consentprovideddate",
                      "district_name", "_need_pii")
    want = spark.createDataFrame([
        ("a-not-required", None, None, None, "No", None, None, False),
        ("b-null-required", None, None, None, "No", None, None, False),
        ("c-required-no-row", None, None, None, "No", None, None, False),
        ("d-required-revoked", None, None, None, "No", "05/02/2023", None, False),
        ("e-required-active", None, None, None, "Yes", "03/02/2023", "D1", True),
        ("f-not-required-active", None, None, None, "No", None, None, False),
    ], "user_id string, username string, phone string, email string, consentflag string, "
       "consentprovideddate string, district_name string, _need_pii boolean")
    assert_df_equality(got, want, ignore_nullable=True)


def test_labelled_orders_quotes_and_sorts(spark, params):
    e = enrollment(spark, [
        {"user_id": "u2", "pii": True, "program_name": "Prog, One", "locs": {"district_name": "B-dist"}},
        {"user_id": "u1", "pii": False, "program_name": "Prog, One", "locs": {"district_name": "B-dist"}},
        {"user_id": "u3", "pii": False, "program_name": "", "locs": {"district_name": "A-dist"}},
        {"user_id": "u0", "pii": False, "program_name": None},
    ])
    rows = report.report_rows(e, report.consent_status(consent(spark, [])), LOCS)
    got = report.labelled(rows, params, include_consent=True)
    assert got.columns == params["order_of_csv_column"] + ["_uid", "_need_pii"]
    assert [(r["User UUID"], r["Program Name"], r["District"]) for r in got.collect()] == [
        ("u0", None, None), ("u3", "", "A-dist"), ("u1", "'Prog, One'", "B-dist"), ("u2", "'Prog, One'", "B-dist")]


def test_consent_columns_dropped_when_no_row_requires_consent(spark, params):
    rows = report.report_rows(enrollment(spark, [{"user_id": "u1", "pii": False}]),
                              report.consent_status(consent(spark, [])), LOCS)
    got = report.labelled(rows, params, include_consent=False)
    consent_labels = {"User Name(On user consent)", "Mobile number(On user consent)", "Email ID(On user consent)",
                      "Consent Provided", "Consent Provided Date"}
    assert [c for c in got.columns if not c.startswith("_")] == [
        c for c in params["order_of_csv_column"] if c not in consent_labels]
    assert got.first()["_need_pii"] is False


def test_apply_filters_uses_literals(spark):
    e = enrollment(spark, [
        {"user_id": "u1", "org": "O1", "updated_at": dt.date(2023, 1, 5), "locs": {"district_name": "D1"}},
        {"user_id": "u2", "org": "O2", "updated_at": dt.date(2023, 1, 5), "locs": {"district_name": "D1"}},
        {"user_id": "u3", "org": "O1", "updated_at": dt.date(2023, 3, 1), "locs": {"district_name": "D1"}},
        {"user_id": "u4", "org": "O1", "updated_at": None, "locs": {"district_name": "D1"}},
        {"user_id": "u5", "org": "O1", "updated_at": dt.date(2023, 1, 5), "locs": {"district_name": "D2' OR '1'='1"}},
    ])
    def ids(f):
        return sorted(r.user_id for r in report.apply_filters(e, f).collect())
    assert ids(ReportFilter(program_id="P1")) == ["u1", "u2", "u3", "u4", "u5"]
    assert ids(ReportFilter(program_id="P1", organisation_ids=("O1",))) == ["u1", "u3", "u4", "u5"]
    assert ids(ReportFilter(program_id="P1", organisation_ids=("O1",), locations=(("district_name", "D1"),),
                            updated_from=dt.date(2023, 1, 1), updated_to=dt.date(2023, 1, 31))) == ["u1"]
    assert ids(ReportFilter(program_id="P1", locations=(("district_name", "D2' OR '1'='1"),))) == ["u5"]
    assert ids(ReportFilter(program_id="P2")) == []


def test_csv_segments_match_python_csv_and_template_places_pii(spark):
    import csv
    import io

    values = ["plain", "with,comma", 'with "quote"', "line\nbreak", None, "", " spaced "]
    df = spark.createDataFrame([(v, "x", "u1", True) for v in values],
                               "a string, b string, _uid string, _need_pii boolean")
    got = [r["_seg0"] for r in report.csv_segments(df, [["a", "b"]]).collect()]
    want = []
    for v in values:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([v, "x"])
        want.append(buf.getvalue()[:-1])
    assert got == want
    template, segments = report.csv_template(["U", "N", "M", "E", "C", "P"], {"N": "username", "M": "phone",
                                                                          "E": "email"})
    assert template == [("seg", 0), ("pii", "username"), ("pii", "phone"), ("pii", "email"), ("seg", 1)]
    assert segments == [["U"], ["C", "P"]]
    assert report.csv_template(["U", "C"], {}) == ([("seg", 0)], [["U", "C"]])
