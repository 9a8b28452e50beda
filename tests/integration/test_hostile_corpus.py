"""The hostile corpus (``tests/hostile/cases.yaml``, 19.10): every case built into an emission folder, one
intake run per group (``rejections``, ``loads``), then each case's outcome checked from the file tracker,
the ``_rejected/`` copies and their reasons, log_summary, quarantine and silver; and nothing is written
outside the data roots. A case is added by adding data to the YAML."""
import json
import os
import sys
from pathlib import Path

import pytest

from cqube_spark.intake.job import REJECTED
from cqube_spark.quality.rules import safe_name
from cqube_spark.quality.spec import load_specs, load_state
from cqube_spark.runner import run_job

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "hostile"))
import build  # noqa: E402

DOC = build.load_cases()
CASES = {c["id"]: c for c in DOC["cases"]}
RUN_PARAMS = {"rejections": ["maxUncompressedBytes=5242880"], "loads": []}
OUTSIDE = ("/tmp/cqube_hostile_abs.csv", "/cqube_hostile_abs.csv", "/tmp/cqube_hostile_slip.csv")


def files_under(p: Path) -> set[str]:
    return {str(f.relative_to(p)) for f in p.rglob("*") if f.is_file() or f.is_symlink()}


def read(spark, path: Path) -> list:
    from delta.tables import DeltaTable

    return spark.read.format("delta").load(str(path)).collect() if DeltaTable.isDeltaTable(spark, str(path)) else []


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory):
    specs = load_specs(REPO / "configs" / "sources", load_state(REPO / "configs" / "state.yaml"))
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        for k in ("CQUBE_EMISSION_URI", "CQUBE_INPUT_URI", "CQUBE_OUTPUT_URI", "CQUBE_LAKE_URI", "CQUBE_FAULT"):
            mp.delenv(k, raising=False)
        for run in RUN_PARAMS:
            base = tmp_path_factory.mktemp(f"hostile_{run}")
            root = base / "data"
            for sub in ("emission", "input", "output", "lake"):
                (root / sub).mkdir(parents=True)
            (base / "sentinel.txt").write_text("outside the data roots")
            built = build.build(run, root / "emission", specs, DOC)
            zips = {cid: (root / "emission" / b.folder / b.case["zip"].get("name", "x.zip")).read_bytes()
                    for cid, b in built.items() if "zip" in b.case}
            outside_before = {f for f in files_under(base) if not f.startswith("data/")}
            mp.setenv("CQUBE_DATA_ROOT", str(root))
            code = run_job("intake", params=["greatExpectations=false", *RUN_PARAMS[run]])
            lake = root / "lake"
            out[run] = {
                "code": code, "root": root, "base": base, "built": built, "zips": zips,
                "outside_before": outside_before,
                "tracker": read(spark, lake / "meta" / "file_tracker"),
                "summary": read(spark, lake / "meta" / "log_summary"),
                "quarantine": {s: read(spark, lake / "quarantine" / s) for s in specs},
                "silver": {s: read(spark, lake / "silver" / s) for s in specs},
            }
    return out


def rows_of(r: dict, folder: str) -> list:
    return [t for t in r["tracker"] if f"/emission/{folder}/" in t.emission_path]


def test_the_corpus_is_large_and_every_case_has_an_expectation():
    assert len(CASES) >= 40
    for c in CASES.values():
        assert c["run"] in RUN_PARAMS and c.get("expect") and c.get("why"), c["id"]
        assert ("zip" in c) != ("rows" in c), c["id"]


@pytest.mark.parametrize("run", list(RUN_PARAMS))
def test_each_run_succeeds_and_writes_nothing_outside_the_data_roots(runs, run):
    r = runs[run]
    assert r["code"] == 0
    assert {f for f in files_under(r["base"]) if not f.startswith("data/")} == r["outside_before"]
    # the four roots, and the job's log folder (CQUBE_LOG_DIR defaults to <data root>/logs)
    assert sorted(p.name for p in r["root"].iterdir()) == ["emission", "input", "lake", "logs", "output"]
    for path in OUTSIDE:
        assert not os.path.lexists(path), path
    assert not list(r["root"].rglob("cqube_hostile_*"))     # hostile member names never became files
    if run == "rejections":     # nothing refused reaches input/ or the lake's tables
        assert not files_under(r["root"] / "input")
        assert not [p.name for p in (r["root"] / "lake").iterdir() if p.name != "meta"]
        assert not [z for z in (r["root"] / "emission").rglob("*.zip") if REJECTED not in z.parts]


