"""End to end through ``run_job("intake")`` on tiny fixtures: rejections (+ e-mail to a real local SMTP
server), hostile zips, duplicates, idempotent reruns, overlap, state.yaml deactivation, quarantine."""
import json
import socket
import stat
import zipfile

import pytest
from chispa import assert_df_equality

from cqube_spark.runner import run_job

NO_GE = ["greatExpectations=false"]
MGMT_HEADER = '"ManagementId"|"Management"|default_option'


def write_zip(path, member, text, manifest=True, records=None, size=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, data)
        if manifest:
            n = records if records is not None else max(text.count("\n") - (0 if text.endswith("\n") else -1) - 1, 0)
            zf.writestr("manifest.json", json.dumps({"files": [
                {"name": member, "size_bytes": size if size is not None else len(data), "records": n}]}))
    return path


@pytest.fixture
def smtp(monkeypatch):
    from aiosmtpd.controller import Controller

    class Sink:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append(envelope)
            return "250 OK"

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    sink = Sink()
    ctl = Controller(sink, hostname="127.0.0.1", port=port)
    ctl.start()
    monkeypatch.setenv("CQUBE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("CQUBE_SMTP_PORT", str(port))
    monkeypatch.setenv("CQUBE_EMITTER_EMAIL", "emitter@state.example")
    yield sink
    ctl.stop()


def tracker(spark, root):
    return spark.read.format("delta").load(str(root / "lake" / "meta" / "file_tracker"))


def test_manifest_mismatch_is_rejected_and_emitter_emailed(spark, data_root, smtp):
    write_zip(data_root / "emission" / "school_management" / "school_management_master.zip",
              "school_management_master.csv", MGMT_HEADER + '\n1|"Govt"|\n2|"Tribal"|\n', records=5)
    # a zip whose manifest lists a file the zip does not hold is rejected whole, even if the rest agrees
    lonely = data_root / "emission" / "block" / "block_master.zip"
    lonely.parent.mkdir(parents=True)
    text = "block_name|udise_block_code|udise_dist_code|udise_state_code\nB|290101|2901|29\n"
    with zipfile.ZipFile(lonely, "w") as zf:
        zf.writestr("block_mst.csv", text)
        zf.writestr("manifest.json", json.dumps({"files": [
            {"name": "block_mst.csv", "size_bytes": len(text), "records": 1},
            {"name": "cluster_master.csv", "size_bytes": 10, "records": 1}]}))
    assert run_job("intake", params=NO_GE) == 0
    rejected = sorted((data_root / "emission" / "_rejected").rglob("*.zip"))
    assert len(rejected) == 2 and not (data_root / "emission" / "school_management" / "school_management_master.zip").exists()
    reasons = {r.parent.name: json.loads(r.with_name(r.name + ".reason.json").read_text()) for r in rejected}
    assert reasons["school_management"]["kind"] == "manifest_mismatch"
    assert "records 5 in manifest, 2 in the file" in reasons["school_management"]["reason"]
    assert reasons["block"]["kind"] == "manifest_mismatch"
    assert reasons["block"]["reason"] == "cluster_master.csv: listed in manifest.json but not in the zip"
    assert not (data_root / "lake" / "silver" / "block_master").exists()
    rows = {r.zip_name: r for r in tracker(spark, data_root).collect()}
    assert rows["school_management_master.zip"].status == "rejected"
    assert rows["school_management_master.zip"].error.startswith("manifest_mismatch")
    assert rows["block_master.zip"].status == "rejected"
    assert len(smtp.messages) == 2 and all(m.rcpt_tos == ["emitter@state.example"] for m in smtp.messages)
    assert all(b"manifest_mismatch" in m.content for m in smtp.messages)


@pytest.mark.parametrize("kind", ["path_traversal", "absolute_path", "link", "zip_bomb", "unexpected_member_type"])
def test_hostile_zip_is_refused(spark, data_root, kind):
    path = data_root / "emission" / "x" / "evil.zip"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        if kind == "path_traversal":
            zf.writestr("../evil.csv", "a\n")
        elif kind == "absolute_path":
            zf.writestr("/abs.csv", "a\n")
        elif kind == "link":
            info = zipfile.ZipInfo("school_management_master.csv")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
        elif kind == "zip_bomb":
            zf.writestr("school_management_master.csv", b"\0" * (50 * 1024 * 1024))
        else:
            info = zipfile.ZipInfo("folder/")
            info.external_attr = (stat.S_IFDIR | 0o755) << 16
            zf.writestr(info, "")
    assert run_job("intake", params=NO_GE) == 0
    reasons = [json.loads(p.read_text()) for p in (data_root / "emission" / "_rejected").rglob("*.reason.json")]
    assert [r["kind"] for r in reasons] == [kind]
    assert not list((data_root / "input").rglob("*"))


def test_load_duplicate_rerun_and_quarantine(spark, data_root):
    text = MGMT_HEADER + '\n1|"Govt"|\n2|"Tribal"|\nx|"Bad"|\n2|"Tribal"|\n3|"A"|\n3|"B"|\n\n'
    z = write_zip(data_root / "emission" / "school_management" / "school_management_master.zip",
                  "school_management_master.csv", text)
    original = z.read_bytes()
    assert run_job("intake", params=NO_GE) == 0
    lake = data_root / "lake"
    silver = spark.read.format("delta").load(str(lake / "silver" / "school_management"))
    assert sorted(r.ManagementId for r in silver.collect()) == [1, 2]
    q = spark.read.format("delta").load(str(lake / "quarantine" / "school_management"))
    # each quarantined row keeps its line as received: a rule breaker from the cached frame, a conflicting
    # duplicate (a valid row, whose text is not cached) from the file read again
    assert sorted((r._line, r.rule, r.raw_line) for r in q.collect()) == [
        (4, "type_mismatch", 'x|"Bad"|'), (6, "duplicate_conflict", '3|"A"|'), (7, "duplicate_conflict", '3|"B"|'),
        (8, "blank_line", "")]
    summary = spark.read.format("delta").load(str(lake / "meta" / "log_summary")).collect()[0]
    assert (summary.total_rows, summary.duplicates_identical, summary.quarantined_rows, summary.processed_rows) \
        == (7, 1, 4, 2)
    assert list((data_root / "output" / "log_summary" / "school_management").glob("*.json"))
    assert list((data_root / "input" / "school_management").rglob("part-0000000001.csv"))
    before = spark.createDataFrame(silver.collect(), silver.schema)

    # the same content emitted again is recognised and not loaded twice
    z.write_bytes(original)
    assert run_job("intake", params=NO_GE) == 0
    statuses = sorted(r.status for r in tracker(spark, data_root).collect())
    assert statuses == ["duplicate", "loaded"]
    after = spark.read.format("delta").load(str(lake / "silver" / "school_management"))
    assert_df_equality(before, after, ignore_row_order=True, ignore_nullable=True)


def test_rerun_of_same_rows_changes_nothing_and_overlap_keeps_loaded_days(spark, data_root):
    head = "StudentAttendanceId|StudentId|SchoolId|AadhaarUID|AcademicYear|Month|" + "|".join(map(str, range(1, 32)))

    def row(sid, days):
        vals = days + ["NULL"] * (31 - len(days))
        return f"{sid}|{sid}|75010100101|NULL|2020-21|7|" + "|".join(vals)

    em = data_root / "emission" / "student_attendance"
    a_rows = "\n".join([head, row(1, ["1", "2"]), row(2, ["1", "1"])]) + "\n"
    write_zip(em / "a.zip", "student_attendance.csv", a_rows)
    assert run_job("intake", params=NO_GE) == 0
    path = str(data_root / "lake" / "silver" / "student_attendance")
    first = spark.read.format("delta").load(path)
    assert {(r.year, r.month) for r in first.collect()} == {(2020, 7)}
    first = spark.createDataFrame(first.collect(), first.schema)
    versions = len(list((data_root / "lake" / "silver" / "student_attendance" / "_delta_log").glob("*.json")))
    # the rerun: the same rows emitted again (another zip name) change nothing
    write_zip(em / "a-again.zip", "student_attendance.csv", a_rows)
    assert run_job("intake", params=NO_GE) == 0
    assert_df_equality(first, spark.read.format("delta").load(path), ignore_row_order=True, ignore_nullable=True)
    assert len(list((data_root / "lake" / "silver" / "student_attendance" / "_delta_log").glob("*.json"))) \
        == versions
    # a later file for the same school and month: days 1-2 again (changed) + day 3
    write_zip(em / "b.zip", "student_attendance.csv",
              "\n".join([head, row(1, ["2", "2", "1"]), row(2, ["2", "2", "5"])]) + "\n")
    assert run_job("intake", params=NO_GE) == 0
    got = {r.StudentId: (r["1"], r["2"], r["3"]) for r in spark.read.format("delta").load(path).collect()}
    assert got == {1: (1, 2, 1), 2: (1, 1, 5)}
    s = [r for r in spark.read.format("delta").load(str(data_root / "lake" / "meta" / "log_summary")).collect()
         if r.overlap_ignored]
    assert s[0].overlap_ignored == 4


def test_state_yaml_deactivates_optional_attribute(spark, data_root, tmp_path):
    state = tmp_path / "state.yaml"
    state.write_text("optional_attributes:\n  HaveCCTV: false\n")
    from cqube_spark.quality.spec import load_spec

    spec = load_spec("configs/sources/infra_trans.yaml")
    header = "|".join(c.name for c in spec.columns)
    vals = []
    for c in spec.columns:
        vals.append({"school_id": "75010100101", "DistrictId": "7501", "BlockId": "750101",
                     "ClusterId": "7501010001"}.get(c.name, "1" if c.type == "int" else "x"))
    write_zip(data_root / "emission" / "infra_trans" / "infra_trans.zip", "infra_trans.csv",
              header + "\n" + "|".join(vals) + "\n")
    # a state that switched the item off may also stop emitting the column: that file loads too
    names = [c.name for c in spec.columns]
    keep = [i for i, n in enumerate(names) if n != "HaveCCTV"]
    row2 = list(vals)
    row2[names.index("school_id")] = "75010100102"
    write_zip(data_root / "emission" / "infra_trans" / "infra_trans_no_cctv.zip", "infra_trans_2.csv",
              "|".join(names[i] for i in keep) + "\n" + "|".join(row2[i] for i in keep) + "\n")
    # ...but a file missing an ACTIVE column is still refused
    write_zip(data_root / "emission" / "infra_trans" / "infra_trans_no_library.zip", "infra_trans_3.csv",
              "|".join(n for n in names if n != "HaveLibrary") + "\n"
              + "|".join(v for n, v in zip(names, vals) if n != "HaveLibrary") + "\n")
    assert run_job("intake", params=NO_GE + [f"stateConfig={state}"]) == 0
    silver = spark.read.format("delta").load(str(data_root / "lake" / "silver" / "infra_trans"))
    assert "HaveCCTV" not in silver.columns and "HaveLibrary" in silver.columns
    assert sorted(r.school_id for r in silver.select("school_id").collect()) == [75010100101, 75010100102]
    rejected = tracker(spark, data_root).where("status = 'rejected'").collect()
    assert [(r.member, r.error.split(":")[0]) for r in rejected] == [("infra_trans_3.csv", "header_mismatch")]


def test_bad_state_config_exits_2(data_root, tmp_path):
    state = tmp_path / "state.yaml"
    state.write_text("sources:\n  infra_trans:\n    inactive: [school_id]\n")
    assert run_job("intake", params=[f"stateConfig={state}"]) == 2


def test_a_file_whose_load_failed_is_loaded_once_by_the_next_run(spark, data_root, monkeypatch):
    """The copy to input/ exists and the emission zip is gone when a load fails (or the process dies): the
    next run finds the unfinished file in the tracker and loads it, exactly once."""
    write_zip(data_root / "emission" / "school_management" / "school_management_master.zip",
              "school_management_master.csv", MGMT_HEADER + '\n1|"Govt"|\n2|"Tribal"|\n')
    monkeypatch.setenv("CQUBE_FAULT", "intake.load")
    assert run_job("intake", params=NO_GE) == 1
    assert not list((data_root / "emission").rglob("*.zip"))
    assert list((data_root / "input" / "school_management").rglob("part-*.csv"))
    row = tracker(spark, data_root).collect()[0]
    assert row.status == "failed" and "fault injected at intake.load" in row.error
    assert not (data_root / "lake" / "silver" / "school_management").exists()
    monkeypatch.delenv("CQUBE_FAULT")
    for _ in range(2):      # the rerun loads it; a third run finds nothing left to do
        assert run_job("intake", params=NO_GE) == 0
        rows = tracker(spark, data_root).collect()
        assert [(r.status, r.loaded_rows, r.file_id) for r in rows] == [("loaded", 2, row.file_id)]
        for layer in ("bronze", "silver"):
            t = spark.read.format("delta").load(str(data_root / "lake" / layer / "school_management"))
            assert t.count() == 2, layer
