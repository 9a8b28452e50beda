"""The real local services of scripts/services.sh answer like the project expects.

Start them first with ``scripts/services.sh start``. Each test talks to one server through the client the
project uses (boto3 path-style, psycopg2, redis-py, cassandra-driver, confluent-kafka) and does a real
round trip. A service that is down makes its test fail with the command that starts it (never a skip).

Endpoints come from the environment, with the defaults of scripts/services.sh:
CQUBE_S3_ENDPOINT, CQUBE_S3_ACCESS_KEY, CQUBE_S3_SECRET_KEY, CQUBE_POSTGRES_DSN, CQUBE_REDIS_URL,
CQUBE_CASSANDRA_HOSTS (+ CQUBE_CASSANDRA_PORT), CQUBE_KAFKA_BOOTSTRAP.
"""
from __future__ import annotations

import os
import socket
import time
import urllib.parse
import urllib.request
import uuid

import pytest

S3_ENDPOINT = os.environ.get("CQUBE_S3_ENDPOINT", "http://127.0.0.1:8333")
S3_ACCESS_KEY = os.environ.get("CQUBE_S3_ACCESS_KEY", "cqube")
S3_SECRET_KEY = os.environ.get("CQUBE_S3_SECRET_KEY", "cqube-secret")
POSTGRES_DSN = os.environ.get("CQUBE_POSTGRES_DSN", "postgresql://cqube:cqube@127.0.0.1:5432/cqube")
REDIS_URL = os.environ.get("CQUBE_REDIS_URL", "redis://127.0.0.1:6379/0")

def _cassandra_endpoint() -> tuple[list[str], int]:
    """``CQUBE_CASSANDRA_HOSTS`` read the way the project reads it (``host[:port]`` list, one port for all)."""
    from cqube_spark.exhaust.settings import parse_cassandra_hosts

    spec = os.environ.get("CQUBE_CASSANDRA_HOSTS") or f"127.0.0.1:{os.environ.get('CQUBE_CASSANDRA_PORT', '9042')}"
    hosts, port = parse_cassandra_hosts(spec)
    return list(hosts), port


CASSANDRA_HOSTS, CASSANDRA_PORT = _cassandra_endpoint()
KAFKA_BOOTSTRAP = os.environ.get("CQUBE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")



