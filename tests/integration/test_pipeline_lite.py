"""Student attendance on the upstream sample (test_data_lite), end to end: intake → kpis → publish.

The expected figures are computed independently in plain Python from the zipped CSVs (csv module), and
compared with the published JSON files at school, district and state level for the month and the windows.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import shutil
import zipfile
from collections import defaultdict

import pytest

from cqube_spark.runner import run_job

SOURCES = ["district_master", "block_master", "cluster_master", "school_master", "school_management",
           "student_attendance"]
WINDOW_DAYS = {"last_day": 1, "last_7_days": 7, "last_30_days": 30}


def _rows(zpath):
    with zipfile.ZipFile(zpath) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".csv"))
        text = zf.read(name).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text), delimiter="|"))


def plain_python(mock):
    """{(level, id, period): (present, working, students, schools, pct)} from the raw files."""
    schools = {r["udise_sch_code"]: r for r in _rows(mock / "school_master" / "school_mst.zip")}
    days = []   # (school, student, date, code)
    for z in sorted((mock / "student_attendance").glob("*.zip")):
        for r in _rows(z):
            first = int(r["AcademicYear"][:4])
            month = int(r["Month"])
            year = first + 1 if month <= 5 else first
            for d in range(1, 32):
                v = r.get(str(d))
                if v in (None, "", "NULL"):
                    continue
                try:
                    date = dt.date(year, month, d)
                except ValueError:
                    continue
                days.append((r["SchoolId"], r["StudentId"], date, int(v)))
    as_of = max(d for _s, _p, d, _c in days)
    acc = defaultdict(lambda: [0, 0, set(), set()])
    for school, student, date, code in days:
        periods = [date.strftime("%Y-%m"), "overall"] + \
            [w for w, n in WINDOW_DAYS.items() if as_of - dt.timedelta(days=n - 1) <= date <= as_of]
        sm = schools[school]
        for level, uid in (("school", school), ("district", sm["district_cd"]), ("state", "75")):
            for p in periods:
                a = acc[(level, uid, p)]
                a[0] += code == 1
                a[1] += code in (1, 2)
                if code in (1, 2):
                    a[2].add(student)
                    a[3].add(school)
    return as_of, {k: (v[0], v[1], len(v[2]), len(v[3]), round(100.0 * v[0] / v[1], 1))
                   for k, v in acc.items() if v[1]}


@pytest.fixture(scope="module")
def published(spark, mock_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("lite") / "data"
    lite = mock_data / "test_data_lite"
    for s in SOURCES:
        shutil.copytree(lite / s, root / "emission" / s)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CQUBE_DATA_ROOT", str(root))
        for name in ("EMISSION", "INPUT", "OUTPUT", "LAKE"):
            mp.delenv(f"CQUBE_{name}_URI", raising=False)
        code = run_job("pipeline", params=['stageParams={"kpis": {"kpis": ["student_attendance"]}, '
                                           '"publish": {"kpis": ["student_attendance"]}, '
                                           '"intake": {"greatExpectations": false}}'])
    assert code == 0, "pipeline failed (see the JSON log above)"
    return root / "output", plain_python(lite)


@pytest.mark.parametrize("level", ["school", "district", "state"])
@pytest.mark.parametrize("period", ["monthly/2020-07", "overall", "last_7_days", "last_day", "last_30_days"])
def test_published_attendance_matches_plain_python(published, level, period):
    out, (as_of, exp) = published
    doc = json.loads((out / "student_attendance" / period / f"{level}.json").read_text())
    assert doc["as_of"] == as_of.isoformat()
    key = period.split("/")[-1]
    want = {uid: v for (lv, uid, p), v in exp.items() if lv == level and p == key}
    got = {e[f"{level}_id"]: (e["present"], e["working"], e["students"], e["schools"], e["attendance_pct"])
           for e in doc["data"]}
    assert got == want
    assert all(e[f"{level}_name"] for e in doc["data"])
