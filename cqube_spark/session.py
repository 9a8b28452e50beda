"""The one place a SparkSession is built.

* local by default (``local[*]``); under ``spark-submit`` the submitted master and jars win;
* Delta Lake SQL extension + catalog on, jars from ``.jars/`` (resolved at setup time, never downloaded);
* S3A configured from the environment: ``CQUBE_S3_ENDPOINT`` (e.g. ``http://127.0.0.1:8333``), path-style
  access, credentials from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` when set, else the default AWS chain;
* session time zone ``CQUBE_TIMEZONE`` (default Asia/Kolkata);
* the UI is off unless ``CQUBE_SPARK_UI=1``;
* a local driver JVM maps the class archive ``.jars/cqube-spark.jsa`` (made at setup time by
  ``scripts/jvm/class_archive.py``) when it exists: Java's class-data sharing maps the classes a job loads
  from it instead of parsing and verifying them again (session start plus a first Delta write: ~16 s → ~12 s).
  ``CQUBE_JVM_ARCHIVE=0`` turns it off.
"""
from __future__ import annotations

import glob
import os
import sys
from pathlib import Path
from typing import Mapping

PROJECT_ROOT = Path(os.environ.get("CQUBE_HOME", Path(__file__).resolve().parent.parent))
DEFAULTS_FILE = PROJECT_ROOT / "spark-defaults.conf"
DEFAULT_TIMEZONE = "Asia/Kolkata"
LOG4J_FILE = PROJECT_ROOT / "configs" / "log4j2.properties"
CLASS_ARCHIVE = PROJECT_ROOT / ".jars" / "cqube-spark.jsa"
# Share the archive's classes when it matches this JVM and classpath; otherwise run without it, silently.
ARCHIVE_OPTIONS = ("-Xshare:auto", "-Xlog:cds=off", "-Xlog:cds+dynamic=off")
# A cold driver spends much of a run compiling Spark itself: C2 was busy for 2 min 54 s of a 166 s intake
# (JFR), mostly on large methods with deep inlining (Janino, Catalyst). Smaller C2 inlining budgets make each
# compilation cheaper, and the throughput collector leaves the second core to the work instead of G1's
# concurrent threads. Pipeline over every source, 24 schools, cold session (scratch bench, docs/intake.md):
# 163.6 / 152.6 s with the JVM's defaults, 134.2 / 139.9 s with the inlining budgets, 126.3 s with both.
JIT_OPTIONS = ("-XX:InlineSmallCode=1000", "-XX:FreqInlineSize=100", "-XX:MaxNodeLimit=40000", "-XX:+UseParallelGC")


def read_defaults(path: Path = DEFAULTS_FILE) -> dict[str, str]:
    """Parse a spark-defaults.conf file (``key  value`` per line, ``#`` comments)."""
    conf: dict[str, str] = {}
    if not path.exists():
        return conf
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        conf[key.strip()] = value.strip()
    return conf


def resolve_jars(spec: str, root: Path = PROJECT_ROOT) -> str:
    """Expand a comma list of jar paths/globs (relative to the project root) to absolute files."""
    jars: list[str] = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        pattern = item if os.path.isabs(item) else str(root / item)
        jars.extend(sorted(glob.glob(pattern)))
    return ",".join(jars)


def s3a_conf(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Hadoop S3A settings derived from the environment (no secrets in files)."""
    conf: dict[str, str] = {}
    endpoint = env.get("CQUBE_S3_ENDPOINT") or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(endpoint.startswith("https")).lower()
        conf["spark.hadoop.fs.s3a.endpoint.region"] = env.get("AWS_REGION", env.get("AWS_DEFAULT_REGION", "us-east-1"))
    conf["spark.hadoop.fs.s3a.path.style.access"] = env.get("CQUBE_S3_PATH_STYLE", "true")
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        conf["spark.hadoop.fs.s3a.aws.credentials.provider"] = (
            "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
        )
        conf["spark.hadoop.fs.s3a.access.key"] = key
        conf["spark.hadoop.fs.s3a.secret.key"] = secret
    # else: hadoop-aws falls back to the default AWS credential chain (instance profile, ~/.aws, ...)
    return conf


def under_spark_submit(env: Mapping[str, str] = os.environ) -> bool:
    """True when spark-submit launched this Python process (it owns master, jars and conf then)."""
    return "PYSPARK_GATEWAY_PORT" in env


def session_conf(
    app_name: str = "cqube-spark",
    overrides: Mapping[str, str] | None = None,
    env: Mapping[str, str] = os.environ,
) -> dict[str, str]:
    """Every setting the builder applies, as a plain dict (pure: easy to test and to log)."""
    conf = read_defaults()
    submitted = under_spark_submit(env)
    if submitted:
        conf.pop("spark.jars", None)  # spark-submit already put them on the classpath
    elif "spark.jars" in conf:
        conf["spark.jars"] = resolve_jars(conf["spark.jars"])
    conf.update(s3a_conf(env))
    conf["spark.sql.session.timeZone"] = env.get("CQUBE_TIMEZONE", DEFAULT_TIMEZONE)
    conf["spark.ui.enabled"] = "true" if env.get("CQUBE_SPARK_UI") in ("1", "true") else "false"
    conf["spark.app.name"] = app_name
    if not submitted:
        conf.setdefault("spark.master", env.get("CQUBE_SPARK_MASTER", "local[*]"))
        conf.setdefault("spark.driver.bindAddress", env.get("SPARK_LOCAL_IP", "127.0.0.1"))
        conf.setdefault("spark.driver.host", env.get("SPARK_LOCAL_IP", "127.0.0.1"))
        java_options = driver_java_options(env)
        if java_options:
            conf.setdefault("spark.driver.extraJavaOptions", java_options)
    conf.update(overrides or {})
    return conf


def driver_java_options(env: Mapping[str, str] = os.environ, archive: Path | None = None) -> str:
    """The local driver JVM's options (in-process sessions and ``cqube-spark run --submit``): the log4j config,
    the compiler and collector settings (:data:`JIT_OPTIONS`; ``CQUBE_JVM_TUNING=0`` leaves the JVM's own),
    and the class archive (default :data:`CLASS_ARCHIVE`) when there is one.

    ``CQUBE_JVM_ARCHIVE_DUMP=<path>`` makes the JVM write a new archive there when it exits (setup does that).
    """
    archive = archive or CLASS_ARCHIVE
    opts = [f"-Dlog4j2.configurationFile=file:{LOG4J_FILE}"] if LOG4J_FILE.exists() else []
    if env.get("CQUBE_JVM_TUNING", "1") != "0":
        opts += JIT_OPTIONS
    if env.get("CQUBE_JVM_ARCHIVE_DUMP"):
        opts.append(f"-XX:ArchiveClassesAtExit={env['CQUBE_JVM_ARCHIVE_DUMP']}")
    elif env.get("CQUBE_JVM_ARCHIVE", "1") != "0" and archive.is_file():
        opts += [f"-XX:SharedArchiveFile={archive}", *ARCHIVE_OPTIONS]
    return " ".join(opts)


def get_spark(app_name: str = "cqube-spark", overrides: Mapping[str, str] | None = None):
    """Build (or return the running) SparkSession with Delta, S3A and the project's defaults."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers run the same interpreter (and venv) as the driver unless told otherwise.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder
    for key, value in session_conf(app_name, overrides).items():
        if key == "spark.master":
            builder = builder.master(value)
        else:
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("CQUBE_SPARK_LOG_LEVEL", "WARN"))
    return spark
