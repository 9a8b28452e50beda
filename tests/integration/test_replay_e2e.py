"""Data replay end to end on generated attendance (20 schools, 5 students, June + July 2020):

load + publish → replay June → June gone from every table and output, July byte-identical → re-emit a
corrected June → new indicators → undo (refused while tables changed, then --force) → the old state is back.
Plus: a crash in the middle of a replay (rerun completes it), refusals, and the retention job.

The loaded state is built once per module (intake + kpis + publish) and copied for each test.
"""
from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from cqube_spark import storage
from cqube_spark.runner import run_job

MONTHS = ["2020-06", "2020-07"]


def _write_configs(d: Path) -> dict[str, str]:
    """Test configs: GE off, the student attendance KPI only, JSON outputs (tiny and quick on 2 cores)."""
    repo = Path(__file__).resolve().parents[2] / "configs" / "jobs"
    d.mkdir(parents=True, exist_ok=True)
    cfg = {}

    def put(name, params):
        doc = json.loads((repo / f"{name}.json").read_text())
        doc["modelParams"].update(params)
        doc["parallelization"] = 2
        (d / f"{name}.json").write_text(json.dumps(doc))
        cfg[name] = str(d / f"{name}.json")

    put("intake", {"greatExpectations": False})
    put("kpis", {"kpis": ["student_attendance"]})
    put("publish", {"kpis": ["student_attendance"], "formats": ["json"]})
    put("pipeline", {"intake": cfg["intake"], "kpis": cfg["kpis"], "publish": cfg["publish"]})
    put("replay", {"kpis": cfg["kpis"], "publish": cfg["publish"]})
    put("retention", {"kpis": cfg["kpis"], "publish": cfg["publish"]})
    return cfg


def _use_root(monkeypatch, root: Path) -> None:
    monkeypatch.setenv("CQUBE_DATA_ROOT", str(root))
    for name in ("EMISSION", "INPUT", "OUTPUT", "LAKE"):
        monkeypatch.delenv(f"CQUBE_{name}_URI", raising=False)


@pytest.fixture(scope="module")
def base(spark, tmp_path_factory):
    """Masters + two months of attendance loaded, gold computed, outputs published (built once)."""
    from cqube_spark.sample.generator import generate

    tmp = tmp_path_factory.mktemp("replay")
    cfg = _write_configs(tmp / "configs")
    root = tmp / "base"
    for sub in ("emission", "input", "output", "lake"):
        (root / sub).mkdir(parents=True)
    generate(str(root / "emission"), schools=20, students_per_school=5, sources="masters,student_attendance",
             months=MONTHS)
    mp = pytest.MonkeyPatch()
    _use_root(mp, root)
    try:
        assert run_job(cfg["pipeline"]) == 0
    finally:
        mp.undo()
    return {"root": root, "cfg": cfg, "tmp": tmp}


@pytest.fixture
def state(base, tmp_path, monkeypatch):
    root = tmp_path / "data"
    shutil.copytree(base["root"], root, symlinks=True)
    _use_root(monkeypatch, root)
    return {"root": root, "cfg": base["cfg"]}


# -------------------------------------------------------------------------------------------- helpers

def lake(spark, root: Path, *parts: str):
    return spark.read.format("delta").load(str(root / "lake" / Path(*parts)))


def outputs(root: Path, kpi: str = "student_attendance") -> dict[str, bytes]:
    """Every published file of a KPI (through the stable symlinks), path → bytes."""
    base = root / "output" / kpi
    if not base.exists():
        return {}
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def june_rows(spark, root: Path) -> dict[str, int]:
    n = {"silver": lake(spark, root, "silver", "student_attendance")
         .where((F.col("year") == 2020) & (F.col("month") == 6)).count()}
    for layer in ("bronze", "quarantine"):
        p = root / "lake" / layer / "student_attendance"
        n[layer] = (lake(spark, root, layer, "student_attendance")
                    .where((F.col("AcademicYear") == "2020-21") & (F.trim("Month").cast("int") == 6)).count()
                    if p.exists() else 0)
    n["file_tracker"] = (lake(spark, root, "meta", "file_tracker")
                         .where(F.col("member").contains("2020_06") & (F.col("status") == "loaded")).count())
    n["gold"] = (lake(spark, root, "gold", "student_attendance")
                 .where((F.col("period_type") == "month") & (F.col("period") == "2020-06")).count())
    return n


