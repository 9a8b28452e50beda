"""Sample-state generator and source specs (pure Python, no Spark)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from pathlib import Path

import pytest

from cqube_spark.sample import generator
from cqube_spark.sample.spec_check import check_emission, check_text, load_specs, spec_for_member

ROOT = Path(__file__).resolve().parents[2]
SPECS_DIR = ROOT / "configs" / "sources"
MOCK = Path(os.environ.get("CQUBE_SHARED", ROOT.parent / "shared")) / "data" / "cqube-mock"


@pytest.fixture(scope="module")
def specs():
    return load_specs(SPECS_DIR)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("emission")
    summary = generator.generate(str(out), schools=40, students_per_school=24, months=["2020-07"], seed=7)
    return out, summary


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.zip"))}


def test_every_source_has_a_spec_and_one_file(specs, small):
    out, summary = small
    assert set(generator.SOURCES) <= set(specs)
    written = {f["source"] for f in summary["files"]}
    assert written == set(generator.SOURCES)
    for f in summary["files"]:
        assert (out / f["path"]).is_file()
        assert spec_for_member(specs, f["member"])["name"] == f["source"]


def test_upstream_folder_and_file_names(small):
    out, _ = small
    for rel in ["student_attendance/student_attendance.zip", "school_master/school_mst.zip",
                "district_master/district_mst.zip", "block_master/block_mst.zip", "cluster_master/cluster_mst.zip",
                "school_management/school_management_master.zip", "infra_trans/infra_trans.zip",
                "pat/periodic_exam_result_trans.zip", "sat/semester_exam_result_trans.zip",
                "teacher_attendance/teacher_attendance.zip", "inspection_master/inspection_master.zip",
                "user_location_master/user_location_master.zip", "diksha/diksha_data_summary.zip",
                "udise/udise_sch_profile.zip"]:
        assert (out / rel).is_file(), rel


def test_same_seed_same_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    kw = dict(schools=20, students_per_school=10, months=["2020-07", "2020-08"], seed=3)
    generator.generate(str(a), **kw)
    generator.generate(str(b), **kw)
    da, db = _digests(a), _digests(b)
    assert da and da == db


def test_other_seed_other_bytes(tmp_path):
    generator.generate(str(tmp_path / "a"), schools=20, students_per_school=10, seed=1, sources="student_attendance")
    generator.generate(str(tmp_path / "b"), schools=20, students_per_school=10, seed=2, sources="student_attendance")
    assert _digests(tmp_path / "a") != _digests(tmp_path / "b")


def test_manifest_matches_content(small):
    out, summary = small
    for f in summary["files"]:
        with zipfile.ZipFile(out / f["path"]) as zf:
            assert zf.namelist() == [f["member"], "manifest.json"]   # manifest written after the CSV
            data = zf.read(f["member"])
            man = json.loads(zf.read("manifest.json"))
        assert man == {"files": [{"name": f["member"], "records": f["records"], "size_bytes": len(data)}]}
        assert data.count(b"\n") == f["records"] + 1   # header + records, no embedded newlines
        assert f["size_bytes"] == len(data)


def test_no_manifest(tmp_path):
    generator.generate(str(tmp_path), schools=5, students_per_school=3, sources="masters", manifest=False)
    for z in tmp_path.rglob("*.zip"):
        assert "manifest.json" not in zipfile.ZipFile(z).namelist()


def test_generated_files_pass_their_specs_with_foreign_keys(specs, small):
    out, _ = small
    results = check_emission(out, specs)
    bad = {rel: r.summary() for rel, r in results.items() if not r.ok}
    assert not bad, "\n".join(bad.values())


def test_several_months_one_attendance_zip_per_month(specs, tmp_path):
    s = generator.generate(str(tmp_path), schools=20, students_per_school=5, months="2020-12,2021-01",
                           sources="attendance,masters")
    names = sorted(f["path"] for f in s["files"] if f["source"] == "student_attendance")
    assert names == ["student_attendance/student_attendance_2020_12.zip",
                     "student_attendance/student_attendance_2021_01.zip"]
    results = check_emission(tmp_path, specs)
    assert all(r.ok for r in results.values()), [r.summary() for r in results.values() if not r.ok]
    # academic year: Dec 2020 and Jan 2021 both belong to 2020-21
    with zipfile.ZipFile(tmp_path / names[1]) as zf:
        line = zf.read("student_attendance_2021_01.csv").decode().splitlines()[1].split("|")
    assert line[4:6] == ["2020-21", "1"]


def test_attendance_is_realistic(small):
    out, _ = small
    with zipfile.ZipFile(out / "student_attendance/student_attendance.zip") as zf:
        rows = [l.split("|") for l in zf.read("student_attendance.csv").decode().splitlines()[1:]]
    days = [r[6:] for r in rows]
    # July 2020: Sundays are the 5, 12, 19, 26 -> never a school day
    for d in (5, 12, 19, 26):
        assert {r[d - 1] for r in days} == {"NULL"}
    assert {r[30] for r in days} != {"NULL"}         # the 31st exists in July
    marks = [v for r in days for v in r if v in ("1", "2")]
    present = marks.count("1") / len(marks)
    assert 0.80 < present < 0.95
    assert any("5" in r for r in days)               # at least the state holiday
    # some schools have no attendance this month (exceptions), all others have every student
    schools = {r[2] for r in rows}
    assert 0 < 40 - len(schools) <= 3


def test_inject_exceptions_adds_unknown_schools(specs, tmp_path):
    generator.generate(str(tmp_path), schools=20, students_per_school=5, sources="masters,student_attendance",
                       inject_exceptions=True)
    results = check_emission(tmp_path, specs)
    att = results["student_attendance/student_attendance.zip"]
    rules = {v.rule for v in att.violations}
    assert rules == {"unknown_foreign_key"}
    assert all(r.ok for rel, r in results.items() if not rel.startswith("student_attendance"))


def test_results_never_above_question_marks(small):
    out, _ = small
    with zipfile.ZipFile(out / "pat/periodic_exam_qst_mst.zip") as zf:
        q = {l.split("|")[0]: float(l.split("|")[7]) for l in zf.read("periodic_exam_qst_mst.csv").decode().splitlines()[1:]}
    with zipfile.ZipFile(out / "pat/periodic_exam_result_trans.zip") as zf:
        res = [l.split("|") for l in zf.read("periodic_exam_result_trans.csv").decode().splitlines()[1:]]
    assert res
    assert all(0 <= float(r[9]) <= q[r[8]] for r in res)
    # exam date is derivable from the exam code: PAT + grade(2) + subject(2) + ddMMyyyy
    with zipfile.ZipFile(out / "pat/periodic_exam_mst.zip") as zf:
        for line in zf.read("periodic_exam_mst.csv").decode().splitlines()[1:]:
            f = line.split("|")
            code, day = f[6], f[7]
            assert re.fullmatch(r"PAT\d{12}", code)
            assert code[3:5] == f"{int(f[2]):02d}" and code[5:7] == f"{int(f[4]):02d}"
            assert f"{code[11:15]}-{code[9:11]}-{code[7:9]}" == day


def test_infra_weights_sum_to_100(small):
    out, _ = small
    with zipfile.ZipFile(out / "infra_trans/infrastructure_master.zip") as zf:
        lines = zf.read("infrastructure_master.csv").decode().splitlines()
    assert sum(int(l.split(",")[2]) for l in lines[1:] if l.split(",")[3] == "1") == 100


def test_checker_catches_bad_rows(specs):
    spec = specs["school_master"]
    hdr = "|".join(c["name"] for c in spec["columns"])
    good = "75010100101|S1|75|7501|750101|750101001|7501010001||||||||||||1|||||||20.12|73.99|"
    bad_type = good.replace("|20.12|", "|abc|")
    out_india = good.replace("|20.12|73.99|", "|51.5|0.12|")
    missing = good.replace("75010100101|S1|", "75010100101||")
    r = check_text(spec, "\n".join([hdr, good, bad_type, out_india, missing]) + "\n")
    rules = sorted(v.rule for v in r.violations)
    assert "type_mismatch" in rules and "invalid_latlong" in rules and "mandatory_missing" in rules
    same_ll = good + "\n" + good.replace("75010100101", "75010100102")
    r = check_text(spec, hdr + "\n" + same_ll + "\n")
    assert [v.rule for v in r.violations] == ["duplicate_conflict"]


LITE_ZIPS = sorted(str(p.relative_to(MOCK / "test_data_lite")) for p in MOCK.glob("test_data_lite/*/*.zip"))


@pytest.fixture(scope="module")
def lite_results(specs):
    """Every real upstream lite sample checked once against its spec, foreign keys included."""
    return check_emission(MOCK / "test_data_lite", specs)


def test_real_lite_samples_are_present():
    assert LITE_ZIPS, f"upstream samples not found under {MOCK} (set CQUBE_SHARED)"


@pytest.mark.parametrize("zip_path", LITE_ZIPS)
def test_real_lite_samples_pass_their_specs(lite_results, zip_path):
    r = lite_results[zip_path]
    assert r.source != "?", f"no spec recognises {zip_path}"
    assert r.ok, r.summary()
