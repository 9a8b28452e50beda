"""Shared fixtures: one SparkSession for the whole run, isolated storage roots, real-service endpoints.

Integration tests talk to real servers started by ``scripts/services.sh start`` (``scripts/test.sh`` does
that). A test that needs a service which is not running fails with a message saying how to start it; it
is never skipped.
"""
from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
# The local S3 server's endpoint and test credentials, set before the session exists so S3A sees them.
os.environ.setdefault("CQUBE_S3_ENDPOINT", f"http://127.0.0.1:{os.environ.get('CQUBE_S3_PORT', '8333')}")
os.environ.setdefault("AWS_ACCESS_KEY_ID", os.environ.get("CQUBE_S3_ACCESS_KEY", "cqube"))
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", os.environ.get("CQUBE_S3_SECRET_KEY", "cqube-secret"))
os.environ.setdefault("AWS_REGION", "us-east-1")

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CQUBE_SHARED", REPO.parent / "shared"))
MOCK_DATA = SHARED / "data" / "cqube-mock"

SERVICE_PORTS = {
    "s3": ("127.0.0.1", int(os.environ.get("CQUBE_S3_PORT", 8333))),
    "postgres": ("127.0.0.1", int(os.environ.get("CQUBE_PG_PORT", 5432))),
    "redis": ("127.0.0.1", int(os.environ.get("CQUBE_REDIS_PORT", 6379))),
    "cassandra": ("127.0.0.1", int(os.environ.get("CQUBE_CASSANDRA_PORT", 9042))),
    "kafka": ("127.0.0.1", int(os.environ.get("CQUBE_KAFKA_PORT", 9092))),
}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a private server or API process of one test)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_service(name: str) -> None:
    host, port = SERVICE_PORTS[name]
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        pytest.fail(f"{name} is not reachable on {host}:{port}; start it with `scripts/services.sh start {name}`",
                    pytrace=False)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """The one SparkSession of the test run (Delta + S3A, UI off, small shuffles)."""
    from cqube_spark.session import get_spark

    warehouse = tmp_path_factory.mktemp("warehouse")
    session = get_spark("cqube-tests", {
        "spark.master": "local[2]",
        "spark.sql.shuffle.partitions": "2",
        "spark.default.parallelism": "2",
        "spark.ui.enabled": "false",
        "spark.sql.warehouse.dir": str(warehouse),
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.driver.memory": "4g",
        # Test frames are tiny: small Tungsten pages keep each hash aggregate / sort of a task small, so the
        # shared execution pool of this one long-lived session is never the limit (32 MB pages by default).
        "spark.buffer.pageSize": "2m",
    })
    _SESSION.append(session)
    yield session
    _SESSION.clear()
    session.stop()


_SESSION: list = []


@pytest.fixture(scope="module", autouse=True)
def _drop_cached_frames():
    """Frames a test module persisted (e.g. the KPI base of `engine.compute`) do not outlive it here."""
    yield
    if _SESSION:
        _SESSION[0].catalog.clearCache()


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    """Fresh local storage roots (emission/input/output/lake) for one test, via CQUBE_DATA_ROOT."""
    root = tmp_path / "data"
    for sub in ("emission", "input", "output", "lake"):
        (root / sub).mkdir(parents=True)
    monkeypatch.setenv("CQUBE_DATA_ROOT", str(root))
    for name in ("EMISSION", "INPUT", "OUTPUT", "LAKE"):
        monkeypatch.delenv(f"CQUBE_{name}_URI", raising=False)
    return root


@pytest.fixture(scope="session")
def mock_data() -> Path:
    """The upstream sample emission files (read in place, never copied into the repo)."""
    if not MOCK_DATA.exists():
        pytest.fail(f"sample data not found at {MOCK_DATA} (set CQUBE_SHARED)", pytrace=False)
    return MOCK_DATA


@pytest.fixture(scope="session")
def s3():
    """A Storage client on the local S3 server (scripts/services.sh start s3); fails if it is down."""
    from cqube_spark.storage import Storage

    require_service("s3")
    return Storage()


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, dirs_exist_ok=True)
    return dst