def replay_log(spark, root: Path) -> list[dict]:
    return [r.asDict() for r in lake(spark, root, "meta", "replay_log").orderBy("created_at", "replay_id").collect()]


def put_request(root: Path, name: str, doc) -> Path:
    d = root / "emission" / "data_replay"
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def corrected_june_zip(root: Path, dest: Path) -> None:
    """The June file as loaded, corrected: every absent day (2) becomes present (1)."""
    (src,) = list((root / "input" / "student_attendance" / "2020" / "2020-06").rglob("*.zip"))
    with zipfile.ZipFile(src) as zf:
        member = next(n for n in zf.namelist() if n.endswith(".csv"))
        lines = zf.read(member).decode().split("\n")
    out = [lines[0]] + ["|".join(v if i < 6 or v != "2" else "1" for i, v in enumerate(line.split("|")))
                        for line in lines[1:]]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, "\n".join(out))
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(buf.getvalue())


def state_pct(root: Path, period: str) -> float:
    doc = json.loads((root / "output" / "student_attendance" / "monthly" / period / "state.json").read_text())
    return doc["data"][0]["attendance_pct"]


# -------------------------------------------------------------------------------------------- the proof

def test_crash_in_the_middle_then_rerun_completes(spark, state):
    root, cfg = state["root"], state["cfg"]
    req = root.parent / "july.json"
    req.write_text(json.dumps({"student_attendance": {"year": "2020", "months": ["07"]}}))
    n_july = lake(spark, root, "silver", "student_attendance").where("month = 7").count()
    raw_july = lake(spark, root, "bronze", "student_attendance").where(F.trim("Month") == "7").count()
    assert n_july > 0 and raw_july >= n_july
    # crash after the first table (silver): bronze, quarantine and file_tracker not yet
    assert run_job(cfg["replay"], params=[f"request={req}", "failAfterTables=1", "recompute=false"]) == 1
    (row,) = replay_log(spark, root)
    assert row["status"] == "RUNNING"
    assert json.loads(row["deleted_json"]) == {"silver/student_attendance": n_july}
    assert lake(spark, root, "silver", "student_attendance").where("month = 7").count() == 0
    assert lake(spark, root, "bronze", "student_attendance").where(F.trim("Month") == "7").count() == raw_july
    # rerun (no request): resumes the open replay first, idempotently, and completes it
    assert run_job(cfg["replay"], params=["recompute=false"]) == 0
    (row,) = replay_log(spark, root)
    assert row["status"] == "DONE"
    deleted = json.loads(row["deleted_json"])
    assert deleted["silver/student_attendance"] == n_july and deleted["bronze/student_attendance"] == raw_july
    assert deleted["meta/file_tracker"] == 1
    assert lake(spark, root, "bronze", "student_attendance").where(F.trim("Month") == "7").count() == 0
    assert lake(spark, root, "silver", "student_attendance").where("month = 6").count() > 0
    # each table was deleted from exactly once (one tagged DELETE commit per table)
    from delta.tables import DeltaTable

    hist = DeltaTable.forPath(spark, str(root / "lake" / "silver" / "student_attendance")).history()
    assert hist.where(F.col("userMetadata") == f"replay:{row['replay_id']}").count() == 1


