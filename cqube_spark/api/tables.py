"""``job_runs`` and ``file_tracker`` read with delta-rs (the ``deltalake`` package): no Spark, no JVM.

Each read opens the table's latest version (a log read: milliseconds for these small meta tables) and runs one
SQL query through delta-rs' DataFusion (``QueryBuilder``); rows come back as dicts. S3 locations use the
endpoint and keys of the environment (path-style, plain http allowed for the local server).
"""
from __future__ import annotations

import datetime as dt
import os
from typing import Mapping

from cqube_spark import storage


def _open(uri: str, env: Mapping[str, str]):
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    loc = storage.parse_uri(uri)
    try:
        if not loc.is_s3:
            return DeltaTable(loc.key)
        endpoint = env.get("CQUBE_S3_ENDPOINT") or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        opts = {"AWS_REGION": env.get("AWS_REGION", "us-east-1"), "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false"}
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            if env.get(k):
                opts[k] = env[k]
        if endpoint:
            opts["AWS_ENDPOINT_URL"] = endpoint
            opts["AWS_ALLOW_HTTP"] = "true" if endpoint.startswith("http://") else "false"
        return DeltaTable(f"s3://{loc.bucket}/{loc.key}", storage_options=opts)
    except TableNotFoundError:
        return None


def _plain(v):
    if isinstance(v, dt.datetime):
        return v.isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    return v


def query(uri: str, sql: str, env: Mapping[str, str] = os.environ) -> list[dict]:
    """Rows of ``sql`` over the table at ``uri`` registered as ``t``; [] when the table does not exist."""
    from deltalake import QueryBuilder

    table = _open(uri, env)
    if table is None:
        return []
    result = QueryBuilder().register("t", table).execute(sql).read_all()
    cols = {n: result.column(n).to_pylist() for n in result.column_names}
    return [{n: _plain(cols[n][i]) for n in result.column_names} for i in range(result.num_rows)]