def check_zip_case(r, b):
    exp = b.case["expect"]
    rows = rows_of(r, b.folder)
    assert rows, "no tracker row"
    assert {t.status for t in rows} == {exp["status"]}, [(t.status, t.error) for t in rows]
    if exp["status"] in ("rejected", "duplicate"):
        reasons = list((r["root"] / "emission" / REJECTED / b.folder).glob("*.reason.json"))
        assert len(reasons) == 1
        reason = json.loads(reasons[0].read_text())
        assert reason["kind"] == exp["kind"]
        assert exp["message"] in reason["reason"], reason["reason"]
        kept = reasons[0].with_name(reasons[0].name[:-len(".reason.json")])
        assert kept.read_bytes() == r["zips"][b.case["id"]]        # the emitted bytes are kept as they came
        assert not (r["root"] / "emission" / b.folder / b.case["zip"].get("name", "x.zip")).exists()
        for t in rows:
            assert t.error.startswith(f"{exp['kind']}: ") and exp["message"] in t.error, t.error
            assert t.rejected_path == str(kept) and (t.input_path is None or exp["status"] == "duplicate")
        return
    (t,) = rows
    assert (t.loaded_rows, t.quarantined_rows) == (exp["loaded_rows"], exp["quarantined_rows"])
    assert Path(t.input_path).is_dir() and str(r["root"] / "input") in t.input_path
    if "quarantined_by_rule" in exp:
        (s,) = [s for s in r["summary"] if s.file == t.input_path]
        assert dict(s.quarantined_by_rule) == exp["quarantined_by_rule"]


def check_row_case(r, b, specs_cols):
    exp, src = b.case["expect"], b.case["rows"]["source"]
    (t,) = rows_of(r, b.folder)
    assert t.status == "loaded", t.error
    q = {row._line: row for row in r["quarantine"][src] if row._file == t.input_path}
    key = safe_name(DOC_KEYS[src])
    silver = [s for s in r["silver"][src] if str(s[key]) in b.keys]
    if "quarantined" in exp:
        for line in b.lines:
            assert line in q, f"line {line} of {t.input_path} not quarantined"
            rules = [v.rule for v in q[line].violations]
            assert set(exp["quarantined"]) <= set(rules), rules
            assert q[line].rule == rules[0]
            if "column" in exp:
                assert exp["column"] in [v.column for v in q[line].violations if v.rule in exp["quarantined"]]
            if "reason" in exp:
                assert any(exp["reason"] in v.reason for v in q[line].violations), [v.reason for v in q[line].violations]
        if not any(k == "" for k in b.keys):
            assert not silver, "a quarantined row reached silver"
    elif "loaded" in exp:
        assert not [line for line in b.lines if line in q], [q[x].violations for x in b.lines if x in q]
        assert len(silver) == 1
        for col, value in exp["loaded"].items():
            assert str(silver[0][safe_name(col)]) == str(value)
    elif exp.get("identical_duplicate"):
        assert not [line for line in b.lines if line in q]
        assert len(silver) == 1
        (s,) = [s for s in r["summary"] if s.file == t.input_path]
        assert s.duplicates_identical >= 1


DOC_KEYS = {}


@pytest.mark.parametrize("case_id", list(CASES))
def test_case(runs, case_id):
    case = CASES[case_id]
    r = runs[case["run"]]
    b = r["built"][case_id]
    if "zip" in case:
        check_zip_case(r, b)
    else:
        if not DOC_KEYS:
            specs = load_specs(REPO / "configs" / "sources", load_state(REPO / "configs" / "state.yaml"))
            DOC_KEYS.update({n: s.keys[0] for n, s in specs.items()})
        check_row_case(r, b, None)