def test_refused_requests_delete_nothing(spark, state, capsys):
    root, cfg = state["root"], state["cfg"]
    versions = {p: len(list((root / "lake" / p / "_delta_log").glob("*.json")))
                for p in ("silver/student_attendance", "bronze/student_attendance", "meta/file_tracker")}
    put_request(root, "a_bad_month.json", {"student_attendance": {"year": "2020", "months": ["06", "13"]}})
    put_request(root, "b_unknown.json", {"student_attendance": {"year": "2020", "months": ["06"]}, "exams": {}})
    put_request(root, "c_dates.json", {"diksha_summary_rollup": {"from_date": "2020-07-31", "to_date": "2020-07-01"}})
    put_request(root, "d_broken.json", "{not json")
    assert run_job(cfg["replay"], params=["recompute=false"]) == 0
    refused = root / "emission" / "data_replay" / "_refused"
    reasons = {p.name.split("_", 1)[1]: json.loads(p.read_text())["error"] for p in refused.glob("*.reason.json")}
    assert "month 13 is outside 1..12" in reasons["a_bad_month.json.reason.json"]
    assert "unknown source 'exams'" in reasons["b_unknown.json.reason.json"]
    assert "wrong way round" in reasons["c_dates.json.reason.json"]
    assert "invalid JSON" in reasons["d_broken.json.reason.json"]
    assert {p: len(list((root / "lake" / p / "_delta_log").glob("*.json"))) for p in versions} == versions
    assert [r["status"] for r in replay_log(spark, root)] == ["REFUSED"] * 4
    # --request FILE that is refused: exit 2 with the message, nothing deleted
    bad = root.parent / "bad.json"
    bad.write_text(json.dumps({"teacher_attendance": {"year": "2020", "months": ["0"]}}))
    capsys.readouterr()
    assert run_job(cfg["replay"], params=[f"request={bad}"]) == 2
    assert (f"config error: --request: at {bad}: request refused, nothing deleted: {bad}: at "
            "$.teacher_attendance.months[0]: month 0 is outside 1..12") in capsys.readouterr().err
    assert {p: len(list((root / "lake" / p / "_delta_log").glob("*.json"))) for p in versions} == versions


def data_files(root: Path, table: str) -> set[Path]:
    return set((root / "lake" / table).rglob("*.parquet"))


def test_retention_deletes_old_months_skips_recent_replays_and_vacuums(spark, state, capsys):
    root, cfg = state["root"], state["cfg"]
    # as of 2020-10-15 with 90 days: June (ends 06-30 < 07-17) goes, July stays
    params = ["recompute=false", "vacuum=false", 'sources={"student_attendance": 90}']
    assert run_job(cfg["retention"], as_of="2020-10-15", params=params) == 0
    sa = lake(spark, root, "silver", "student_attendance")
    assert sa.where("month = 6").count() == 0 and sa.where("month = 7").count() > 0
    (row,) = replay_log(spark, root)
    assert row["kind"] == "retention" and row["status"] == "DONE"
    assert json.loads(row["request_json"])["groups"] == {"student_attendance": {"year": 2020, "months": [6]}}

    # July replayed just now: a later retention pass (July is old by then) skips it
    req = root.parent / "july.json"
    req.write_text(json.dumps({"student_attendance": {"year": "2020", "months": ["07"]}}))
    assert run_job(cfg["replay"], params=[f"request={req}", "recompute=false"]) == 0
    replay_id = [r for r in replay_log(spark, root) if r["kind"] == "replay"][0]["replay_id"]
    files_before = data_files(root, "silver/student_attendance")
    assert run_job(cfg["retention"], as_of="2020-12-31",
                   params=["recompute=false", "vacuumHours=0", 'sources={"student_attendance": 30}']) == 0
    kinds = [(r["kind"], r["status"]) for r in replay_log(spark, root)]
    assert kinds.count(("retention", "DONE")) == 1 and ("vacuum", "DONE") in kinds
    # the vacuum really removed the files no current version references (those of the replayed-away rows)
    current = {Path(storage.parse_uri(u).key) for u in lake(spark, root, "silver", "student_attendance").inputFiles()}
    unreferenced = files_before - current
    assert unreferenced, "the replay and retention rewrote no file: nothing for the vacuum to remove"
    assert sorted(p for p in unreferenced if p.exists()) == []
    assert data_files(root, "silver/student_attendance") == current
    # vacuumed with 0 hours: the replay's previous version is gone, undo is refused with a clear error
    capsys.readouterr()
    assert run_job(cfg["replay"], params=[f"undo={replay_id}"]) == 2
    assert (f"replay {replay_id} cannot be undone: the files of its previous version were removed by VACUUM"
            in capsys.readouterr().err)
    row = [r for r in replay_log(spark, root) if r["replay_id"] == replay_id][0]
    assert row["status"] == "DONE"


