"""program-user-events against the real Kafka broker and Cassandra (scripts/services.sh start kafka cassandra).

Each test publishes to its own topic with its own program ids, runs the job in-process with the session's
SparkSession (or, for --continuous, as the real CLI in a subprocess) and reads program_enrollment back.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from cqube_spark.exhaust import settings
from cqube_spark.runner import run_job
from cqube_spark.streaming import samples, sink
from tests.conftest import REPO, require_service

BOOTSTRAP = os.environ.get("CQUBE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
TABLE = "sunbird_programs.program_enrollment"


# ------------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def cassandra():
    require_service("cassandra")
    conf = settings.cassandra()
    sink.ensure_table(conf, "sunbird_programs", "program_enrollment")
    cluster = conf.cluster()
    session = cluster.connect()
    yield session
    cluster.shutdown()


@pytest.fixture
def topic():
    require_service("kafka")
    name = f"test.ml.programUsers.{uuid.uuid4().hex[:10]}"
    samples.create_topic(BOOTSTRAP, name)
    yield name
    samples.delete_topic(BOOTSTRAP, name)


def new_program() -> str:
    return uuid.uuid4().hex[:24]


def publish(topic: str, payloads) -> None:
    msgs = []
    for p in payloads:
        if isinstance(p, dict):
            msgs.append((samples.message_key(p), json.dumps(p).encode()))
        else:
            msgs.append((None, p if p is None or isinstance(p, bytes) else p.encode()))
    samples.produce(BOOTSTRAP, topic, msgs)


def run(topic: str, *params: str) -> int:
    return run_job("program-user-events", params=[f"topic={topic}", *params])


def fetch(session, program_id: str) -> dict[str, dict]:
    cols = ", ".join(sink.TABLE_COLUMNS)
    rows = session.execute(f"SELECT {cols}, writetime(pii_consent_required) AS wt FROM {TABLE} "
                           "WHERE program_id = %s", (program_id,))
    out = {}
    for r in rows:
        d = r._asdict()
        d["user_locations"] = dict(d["user_locations"]) if d["user_locations"] else None
        for c in ("created_at", "updated_at"):
            d[c] = d[c].date() if d[c] is not None else None
        out[d["user_id"]] = d
    return out


def expected_row(**overrides) -> dict:
    r = dict(samples.SAMPLE_ROW)
    r.update(overrides)
    return r


def without_wt(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "wt"}


def micros(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000) * 1000


def job_run(data_root: Path, spark):
    runs = spark.read.format("delta").load(str(data_root / "lake" / "meta" / "job_runs"))
    return runs.orderBy("started_at", ascending=False).first()


# ---------------------------------------------------------------------------------------------- tests
def test_sample_and_edge_cases_land_with_the_right_columns(spark, data_root, cassandra, topic):
    pid = new_program()
    sample = samples.event(programId=pid)
    profile = samples.SAMPLE_EVENT["userProfile"]
    events = [
        sample,
        samples.event(programId=pid, userId="empty-strings", programName="", programExternalId="  ",
                      requestForPIIConsent="", createdAt="", updatedAt="2023-01-12T06:30:56.829Z",
                      userProfile={"userLocations": "", "profileUserTypes": [], "rootOrg": ""}),
        samples.event(programId=pid, userId="nulls", programName=None, programExternalId=None,
                      requestForPIIConsent=None, createdAt=None, userProfile=None),
        samples.event(programId=pid, userId="no-locations",
                      userProfile={k: v for k, v in profile.items() if k != "userLocations"}),
        samples.event(programId=pid, userId="no-root-org",
                      userProfile={k: v for k, v in profile.items() if k != "rootOrg"}),
        samples.event(programId=pid, userId="dup-sub-types", userProfile={**profile, "profileUserTypes": [
            {"type": "administrator", "subType": "crp"}, {"type": "administrator", "subType": "hm"},
            {"type": "administrator", "subType": "crp"}, {"type": "teacher", "subType": "hm"}]}),
    ]
    publish(topic, events)
    assert run(topic) == 0

    got = fetch(cassandra, pid)
    no_profile = dict(user_locations=None, organisation_id=None, organisation_name=None, user_sub_type=None,
                      user_type=None)
    want = {
        samples.SAMPLE_EVENT["userId"]: expected_row(program_id=pid),
        "empty-strings": expected_row(program_id=pid, user_id="empty-strings", program_name=None,
                                      program_externalid=None, pii_consent_required=False, created_at=None,
                                      **no_profile),
        "nulls": expected_row(program_id=pid, user_id="nulls", program_name=None, program_externalid=None,
                              pii_consent_required=False, created_at=None, **no_profile),
        "no-locations": expected_row(program_id=pid, user_id="no-locations", user_locations=None),
        "no-root-org": expected_row(program_id=pid, user_id="no-root-org", organisation_id=None,
                                    organisation_name=None),
        "dup-sub-types": expected_row(program_id=pid, user_id="dup-sub-types", user_sub_type="crp,hm",
                                      user_type="administrator,teacher"),
    }
    assert {u: without_wt(r) for u, r in got.items()} == want
    # every row is written with the event's updatedAt as its Cassandra write time
    assert {r["wt"] for r in got.values()} == {micros(samples.SAMPLE_EVENT["updatedAt"])}

    # the sample row reads back exactly like the exhaust's report expects it
    row = cassandra.execute(f"SELECT user_locations['district_name'] AS d, user_locations['school_code'] AS s "
                            f"FROM {TABLE} WHERE program_id = %s AND user_id = %s",
                            (pid, samples.SAMPLE_EVENT["userId"])).one()
    assert (row.d, row.s) == ("ANANTAPUR", "28226200816")


def test_later_event_updates_and_late_older_event_does_not_overwrite(spark, data_root, cassandra, topic):
    pid = new_program()
    jan = lambda day, **kw: samples.event(programId=pid, updatedAt=f"2024-01-{day:02d}T10:00:00.000Z", **kw)  # noqa: E731
    user_a, user_b = "user-a", "user-b"
    loc = [{"type": "state", "name": "Karnataka", "id": "st-29", "code": "29"},
           {"type": "district", "name": "Mysuru", "id": "di-1", "code": "2901"}]
    # run 1: A at v2; B gets v1 then v3 then a late v2 in the same batch
    publish(topic, [
        jan(2, userId=user_a, programName="A v2", userProfile={"userLocations": loc}),
        jan(1, userId=user_b, programName="B v1"),
        jan(3, userId=user_b, programName="B v3"),
        jan(2, userId=user_b, programName="B v2 late"),
    ])
    assert run(topic) == 0
    got = fetch(cassandra, pid)
    assert (got[user_a]["program_name"], got[user_b]["program_name"]) == ("A v2", "B v3")
    assert got[user_a]["user_locations"] == {"state_name": "Karnataka", "state_id": "st-29", "state_code": "29",
                                             "district_name": "Mysuru", "district_id": "di-1",
                                             "district_code": "2901"}

    # run 2 (resumes after run 1): a late older A (v1, other locations) changes nothing; B gets a newer v4
    # that drops the organisation and the locations: the newer event replaces the whole row
    publish(topic, [
        jan(1, userId=user_a, programName="A v1 late", requestForPIIConsent=False,
            userProfile={"userLocations": [{"type": "block", "name": "Old", "id": "bl-0", "code": "0"}]}),
        jan(4, userId=user_b, programName="B v4", userProfile={}),
    ])
    assert run(topic) == 0
    counters = json.loads(job_run(data_root, spark)["counters"])
    assert (counters["rows"], counters["upserted"]) == (2, 2)  # only the new events were read
    got = fetch(cassandra, pid)
    a, b = got[user_a], got[user_b]
    assert (a["program_name"], a["pii_consent_required"], a["updated_at"]) == ("A v2", True, dt.date(2024, 1, 2))
    assert a["user_locations"]["district_name"] == "Mysuru" and "block_name" not in a["user_locations"]
    assert (b["program_name"], b["updated_at"], b["user_locations"], b["organisation_name"]) == \
           ("B v4", dt.date(2024, 1, 4), None, None)
    assert a["wt"] == micros("2024-01-02T10:00:00Z") and b["wt"] == micros("2024-01-04T10:00:00Z")


def test_malformed_messages_reach_the_dead_letter_table_and_never_stop_the_stream(
        spark, data_root, cassandra, topic):
    pid = new_program()
    bad = [
        b"{not json",
        b"\xff\xfe binary",
        None,
        samples.event(programId=pid, userId=None),
        samples.event(drop=["programId"], userId="no-program"),
        samples.event(programId=pid, userId="bad-date", updatedAt="31/12/2024"),
        samples.event(programId=pid, userId="bad-shape", userProfile={"userLocations": {"type": "state"}}),
    ]
    good = [samples.event(programId=pid, userId=f"ok-{i}") for i in range(3)]
    publish(topic, [good[0], *bad[:4], good[1], *bad[4:], good[2]])
    assert run(topic, "maxOffsetsPerTrigger=4") == 0  # several micro-batches, bad ones in each

    assert set(fetch(cassandra, pid)) == {"ok-0", "ok-1", "ok-2"}
    path = str(data_root / "lake" / "dead_letter" / "program_user_events")
    dead = spark.read.format("delta").load(path).orderBy("offset").collect()
    assert [(r["topic"], r["partition"], r["offset"], r["error_code"]) for r in dead] == [
        (topic, 0, 1, "malformed_json"), (topic, 0, 2, "malformed_json"), (topic, 0, 3, "empty_message"),
        (topic, 0, 4, "missing_user_id"), (topic, 0, 6, "missing_program_id"), (topic, 0, 7, "bad_updated_at"),
        (topic, 0, 8, "schema_mismatch")]
    assert bytes(dead[1]["value"]) == b"\xff\xfe binary" and dead[0]["raw"] == "{not json"
    assert dead[2]["value"] is None
    assert json.loads(dead[5]["raw"])["updatedAt"] == "31/12/2024"
    assert dead[5]["reason"] == "unparseable updatedAt '31/12/2024'"
    assert all(r["run_id"] and r["batch_id"] is not None and r["dead_lettered_at"] for r in dead)
    counters = json.loads(job_run(data_root, spark)["counters"])
    assert (counters["rows"], counters["valid"], counters["dead_letters"]) == (10, 3, 7)
    assert counters["batches"] == 3

    # a replay from scratch (checkpoint lost) adds no dead letter twice and rewrites the same rows
    import shutil

    shutil.rmtree(data_root / "lake" / "checkpoints")
    assert run(topic) == 0
    assert spark.read.format("delta").load(path).count() == 7
    assert set(fetch(cassandra, pid)) == {"ok-0", "ok-1", "ok-2"}


def test_continuous_mode_keeps_consuming_and_stops_cleanly_on_sigterm(tmp_path, cassandra, topic):
    pid = new_program()
    publish(topic, [samples.event(programId=pid, userId="first")])
    env = dict(os.environ, CQUBE_DATA_ROOT=str(tmp_path / "data"), CQUBE_SPARK_MASTER="local[2]",
               PYSPARK_PYTHON=sys.executable, CQUBE_KAFKA_BOOTSTRAP=BOOTSTRAP)
    log = open(tmp_path / "job.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "cqube_spark.cli", "run", "program-user-events", "--continuous",
                             "--param", f"topic={topic}", "--param", "triggerInterval=1 second"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "first" in fetch(cassandra, pid), 300, proc, log)
        publish(topic, [samples.event(programId=pid, userId="second")])  # published while the job runs
        wait_for(lambda: "second" in fetch(cassandra, pid), 120, proc, log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=180) == 0, tail(log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = tail(log, 200)
    assert '"msg": "stream stopped"' in text and '"status": "SUCCESS"' in text, text


def wait_for(check, timeout: float, proc, log) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        assert proc.poll() is None, f"job exited with {proc.returncode}:\n{tail(log)}"
        time.sleep(1)
    pytest.fail(f"not done after {timeout}s:\n{tail(log)}")


def tail(log, n: int = 40) -> str:
    log.flush()
    log.seek(0)
    return "\n".join(line for line in log.read().splitlines() if "WARN" not in line[:40])[-n * 200:]
