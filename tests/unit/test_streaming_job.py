"""Pure parts of the program-user-events job: settings, config, CQL, write grouping, error lines."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from cqube_spark.config import ConfigError, apply_params, load_job_config
from cqube_spark.runner import MODELS, resolve_config_path
from cqube_spark.streaming import job, sink


def test_model_is_registered_and_config_is_valid():
    assert MODELS["program-user-events"] == "cqube_spark.streaming.job"
    cfg = load_job_config(resolve_config_path("program-user-events"))
    assert cfg.model == "program-user-events"
    assert cfg.model_params["continuous"] is False
    assert apply_params(cfg, ["continuous=true"]).model_params["continuous"] is True
    assert apply_params(cfg, ["topic=prod.ml.programUsers.raw"]).model_params["topic"] == "prod.ml.programUsers.raw"


@pytest.mark.parametrize("param, where", [
    ("continuous=yes", "$.modelParams.continuous"),
    ("maxOffsetsPerTrigger=-1", "$.modelParams.maxOffsetsPerTrigger"),
    ("keyspace=bad-name", "$.modelParams.keyspace"),
    ("topc=x", "$.modelParams"),
])
def test_bad_params_are_config_errors(param, where):
    cfg = load_job_config(resolve_config_path("program-user-events"))
    with pytest.raises(ConfigError) as err:
        apply_params(cfg, [param])
    assert err.value.path == where


def test_resolve_defaults_from_environment_and_lake():
    s = job.resolve({}, "/data/lake", env={})
    assert s.topic == "dev.ml.programUsers.raw"
    assert s.bootstrap == "127.0.0.1:9092"
    assert s.checkpoint == "/data/lake/checkpoints/program-user-events"
    assert s.dead_letters == "/data/lake/dead_letter/program_user_events"
    assert s["startingOffsets"] == "earliest" and s["continuous"] is False

    s = job.resolve({"maxOffsetsPerTrigger": 5}, "s3a://bucket/lake",
                    env={"CQUBE_ENV": "staging", "CQUBE_KAFKA_BOOTSTRAP": "k1:9092,k2:9092"})
    assert (s.topic, s.bootstrap) == ("staging.ml.programUsers.raw", "k1:9092,k2:9092")
    assert s.checkpoint == "s3a://bucket/lake/checkpoints/program-user-events"
    assert s["maxOffsetsPerTrigger"] == 5

    s = job.resolve({"topic": "t", "bootstrapServers": "b:1", "checkpointLocation": "/cp",
                     "deadLetterLocation": "/dl"}, "/lake", env={"CQUBE_ENV": "x"})
    assert (s.topic, s.bootstrap, s.checkpoint, s.dead_letters) == ("t", "b:1", "/cp", "/dl")


def test_insert_cql_uses_the_exhaust_columns_and_event_time():
    cql = sink.insert_cql("sunbird_programs", "program_enrollment")
    assert cql.startswith("INSERT INTO sunbird_programs.program_enrollment (program_id, program_externalid, ")
    assert cql.endswith("USING TIMESTAMP ?")
    assert cql.count("?") == 13
    with pytest.raises(ValueError):
        sink.insert_cql("ks; DROP TABLE x", "t")


def _row(program, user, locations=None):
    return (program, "ext", "name", True, user, locations, "org", "Org", "hm", "administrator",
            dt.date(2024, 1, 1), dt.date(2024, 1, 2), 1)


def test_row_args_map_and_empty_map():
    assert sink.row_args(_row("p", "u", {"state_name": "KA"}))[5] == {"state_name": "KA"}
    assert sink.row_args(_row("p", "u", {}))[5] is None
    assert len(sink.row_args(_row("p", "u"))) == 13


def test_group_rows_batches_one_program_at_a_time():
    rows = [_row("p1", f"u{i}") for i in range(5)] + [_row("p2", "u9")] + [_row("p3", "a"), _row("p3", "b")]
    groups = list(sink.group_rows(rows, batch_size=2))
    assert [[(a[0], a[4]) for a in g] for g in groups] == [
        [("p1", "u0"), ("p1", "u1")], [("p1", "u2"), ("p1", "u3")], [("p1", "u4")], [("p2", "u9")],
        [("p3", "a"), ("p3", "b")]]
    assert list(sink.group_rows([], 10)) == []


def test_failure_line_prefers_the_write_failure():
    text = ("StreamingQueryException: [STREAM_FAILED] ...\n  File x\n"
            "cqube_spark.streaming.job.WriteFailed: micro-batch 3: Cassandra write failed after 1 attempt(s): "
            "NoHostAvailable: ('Unable to connect to any servers', {...})\n  at ...")
    assert job.failure_line(Exception(text)).startswith("WriteFailed: micro-batch 3: Cassandra write failed")
    assert job.short_reason(Exception("boom\nmore")) == "Exception: boom"
    assert "NoHostAvailable" in job.short_reason(Exception("x\n  cassandra.cluster.NoHostAvailable: (...)"))


def test_totals_counters_are_json():
    t = job.Totals(batches=2, input=10, valid=8, upserted=7, superseded_in_batch=1, dead_letters=2,
                   reasons={"missing_user_id": 1, "malformed_json": 1})
    c = t.as_counters()
    assert c["rows"] == 10 and list(c["dead_letter_reasons"]) == ["malformed_json", "missing_user_id"]
    json.dumps(c)


def test_spark_55271_is_recognised_and_nothing_else():
    msg = ('[STREAM_FAILED] Query [id = 1, runId = 2] terminated with exception: Cannot invoke '
           '"scala.collection.IterableOps.map(scala.Function1)" because the return value of "scala.Option.get()" '
           'is null SQLSTATE: XXK')
    assert job.is_spark_55271(Exception(msg))
    assert not job.is_spark_55271(Exception("WriteFailed: micro-batch 2: Cassandra write failed"))


def test_a_second_query_on_the_same_checkpoint_is_refused_until_the_first_ends(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from cqube_spark.streaming.job import StreamFailed, checkpoint_lock

    cp = str(tmp_path / "checkpoints" / "program-user-events")
    with checkpoint_lock(cp):
        with pytest.raises(StreamFailed) as e:
            with checkpoint_lock(cp):
                pass
        assert str(e.value).startswith(f"checkpoint {cp} is in use by another streaming query (pid {os.getpid()} ")
        assert str(e.value).endswith("refusing to start a second query on it")
    with checkpoint_lock(cp):  # released when the first ended
        pass
    # another process holds it (and is killed: the kernel releases the lock, nothing stale is left)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from cqube_spark.streaming.job import checkpoint_lock\n"
        f"l = checkpoint_lock({cp!r}).__enter__(); print('locked', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StreamFailed, match=f"in use by another streaming query \\(pid {holder.pid} "):
            with checkpoint_lock(cp):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with checkpoint_lock(cp):
        pass
    with checkpoint_lock("s3a://bucket/checkpoints/x"):  # no lock on S3 (documented)
        pass


def test_kafka_options_bound_every_wait_for_an_unreachable_broker():
    opts = job.kafka_options(job.resolve({"topic": "t", "maxOffsetsPerTrigger": 25}, "/lake",
                                         env={"CQUBE_KAFKA_BOOTSTRAP": "k1:9092"}))
    assert (opts["kafka.bootstrap.servers"], opts["subscribe"], opts["maxOffsetsPerTrigger"]) == ("k1:9092", "t", "25")
    assert (opts["kafka.default.api.timeout.ms"], opts["kafka.request.timeout.ms"],
            opts["kafkaConsumer.pollTimeoutMs"], opts["fetchOffset.numRetries"]) == ("60000", "30000", "60000", "3")
    opts = job.kafka_options(job.resolve({"kafkaTimeoutSeconds": 5, "kafkaRetries": 0,
                                          "kafkaOptions": {"request.timeout.ms": 4000}}, "/lake", env={}))
    assert (opts["kafka.default.api.timeout.ms"], opts["kafka.request.timeout.ms"],
            opts["kafkaConsumer.pollTimeoutMs"], opts["fetchOffset.numRetries"]) == ("5000", "4000", "5000", "1")
    cfg = load_job_config(resolve_config_path("program-user-events"))
    with pytest.raises(ConfigError):
        apply_params(cfg, ["kafkaTimeoutSeconds=0"])


def test_kafka_failures_name_the_brokers_in_one_line():
    s = job.resolve({"kafkaTimeoutSeconds": 5, "kafkaRetries": 1}, "/lake", env={"CQUBE_KAFKA_BOOTSTRAP": "k1:9"})
    text = ("[STREAM_FAILED] Query [id = 1, runId = 2] terminated with exception: "
            "org.apache.kafka.common.errors.TimeoutException: Timed out waiting for a node assignment. "
            "Call: listNodes SQLSTATE: XXKST\n  at org.apache...")
    line = job.failure_line(Exception(text), s)
    assert line.startswith("Kafka at k1:9 unreachable: no answer within 5 s (2 attempt(s)")
    assert line.endswith("TimeoutException: Timed out waiting for a node assignment. Call: listNodes")
    assert job.failure_line(Exception("x: Cannot fetch record for offset 7 in 5000 milliseconds"), s) \
        .startswith("Kafka at k1:9 unreachable")
    assert job.failure_line(Exception("x org.apache.kafka.common.errors.TopicAuthorizationException: "
                                      "Not authorized to access topics: [t]"), s) == \
        "Kafka at k1:9 failed: TopicAuthorizationException: Not authorized to access topics: [t]"
    assert job.failure_line(Exception("WriteFailed: micro-batch 1: Cassandra write failed"), s) \
        .startswith("WriteFailed:")
