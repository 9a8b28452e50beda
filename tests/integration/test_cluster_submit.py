"""spark-submit to a real standalone cluster (master + worker from the pyspark wheel on 127.0.0.1)."""
import os
import subprocess
import sys

import pytest

from cqube_spark.sample.generator import generate

pytestmark = pytest.mark.serial   # a standalone cluster on fixed ports (7077, 8080...)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def cluster():
    script = os.path.join(REPO, "scripts", "cluster.sh")
    was_running = subprocess.call(["bash", script, "status"], stdout=subprocess.DEVNULL) == 0
    subprocess.run(["bash", script, "start"], check=True)
    yield "spark://127.0.0.1:7077"
    if not was_running:
        subprocess.run(["bash", script, "stop"], check=True)


def test_job_submitted_to_standalone_cluster(cluster, spark, data_root):
    summary = generate(str(data_root / "emission"), schools=20, students_per_school=5,
                       sources="student_attendance")
    expected_rows = sum(f["records"] for f in summary["files"])
    env = dict(os.environ, CQUBE_DATA_ROOT=str(data_root))
    proc = subprocess.run([sys.executable, "-m", "cqube_spark.cli", "run", "load-attendance", "--submit",
                           "--master", cluster, "--run-id", "submitted-1"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"loaded {expected_rows} rows" in proc.stdout
    table = spark.read.format("delta").load(str(data_root / "lake" / "bronze" / "student_attendance"))
    assert table.count() == expected_rows
    runs = spark.read.format("delta").load(str(data_root / "lake" / "meta" / "job_runs"))
    assert runs.filter("run_id = 'submitted-1' and status = 'SUCCESS'").count() == 1
