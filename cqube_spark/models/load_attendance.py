"""load-attendance: the foundation's demo job: student attendance zips → a bronze Delta table.

Superseded by the full ``intake`` job for production use; kept as the smallest end-to-end example of a
model: read the emission area through ``Storage``, parse with a declared schema, write Delta.
"""
from __future__ import annotations

import io
import zipfile

from pyspark.sql import functions as F
from pyspark.sql import types as T

from cqube_spark import storage

DAY_COLUMNS = [str(d) for d in range(1, 32)]
COLUMNS = ["StudentAttendanceId", "StudentId", "SchoolId", "AadhaarUID", "AcademicYear", "Month", *DAY_COLUMNS]
SCHEMA = T.StructType([T.StructField(c, T.StringType()) for c in COLUMNS])


def run(ctx) -> dict:
    folder = ctx.params.get("emissionFolder", "student_attendance")
    table = ctx.params.get("table", "student_attendance")
    src = storage.join(ctx.roots["emission"], folder)
    staged = storage.join(ctx.roots["input"], "_load_attendance", ctx.run_id)
    files = 0
    for uri in ctx.store.list(src):
        if not uri.endswith(".zip"):
            continue
        with zipfile.ZipFile(io.BytesIO(ctx.store.read_bytes(uri))) as zf:
            for member in zf.namelist():
                if member.endswith(".csv") and "/" not in member and not member.startswith("."):
                    ctx.store.write_bytes(storage.join(staged, f"{files:04d}_{member}"), zf.read(member))
                    files += 1
    if not files:
        raise FileNotFoundError(f"no student attendance zip under {src}")
    df = (ctx.spark.read.options(header=True, sep="|", mode="PERMISSIVE", enforceSchema=True)
          .schema(SCHEMA).csv(storage.spark_path(staged))
          .withColumn("_file", F.input_file_name())
          .withColumn("_run_id", F.lit(ctx.run_id)))
    target = ctx.lake("bronze", table)
    df.write.format("delta").mode("overwrite").save(target)
    rows = ctx.spark.read.format("delta").load(target).count()
    ctx.log.info("loaded", table=target, rows=rows, files=files)
    print(f"loaded {rows} rows from {files} file(s) into Delta table {target}")
    return {"rows": rows, "files": files, "table": target}
