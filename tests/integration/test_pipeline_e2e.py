"""generate (all sources) → ``cqube-spark run pipeline`` → published outputs; a second run over the same data
publishes byte-identical files; the documented layout, fields and metadata.json."""
from __future__ import annotations

import json
import os

import pytest

from cqube_spark.kpi.spec import load_specs
from cqube_spark.runner import run_job
from cqube_spark.sample import generator

LEVELS = ["school", "cluster", "block", "district", "state"]
WINDOWS = ["last_day", "last_7_days", "last_30_days", "overall"]


def _files(out):
    """Every published file (through the documented paths) → bytes."""
    res = {}
    for top in sorted(os.listdir(out)):
        if top.startswith(("_", ".")) or top in ("current", "log_summary"):
            continue
        p = out / top
        if p.is_file():
            res[top] = p.read_bytes()
            continue
        for dirpath, _d, names in os.walk(p, followlinks=True):
            for n in names:
                fp = os.path.join(dirpath, n)
                res[os.path.relpath(fp, out)] = open(fp, "rb").read()
    return res


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e") / "data"
    out = root / "output"
    kw = dict(schools=24, students_per_school=6, months=["2020-06", "2020-07"], seed=7)
    generator.generate(str(root / "emission"), **kw)
    captured = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CQUBE_DATA_ROOT", str(root))
        for name in ("EMISSION", "INPUT", "OUTPUT", "LAKE"):
            mp.delenv(f"CQUBE_{name}_URI", raising=False)
        params = ['stageParams={"intake": {"greatExpectations": false}}']
        assert run_job("pipeline", params=params) == 0
        first = _files(out)
        meta1 = json.loads((out / "metadata.json").read_text())
        generator.generate(str(root / "emission"), **kw)           # the same data again
        assert run_job("pipeline", params=params) == 0
        second = _files(out)
        meta2 = json.loads((out / "metadata.json").read_text())
        captured = [first, second, meta1, meta2]
    return out, *captured


def test_second_run_publishes_identical_files(runs):
    _out, first, second, meta1, meta2 = runs
    # the report (report/...) is reproducible too; only the two metadata.json files carry the run id and time
    a = {k: v for k, v in first.items() if k not in ("metadata.json", "report/metadata.json")}
    b = {k: v for k, v in second.items() if k not in ("metadata.json", "report/metadata.json")}
    assert "report/index.html" in a and any(k.startswith("report/data/student_attendance/") for k in a)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    assert meta1["run_id"] != meta2["run_id"]
    strip = lambda m: [{k: v for k, v in f.items()} for f in m["files"]]  # noqa: E731
    assert strip(meta1) == strip(meta2)


@pytest.mark.parametrize("level", LEVELS)
def test_student_attendance_layout_and_fields(runs, level):
    out, first, *_ = runs
    paths = [f"student_attendance/monthly/{m}/{level}.json" for m in ("2020-06", "2020-07")] + \
            [f"student_attendance/{w}/{level}.json" for w in WINDOWS]
    for p in paths:
        doc = json.loads(first[p])
        assert doc["data"], p
        for e in doc["data"]:
            assert {f"{level}_id", f"{level}_name", "attendance_pct", "students", "schools"} <= e.keys()
            assert isinstance(e[f"{level}_id"], str) and e[f"{level}_name"]
            assert e["attendance_pct"] is None or round(e["attendance_pct"], 1) == e["attendance_pct"]
            assert {"lat", "lng"} <= e.keys()
        ids = [e[f"{level}_id"] for e in doc["data"]]
        assert ids == sorted(ids)
        assert b"generated_at" not in first[p] and b"run_id" not in first[p]
    if level == "school":
        doc = json.loads(first["student_attendance/overall/school.json"])
        assert all(len(e["school_id"]) == 11 for e in doc["data"])


def test_every_kpi_is_published(runs):
    _out, first, _s, meta, _m2 = runs
    kpis = {f["kpi"] for f in meta["files"]}
    assert {s.name for s in load_specs()} <= kpis
    assert {"hierarchy", "exceptions"} <= kpis


def test_metadata_lists_every_file(runs):
    out, first, _s, meta, meta2 = runs
    assert meta["run_id"] and meta["generated_at"]
    listed = {f["path"]: f for f in meta["files"]}
    report = {p for p in first if p.startswith("report/")}     # the report stage's files: report/metadata.json lists them
    assert "report/index.html" in report and "report/metadata.json" in report
    assert set(listed) == set(first) - {"metadata.json"} - report
    for path, f in listed.items():
        assert f["rows"] == len(json.loads(first[path])["data"]) if path.endswith(".json") else True
        assert {"kpi", "level", "period", "period_type", "as_of", "rows", "format", "sha256"} <= f.keys()
    sa = [f for f in meta["files"] if f["kpi"] == "student_attendance" and f["format"] == "json"]
    assert {f["level"] for f in sa} == set(LEVELS)
    assert {f["period"] for f in sa} >= {"2020-06", "2020-07", *WINDOWS}
    # after the second run, the switch points at the second run's files
    assert (out / "current").is_symlink() and json.loads((out / "_current.json").read_text())["run_id"] == meta2["run_id"]
    assert meta2["run_id"] != meta["run_id"]


def test_other_kpis_have_their_measures(runs):
    _out, first, *_ = runs
    checks = {
        "teacher_attendance/overall/state.json": ["attendance_pct", "teachers", "schools"],
        "crc/overall/district.json": ["visits", "visit_score", "pct_schools_0_visits", "schools_per_crc"],
        "pat/overall/by_grade/state.json": ["performance_pct", "grade", "students"],
        "sat/overall/by_semester/state.json": ["performance_pct", "semester"],
        "infrastructure/overall/block.json": ["infra_score", "water_access_pct", "toilet_access_pct", "pct_library"],
        "udise/overall/state.json": ["infrastructure_index", "health_safety_index", "enrolment"],
        "diksha_content/overall/by_top_contents/state.json": ["plays", "time_spent", "content_id"],
        "diksha_tpd/overall/district.json": ["enrolments", "completion_pct", "certificates"],
        "exceptions/overall/by_source/state.json": ["no_data", "no_data_pct", "source"],
    }
    for path, fields in checks.items():
        doc = json.loads(first[path])
        assert doc["data"], path
        assert set(fields) <= doc["data"][0].keys(), path
    pat = json.loads(first["pat/overall/state.json"])
    assert any("pooled" in n for n in pat["notes"])
    top = json.loads(first["diksha_content/overall/by_top_contents/state.json"])
    assert len(top["data"]) == 10
