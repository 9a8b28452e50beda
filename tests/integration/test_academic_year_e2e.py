"""One academic-year rule end to end (issue 19.6): a June state and an April state, intake → kpis → publish.

The same student-attendance rows of academic year 2020-21 (a slice of the upstream sample, its July rows
re-labelled April, May and July, one zip per month) go through the pipeline twice, once with
``academic_year_start_month: 6`` and once with ``4`` in the state file. April and May of 2020-21 are
2021-04/05 in a June state and 2020-04/05 in an April state: the input folder of each file, silver's
calendar year and month, the latest date (as of) and every published month must follow the state. The
expected figures come from plain Python over the same rows.
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
import yaml

from cqube_spark.runner import run_job
from tests.integration.test_pipeline_lite import _rows

MASTERS = ["district_master", "block_master", "cluster_master", "school_master", "school_management"]
MONTHS = (4, 5, 7)
EVERY = 40   # one sample row in 40 (4,000 of 160,000): every school, fewer students


def month_slices(lite) -> dict[int, list[dict]]:
    """The sample's (July 2020-21) rows, one in ``EVERY``, dealt out to April, May and July in turn."""
    rows = _rows(lite / "student_attendance" / "student_attendance.zip")[::EVERY]
    out: dict[int, list[dict]] = {m: [] for m in MONTHS}
    for i, r in enumerate(rows):
        m = MONTHS[i % len(MONTHS)]
        out[m].append(dict(r, Month=str(m)))
    return out


def write_zip(path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), delimiter="|", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("student_attendance.csv", buf.getvalue())


def calendar(ay: str, month: int, start: int) -> int:
    first = int(ay[:4])
    return first if month >= start else first + 1


def expected(slices, start: int):
    """(as_of, {month 'YYYY-MM': (present, working)}) at state level, in plain Python."""
    acc, last = defaultdict(lambda: [0, 0]), None
    for m, rows in slices.items():
        for r in rows:
            year = calendar(r["AcademicYear"], m, start)
            for d in range(1, 32):
                v = r.get(str(d))
                if v in (None, "", "NULL"):
                    continue
                try:
                    date = dt.date(year, m, d)
                except ValueError:
                    continue
                code = int(v)
                if code in (1, 2):
                    a = acc[f"{year}-{m:02d}"]
                    a[0] += code == 1
                    a[1] += 1
                    last = max(last, date) if last else date
    return last, {k: tuple(v) for k, v in acc.items()}


@pytest.fixture(scope="module", params=[6, 4], ids=["june_state", "april_state"])
def state_run(request, spark, mock_data, tmp_path_factory):
    start = request.param
    base = tmp_path_factory.mktemp(f"ay{start}")
    root = base / "data"
    lite = mock_data / "test_data_lite"
    for s in MASTERS:
        shutil.copytree(lite / s, root / "emission" / s)
    slices = month_slices(lite)
    for m, rows in slices.items():
        write_zip(root / "emission" / "student_attendance" / f"student_attendance_{m:02d}.zip", rows)
    state = yaml.safe_load(open("configs/state.yaml"))
    state["state"]["academic_year_start_month"] = start
    state_file = base / "state.yaml"
    state_file.write_text(yaml.safe_dump(state))
    stage = {"intake": {"greatExpectations": False, "stateConfig": str(state_file)},
             "kpis": {"kpis": ["student_attendance"], "stateConfig": str(state_file)},
             "publish": {"kpis": ["student_attendance"]}}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CQUBE_DATA_ROOT", str(root))
        for name in ("EMISSION", "INPUT", "OUTPUT", "LAKE"):
            mp.delenv(f"CQUBE_{name}_URI", raising=False)
        code = run_job("pipeline", params=[f"stageParams={json.dumps(stage)}"])
    assert code == 0, "pipeline failed (see the JSON log above)"
    return start, root, slices


def test_each_file_goes_to_the_input_folder_of_its_calendar_month(state_run):
    start, root, slices = state_run
    got = sorted(str(p.relative_to(root / "input" / "student_attendance")).split("/")[:2]
                 for p in (root / "input" / "student_attendance").glob("*/*"))
    want = sorted([str(calendar("2020-21", m, start)), f"{calendar('2020-21', m, start)}-{m:02d}"] for m in MONTHS)
    assert got == want


def test_silver_places_each_row_in_the_states_calendar(spark, state_run):
    start, root, slices = state_run
    silver = spark.read.format("delta").load(str(root / "lake" / "silver" / "student_attendance"))
    got = {(r["month"], r["year"]): r["n"] for r in
           silver.groupBy("month", "year").count().withColumnRenamed("count", "n").collect()}
    assert got == {(m, calendar("2020-21", m, start)): len(rows) for m, rows in slices.items()}


def test_published_months_and_as_of_follow_the_state(state_run):
    start, root, slices = state_run
    as_of, want = expected(slices, start)
    out = root / "output" / "student_attendance"
    months = sorted(p.name for p in (out / "monthly").iterdir())
    assert months == sorted(want)
    for month, (present, working) in want.items():
        doc = json.loads((out / "monthly" / month / "state.json").read_text())
        assert doc["as_of"] == as_of.isoformat()
        assert [(e["present"], e["working"]) for e in doc["data"]] == [(present, working)]
