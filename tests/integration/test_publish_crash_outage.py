"""Publish killed after its staging, and the S3 server stopped there (19.7, 19.8): nothing of the interrupted
run is visible to readers, and the next run publishes exactly the files of an uninterrupted one.

One small gold lake (masters + a month of student attendance, one KPI) is built once in this process; each
publish under test is a real ``cqube-spark run publish`` process held or killed at the
``publish.after_staging`` fault point (the whole run written under ``_runs/<run_id>/``, readers not switched).
The S3 outage is real: a private SeaweedFS (``scripts/services.sh`` with ``CQUBE_SERVICES_DIR`` /
``CQUBE_S3_PORT``), the shared server untouched.
"""
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cqube_spark.runner import run_job
from cqube_spark.sample import generator
from cqube_spark.storage import Storage
from tests.conftest import REPO, free_port
from tests.integration.test_intake_s3_outage import services

KPI = ["student_attendance"]
PUBLISH = [f"kpis={json.dumps(KPI)}"]


def env_for(lake_root: Path, **extra) -> dict:
    env = dict(os.environ, CQUBE_DATA_ROOT=str(lake_root), PYTHONPATH=str(REPO))
    for k in ("CQUBE_EMISSION_URI", "CQUBE_INPUT_URI", "CQUBE_OUTPUT_URI", "CQUBE_LAKE_URI", "CQUBE_FAULT"):
        env.pop(k, None)
    return {**env, **extra}


def in_process(env: dict, job: str, params: list[str]) -> int:
    with pytest.MonkeyPatch.context() as mp:
        for k in [k for k in os.environ if k.startswith("CQUBE_") and k not in env]:
            mp.delenv(k)
        for k, v in env.items():
            if k.startswith("CQUBE_"):
                mp.setenv(k, v)
        return run_job(job, params=params)


def publish_process(env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cqube_spark.cli", "run", "publish", "--param", PUBLISH[0]],
                            env=env, cwd=str(REPO), stdout=log.open("w"), stderr=subprocess.STDOUT)


def digests(files: dict[str, bytes]) -> dict[str, str]:
    """Published files by path → sha256, without the two that name the run (metadata.json, the pointer)."""
    return {k: hashlib.sha256(v).hexdigest() for k, v in files.items()
            if k.rsplit("/", 1)[-1] not in ("metadata.json", "_current.json")}


def local_documented(out: Path) -> dict[str, bytes]:
    cur = out / "current"
    return {str(p.relative_to(cur)): p.read_bytes() for p in sorted(cur.rglob("*")) if p.is_file()} \
        if cur.exists() else {}


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("pubcrash") / "data"
    generator.generate(str(root / "emission"), schools=6, students_per_school=3, months=["2020-07"], seed=5,
                       sources=["masters", "student_attendance"])
    params = ['stages=["intake", "kpis"]',
              'stageParams={"intake": {"greatExpectations": false}, "kpis": {"kpis": ["student_attendance"]}}']
    assert in_process(env_for(root), "pipeline", params) == 0
    reference = root.parent / "reference"
    assert in_process(env_for(root, CQUBE_OUTPUT_URI=str(reference)), "publish", PUBLISH) == 0
    want = digests(local_documented(reference))
    assert any(k.startswith("student_attendance/") for k in want)
    return root, want


def test_publish_killed_after_staging_shows_nothing_then_rerun_publishes_the_same_files(lake, tmp_path):
    root, want = lake
    out = tmp_path / "out"
    env = env_for(root, CQUBE_OUTPUT_URI=str(out), CQUBE_FAULT="kill:publish.after_staging")
    killed = publish_process(env, tmp_path / "killed.log")
    assert killed.wait(timeout=600) == -9, (tmp_path / "killed.log").read_text()[-3000:]
    staged = [p for p in (out / "_runs").iterdir()]
    assert len(staged) == 1 and (staged[0] / "metadata.json").exists()     # the whole run was staged ...
    assert not (out / "current").exists() and not (out / "metadata.json").exists()   # ... and none is visible
    assert in_process(env_for(root, CQUBE_OUTPUT_URI=str(out)), "publish", PUBLISH) == 0
    assert digests(local_documented(out)) == want


def test_s3_stopped_at_the_switch_keeps_readers_off_the_run_then_rerun_publishes_it(lake, tmp_path):
    root, want = lake
    port = free_port()
    svc_env = dict(os.environ, CQUBE_SERVICES_DIR=str(tmp_path / "svc"), CQUBE_S3_PORT=str(port),
                   CQUBE_SERVICES_START_TIMEOUT="120", CQUBE_SERVICES_STOP_TIMEOUT="60")
    bucket = "s3a://pubout"
    out = f"{bucket}/output"
    s3 = dict(CQUBE_S3_ENDPOINT=f"http://127.0.0.1:{port}", CQUBE_OUTPUT_URI=out)
    services(svc_env, "start")
    try:
        store = Storage(env_for(root, **s3))
        store.ensure_bucket(bucket)
        go = tmp_path / "go"
        env = env_for(root, **s3, CQUBE_FAULT="wait:publish.after_staging", CQUBE_FAULT_RELEASE=str(go))
        first = publish_process(env, tmp_path / "first.log")
        deadline = time.monotonic() + 300
        while not Path(str(go) + ".waiting").exists():
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "publish never reached the switch"
            time.sleep(0.3)
        services(svc_env, "stop")
        go.touch()
        assert first.wait(timeout=600) == 1
        log = (tmp_path / "first.log").read_text()
        assert "EndpointConnectionError: Could not connect to the endpoint URL" in log, log[-3000:]
        services(svc_env, "start")
        assert not store.exists(f"{out}/_current.json") and not store.exists(f"{out}/metadata.json")
        assert in_process(env_for(root, **s3), "publish", PUBLISH) == 0
        pointer = json.loads(store.read_bytes(f"{out}/_current.json"))
        prefix = f"{out}/{pointer['prefix']}"
        run_files = {u[len(prefix) + 1:]: store.read_bytes(u) for u in store.list(prefix)}
        assert digests(run_files) == want
        documented = {rel: store.read_bytes(f"{out}/{rel}") for rel in run_files}
        assert digests(documented) == want                  # the documented paths hold that run's files
    finally:
        services(svc_env, "stop")
