"""PostgreSQL, Redis and Cassandra stopped in the middle of an exhaust run, then started again (19.8): the run fails with a
clear error naming the service and its endpoint, the request stays retryable (not lost, not marked done), no
zip or half-written file is visible, and the next run completes the request exactly once, with the same CSV
as an uninterrupted run.

The outages are real: a private PostgreSQL and a private Redis (own free ports, own data under a temp folder,
started and stopped by ``scripts/services.sh`` with ``CQUBE_SERVICES_DIR`` / ``CQUBE_PG_PORT`` /
``CQUBE_REDIS_PORT``), shared by the module; the shared servers on 5432/6379 are never touched. Enrollments and
consents are read from the shared Cassandra (read only here), except in the Cassandra test, whose private node
(``CQUBE_CASSANDRA_PORT`` / ``CQUBE_CASSANDRA_STORAGE_PORT``; ~30 s to start, ~7 s to stop, ~35 s to start
again here) holds the same rows. Each run is the job's ``run`` (what ``cqube-spark
run program-user-exhaust`` calls; the runner records whatever it raises as the run's error) in a thread of
this process, held at a fault point (``wait:``) while the server is stopped, so the outage hits a known step:
``exhaust.claimed`` (the request is read and marked PROCESSING; the next PostgreSQL write is its outcome) and
``exhaust.before_redis`` (Cassandra read; the PII is about to be fetched from Redis). A Redis or Cassandra
outage fails the request (``Internal Server Error: <the driver's error, naming the endpoint>``, iteration + 1,
so retried by the next run up to ``maxIterations``) and the run goes on; a PostgreSQL outage ends the run
(``PostgresFailed``: the runner exits 1), the request left PROCESSING for the next run.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import pyzipper

from tests.conftest import REPO, free_port, require_service

JOB = "program-user-exhaust"
KEY = "outage-zip-key"
FEB = dt.datetime(2023, 2, 3, 6, 0, tzinfo=dt.timezone.utc)
PARAMS = ["enrollmentSlices=2", "tokenRanges=2"]  # tiny data: two Cassandra reads each, not sixteen


def run(spark) -> dict:
    """One run of the job in this process (its counters), as the runner calls it."""
    from cqube_spark.config import apply_params, load_job_config
    from cqube_spark.exhaust import job
    from cqube_spark.logs import get_logger
    from cqube_spark.runner import JobContext, resolve_config_path

    cfg = apply_params(load_job_config(resolve_config_path(JOB)), PARAMS)
    return job.run(JobContext(config=cfg, run_id="outage-" + uuid.uuid4().hex[:8], as_of=None,
                              log=get_logger("test"), _spark=spark))


def services(env: dict, verb: str, *names: str) -> None:
    done = subprocess.run(["bash", str(REPO / "scripts" / "services.sh"), verb, *names], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"services.sh {verb} {names}: {done.stdout[-2000:]}{done.stderr[-2000:]}"


class World:
    """The private servers, the module's program (Cassandra) and users (private Redis), the baseline CSV."""

    def __init__(self, root: Path):
        self.pg_port, self.redis_port = free_port(), free_port()
        self.env = dict(os.environ, CQUBE_SERVICES_DIR=str(root), CQUBE_PG_PORT=str(self.pg_port),
                        CQUBE_REDIS_PORT=str(self.redis_port), CQUBE_SERVICES_START_TIMEOUT="60",
                        CQUBE_SERVICES_STOP_TIMEOUT="30")
        self.dsn = f"postgresql://cqube:cqube@127.0.0.1:{self.pg_port}/cqube"
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.program = f"outage-{uuid.uuid4().hex[:12]}"
        self.people: list[dict] = []
        self.tags: list[str] = []

    def seed(self, cipher) -> None:
        """Four users: two consented with PII in Redis, one revoked, one whose program needs no consent."""
        from cqube_spark.exhaust import settings

        rows, consents = [], []
        for i, (status, pii) in enumerate([("ACTIVE", True), ("ACTIVE", True), ("REVOKED", True), (None, False)]):
            uid = str(uuid.UUID(int=i + 1, version=4))
            rows.append(dict(program_id=self.program, program_externalId="EXT-O", program_name="Outage, Program",
                             pii_consent_required=pii, user_id=uid,
                             user_locations={"state_name": "Karnataka", "district_name": f"D{i % 2}",
                                             "block_name": f"B{i}"},
                             organisation_id="org-1", organisation_name="Org One", user_type="administrator",
                             user_sub_type="hm", created_at=dt.date(2023, 1, 1), updated_at=dt.date(2023, 6, 1)))
            if status:
                consents.append(dict(user_id=uid, object_id=self.program, status=status, created_on=FEB,
                                     last_updated_on=FEB))
            self.people.append({"user_id": uid, "firstname": f"First{i}", "lastname": "Last",
                                "email": f"u{i}@example.org", "phone": f"900000000{i}"})
        self.rows, self.consents, self.cipher = rows, consents, cipher
        self.put_enrollments(settings.cassandra())
        self.put_people()

    def put_enrollments(self, conf) -> None:
        from cqube_spark.exhaust import seed

        cluster = conf.cluster()
        try:
            session = cluster.connect()
            seed.insert_enrollments(session, self.rows)
            seed.insert_consents(session, self.consents)
        finally:
            cluster.shutdown()

    def put_people(self) -> None:
        import redis

        from cqube_spark.exhaust import seed

        client = redis.Redis.from_url(self.redis_url)
        try:
            seed.put_users(client, self.people, self.cipher)
        finally:
            client.close()

    def submit(self, tag: str) -> str:
        from cqube_spark.exhaust import requests

        self.tags.append(tag)
        data = {"type": JOB, "title": "Program users", "params": {"filters": [
            {"table_name": "program_enrollment",
             "table_filters": [{"name": "program_id", "operator": "=", "value": self.program}]}]}}
        with requests.connect() as conn:
            requests.ensure_table(conn)
            req, outcome = requests.submit(conn, tag=tag, job_id=JOB, requested_by="manager-1", channel="c",
                                           request_data=data, encryption_key=KEY)
        assert outcome == "created"
        return req.request_id

    def get(self, tag: str, rid: str):
        from cqube_spark.exhaust import requests

        with requests.connect() as conn:
            return requests.get(conn, rid, tag)

    def rows_of(self, tag: str) -> int:
        from cqube_spark.exhaust import requests

        with requests.connect() as conn, conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM job_request WHERE tag = %s", (tag,))
            return cur.fetchone()[0]


