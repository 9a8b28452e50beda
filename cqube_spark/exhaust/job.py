"""``program-user-exhaust``: process the job's pending requests in ``job_request``, one at a time.

SUBMITTED (and FAILED with iteration < maxIterations, and PROCESSING left by a crashed run) →
PROCESSING → SUCCESS (download_urls, dt_file_created, dt_job_completed, execution_time in ms) or FAILED
(err_message, iteration + 1). Messages: ``Not a Valid Request: <why>``, ``No Data Found``,
``Internal Server Error: <short reason>``. One bad request never stops the others. The zip is published
before the row says SUCCESS; a crash before that leaves the row PROCESSING, picked up again by the next run.
A PostgreSQL advisory lock keeps two runs of the job from working at the same time. PostgreSQL failing under
a run ends it with ``requests.PostgresFailed`` (the endpoint, what the run was doing, the server's first line);
the request in flight stays PROCESSING and a zip whose SUCCESS could not be written is removed again.
A row's ``request_id`` and ``tag`` (written by another system) are checked as names (:mod:`cqube_spark.safenames`)
before any path is built: a hostile one fails ``Not a Valid Request: request_id ... is not a safe name: <why>``.
Messages stored in ``err_message`` have every registered secret (env secrets, the row's zip key) masked.
"""
from __future__ import annotations

import datetime as dt
import time
import traceback
from typing import Any

from cqube_spark import faults, safenames, storage
from cqube_spark.exhaust import JOB_ID, report, requests, settings, sink, sources
from cqube_spark.exhaust.filters import DEFAULT_LOCATION_KEYS, InvalidRequest, parse_filters
from cqube_spark.logs import redact_text, register_env_secrets, register_secret

DEFAULTS: dict[str, Any] = {
    "authorizedRoles": ["PROGRAM_MANAGER"],
    "maxIterations": 3,
    "presignedUrlExpirySeconds": 1800,
    "tokenRanges": 16,
    "enrollmentSlices": 16,
    "cassandraFetchSize": 5000,
    "readPartitions": 0,
    "redisBatchSize": 1000,
    "redisKeyPrefix": "user:",
    "key": "ml_reports/",
    "dateFormat": "dd/MM/yyyy",
    "user_locations_columns": ["state_name", "district_name", "block_name", "cluster_name", "school_code",
                               "school_name"],
    "allowedLocationKeys": list(DEFAULT_LOCATION_KEYS),
    "encrypted_columns": ["email", "phone"],
    "consent_columns": list(report.CONSENT_COLUMNS),
}


class NoDataFound(Exception):
    pass


def params_with_defaults(params: dict[str, Any], source: str = "modelParams") -> dict[str, Any]:
    """Defaults + the config's modelParams, checked for consistency (labels that exist, known columns)."""
    from cqube_spark.config import ConfigError

    p = {**DEFAULTS, **params}
    labels = set(p["label_mapping"].values())
    for name in ("order_of_csv_column", "sort", "quote_column"):
        for i, label in enumerate(p.get(name, [])):
            if label not in labels:
                raise ConfigError(source, f"$.modelParams.{name}[{i}]", f"{label!r} is not a label of label_mapping")
    known = {"user_id", "program_name", "program_externalId", "user_type", "user_sub_type", "organisation_name",
             *report.CONSENT_COLUMNS, *p["user_locations_columns"]}
    for key in p["label_mapping"]:
        if key not in known:
            raise ConfigError(source, f"$.modelParams.label_mapping.{key}",
                              f"unknown column (known: {', '.join(sorted(known))})")
    return p


def short_reason(e: BaseException) -> str:
    """One line, no stack: the exception type and the first line of its message (≤ 200 chars). For a Spark
    job that failed in a Python worker, the worker's own error line is used instead of the JVM wrapper's: the
    last exception of its traceback (a chained one, e.g. redis' ``ConnectionError`` raised while handling
    ``ConnectionRefusedError``, names the service and the endpoint; the first one may not)."""
    text = str(e)
    lines = text.splitlines()
    if "Traceback (most recent call last):" in text:
        start = lines.index(next(l for l in lines if "Traceback (most recent call last):" in l))
        block = lines[start:]
        end = next((i for i, l in enumerate(block) if l.startswith(("\tat ", "Driver stacktrace"))), len(block))
        block = block[:end]  # the worker's traceback, without the JVM's stack after it
        last = max(i for i, l in enumerate(block) if "Traceback (most recent call last):" in l)
        for line in block[last + 1:]:
            if line and not line[0].isspace():
                return line.strip()[:200]
    first = lines[0].strip() if lines else ""
    return f"{type(e).__name__}: {first}"[:200]


