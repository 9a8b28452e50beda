"""The job runner end to end: a config-driven job, its job_runs row, exit codes."""
import shutil

from cqube_spark.runner import run_job


def job_runs(spark, data_root):
    return spark.read.format("delta").load(str(data_root / "lake" / "meta" / "job_runs"))


def test_load_attendance_sample_into_delta(spark, data_root, mock_data, capsys):
    src = mock_data / "test_data_lite" / "student_attendance"
    shutil.copytree(src, data_root / "emission" / "student_attendance")

    assert run_job("load-attendance", run_id="run-ok") == 0

    table = spark.read.format("delta").load(str(data_root / "lake" / "bronze" / "student_attendance"))
    assert table.count() == 160_000
    assert table.filter("SchoolId = '75010100101' and StudentId = '750101001010001'").count() == 1
    row = job_runs(spark, data_root).filter("run_id = 'run-ok'").collect()[0]
    assert (row.status, row.rows, row.model) == ("SUCCESS", 160_000, "load-attendance")
    assert row.ended_at >= row.started_at and row.error is None
    err = capsys.readouterr().err
    assert '"run_id": "run-ok"' in err and '"msg": "job end"' in err


def test_failed_job_exits_1_and_is_recorded(spark, data_root):
    assert run_job("load-attendance", run_id="run-empty") == 1  # no emission files at all
    row = job_runs(spark, data_root).filter("run_id = 'run-empty'").collect()[0]
    assert row.status == "FAILED" and "no student attendance zip" in row.error


def test_bad_as_of_exits_2_before_spark_work(data_root, capsys):
    assert run_job("load-attendance", as_of="yesterday") == 2
    assert "config error: --as-of: at yesterday: expected a date YYYY-MM-DD" in capsys.readouterr().err
    assert not (data_root / "lake" / "meta" / "job_runs").exists()
