"""Run one config-driven job: validate → session → job_runs row → model → status. Exit codes 0/1/2, and 3
when another run holds the job's lock (``runlock``: nothing was done, status ``LOCKED``).

Models are dispatched by the config's ``model`` name (the Sunbird data-products idea): each entry of
``MODELS`` names a module with ``run(ctx: JobContext) -> dict`` returning counters (``rows`` at least), and
optionally ``warm_up(ctx)``: Python-side preparation the run will need (e.g. importing Great Expectations,
~6 s), started in a thread while the Spark session starts, when the Python process would otherwise wait.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import os
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cqube_spark import progress, storage
from cqube_spark.config import ConfigError, JobConfig, apply_params, load_job_config
from cqube_spark import runlock
from cqube_spark.runlock import LockHeld
from cqube_spark.logs import (RunLogger, get_logger, log_to_file, redact_text, register_env_secrets,
                              register_secret)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_BUSY = 0, 1, 2, 3
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "jobs"

# model name -> module with run(ctx)
MODELS: dict[str, str] = {
    "load-attendance": "cqube_spark.models.load_attendance",
    "intake": "cqube_spark.intake.job",
    "kpis": "cqube_spark.kpi.job",
    "publish": "cqube_spark.publish.job",
    "pipeline": "cqube_spark.models.pipeline",
    "report": "cqube_spark.report.job",
    "program-user-exhaust": "cqube_spark.exhaust.job",
    "program-user-events": "cqube_spark.streaming.job",
    "replay": "cqube_spark.replay.job",
    "retention": "cqube_spark.replay.retention",
}

# model name -> the data-root lock its runs hold (``runlock``): one run at a time per data root
LOCKED_MODELS: dict[str, str] = {"intake": "intake"}


@dataclass
class JobContext:
    """What a model gets: its config, the run id, --as-of, storage roots, a logger and the session."""

    config: JobConfig
    run_id: str
    as_of: dt.date | None
    log: RunLogger
    roots: dict[str, str] = field(default_factory=storage.roots)
    store: storage.Storage = field(default_factory=storage.Storage)
    _spark: Any = None

    @property
    def params(self) -> dict[str, Any]:
        return self.config.model_params

    @property
    def spark(self):
        if self._spark is None:
            from cqube_spark.session import get_spark

            self._spark = get_spark(self.config.app_name,
                                    {"spark.default.parallelism": str(self.config.parallelization)})
        return self._spark

    def lake(self, *parts: str) -> str:
        """Spark URI of a lake table, e.g. ``ctx.lake("silver", "student_attendance")``."""
        return storage.spark_path(storage.join(self.roots["lake"], *parts))


def resolve_config_path(name_or_path: str) -> Path:
    """``intake`` → configs/jobs/intake.json; a path is used as is."""
    p = Path(name_or_path)
    if p.suffix == ".json" or p.exists():
        return p
    return CONFIG_DIR / f"{name_or_path}.json"


def parse_as_of(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError("--as-of", value, "expected a date YYYY-MM-DD") from None


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def _delta_conflict(e: Exception) -> bool:
    """A Delta optimistic-concurrency conflict (another process committed first): safe to retry an upsert."""
    text = f"{type(e).__name__}: {e}"[:2000]
    return any(k in text for k in ("DELTA_CONCURRENT", "ConcurrentAppendException", "ConcurrentWriteException",
                                   "ProtocolChangedException", "DELTA_PROTOCOL_CHANGED", "MetadataChangedException",
                                   "ConcurrentTransactionException", "DELTA_METADATA_CHANGED"))


def record_run(spark, ctx: JobContext, row: dict, attempts: int = 6) -> None:
    """Upsert the run's row in lake/meta/job_runs, retrying when another job's run committed first (two jobs
    start together, e.g. a second intake that will be refused by the lock)."""
    import random

    for attempt in range(attempts):
        try:
            return _record_run(spark, ctx, row)
        except Exception as e:  # noqa: BLE001 - only Delta conflicts are retried
            if attempt == attempts - 1 or not _delta_conflict(e):
                raise
            time.sleep(0.2 * (attempt + 1) + random.random() * 0.3)


def _record_run(spark, ctx: JobContext, row: dict) -> None:
    """Upsert the run's row in the Delta table lake/meta/job_runs (one row per run_id)."""
    from delta.tables import DeltaTable
    from pyspark.sql import types as T

    schema = T.StructType([
        T.StructField("run_id", T.StringType(), False),
        T.StructField("model", T.StringType()),
        T.StructField("config", T.StringType()),
        T.StructField("as_of", T.DateType()),
        T.StructField("status", T.StringType()),
        T.StructField("started_at", T.TimestampType()),
        T.StructField("ended_at", T.TimestampType()),
        T.StructField("duration_s", T.DoubleType()),
        T.StructField("rows", T.LongType()),
        T.StructField("counters", T.StringType()),
        T.StructField("error", T.StringType()),
    ])
    df = spark.createDataFrame([row], schema)
    path = ctx.lake("meta", "job_runs")
    if not DeltaTable.isDeltaTable(spark, path):
        df.write.format("delta").mode("append").save(path)
        return
    (DeltaTable.forPath(spark, path).alias("t")
     .merge(df.alias("s"), "t.run_id = s.run_id")
     .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())