def report_uri(output_root: str, key: str, request_id: str, day: dt.date) -> str:
    """``<output>/<key>/<job>/<request_id>_<day>.zip``; the request id is checked as a name and the result
    must stay under the output root (:class:`safenames.UnsafeName` otherwise)."""
    name = f"{safenames.segment(request_id, 'request_id')}_{day:%Y%m%d}.zip"
    return safenames.within(output_root, storage.join(output_root, key, JOB_ID, name), "request_id")


def check_names(req: requests.JobRequest) -> None:
    """The row's names that reach a path (request_id) or may (tag), refused before any work."""
    safenames.segment(req.request_id, "request_id")
    safenames.segment(req.tag, "tag")


def python_workers_like_driver(spark) -> None:
    """Executors of a local master must run this interpreter (the one with cassandra-driver, redis, ...).

    When ``PYSPARK_PYTHON`` is unset PySpark starts workers with ``python3`` from PATH, which lacks the
    project's packages; for local masters point the context at ``sys.executable`` instead.
    """
    import os
    import sys

    sc = spark.sparkContext
    if not os.environ.get("PYSPARK_PYTHON") and sc.master.startswith("local"):
        sc.pythonExec = sys.executable


def process(ctx, req: requests.JobRequest, p: dict[str, Any]) -> dict[str, Any]:
    """Build and publish one request's report; returns counters (rows, uri, per-stage seconds)."""
    check_names(req)
    f = parse_filters(req.request_data, p["allowedLocationKeys"])
    if not req.encryption_key:
        raise InvalidRequest("encryption_key is required (the report is an encrypted zip)")
    spark = ctx.spark
    python_workers_like_driver(spark)
    cass = settings.cassandra()
    stages: dict[str, float] = {}
    t = time.monotonic()
    loc_cols = list(p["user_locations_columns"])
    loc_keys = sorted(set(loc_cols) | set(f.location_keys))
    enrollment = report.apply_filters(
        sources.read_enrollment(spark, cass, f.program_id, loc_keys, p["enrollmentSlices"],
                                p["cassandraFetchSize"], p["readPartitions"]), f)
    consent = sources.read_consent(spark, cass, f.consent_object_id, f.consent_user_ids, p["tokenRanges"],
                                   p["cassandraFetchSize"], p["readPartitions"])
    rows = report.report_rows(enrollment, report.consent_status(consent), loc_cols, p["dateFormat"]).persist()
    try:
        from pyspark.sql import functions as F

        stats = rows.agg(F.count(F.lit(1)).alias("n"), F.max("_required").alias("any_required"),
                         F.sum(F.col("_need_pii").cast("int")).alias("with_pii")).first()
        stages["read_cassandra_s"] = round(time.monotonic() - t, 3)
        n = int(stats["n"] or 0)
        if n == 0:
            raise NoDataFound()
        include_consent = bool(stats["any_required"])
        out = report.labelled(rows, p, include_consent)
        cols = report.output_columns(p, include_consent)
        labels = [label for _, label in cols]
        pii_labels = {label: key for key, label in cols if key in report.PII_COLUMNS}
        template, segments = report.csv_template(labels, pii_labels)
        quote_labels = set(p.get("quote_column", []))
        quoted = [key for key, label in cols if label in quote_labels and key in report.PII_COLUMNS]
        need_pii = include_consent and int(stats["with_pii"] or 0) > 0
        faults.point("exhaust.before_redis")
        pii_key = None
        if need_pii:
            from cqube_spark.exhaust.crypto import key_from_env

            pii_key = key_from_env()
        fn = sources.pii_lines(settings.redis_url(), pii_key, template, quoted, p["encrypted_columns"],
                               p["redisKeyPrefix"], p["redisBatchSize"])
        day = requests.today()
        uri = report_uri(ctx.roots["output"], p["key"], req.request_id, day)
        t = time.monotonic()
        with sink.TempDir() as tmp:
            zip_path = sink.member_path(tmp, f"{req.request_id}_{day:%Y%m%d}.zip")
            chunks = report.csv_segments(out, segments).rdd.mapPartitions(fn).toLocalIterator(
                prefetchPartitions=True)
            csv_bytes = sink.write_encrypted_zip(zip_path, f"{req.request_id}_{day:%Y%m%d}.csv",
                                                 req.encryption_key, sink.header_line(labels), chunks)
            stages["redis_pii_csv_zip_s"] = round(time.monotonic() - t, 3)
            t = time.monotonic()
            ctx.store.upload_file(str(zip_path), uri)
            stages["upload_s"] = round(time.monotonic() - t, 3)
        return {"rows": n, "rows_with_pii": int(stats["with_pii"] or 0), "consent_columns": include_consent,
                "uri": uri, "csv_bytes": csv_bytes, "stages": stages}
    finally:
        rows.unpersist()