def _require(service: str, host: str, port: int) -> None:
    """Fail (not skip) with the start command when nothing listens on host:port."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        pytest.fail(f"{service} is not reachable on {host}:{port}; start it with "
                    f"`scripts/services.sh start {service}`", pytrace=False)


def _client(module: str, package: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        pytest.fail(f"Python package {package} is missing: .venv/bin/pip install {package}", pytrace=False)


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def test_s3_path_style_roundtrip():
    url = urllib.parse.urlsplit(S3_ENDPOINT)
    _require("s3", url.hostname or "127.0.0.1", url.port or 80)
    boto3 = _client("boto3", "boto3")
    from botocore.config import Config

    s3 = boto3.client("s3", endpoint_url=S3_ENDPOINT, aws_access_key_id=S3_ACCESS_KEY,
                      aws_secret_access_key=S3_SECRET_KEY, region_name="us-east-1",
                      config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))
    bucket = _unique("cqube-svc-test-")
    s3.create_bucket(Bucket=bucket)
    try:
        body = b"state,district\n1,2\n"
        s3.put_object(Bucket=bucket, Key="emission/a.csv", Body=body)
        assert s3.get_object(Bucket=bucket, Key="emission/a.csv")["Body"].read() == body
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="emission/")
        assert [o["Key"] for o in listed["Contents"]] == ["emission/a.csv"]
        # presigned GET works without credentials (download links of the exhaust flow)
        url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "emission/a.csv"},
                                        ExpiresIn=60)
        assert f"/{bucket}/emission/a.csv" in url  # path-style
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.read() == body
        # a wrong secret is rejected: the server really checks signatures
        bad = boto3.client("s3", endpoint_url=S3_ENDPOINT, aws_access_key_id=S3_ACCESS_KEY,
                           aws_secret_access_key="not-the-secret", region_name="us-east-1",
                           config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
        from botocore.exceptions import ClientError

        with pytest.raises(ClientError, match="SignatureDoesNotMatch") as refused:
            bad.get_object(Bucket=bucket, Key="emission/a.csv")
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    finally:
        for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
        s3.delete_bucket(Bucket=bucket)


def test_postgres_select_and_table():
    _require("postgres", urllib.parse.urlsplit(POSTGRES_DSN).hostname or "127.0.0.1",
             urllib.parse.urlsplit(POSTGRES_DSN).port or 5432)
    psycopg2 = _client("psycopg2", "psycopg2-binary")
    conn = psycopg2.connect(POSTGRES_DSN, connect_timeout=5)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
            table = _unique("svc_test_")
            cur.execute(f"CREATE TEMP TABLE {table} (id int PRIMARY KEY, status text)")
            cur.execute(f"INSERT INTO {table} VALUES (%s, %s)", (1, "SUBMITTED"))
            cur.execute(f"UPDATE {table} SET status = %s WHERE id = %s", ("SUCCESS", 1))
            cur.execute(f"SELECT status FROM {table} WHERE id = 1")
            assert cur.fetchone() == ("SUCCESS",)
            cur.execute("SELECT current_user, current_database()")
            user, db = cur.fetchone()
            assert user and db
    finally:
        conn.close()


def test_redis_ping_set_get():
    url = urllib.parse.urlsplit(REDIS_URL)
    _require("redis", url.hostname or "127.0.0.1", url.port or 6379)
    redis = _client("redis", "redis")
    r = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    assert r.ping() is True
    key = _unique("cqube:svc-test:")
    try:
        assert r.set(key, "value-1", ex=60)
        assert r.get(key) == b"value-1"
        r.hset(key + ":h", mapping={"school": "1001", "consent": "true"})
        assert r.hgetall(key + ":h") == {b"school": b"1001", b"consent": b"true"}
    finally:
        r.delete(key, key + ":h")
        r.close()


def test_cassandra_keyspace_table_roundtrip():
    _require("cassandra", CASSANDRA_HOSTS[0], CASSANDRA_PORT)
    _client("cassandra.cluster", "cassandra-driver")
    from cassandra.cluster import Cluster

    cluster = Cluster(CASSANDRA_HOSTS, port=CASSANDRA_PORT, connect_timeout=30)
    session = cluster.connect()
    session.default_timeout = 60     # a single node on 2 busy cores: DDL and the first writes can take a while
    keyspace = _unique("svc_test_")
    try:
        session.execute(f"CREATE KEYSPACE {keyspace} WITH replication = "
                        "{'class': 'SimpleStrategy', 'replication_factor': 1}", timeout=60)
        session.execute(f"CREATE TABLE {keyspace}.program_user (user_id text PRIMARY KEY, name text, "
                        "district text)", timeout=60)
        insert = session.prepare(f"INSERT INTO {keyspace}.program_user (user_id, name, district) "
                                 "VALUES (?, ?, ?)")
        session.execute(insert, ("u1", "Asha", "D01"))
        session.execute(insert, ("u2", "Ravi", "D02"))
        row = session.execute(f"SELECT name, district FROM {keyspace}.program_user WHERE user_id = %s",
                              ("u1",)).one()
        assert (row.name, row.district) == ("Asha", "D01")
        count = session.execute(f"SELECT count(*) FROM {keyspace}.program_user").one()[0]
        assert count == 2
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
        cluster.shutdown()


def test_kafka_produce_consume_one_message():
    host, _, port = KAFKA_BOOTSTRAP.split(",")[0].rpartition(":")
    _require("kafka", host or "127.0.0.1", int(port))
    kafka = _client("confluent_kafka", "confluent-kafka")
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = _unique("cqube-svc-test-")
    admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})
    for fut in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        fut.result(timeout=30)
    try:
        producer = kafka.Producer({"bootstrap.servers": KAFKA_BOOTSTRAP, "acks": "all"})
        delivered = []
        producer.produce(topic, key=b"k1", value=b'{"event": "attendance"}',
                         on_delivery=lambda err, msg: delivered.append(err))
        assert producer.flush(30) == 0
        assert delivered == [None]

        consumer = kafka.Consumer({"bootstrap.servers": KAFKA_BOOTSTRAP, "group.id": _unique("g-"),
                                   "auto.offset.reset": "earliest", "enable.auto.commit": False})
        try:
            consumer.subscribe([topic])
            deadline = time.monotonic() + 60
            msg = None
            while time.monotonic() < deadline:
                msg = consumer.poll(1.0)
                if msg is not None and not msg.error():
                    break
            assert msg is not None and not msg.error(), f"no message consumed from {topic}"
            assert (msg.key(), msg.value()) == (b"k1", b'{"event": "attendance"}')
        finally:
            consumer.close()
    finally:
        for fut in admin.delete_topics([topic]).values():
            fut.result(timeout=30)
