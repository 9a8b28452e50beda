"""Connection settings for the exhaust's services, from the environment only (never from files).

* ``CQUBE_POSTGRES_DSN``   default ``postgresql://cqube:cqube@127.0.0.1:5432/cqube``
* ``CQUBE_REDIS_URL``      default ``redis://127.0.0.1:6379/0``
* ``CQUBE_CASSANDRA_HOSTS`` default ``127.0.0.1:9042`` (comma list of ``host[:port]``; one port for all)
* ``CQUBE_CASSANDRA_USERNAME`` / ``CQUBE_CASSANDRA_PASSWORD`` optional (PlainTextAuthProvider)
* ``CQUBE_PII_KEY``        the PII key (see ``crypto``)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from cqube_spark.logs import register_secret

DEFAULT_DSN = "postgresql://cqube:cqube@127.0.0.1:5432/cqube"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
DEFAULT_CASSANDRA = "127.0.0.1:9042"


@dataclass(frozen=True)
class CassandraSettings:
    hosts: tuple[str, ...]
    port: int
    username: str | None = None
    password: str | None = None

    def cluster(self, **kwargs):
        """A driver ``Cluster`` (caller shuts it down). Works on the driver and inside executors."""
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import Cluster
        from cassandra.policies import RoundRobinPolicy

        auth = PlainTextAuthProvider(self.username, self.password) if self.username else None
        return Cluster(list(self.hosts), port=self.port, auth_provider=auth,
                       load_balancing_policy=RoundRobinPolicy(), protocol_version=5,
                       connect_timeout=10, control_connection_timeout=10,
                       # the readers only run prepared statements: skip the schema/token metadata download
                       schema_metadata_enabled=False, token_metadata_enabled=False, **kwargs)


def parse_cassandra_hosts(spec: str) -> tuple[tuple[str, ...], int]:
    hosts, port = [], 9042
    for item in filter(None, (s.strip() for s in spec.split(","))):
        host, sep, p = item.rpartition(":")
        if sep and p.isdigit():
            hosts.append(host)
            port = int(p)
        else:
            hosts.append(item)
    if not hosts:
        raise ValueError(f"CQUBE_CASSANDRA_HOSTS has no host: {spec!r}")
    return tuple(hosts), port


def cassandra(env: Mapping[str, str] = os.environ) -> CassandraSettings:
    hosts, port = parse_cassandra_hosts(env.get("CQUBE_CASSANDRA_HOSTS", DEFAULT_CASSANDRA))
    password = env.get("CQUBE_CASSANDRA_PASSWORD")
    register_secret(password)
    return CassandraSettings(hosts, port, env.get("CQUBE_CASSANDRA_USERNAME"), password)


def postgres_dsn(env: Mapping[str, str] = os.environ) -> str:
    dsn = env.get("CQUBE_POSTGRES_DSN", DEFAULT_DSN)
    register_secret(dsn)
    return dsn


def redis_url(env: Mapping[str, str] = os.environ) -> str:
    url = env.get("CQUBE_REDIS_URL", DEFAULT_REDIS)
    register_secret(url)
    return url