def withdraw(ctx, uri: str) -> None:
    """Remove a published zip whose request could not be marked SUCCESS: a report is visible only with its
    SUCCESS row (the request stays PROCESSING and the next run builds it again)."""
    try:
        ctx.store.delete(uri)
    except Exception as e:  # noqa: BLE001 - the next run overwrites it at the same location
        ctx.log.error("could not remove the zip of an unfinished request", uri=uri, error=short_reason(e))


def run(ctx) -> dict[str, Any]:
    """Process the pending requests; a PostgreSQL failure ends the run with :class:`requests.PostgresFailed`
    (the request in flight stays PROCESSING, its zip withdrawn, and the next run takes it again)."""
    import psycopg2

    state: dict[str, Any] = {"doing": "connecting"}
    try:
        return _run(ctx, state)
    except psycopg2.Error as e:
        raise requests.failure(e, state["doing"]) from e


def _run(ctx, state: dict[str, Any]) -> dict[str, Any]:
    p = params_with_defaults(ctx.params, ctx.config.source)
    log = ctx.log
    counters: dict[str, Any] = {"rows": 0, "requests": 0, "success": 0, "failed": 0, "results": []}
    with requests.connect() as conn:
        state["doing"] = "reading job_request"
        requests.ensure_table(conn)
        if not requests.try_lock_job(conn, JOB_ID):
            log.warning("another program-user-exhaust run holds the lock; nothing to do")
            counters["skipped"] = "locked"
            return counters
        swept = sink.sweep_tmp()
        if swept:
            log.warning("removed leftovers of an interrupted run", count=swept)
        todo = requests.pending(conn, JOB_ID, int(p["maxIterations"]))
        log.info("exhaust requests to process", count=len(todo))
        register_env_secrets()
        for req in todo:
            register_secret(req.encryption_key)  # the zip password never appears in a message or a log
            counters["requests"] += 1
            state["doing"] = f"processing request {req.request_id} (it stays PROCESSING for the next run)"
            requests.mark_processing(conn, req)
            faults.point("exhaust.claimed")
            t0 = time.monotonic()
            message = None
            try:
                result = process(ctx, req, p)
            except (InvalidRequest, safenames.UnsafeName) as e:
                message = f"Not a Valid Request: {e}"
            except NoDataFound:
                message = "No Data Found"
            except Exception as e:  # noqa: BLE001 - recorded on the request; the next request still runs
                message = f"Internal Server Error: {short_reason(e)}"
                log.error("exhaust request failed", request_id=req.request_id,
                          trace=traceback.format_exc(limit=3)[-2000:])
            ms = int((time.monotonic() - t0) * 1000)
            message = redact_text(message)  # err_message is shown to the requester: no secret in it
            if message is None:
                try:
                    requests.mark_success(conn, req, [result["uri"]], requests.utcnow(), ms)
                except BaseException:
                    withdraw(ctx, result["uri"])
                    raise
                counters["success"] += 1
                counters["rows"] += result["rows"]
                counters["results"].append({"request_id": req.request_id, "status": requests.SUCCESS,
                                            "execution_ms": ms, **result})
                log.info("exhaust request done", request_id=req.request_id, rows=result["rows"],
                         uri=result["uri"], stages=result["stages"], execution_ms=ms)
            else:
                requests.mark_failed(conn, req, message, ms)
                counters["failed"] += 1
                counters["results"].append({"request_id": req.request_id, "status": requests.FAILED,
                                            "error": message, "execution_ms": ms})
                log.warning("exhaust request failed", request_id=req.request_id, error=message)
    return counters
