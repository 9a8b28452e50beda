"""Build the driver JVM's class archive ``.jars/cqube-spark.jsa`` (Java class-data sharing). Run by setup.sh.

A short warm-up job (session, a Delta write, MERGE and read, a text read, an aggregation) runs once with
``-XX:ArchiveClassesAtExit``; the JVM writes every class it loaded into the archive when it exits. Later
driver JVMs map it (see ``cqube_spark.session.driver_java_options``) instead of loading those classes from the
jars again. The archive is written to a temporary name, checked by a JVM that maps it, and only then moved in
place: a truncated archive would crash the JVM that maps it. A JVM or classpath that no longer matches the
archive just runs without it.

usage: python scripts/jvm/class_archive.py   (exit 0 with the archive in place, 1 with the reason)
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from cqube_spark.session import ARCHIVE_OPTIONS, CLASS_ARCHIVE  # noqa: E402

WARM_UP = """
import os, sys, tempfile
from cqube_spark.session import get_spark
from pyspark.sql import functions as F
spark = get_spark("cqube-class-archive", {"spark.master": "local[2]", "spark.sql.shuffle.partitions": "2"})
d = tempfile.mkdtemp(prefix="cqube-archive-")
df = spark.range(1000).select(F.col("id"), (F.col("id") % 7).alias("k"), F.concat(F.lit("x"), F.col("id").cast("string")).alias("s"))
df.write.format("delta").save(d + "/t")
from delta.tables import DeltaTable
(DeltaTable.forPath(spark, d + "/t").alias("t").merge(df.limit(10).alias("s"), "t.id = s.id")
 .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
spark.read.format("delta").load(d + "/t").groupBy("k").agg(F.count("*"), F.max("s")).collect()
df.select("s").write.text(d + "/txt")
spark.read.text(d + "/txt").where(F.col("value").rlike("^x[0-9]+$")).count()
spark.stop()
# The JVM writes the archive when it exits: end it (it exits when its stdin closes) and wait for it.
from pyspark import SparkContext
proc = SparkContext._gateway.proc
SparkContext._gateway.shutdown()
proc.stdin.close()
sys.exit(proc.wait(timeout=300))
"""


def java() -> str:
    home = os.environ.get("JAVA_HOME")
    return os.path.join(home, "bin", "java") if home else (shutil.which("java") or "java")


def main() -> int:
    target = str(CLASS_ARCHIVE)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".cqube-spark-", suffix=".jsa", dir=os.path.dirname(target))
    os.close(fd)
    os.unlink(tmp)   # the JVM creates it
    env = dict(os.environ, CQUBE_JVM_ARCHIVE_DUMP=tmp, SPARK_LOCAL_IP=os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
               CQUBE_SPARK_UI="0")
    t = time.monotonic()
    try:
        run = subprocess.run([sys.executable, "-c", WARM_UP], env=env, cwd=ROOT, capture_output=True, text=True)
        if run.returncode != 0 or not os.path.isfile(tmp):
            print(f"class archive: warm-up job failed (exit {run.returncode}): {run.stderr[-2000:]}", file=sys.stderr)
            return 1
        check = subprocess.run([java(), f"-XX:SharedArchiveFile={tmp}", *ARCHIVE_OPTIONS, "-version"],
                               capture_output=True, text=True)
        if check.returncode != 0:
            print(f"class archive: a JVM could not map {tmp} (exit {check.returncode}); not installed",
                  file=sys.stderr)
            return 1
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    size = os.path.getsize(target) / 2**20
    print(f"class archive: {target} ({size:.0f} MB) in {time.monotonic() - t:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