def test_replay_one_month_reemit_and_undo(spark, state, capsys):
    root, cfg = state["root"], state["cfg"]
    before = outputs(root)
    assert any(k.startswith("monthly/2020-06/") for k in before) and any(k.startswith("monthly/2020-07/") for k in before)
    june_before = june_rows(spark, root)
    assert june_before["silver"] > 0 and june_before["gold"] > 0 and june_before["file_tracker"] == 1
    n_july = lake(spark, root, "silver", "student_attendance").where("month = 7").count()
    silver_before = sorted(map(tuple, lake(spark, root, "silver", "student_attendance")
                               .drop("_run_id", "_loaded_at").collect()))
    pct_before = state_pct(root, "2020-06")

    # 1. replay June (request placed in the emission area)
    put_request(root, "june.json", {"student_attendance": {"year": "2020", "months": ["06"]},
                                    "requested_by": "admin@state", "reason": "wrong June file"})
    assert run_job(cfg["replay"]) == 0
    assert not (root / "emission" / "data_replay" / "june.json").exists()
    assert len(list((root / "emission" / "data_replay" / "_done").glob("*june.json"))) == 1
    assert june_rows(spark, root) == {"silver": 0, "bronze": 0, "quarantine": 0, "file_tracker": 0, "gold": 0}
    assert lake(spark, root, "silver", "student_attendance").where("month = 7").count() == n_july

    (row,) = replay_log(spark, root)
    assert (row["status"], row["kind"], row["requested_by"]) == ("DONE", "replay", "admin@state")
    deleted = json.loads(row["deleted_json"])
    assert deleted["silver/student_attendance"] == june_before["silver"]
    assert deleted["bronze/student_attendance"] == june_before["bronze"]
    assert deleted["meta/file_tracker"] == 1
    meta = json.loads((root / "output" / "data_replay" / f"{row['replay_id']}.json").read_text())
    assert meta["status"] == "DONE" and meta["deleted"]["silver/student_attendance"] == june_before["silver"]

    after = outputs(root)
    assert not any(k.startswith("monthly/2020-06/") for k in after)           # empty month: removed
    july_files = [k for k in before if k.startswith("monthly/2020-07/")]
    assert july_files and all(after[k] == before[k] for k in july_files)     # untouched month: same bytes
    assert after["overall/state.json"] != before["overall/state.json"]       # recomputed without June

    # 2. re-emit a corrected June: normal intake; the overlap rule does not block the deleted days
    corrected_june_zip(root, root / "emission" / "student_attendance" / "student_attendance_2020_06.zip")
    assert run_job(cfg["pipeline"]) == 0
    j = june_rows(spark, root)
    assert j["silver"] == june_before["silver"] and j["file_tracker"] == 1 and j["gold"] > 0
    runs = lake(spark, root, "meta", "file_tracker").where(F.col("member").contains("2020_06")).collect()
    assert [r.overlap_ignored for r in runs] == [0]
    assert state_pct(root, "2020-06") == 100.0 > pct_before
    again = outputs(root)
    assert all(again[k] == before[k] for k in july_files)

    # 3. undo: refused while the tables changed after the replay, then forced → the old state is back
    capsys.readouterr()
    assert run_job(cfg["replay"], params=[f"undo={row['replay_id']}"]) == 2
    err = capsys.readouterr().err
    assert f"replay {row['replay_id']} cannot be undone safely: " in err and "changed after the replay" in err
    assert run_job(cfg["replay"], params=[f"undo={row['replay_id']}", "force=true"]) == 0
    silver_after = sorted(map(tuple, lake(spark, root, "silver", "student_attendance")
                              .drop("_run_id", "_loaded_at").collect()))
    assert silver_after == silver_before
    assert june_rows(spark, root) == june_before
    restored = outputs(root)
    assert restored == before
    (row,) = replay_log(spark, root)
    assert row["status"] == "UNDONE" and row["undone_at"] is not None
    # a second undo is refused (not DONE)
    capsys.readouterr()
    assert run_job(cfg["replay"], params=[f"undo={row['replay_id']}"]) == 2
    assert (f"replay {row['replay_id']} is UNDONE, not DONE: only a completed replay can be undone"
            in capsys.readouterr().err)
