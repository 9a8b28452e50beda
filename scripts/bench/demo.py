#!/usr/bin/env python3
"""Benchmark: the README's demo state through the pipeline, measured as a user would run it.

    .venv/bin/python scripts/bench/demo.py                  # 160 schools x 30 students, 2020-06 + 2020-07
    .venv/bin/python scripts/bench/demo.py --schools 160 --students-per-school 30 --work /tmp/bench-demo

1. generate the demo state (every source; not timed) into a fresh data root;
2. **pipeline**: a cold ``cqube-spark run pipeline`` process, whole wall time (session start included), with
   each stage's time from its summary; target (issue 16): <= 120 s;
3. **bare**: a cold plain PySpark process doing the plain version of the attendance work on the same emitted
   CSVs: session start, ``read.csv`` with a declared schema, present/working day sums and distinct students
   per school and month, rolled up to cluster, block and district through the school master. Printed beside
   the pipeline as the floor of "just Spark" on this machine.

``--mock N``: instead of the generated demo, the upstream sample (``../shared/data/cqube-mock/test_data``, every
source) with its student attendance multiplied N times (copy k: ``StudentId`` + k × 1000, its school prefix
kept, ``StudentAttendanceId`` + k × 10^7): issue 16's "upstream mock ×10" figure (target: pipeline <= 4x the
bare process).

Prints one line per run and the figures as JSON (``--json FILE`` writes them too).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BARE = r'''
import sys, time
t0 = time.monotonic()
from pyspark.sql import SparkSession, functions as F, types as T
spark = (SparkSession.builder.master("local[*]").config("spark.driver.memory", "4g")
         .config("spark.sql.shuffle.partitions", "8").config("spark.ui.enabled", "false").getOrCreate())
days = [str(d) for d in range(1, 32)]
att = T.StructType([T.StructField(c, T.StringType() if c in ("AcademicYear", "AadhaarUID") else T.LongType())
                    for c in ["StudentAttendanceId", "StudentId", "SchoolId", "AadhaarUID", "AcademicYear",
                              "Month", *days]])
df = spark.read.options(header=True, sep="|", nullValue="NULL").schema(att).csv(sys.argv[1].split(","))
sm = spark.read.options(header=True, sep="|", nullValue="NULL").csv(sys.argv[2])
sm = sm.select(F.col("udise_sch_code").cast("long").alias("SchoolId"), "cluster_cd", "block_cd_1", "district_cd")
school = df.groupBy("SchoolId", "Month").agg(
    F.sum(sum((F.col(d) == 1).cast("int") for d in days)).alias("present"),
    F.sum(sum(F.col(d).isin(1, 2).cast("int") for d in days)).alias("working"),
    F.countDistinct("StudentId").alias("students"))
j = school.join(F.broadcast(sm), "SchoolId", "left")
n = len(school.collect())
for level in [c for c in sm.columns if c != "SchoolId"]:
    n += len(j.groupBy(level, "Month").agg(F.sum("present"), F.sum("working"), F.sum("students")).collect())
print(f"BARE {time.monotonic() - t0:.2f} {n}")
'''


def extract(zip_path: Path, out: Path) -> Path:
    with zipfile.ZipFile(zip_path) as zf:
        member = next(n for n in zf.namelist() if n.endswith(".csv"))
        zf.extract(member, out)
    return out / member


MOCK = Path(os.environ.get("CQUBE_SHARED", ROOT.parent / "shared")) / "data" / "cqube-mock" / "test_data"


def emit_mock(emission: Path, scale: int) -> None:
    """The upstream sample's folders as an emission tree; student attendance multiplied ``scale`` times."""
    shutil.copytree(MOCK, emission, dirs_exist_ok=True)
    att = emission / "student_attendance" / "student_attendance.zip"
    with zipfile.ZipFile(MOCK / "student_attendance" / "student_attendance.zip") as zf:
        header, *rows = zf.read("student_attendance.csv").decode().splitlines()
    out = [header]
    for k in range(scale):
        for r in rows:
            f = r.split("|")
            sid = str(int(f[1]) + k * 1000)
            out.append("|".join([str(int(f[0]) + k * 10_000_000), sid, f[2], sid if f[3] == f[1] else f[3], *f[4:]]))
    with zipfile.ZipFile(att, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("student_attendance.csv", "\n".join(out) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--schools", type=int, default=160)
    p.add_argument("--students-per-school", type=int, default=30)
    p.add_argument("--months", default="2020-06,2020-07")
    p.add_argument("--work", default=None, help="work folder (default: a temp folder, removed at the end)")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    p.add_argument("--mock", type=int, default=0, metavar="N",
                   help="the upstream sample with student attendance x N instead of the generated demo")
    a = p.parse_args(argv)
    work = Path(a.work or tempfile.mkdtemp(prefix="cqube-bench-demo-"))
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    env = dict(os.environ, CQUBE_DATA_ROOT=str(data), SPARK_LOCAL_IP=os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"))
    for n in ("EMISSION", "INPUT", "OUTPUT", "LAKE"):
        env.pop(f"CQUBE_{n}_URI", None)
    py = str(ROOT / ".venv" / "bin" / "python")
    try:
        if a.mock:
            emit_mock(data / "emission", a.mock)
        else:
            subprocess.run([py, str(ROOT / "scripts" / "generate_sample_data.py"), "--out", str(data / "emission"),
                            "--schools", str(a.schools), "--students-per-school", str(a.students_per_school),
                            "--months", a.months, "--sources", "all"], check=True, env=env, stdout=subprocess.DEVNULL)
        raw = work / "raw"
        csvs = [extract(z, raw / z.stem) for z in sorted((data / "emission").rglob("*.zip"))
                if z.parent.name == "student_attendance"]
        master = extract(next((data / "emission" / "school_master").glob("*.zip")), raw / "school_master")
        rows = sum(sum(1 for _ in open(c)) - 1 for c in csvs)

        t0 = time.monotonic()
        run = subprocess.run([str(ROOT / ".venv" / "bin" / "cqube-spark"), "run", "pipeline"], env=env, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        pipeline_s = time.monotonic() - t0
        (work / "pipeline.log").write_text(run.stderr)
        (work / "pipeline.out").write_text(run.stdout)
        if run.returncode:
            print(run.stderr[-3000:], file=sys.stderr)
            return 1
        stages = {m.group(1): float(m.group(2)) for m in re.finditer(r"^\s+(intake|kpis|publish|report)\s+([0-9.]+)s",
                                                                     run.stdout, re.M)}
        print(f"demo: pipeline {pipeline_s:.1f} s {stages} (log: {work / 'pipeline.log'})", flush=True)
        t0 = time.monotonic()
        bare = subprocess.run([py, "-c", BARE, ",".join(str(c) for c in csvs), str(master)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True)
        bare_s = time.monotonic() - t0
        inner = float(next(ln for ln in bare.stdout.splitlines() if ln.startswith("BARE ")).split()[1])
        what = {"mock_scale": a.mock} if a.mock else {"schools": a.schools, "students_per_school": a.students_per_school,
                                                       "months": a.months}
        out = {**what,
               "attendance_rows": rows, "pipeline_s": round(pipeline_s, 1), "stages_s": stages,
               "bare_process_s": round(bare_s, 1), "bare_in_process_s": round(inner, 1),
               "ratio_to_bare_process": round(pipeline_s / bare_s, 2)}
        out.update({"target_ratio": 4} if a.mock else {"target_pipeline_s": 120})
        print(f"demo: pipeline {out['pipeline_s']} s {stages}; bare Spark process {out['bare_process_s']} s "
              f"({out['ratio_to_bare_process']}x); target " + ("<= 4x" if a.mock else "<= 120 s"), flush=True)
        print(json.dumps(out, indent=2))
        if a.json:
            Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