def zip_csv(path: Path) -> tuple[str, str]:
    """(member name, CSV text) of a report zip, opened with the request's key."""
    with pyzipper.AESZipFile(path) as zf:
        zf.setpassword(KEY.encode())
        (name,) = zf.namelist()
        return name, zf.read(name).decode("utf-8")


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def world(spark):
    require_service("cassandra")
    from cqube_spark.exhaust import crypto
    from cqube_spark.exhaust.cli import init_cassandra

    # not under pytest's tmp folder: the private PostgreSQL runs as OS user postgres, which must reach it
    root = Path(tempfile.mkdtemp(prefix="cqube-exhaust-outage-"))
    root.chmod(0o755)
    w = World(root)
    services(w.env, "start", "postgres", "redis")
    key = crypto.generate_key()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CQUBE_POSTGRES_DSN", w.dsn)
            mp.setenv("CQUBE_REDIS_URL", w.redis_url)
            mp.setenv("CQUBE_PII_KEY", key)
            mp.setenv("CQUBE_DATA_ROOT", str(root / "baseline"))
            mp.delenv("CQUBE_FAULT", raising=False)
            for name in ("EMISSION", "INPUT", "OUTPUT", "LAKE"):
                mp.delenv(f"CQUBE_{name}_URI", raising=False)
            init_cassandra()
            w.seed(crypto.PiiCipher(crypto.derive_key(key)))
            # the uninterrupted run of the same request, for comparison
            rid = w.submit("baseline")
            assert run(spark)["success"] == 1
            (zipped,) = files(root / "baseline" / "output")
            name, w.baseline = zip_csv(zipped)
            assert name.startswith(rid) and len(w.baseline.splitlines()) == 5
            assert "'First0 Last'" in w.baseline and "u1@example.org" in w.baseline  # PII came from Redis
            yield w
    finally:
        services(w.env, "stop", "redis", "postgres")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def outage(world, data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("CQUBE_EXHAUST_TMP", str(tmp_path / "exhaust-tmp"))
    world.tags = []
    yield world
    from cqube_spark.exhaust import requests

    with requests.connect() as conn, conn, conn.cursor() as cur:  # a failed test leaves no pending request
        cur.execute("DELETE FROM job_request WHERE tag = ANY(%s)", (world.tags,))


def held_run(spark, monkeypatch, point: str, release: Path) -> tuple[threading.Thread, dict]:
    """Start a run in a thread, held at ``point`` until ``release`` exists; returns once it is there."""
    monkeypatch.setenv("CQUBE_FAULT", f"wait:{point}")
    monkeypatch.setenv("CQUBE_FAULT_RELEASE", str(release))
    monkeypatch.setenv("CQUBE_FAULT_WAIT_MAX", "120")
    result: dict = {}

    def target():
        try:
            result["counters"] = run(spark)
        except Exception as e:  # noqa: BLE001 - the test looks at it
            result["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not Path(str(release) + ".waiting").exists():
        assert thread.is_alive(), f"the run ended before {point}: {result}"
        assert time.monotonic() < deadline, f"the run never reached {point}"
        time.sleep(0.2)
    return thread, result


def finish(thread: threading.Thread, result: dict, release: Path, monkeypatch) -> dict:
    release.touch()
    thread.join(timeout=180)
    assert not thread.is_alive(), "the run did not end after its service stopped"
    monkeypatch.delenv("CQUBE_FAULT")
    return result


def nothing_visible(root: Path, tmp_path: Path) -> None:
    assert files(root / "output") == []                       # no zip, no .tmp- upload left
    assert files(tmp_path / "exhaust-tmp") == []              # the private temp folder is cleaned


def completed_once(w: World, spark, root: Path, tag: str, rid: str) -> None:
    """The rerun: exit 0, the request SUCCESS once, one zip, the uninterrupted run's CSV."""
    from cqube_spark.exhaust import requests

    counters = run(spark)
    assert [(r["request_id"], r["status"]) for r in counters["results"]] == [(rid, requests.SUCCESS)]
    req = w.get(tag, rid)
    expected = root / "output" / "ml_reports" / JOB / f"{rid}_{requests.today():%Y%m%d}.zip"
    assert (req.status, req.download_urls, req.err_message) == (requests.SUCCESS, [str(expected)], None)
    assert files(root / "output") == [expected] and w.rows_of(tag) == 1
    name, text = zip_csv(expected)
    assert name == f"{rid}_{requests.today():%Y%m%d}.csv"
    assert text == w.baseline                                  # same rows, same order, same PII: nothing doubled


def test_postgres_stopped_mid_run_then_started_the_request_completes_once(outage, spark, data_root, tmp_path,
                                                                          monkeypatch):
    from cqube_spark.exhaust import requests

    w, tag = outage, "pg-" + uuid.uuid4().hex[:8]
    rid = w.submit(tag)
    release = tmp_path / "go"
    thread, result = held_run(spark, monkeypatch, "exhaust.claimed", release)
    assert w.get(tag, rid).status == requests.PROCESSING     # claimed; the outcome is the next PostgreSQL write
    services(w.env, "stop", "postgres")                      # the outage, while the run holds the request
    try:
        error = finish(thread, result, release, monkeypatch).get("error")
    finally:
        services(w.env, "start", "postgres")                 # back (the request row was kept on disk)
    nothing_visible(data_root, tmp_path)                     # the zip is not published without its SUCCESS row
    assert isinstance(error, requests.PostgresFailed), repr(error)   # the runner: exit 1, this as job_runs.error
    head = (f"PostgreSQL at 127.0.0.1:{w.pg_port}/cqube failed while processing request {rid} (it stays "
            "PROCESSING for the next run): OperationalError: ")
    assert str(error).startswith(head), str(error)
    assert str(error)[len(head):] in ("server closed the connection unexpectedly",
                                      "terminating connection due to administrator command"), str(error)

    req = w.get(tag, rid)                                    # still there, retryable, not done
    assert (req.status, req.iteration, req.download_urls, req.err_message) == (requests.PROCESSING, 0, None, None)
    completed_once(w, spark, data_root, tag, rid)


def test_redis_stopped_mid_run_then_started_the_request_completes_once(outage, spark, data_root, tmp_path,
                                                                       monkeypatch):
    from cqube_spark.exhaust import requests

    w, tag = outage, "redis-" + uuid.uuid4().hex[:8]
    rid = w.submit(tag)
    release = tmp_path / "go"
    thread, result = held_run(spark, monkeypatch, "exhaust.before_redis", release)
    services(w.env, "stop", "redis")                         # the outage, just before the PII is fetched
    try:
        # the run goes on to the other requests: this one is FAILED with the reason, retried by the next run
        counters = finish(thread, result, release, monkeypatch)["counters"]
    finally:
        services(w.env, "start", "redis")
    assert [(r["request_id"], r["status"]) for r in counters["results"]] == [(rid, requests.FAILED)]
    req = w.get(tag, rid)
    assert (req.status, req.iteration, req.download_urls) == (requests.FAILED, 1, None)
    assert req.err_message == (f"Internal Server Error: redis.exceptions.ConnectionError: Error 111 connecting to "
                               f"127.0.0.1:{w.redis_port}. Connection refused."), req.err_message
    with requests.connect() as conn:
        assert rid in [r.request_id for r in requests.pending(conn, JOB, 3)]
    nothing_visible(data_root, tmp_path)

    w.put_people()  # the Redis servers run without persistence: the upstream system puts its users back
    completed_once(w, spark, data_root, tag, rid)


@pytest.fixture(scope="module")
def private_cassandra(tmp_path_factory):
    """A private single Cassandra node (its own ports and data; ~30 s to start here), only for the test below."""
    from tests.integration.test_streaming_outage import PrivateCassandra

    node = PrivateCassandra(tmp_path_factory.mktemp("cassandra"))
    node.env["CQUBE_SERVICES_START_TIMEOUT"] = "120"
    node.start()
    try:
        yield node
    finally:
        node.stop()


def test_cassandra_stopped_mid_run_then_started_the_request_completes_once(outage, private_cassandra, spark,
                                                                           data_root, tmp_path, monkeypatch):
    from cqube_spark.exhaust import requests
    from cqube_spark.exhaust.cli import init_cassandra

    w, tag = outage, "cass-" + uuid.uuid4().hex[:8]
    monkeypatch.setenv("CQUBE_CASSANDRA_HOSTS", f"127.0.0.1:{private_cassandra.port}")
    init_cassandra()
    w.put_enrollments(private_cassandra.conf)                # the module's program, on the private node
    rid = w.submit(tag)
    release = tmp_path / "go"
    thread, result = held_run(spark, monkeypatch, "exhaust.claimed", release)
    private_cassandra.stop()                                 # the outage, before the enrollments are read
    try:
        counters = finish(thread, result, release, monkeypatch)["counters"]
    finally:
        private_cassandra.start()                            # back, with its data (commit log on disk)
    assert [(r["request_id"], r["status"]) for r in counters["results"]] == [(rid, requests.FAILED)]
    req = w.get(tag, rid)
    assert (req.status, req.iteration, req.download_urls) == (requests.FAILED, 1, None)
    assert req.err_message.startswith("Internal Server Error: cassandra.cluster.NoHostAvailable: ('Unable to "
                                      f"connect to any servers', {{'127.0.0.1:{private_cassandra.port}': "), \
        req.err_message
    nothing_visible(data_root, tmp_path)

    completed_once(w, spark, data_root, tag, rid)            # the enrollments were kept: the same CSV
