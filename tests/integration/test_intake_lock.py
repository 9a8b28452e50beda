"""Two intakes on one data root, from the outside (19.9): real ``cqube-spark run intake`` processes.

A holds the lock (paused by the ``wait:intake.locked`` fault point, so the overlap is certain, not a race);
B starts while A holds it and exits 3 at once, naming A and since when, before starting Spark or writing
anything. Every file is loaded exactly once. (Waiting for the lock, and a SIGKILLed holder, are in
``tests/unit/test_runlock.py`` with real locks.) Also the lock on the real S3 server: conditional create,
refusal, stale takeover, heartbeat, release.
"""
import json
import os
import subprocess
import sys
import time
import zipfile
from types import SimpleNamespace

import pytest
from cqube_spark import runlock, storage
from cqube_spark.api.tables import query
from cqube_spark.logs import get_logger

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = {
    "school_management": ("school_management_master.csv",
                          '"ManagementId"|"Management"|default_option\n1|"Govt"|\n2|"Tribal"|\n3|"Aided"|\n'),
    "block": ("block_mst.csv", "block_name|udise_block_code|udise_dist_code|udise_state_code\n"
                               "B1|290101|2901|29\nB2|290102|2901|29\n"),
}


def emit(root):
    for folder, (member, text) in FILES.items():
        path = root / "emission" / folder / f"{folder}.zip"
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(member, text)


def start(root, run_id, log, *params, **env):
    cmd = [sys.executable, "-m", "cqube_spark.cli", "run", "intake", "--run-id", run_id,
           "--param", "greatExpectations=false", *sum((["--param", p] for p in params), [])]
    e = dict(os.environ, CQUBE_DATA_ROOT=str(root), PYTHONPATH=REPO, **env)
    for k in ("CQUBE_EMISSION_URI", "CQUBE_INPUT_URI", "CQUBE_OUTPUT_URI", "CQUBE_LAKE_URI", "CQUBE_FAULT"):
        if k not in env:
            e.pop(k, None)
    return subprocess.Popen(cmd, cwd=REPO, env=e, stdout=open(log, "w"), stderr=subprocess.STDOUT)


def wait_for(cond, proc, log, what, seconds=400):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return
        if proc.poll() is not None:
            pytest.fail(f"process exited {proc.returncode} before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def table(root, *parts):
    return query(str(root.joinpath("lake", *parts)), "SELECT * FROM t")


def test_two_intakes_started_together_load_each_file_once(tmp_path):
    root = tmp_path / "data"
    emit(root)
    lock = root / "lake" / "meta" / "_locks" / "intake"
    go = tmp_path / "go"
    logs = {n: tmp_path / f"{n}.log" for n in "AB"}
    a = start(root, "run-A", logs["A"], CQUBE_FAULT="wait:intake.locked", CQUBE_FAULT_RELEASE=str(go))
    procs = [a]
    try:
        wait_for(lambda: lock.exists() and '"run-A"' in lock.read_text(), a, logs["A"], "A holds the lock")
        since = json.loads(lock.read_text())["since"]
        b = start(root, "run-B", logs["B"])
        procs.append(b)
        assert b.wait(timeout=600) == 3, logs["B"].read_text()[-3000:]
        out_b = logs["B"].read_text()
        assert f"refused: another intake holds the lock since {since} (run run-A, pid {a.pid} on " in out_b
        assert str(lock) in out_b and "SparkContext" not in out_b    # refused before any JVM started
        assert a.poll() is None                                      # A still paused, holding the lock
        go.touch()
        assert a.wait(timeout=600) == 0, logs["A"].read_text()[-3000:]
    finally:
        go.touch()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    tracker = table(root, "meta", "file_tracker")
    assert sorted((r["source"], r["status"], r["run_id"], r["loaded_rows"]) for r in tracker) == [
        ("block_master", "loaded", "run-A", 2), ("school_management", "loaded", "run-A", 3)]
    assert len(table(root, "bronze", "school_management")) == 3
    assert len(table(root, "bronze", "block_master")) == 2
    runs = {r["run_id"]: r["status"] for r in table(root, "meta", "job_runs")}
    assert runs == {"run-A": "SUCCESS"}         # the refused run wrote nothing
    assert lock.read_text() == ""               # released by A


def s3ctx(run_id, **params):
    return SimpleNamespace(params=params, run_id=run_id, roots={"lake": f"s3a://cqube-locks/{params.pop('root')}"},
                           store=storage.Storage(), log=get_logger(run_id))


def test_s3_lock_conditional_create_refusal_stale_takeover_and_release(s3, tmp_path):
    s3.ensure_bucket("s3a://cqube-locks/")
    root = f"t{time.time_ns()}"
    key = f"{root}/meta/_locks/intake"
    with runlock.hold(s3ctx("run-A", root=root), "intake"):
        held = json.loads(s3.read_bytes(f"s3a://cqube-locks/{key}"))
        assert held["run_id"] == "run-A"
        with pytest.raises(runlock.LockHeld, match=r"another intake holds the lock since .* \(run run-A, pid"):
            with runlock.hold(s3ctx("run-B", root=root), "intake"):
                pass
    assert not s3.exists(f"s3a://cqube-locks/{key}")            # released
    # a holder that died without releasing: its heartbeat stops; past lockStaleSeconds the lock is broken
    dead = {"name": "intake", "run_id": "dead", "pid": 1, "host": "gone", "since": "2020-01-01T00:00:00+00:00",
            "heartbeat": "2020-01-01T00:00:00+00:00"}
    s3.write_bytes(f"s3a://cqube-locks/{key}", json.dumps(dead).encode())
    with pytest.raises(runlock.LockHeld, match="run dead"):      # not stale under a long rule
        with runlock.hold(s3ctx("run-C", root=root, lockStaleSeconds=10 ** 9), "intake"):
            pass
    with runlock.hold(s3ctx("run-D", root=root, lockStaleSeconds=3), "intake") as h:
        assert json.loads(s3.read_bytes(f"s3a://cqube-locks/{key}"))["run_id"] == "run-D"
        first = h.impl.etag
        deadline = time.monotonic() + 30                          # the holder beats every stale/3 s
        while h.impl.etag == first and time.monotonic() < deadline:
            time.sleep(0.2)
        beat = json.loads(s3.read_bytes(f"s3a://cqube-locks/{key}"))
        assert beat["run_id"] == "run-D" and beat["heartbeat"] >= beat["since"] and h.impl.etag != first
    assert not s3.exists(f"s3a://cqube-locks/{key}")
