"""Kafka stops in the middle of a program-user-events run, then comes back: nothing is lost, nothing doubled.

The outage is real: a private single Kafka node (own ports, own data under the test's tmp dir, started and
stopped by ``scripts/services.sh`` with ``CQUBE_SERVICES_DIR``/``CQUBE_KAFKA_*PORT`` overrides; a clean stop
keeps its log dirs) is stopped while the job works through many small micro-batches. The job reads it through
``CQUBE_KAFKA_BOOTSTRAP``; the shared broker on 9092 is never touched. The run must end within its configured
Kafka bounds (``kafkaTimeoutSeconds`` × (``kafkaRetries`` + 1)) with exit 1 and an error naming the brokers;
the next run, with the broker back, finishes the topic. Waits are bounded (start ≤ 120 s, stop ≤ 60 s).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from cqube_spark.streaming import samples
from tests.conftest import REPO, free_port, require_service
from tests.integration.test_streaming_events import cassandra, fetch, job_run, new_program, run  # noqa: F401
from tests.integration.test_streaming_outage import events_for

PER_BATCH = 25
USERS = 100  # ~250 messages (3 malformed): ~11 micro-batches, the outage after the second
KAFKA_TIMEOUT_S, KAFKA_RETRIES = 5, 1


class PrivateKafka:
    def __init__(self, root: Path):
        self.port, self.controller_port = free_port(), free_port()
        self.env = dict(os.environ, CQUBE_SERVICES_DIR=str(root), CQUBE_KAFKA_PORT=str(self.port),
                        CQUBE_KAFKA_CONTROLLER_PORT=str(self.controller_port), CQUBE_SERVICES_START_TIMEOUT="120",
                        CQUBE_SERVICES_STOP_TIMEOUT="60")
        shared = Path(os.environ.get("CQUBE_SERVICES_DIR", REPO / ".services")) / "jars" / "kafka"
        if (shared / ".stamp").exists():  # reuse the jars resolved for the shared broker (no Maven run)
            (root / "jars").mkdir(parents=True, exist_ok=True)
            (root / "jars" / "kafka").symlink_to(shared, target_is_directory=True)
        self.log_dirs = root / "kafka" / "data"

    def services(self, verb: str) -> None:
        done = subprocess.run(["bash", str(REPO / "scripts" / "services.sh"), verb, "kafka"], env=self.env,
                              capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, f"services.sh {verb} kafka: {done.stdout[-2000:]}{done.stderr[-2000:]}"

    def start(self) -> None:
        self.services("start")

    def stop(self) -> None:
        self.services("stop")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def private_kafka(tmp_path_factory):
    require_service("kafka")  # the shared broker proves Java and the jars are there
    node = PrivateKafka(tmp_path_factory.mktemp("services"))
    node.start()
    try:
        yield node
    finally:
        node.stop()


def publish(bootstrap: str, topic: str, payloads) -> None:
    samples.produce(bootstrap, topic, [(samples.message_key(p), json.dumps(p).encode()) if isinstance(p, dict)
                                       else (None, p) for p in payloads])


def end_offset(bootstrap: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex[:8]}"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)[1]
    finally:
        consumer.close()


def test_kafka_stopped_during_a_run_then_started_nothing_missing_nothing_doubled(
        spark, data_root, cassandra, private_kafka, monkeypatch):  # noqa: F811 - cassandra is a fixture
    monkeypatch.setenv("CQUBE_KAFKA_BOOTSTRAP", private_kafka.bootstrap)
    topic = f"test.ml.programUsers.{uuid.uuid4().hex[:10]}"
    samples.create_topic(private_kafka.bootstrap, topic)
    pid = new_program()
    messages, expected = events_for(pid, USERS)
    malformed = sum(1 for m in messages if isinstance(m, bytes))
    publish(private_kafka.bootstrap, topic, messages)
    batches = math.ceil(len(messages) / PER_BATCH)
    params = (f"maxOffsetsPerTrigger={PER_BATCH}", f"kafkaTimeoutSeconds={KAFKA_TIMEOUT_S}",
              f"kafkaRetries={KAFKA_RETRIES}")
    commits = data_root / "lake" / "checkpoints" / "program-user-events" / "commits"

    def committed() -> int:
        return len([p for p in commits.iterdir() if p.name.isdigit()]) if commits.exists() else 0

    # run 1: the broker goes away (clean stop) after two committed micro-batches
    stopped_at: list[float] = []

    def stop_kafka_mid_run():
        deadline = time.monotonic() + 300
        while committed() < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        private_kafka.stop()
        stopped_at.append(time.monotonic())

    watcher = threading.Thread(target=stop_kafka_mid_run, daemon=True)
    watcher.start()
    assert run(topic, *params) == 1
    ended = time.monotonic()
    watcher.join(timeout=120)
    assert stopped_at, "the watcher did not stop Kafka"
    # bounded: the configured Kafka waits (driver lookups, executor fetches) plus the running batch, not minutes
    limit = KAFKA_TIMEOUT_S * (KAFKA_RETRIES + 1) * 2 + 30
    assert ended - stopped_at[0] < limit, f"run 1 took {ended - stopped_at[0]:.0f} s after the stop (> {limit} s)"
    done_before = committed()
    assert 2 <= done_before < batches, f"Kafka stopped after the run ({done_before}/{batches} batches)"
    failed = job_run(data_root, spark)
    error = failed["error"]
    assert failed["status"] == "FAILED", failed
    assert error.startswith(f"StreamFailed: Kafka at {private_kafka.bootstrap} unreachable"), error
    assert "\n" not in error and len(error) < 800 and os.environ["AWS_SECRET_ACCESS_KEY"] not in error, error

    # run 2: the broker is back with its log dirs: the topic still holds every message; the job resumes at
    # the first uncommitted batch and finishes
    private_kafka.start()
    assert end_offset(private_kafka.bootstrap, topic) == len(messages)
    assert run(topic, *params) == 0
    counters = json.loads(job_run(data_root, spark)["counters"])
    assert counters["rows"] == len(messages) - done_before * PER_BATCH  # nothing re-read that was committed
    assert committed() == batches

    got = fetch(cassandra, pid)
    assert len(got) == len(expected)
    assert {u: (r["program_name"], r["wt"]) for u, r in got.items()} == expected
    dead = spark.read.format("delta").load(str(data_root / "lake" / "dead_letter" / "program_user_events"))
    assert dead.count() == malformed and dead.select("offset").distinct().count() == malformed
    samples.delete_topic(private_kafka.bootstrap, topic)
