"""Cassandra stops in the middle of a program-user-events run, then comes back: nothing is lost.

The outage is real: a private single Cassandra node (own ports, own data under the test's tmp dir, started and
stopped by ``scripts/services.sh`` with ``CQUBE_SERVICES_DIR``/``CQUBE_CASSANDRA_*PORT`` overrides) is stopped
while the job works through many small micro-batches. The shared node on 9042 is never touched, so other
suites running at the same time keep their Cassandra. Waits are bounded (start ≤ 240 s, stop ≤ 60 s).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cqube_spark.exhaust.settings import CassandraSettings
from cqube_spark.streaming import samples, sink
from tests.conftest import REPO, free_port, require_service
from tests.integration.test_streaming_events import fetch, micros, new_program, publish, run, topic  # noqa: F401

PER_BATCH = 25


class PrivateCassandra:
    def __init__(self, root: Path):
        self.port, self.storage_port = free_port(), free_port()
        self.env = dict(os.environ, CQUBE_SERVICES_DIR=str(root), CQUBE_CASSANDRA_PORT=str(self.port),
                        CQUBE_CASSANDRA_STORAGE_PORT=str(self.storage_port), CQUBE_SERVICES_START_TIMEOUT="240",
                        CQUBE_SERVICES_STOP_TIMEOUT="60")
        shared = Path(os.environ.get("CQUBE_SERVICES_DIR", REPO / ".services")) / "jars" / "cassandra"
        if (shared / ".stamp").exists():  # reuse the jars resolved for the shared node (no Maven run)
            (root / "jars").mkdir(parents=True, exist_ok=True)
            (root / "jars" / "cassandra").symlink_to(shared, target_is_directory=True)

    def services(self, verb: str) -> None:
        done = subprocess.run(["bash", str(REPO / "scripts" / "services.sh"), verb, "cassandra"], env=self.env,
                              capture_output=True, text=True, timeout=400)
        assert done.returncode == 0, f"services.sh {verb} cassandra: {done.stdout[-2000:]}{done.stderr[-2000:]}"

    def start(self) -> None:
        self.services("start")

    def stop(self) -> None:
        self.services("stop")

    @property
    def conf(self) -> CassandraSettings:
        return CassandraSettings(("127.0.0.1",), self.port)


@pytest.fixture
def private_cassandra(tmp_path_factory):
    require_service("cassandra")  # the shared node proves Java and the jars are there
    node = PrivateCassandra(tmp_path_factory.mktemp("services"))
    node.start()
    try:
        yield node
    finally:
        node.stop()


def events_for(pid: str, users: int = 200):
    """~2.5 events per user (updates and late older ones), a few malformed ones in between."""
    out, expected = [], {}
    for u in range(users):
        versions = [(1 + (u * 7 + k * 3) % 28, k) for k in range(1 + u % 4)]  # (day, version)
        for day, k in versions:
            updated = f"2024-02-{day:02d}T08:00:00.000Z"
            e = samples.event(programId=pid, userId=f"user-{u:04d}", programName=f"v{k}-d{day}",
                              updatedAt=updated)
            out.append(e)
            best = expected.get(e["userId"])
            if best is None or day >= best[1]:  # same day: the later message wins
                expected[e["userId"]] = (e["programName"], day)
        if u % 40 == 0:
            out.append(b'{"programId": "' + pid.encode() + b'", "userId": ')
    return out, {u: (name, micros(f"2024-02-{day:02d}T08:00:00Z")) for u, (name, day) in expected.items()}


def test_cassandra_stopped_during_a_run_then_started_nothing_missing(
        spark, data_root, topic, private_cassandra, monkeypatch):  # noqa: F811 - topic is a fixture
    monkeypatch.setenv("CQUBE_CASSANDRA_HOSTS", f"127.0.0.1:{private_cassandra.port}")
    pid = new_program()
    messages, expected = events_for(pid)
    malformed = sum(1 for m in messages if isinstance(m, bytes))
    publish(topic, messages)
    batches = math.ceil(len(messages) / PER_BATCH)
    params = (f"maxOffsetsPerTrigger={PER_BATCH}", "writeRetries=1", "retryBackoffSeconds=1",
              "cassandraTimeoutSeconds=10")
    commits = data_root / "lake" / "checkpoints" / "program-user-events" / "commits"

    def committed() -> int:
        return len([p for p in commits.iterdir() if p.name.isdigit()]) if commits.exists() else 0

    # run 1: Cassandra goes away after two committed micro-batches
    stopped = threading.Event()

    def stop_cassandra_mid_run():
        deadline = time.monotonic() + 600
        while committed() < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        private_cassandra.stop()
        stopped.set()

    watcher = threading.Thread(target=stop_cassandra_mid_run, daemon=True)
    watcher.start()
    assert run(topic, *params) == 1
    watcher.join(timeout=120)
    assert stopped.is_set()
    done_before = committed()
    assert 2 <= done_before < batches, f"Cassandra stopped after the run ({done_before}/{batches} batches)"
    failed = spark.read.format("delta").load(str(data_root / "lake" / "meta" / "job_runs")) \
        .orderBy("started_at", ascending=False).first()
    assert failed["status"] == "FAILED" and "Cassandra write failed" in failed["error"], failed["error"]

    # run 2: Cassandra is back; the job resumes at the first uncommitted batch and finishes
    private_cassandra.start()
    assert run(topic, *params) == 0
    runs = spark.read.format("delta").load(str(data_root / "lake" / "meta" / "job_runs"))
    last = runs.orderBy("started_at", ascending=False).first()
    counters = json.loads(last["counters"])
    assert counters["rows"] == len(messages) - done_before * PER_BATCH  # nothing re-read that was committed
    assert committed() == batches

    cluster = private_cassandra.conf.cluster()
    try:
        got = fetch(cluster.connect(), pid)
    finally:
        cluster.shutdown()
    assert len(got) == len(expected)
    assert {u: (r["program_name"], r["wt"]) for u, r in got.items()} == expected
    dead = spark.read.format("delta").load(str(data_root / "lake" / "dead_letter" / "program_user_events"))
    assert dead.count() == malformed and dead.select("offset").distinct().count() == malformed


def test_sink_ensures_the_table_from_the_exhaust_schema():
    """createTable applies configs/exhaust/schema.cql's definitions (here under another keyspace name)."""
    from cqube_spark.exhaust import settings

    require_service("cassandra")
    conf = settings.cassandra()
    sink.ensure_table(conf, "cqube_events_test", "program_enrollment_copy")
    cluster = conf.cluster()
    try:
        session = cluster.connect()
        cols = {r.column_name: r.type for r in session.execute(
            "SELECT column_name, type FROM system_schema.columns WHERE keyspace_name = 'cqube_events_test' "
            "AND table_name = 'program_enrollment_copy'")}
        session.execute("DROP KEYSPACE cqube_events_test", timeout=60)
    finally:
        cluster.shutdown()
    assert cols["user_locations"] == "map<text, text>" and cols["updated_at"] == "date"
    assert set(cols) == set(sink.TABLE_COLUMNS)
