"""The hostile corpus beyond intake (``tests/hostile/inputs.yaml``, 19.10): job configs, source specs and
state.yaml, exhaust requests, replay requests and streaming events. Every case goes through the entry point
the job itself calls; its error kind and user-facing message are checked (events: in one Spark batch, also
that the dead letter keeps the message as it came). A case is added by adding data to the YAML."""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
import yaml
from pyspark.sql import types as T

from cqube_spark.config import apply_params, load_job_config
from cqube_spark.exhaust import JOB_ID
from cqube_spark.exhaust import job as exhaust_job
from cqube_spark.exhaust.requests import SUBMITTED, JobRequest
from cqube_spark.quality.spec import load_specs, load_state
from cqube_spark.replay.request import load_request
from cqube_spark.streaming import dead_letter, transforms

REPO = Path(__file__).resolve().parents[2]
DOC = yaml.safe_load((REPO / "tests" / "hostile" / "inputs.yaml").read_text())
GROUPS = ("job_configs", "specs", "exhaust_requests", "replay_requests", "events")
TOKEN = re.compile(r"\{\{(deep|nest|repeat):(?:([^:}]*):)?([0-9]+)\}\}")
KAFKA = T.StructType([
    T.StructField("key", T.BinaryType()), T.StructField("value", T.BinaryType()),
    T.StructField("topic", T.StringType()), T.StructField("partition", T.IntegerType()),
    T.StructField("offset", T.LongType()), T.StructField("timestamp", T.TimestampType()),
])


def expand(text: str) -> str:
    """``{{deep:N}}``, ``{{nest:N}}``, ``{{repeat:TEXT:N}}`` → the large text they stand for."""
    def one(m):
        n = int(m.group(3))
        return {"deep": "[" * n + "]" * n, "nest": '{"a": ' * n + "1" + "}" * n, "repeat": (m.group(2) or "") * n}[m.group(1)]
    return TOKEN.sub(one, text)


def data_of(case: dict, field: str, default=None, dump=json.dumps) -> bytes | None:
    """A case's input bytes: ``<field>_hex``, ``<field>_text`` or ``<field>`` as data (None stays None)."""
    if f"{field}_hex" in case:
        return bytes.fromhex(case[f"{field}_hex"])
    if f"{field}_text" in case:
        return expand(case[f"{field}_text"]).encode()
    value = case.get(field, default)
    return None if value is None else expand(dump(value)).encode()


def run_job_config(case, tmp: Path):
    path = tmp / "job.json"
    if case.get("dir"):
        path.mkdir()
    else:
        path.write_bytes(data_of(case, "config"))
    return apply_params(load_job_config(path, env=case.get("env", {})), case.get("params", []))


def run_specs(case, tmp: Path):
    sources = tmp / "sources"
    sources.mkdir()
    (sources / f"{case.get('file', 't')}.yaml").write_bytes(data_of(case, "spec", DOC["base_spec"], yaml.safe_dump))
    state = data_of(case, "state", dump=yaml.safe_dump)
    if state is not None:
        (tmp / "state.yaml").write_bytes(state)
    return load_specs(sources, load_state(tmp / "state.yaml"))


def run_exhaust(case, tmp: Path):
    row = {**DOC["base_request"], **{k: expand(v) for k, v in case.get("request", {}).items()}}
    req = JobRequest(tag=row["tag"], request_id=row["request_id"], job_id=JOB_ID, status=SUBMITTED,
                     request_data=data_of(case, "request_data", row["request_data"]).decode(),
                     requested_by="hostile", requested_channel="tests", encryption_key=row["encryption_key"])
    params = load_job_config(REPO / "configs" / "jobs" / f"{JOB_ID}.json", env={}).model_params
    return exhaust_job.process(None, req, exhaust_job.params_with_defaults(params))  # refused before ctx is used


def run_replay(case, tmp: Path):
    return load_request(data_of(case, "request"), "data_replay/hostile.json")


RUNNERS = {"job_configs": run_job_config, "specs": run_specs, "exhaust_requests": run_exhaust,
           "replay_requests": run_replay}
REFUSED = [(g, c) for g in RUNNERS for c in DOC[g]]


def check(case: dict, kind: str, message: str) -> None:
    exp = case["expect"]
    assert kind == exp["kind"], message
    assert expand(exp["message"]) in message, message
    for secret in exp.get("absent", []):
        assert secret not in message


def test_the_corpus_is_large_and_every_case_has_an_expectation():
    cases = [c for g in GROUPS for c in DOC[g]]
    assert len(cases) >= 30 and all(len(DOC[g]) >= 5 for g in GROUPS)
    assert len({c["id"] for c in cases}) == len(cases)
    for c in cases:
        assert c.get("why") and c["expect"].get("kind") and c["expect"].get("message"), c["id"]


@pytest.mark.parametrize("group, case", REFUSED, ids=[c["id"] for _, c in REFUSED])
def test_refused_naming_the_problem(group, case, tmp_path):
    with pytest.raises(Exception) as e:
        RUNNERS[group](case, tmp_path)
    check(case, type(e.value).__name__, str(e.value))


# ------------------------------------------------------------------------------------------------ events

EVENTS = DOC["events"]
KAFKA_TS = dt.datetime(2024, 3, 1, 6, 30)


def event_bytes(case: dict) -> bytes | None:
    if "event" in case and case["event"] is None:
        return None                                                           # a Kafka tombstone
    base = {k: v for k, v in DOC["base_event"].items() if k not in case.get("drop", [])}
    return data_of({**case, "event": {**base, **(case.get("event") or {})}}, "event")


@pytest.fixture(scope="module")
def dead_letters(spark):
    """All event cases (and the base event, last) in one batch, as the streaming job's foreachBatch sees it."""
    values = [event_bytes(c) for c in EVENTS] + [json.dumps(DOC["base_event"]).encode()]
    df = spark.createDataFrame([(None, v, "hostile", 0, i, KAFKA_TS) for i, v in enumerate(values)], KAFKA)
    classified = df.transform(transforms.parse_events).transform(transforms.classify)
    rows = dead_letter.with_context(transforms.dead_letters(classified), 0, "hostile-corpus").collect()
    return {r["offset"]: r for r in rows}


def test_the_base_event_is_valid(dead_letters):
    assert len(EVENTS) not in dead_letters, dead_letters.get(len(EVENTS))


@pytest.mark.parametrize("i", range(len(EVENTS)), ids=[c["id"] for c in EVENTS])
def test_event_is_dead_lettered_as_it_came(dead_letters, i):
    case, value = EVENTS[i], event_bytes(EVENTS[i])
    assert i in dead_letters, "accepted as a valid event"
    r = dead_letters[i]
    check(case, r["error_code"], r["reason"])
    assert (None if r["value"] is None else bytes(r["value"])) == value      # the exact bytes are kept
    if value is not None and "event_hex" not in case:
        assert r["raw"] == value.decode()
    assert (r["topic"], r["partition"], r["run_id"]) == ("hostile", 0, "hostile-corpus")