def start_warm_up(module, ctx: JobContext) -> threading.Thread | None:
    """Run the model's ``warm_up(ctx)`` (if it has one) in a daemon thread, beside the session's start. A
    failure there is only logged: whatever it prepared is prepared again, and fails visibly, where it is used."""
    warm_up = getattr(module, "warm_up", None)
    if warm_up is None:
        return None
    import pyspark.sql  # noqa: F401 - the session's imports are done here, not raced by the warm-up's

    def target():
        try:
            warm_up(ctx)
        except Exception as e:  # noqa: BLE001 - see the docstring
            ctx.log.warning("warm-up failed", error=f"{type(e).__name__}: {e}")

    thread = threading.Thread(target=target, name="cqube-warm-up", daemon=True)
    thread.start()
    return thread


def run_job(name_or_path: str, as_of: str | None = None, params: list[str] | None = None,
            run_id: str | None = None) -> int:
    """Run one job to completion; returns the process exit code (never raises for job errors)."""
    run_id = run_id or new_run_id()
    register_env_secrets()
    log = get_logger(run_id)
    try:
        cfg = load_job_config(resolve_config_path(name_or_path))
        cfg = apply_params(cfg, params or [])
        as_of_date = parse_as_of(as_of)
        if cfg.model not in MODELS:
            raise ConfigError(cfg.source, "$.model", f"unknown model {cfg.model!r}")
        module = importlib.import_module(MODELS[cfg.model])
        try:
            log_to_file(cfg.model)  # also <log dir>/<model>/<day>.log, kept 7 days (the API's log view)
        except OSError as e:
            log.warning("log file not writable", error=str(e))
    except ConfigError as e:
        log.error("bad config", error=str(e))
        print(f"config error: {redact_text(str(e))}", file=__import__("sys").stderr)
        return EXIT_CONFIG
    for name in cfg.secret_refs:
        register_secret(os.environ.get(name))

    ctx = JobContext(config=cfg, run_id=run_id, as_of=as_of_date, log=log)
    lock = contextlib.nullcontext()
    if cfg.model in LOCKED_MODELS:   # taken before the session starts: a refused run costs no JVM, writes nothing
        lock = runlock.hold(ctx, LOCKED_MODELS[cfg.model])
        try:
            lock.__enter__()
        except LockHeld as e:
            log.error("job refused", error=str(e))
            print(f"refused: {redact_text(str(e))}", file=__import__("sys").stderr)
            return EXIT_BUSY
    try:
        return _run(ctx, cfg, module, as_of_date, log)
    finally:
        lock.__exit__(None, None, None)


def _run(ctx: JobContext, cfg: JobConfig, module, as_of_date, log) -> int:
    import json

    run_id = ctx.run_id
    started = dt.datetime.now()
    t0 = time.monotonic()
    base = {"run_id": run_id, "model": cfg.model, "config": cfg.source, "as_of": as_of_date,
            "started_at": started, "ended_at": None, "duration_s": None, "rows": None,
            "counters": None, "error": None}
    log.info("job start", model=cfg.model, config=cfg.source, as_of=str(as_of_date or ""))
    start_warm_up(module, ctx)
    record_run(ctx.spark, ctx, {**base, "status": "RUNNING"})
    progress.stage(cfg.model)
    try:
        counters = module.run(ctx) or {}
        status, error, code = "SUCCESS", None, EXIT_OK
    except ConfigError as e:
        counters, status, error, code = {}, "FAILED", str(e), EXIT_CONFIG
        log.error("bad config", error=str(e))
        print(f"config error: {redact_text(str(e))}", file=__import__("sys").stderr)
    except LockHeld as e:   # another run of this job holds the data root: nothing was done
        counters, status, error, code = {}, "LOCKED", str(e), EXIT_BUSY
        log.error("job refused", error=str(e))
        print(f"refused: {redact_text(str(e))}", file=__import__("sys").stderr)
    except Exception as e:  # noqa: BLE001 - the run is recorded as failed, then reported
        counters, status, error, code = {}, "FAILED", f"{type(e).__name__}: {e}", EXIT_FAILED
        log.error("job failed", error=error, trace=traceback.format_exc(limit=5))
    progress.done()
    duration = round(time.monotonic() - t0, 3)
    record_run(ctx.spark, ctx, {**base, "status": status, "ended_at": dt.datetime.now(),
                                "duration_s": duration, "rows": int(counters.get("rows", 0) or 0),
                                "counters": redact_text(json.dumps(counters, default=str, sort_keys=True)),
                                "error": redact_text(error)})
    log.info("job end", model=cfg.model, status=status, duration_s=duration, **{"counters": counters})
    return code
