"""The S3 server stops while intake copies a file to input/, then comes back (19.8): the run fails with a clear
error naming the endpoint, the emission zip stays in emission/, nothing is tracked as received, and the next
run loads the file exactly once.

The outage is real: a private SeaweedFS (own port, own data under the test's tmp dir, started and stopped by
``scripts/services.sh`` with ``CQUBE_SERVICES_DIR``/``CQUBE_S3_PORT`` overrides) holds emission/ and input/;
the shared server on 8333 is never touched. The run is paused at the ``intake.copy`` fault point (``wait:``)
while the server is stopped, so the outage hits the copy, not a race.
"""
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from cqube_spark.storage import Storage
from tests.conftest import REPO, free_port

MEMBER = "school_management_master.csv"
TEXT = "ManagementId|Management|default_option\n1|Govt|\n2|Tribal|\n3|Aided|\n"


def services(env: dict, verb: str) -> None:
    done = subprocess.run(["bash", str(REPO / "scripts" / "services.sh"), verb, "s3"], env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"services.sh {verb} s3: {done.stdout[-2000:]}{done.stderr[-2000:]}"


def intake(env: dict, log: Path, **extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cqube_spark.cli", "run", "intake", "--param",
                             "greatExpectations=false"], env=dict(env, **extra), cwd=str(REPO),
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def test_s3_outage_during_the_copy_to_input_loses_nothing(tmp_path, spark):
    port = free_port()
    svc_env = dict(os.environ, CQUBE_SERVICES_DIR=str(tmp_path / "svc"), CQUBE_S3_PORT=str(port),
                   CQUBE_SERVICES_START_TIMEOUT="120", CQUBE_SERVICES_STOP_TIMEOUT="60")
    root = tmp_path / "data"
    bucket = "s3a://outage"
    env = dict(os.environ, CQUBE_DATA_ROOT=str(root), PYTHONPATH=str(REPO),
               CQUBE_S3_ENDPOINT=f"http://127.0.0.1:{port}", CQUBE_EMISSION_URI=f"{bucket}/emission",
               CQUBE_INPUT_URI=f"{bucket}/input")
    for k in ("CQUBE_OUTPUT_URI", "CQUBE_LAKE_URI", "CQUBE_FAULT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        env.pop(k, None)
    services(svc_env, "start")
    try:
        store = Storage(env)
        store.ensure_bucket(bucket)
        z = tmp_path / "m.zip"
        with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(MEMBER, TEXT)
        emitted = f"{bucket}/emission/school_management/m.zip"
        store.upload_file(str(z), emitted)

        go = tmp_path / "go"
        first = intake(env, tmp_path / "first.log", CQUBE_FAULT="wait:intake.copy", CQUBE_FAULT_RELEASE=str(go))
        deadline = time.monotonic() + 300
        while not Path(str(go) + ".waiting").exists():
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "intake never reached the copy"
            time.sleep(0.3)
        services(svc_env, "stop")                       # the outage, while the copy is about to start
        go.touch()
        assert first.wait(timeout=600) == 1
        out = (tmp_path / "first.log").read_text()
        assert "EndpointConnectionError: Could not connect to the endpoint URL" in out, out[-3000:]
        assert f"127.0.0.1:{port}/outage/input/school_management/" in out     # names the copy that failed

        services(svc_env, "start")                      # back: the emission zip is where it was
        assert store.exists(emitted)
        tracker = root / "lake" / "meta" / "file_tracker"
        assert not tracker.exists() or spark.read.format("delta").load(str(tracker)).count() == 0

        second = intake(env, tmp_path / "second.log")
        assert second.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()[-3000:]
        rows = spark.read.format("delta").load(str(tracker)).select("member", "status", "loaded_rows").collect()
        assert [tuple(r) for r in rows] == [(MEMBER, "loaded", 3)]
        silver = spark.read.format("delta").load(str(root / "lake" / "silver" / "school_management"))
        assert sorted(r[0] for r in silver.select("Management").collect()) == ["Aided", "Govt", "Tribal"]
        assert not store.exists(emitted)                 # moved once its copy was tracked
        parts = [u for u in store.list(f"{bucket}/input") if u.endswith(".csv")]
        assert len(parts) == 1 and store.read_bytes(parts[0]).decode() == TEXT
    finally:
        services(svc_env, "stop")
