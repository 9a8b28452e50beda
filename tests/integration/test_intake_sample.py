"""The real upstream sample (test_data_lite) loads completely; a dirty copy quarantines exactly the injected rows."""
import shutil
import zipfile

from cqube_spark.runner import run_job

MASTERS = ["district_master", "block_master", "cluster_master", "school_management", "school_master",
           "pat", "sat", "infra_trans"]


def _copy(mock_data, emission, folders):
    for f in folders:
        shutil.copytree(mock_data / "test_data_lite" / f, emission / f)


def test_sample_lite_loads_with_zero_quarantine(spark, data_root, mock_data):
    _copy(mock_data, data_root / "emission", [p.name for p in (mock_data / "test_data_lite").iterdir()])
    assert run_job("intake") == 0
    lake = data_root / "lake"
    summaries = spark.read.format("delta").load(str(lake / "meta" / "log_summary")).collect()
    assert summaries and all(s.quarantined_rows == 0 for s in summaries), [
        (s.source, s.quarantined_by_rule) for s in summaries if s.quarantined_rows]
    att = spark.read.format("delta").load(str(lake / "silver" / "student_attendance"))
    assert att.count() == 160000
    assert not (lake / "quarantine").exists() or not any((lake / "quarantine").iterdir())
    vr = spark.read.format("delta").load(str(lake / "meta" / "validation_results")).collect()
    assert vr and all(v.success for v in vr if v.source != "student_attendance" or True)


def _inject(zip_path, extra_lines):
    with zipfile.ZipFile(zip_path) as zf:
        name = [n for n in zf.namelist() if n.endswith(".csv")][0]
        text = zf.read(name).decode()
    nl = "\r\n" if "\r\n" in text else "\n"
    text = text.rstrip("\r\n") + nl + nl.join(extra_lines) + nl
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, text)
    return text.count("\n")


def test_dirty_copy_quarantines_exactly_the_injected_rows(spark, data_root, mock_data):
    em = data_root / "emission"
    _copy(mock_data, em, ["district_master", "block_master", "cluster_master", "school_management", "school_master"])
    _inject(em / "cluster_master" / "cluster_mst.zip",
            ["D9B9C9|759999|7599990001", "D1B1C1X|750101|75010100x1", "D1B1C1Y|750101"])
    def school(code, block, lat, lon):
        f = [""] * 28
        f[0], f[1], f[2], f[3], f[4], f[6], f[18], f[24], f[25], f[26] = (
            code, "X", "75", "7501", block, "7501010001", "1", "2020", lat, lon)
        return "|".join(f)

    bad = [school("99999999999", "750101", "", ""),          # latitude/longitude missing (mandatory)
           school("75010100199", "750101", "55.1", "74.2"),   # outside India
           school("75010100198", "759999", "20.11", "74.21")]  # block not in the block master
    _inject(em / "school_master" / "school_mst.zip", bad)
    assert run_job("intake", params=["greatExpectations=false"]) == 0
    lake = data_root / "lake"
    q = spark.read.format("delta").load(str(lake / "quarantine" / "cluster_master")).collect()
    assert sorted(r.rule for r in q) == ["column_count", "type_mismatch", "unknown_foreign_key"]
    qs = spark.read.format("delta").load(str(lake / "quarantine" / "school_master")).collect()
    assert sorted(r.rule for r in qs) == ["invalid_latlong", "mandatory_missing", "unknown_foreign_key"]
    assert spark.read.format("delta").load(str(lake / "silver" / "school_master")).count() == 160
    assert spark.read.format("delta").load(str(lake / "silver" / "cluster_master")).count() == 16
