#!/usr/bin/env python3
"""Benchmark: the main pipeline end to end (intake + validation, every KPI at every level and window,
publish) on a generated student-attendance month + masters, against a bare Spark read + group-by of the same
CSV in the same Spark session. Target: pipeline wall time <= 2.5 x the bare baseline.

    .venv/bin/python scripts/bench/pipeline.py                      # 1x (1.2M rows) then 10x (12M rows)
    .venv/bin/python scripts/bench/pipeline.py --scales 1           # 1x only
    .venv/bin/python scripts/bench/pipeline.py --schools 4800 --students-per-school 250 --work /tmp/bench

Each scale runs in its own Python + JVM process (so peak memory figures are per scale): generate (not timed)
→ baseline (after a 10-row warm-up read: read CSV with the declared schema, group by school, sum of
present/working day codes) →
``pipeline`` (intake → kpis → publish, in-process, same session) → figures: wall time per stage, rows/s,
driver JVM peak RSS (VmHWM from /proc), Python peak RSS (ru_maxrss), ratio to the baseline, and the storage
floor (``floor.py``: the CSV written as bronze, copied to silver and aggregated into a gold table, with no
validation at all), which no implementation of the pipeline's tables can beat.
Scale 10 keeps the schools and multiplies the students per school by 10 (same hierarchy, 10x the rows).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def one(scale: int, schools: int, students: int, month: str, work: Path, gen_sources: str) -> dict:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from cqube_spark.config import load_job_config
    from cqube_spark.logs import get_logger
    from cqube_spark.models import pipeline
    from cqube_spark.runner import CONFIG_DIR, JobContext, new_run_id
    from cqube_spark.sample import generator
    from cqube_spark.session import get_spark

    data = work / f"scale{scale}" / "data"
    if data.exists():
        shutil.rmtree(data)
    os.environ["CQUBE_DATA_ROOT"] = str(data)
    for n in ("EMISSION", "INPUT", "OUTPUT", "LAKE"):
        os.environ.pop(f"CQUBE_{n}_URI", None)
    t0 = time.monotonic()
    summary = generator.generate(str(data / "emission"), schools=schools, students_per_school=students * scale,
                                 months=[month], seed=42, sources=gen_sources)
    gen_s = time.monotonic() - t0
    rows = summary["rows"]["student_attendance"]

    # the same CSV, extracted (not timed) for the bare baseline
    raw = work / f"scale{scale}" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    zpath = next((data / "emission" / "student_attendance").glob("*.zip"))
    with zipfile.ZipFile(zpath) as zf:
        member = next(n for n in zf.namelist() if n.endswith(".csv"))
        zf.extract(member, raw)
    csv_path = raw / member

    spark = get_spark("cqube-bench", {"spark.ui.enabled": "false"})
    jvm_pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
    days = [str(d) for d in range(1, 32)]
    schema = T.StructType([T.StructField(c, T.StringType() if c in ("AcademicYear", "AadhaarUID") else T.LongType())
                           for c in ["StudentAttendanceId", "StudentId", "SchoolId", "AadhaarUID", "AcademicYear",
                                     "Month", *days]])
    def read_csv():
        return spark.read.options(header=True, sep="|", nullValue="NULL").schema(schema).csv(str(csv_path))

    read_csv().limit(10).collect()       # warm-up (class loading, JIT): the baseline is not charged for it

    def by_school(df):
        return df.groupBy("SchoolId").agg(F.count(F.lit(1)).alias("students"),
                                          F.sum(sum((F.col(d) == 1).cast("int") for d in days)).alias("present"),
                                          F.sum(sum(F.col(d).isin(1, 2).cast("int") for d in days)).alias("working"))

    t0 = time.monotonic()
    n_groups = len(by_school(read_csv()).collect())
    baseline_s = time.monotonic() - t0

    cfg = load_job_config(CONFIG_DIR / "pipeline.json")
    ctx = JobContext(config=cfg, run_id=new_run_id(), as_of=None, log=get_logger("bench"), _spark=spark)
    t0 = time.monotonic()
    res = pipeline.run(ctx)
    pipe_s = time.monotonic() - t0
    jvm_peak_kb = vm_hwm_kb(jvm_pid)
    # the storage floor: bronze, silver and a gold aggregate written with no validation (see floor.py); measured
    # after the pipeline so the pipeline's figures are not helped by its warm-up (a warm JVM: a lower bound)
    from floor import storage_floor

    floor = storage_floor(spark, read_csv, work / f"scale{scale}" / "floor", "SchoolId,StudentId", gold=by_school)
    out = {
        "scale": scale, "schools": schools, "students_per_school": students * scale, "attendance_rows": rows,
        "generate_s": round(gen_s, 1), "baseline_s": round(baseline_s, 1), "baseline_groups": n_groups,
        "pipeline_s": round(pipe_s, 1), "stages_s": res["seconds"],
        "rows_per_s": round(rows / pipe_s), "ratio_to_baseline": round(pipe_s / baseline_s, 2),
        "kpis_ratio_to_baseline": round(res["seconds"].get("kpis", 0) / baseline_s, 2),
        "storage_floor_s": floor, "storage_floor_ratio": round(floor["total"] / baseline_s, 2),
        "driver_jvm_peak_rss_mb": round(jvm_peak_kb / 1024), "python_peak_rss_mb":
            round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "quarantined_by_rule": res.get("quarantined_by_rule"),
        "spark_master": spark.sparkContext.master, "driver_memory": spark.conf.get("spark.driver.memory", "?"),
    }
    spark.stop()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scales", default="1,10", help="comma list of multipliers of the students per school")
    p.add_argument("--schools", type=int, default=4800)
    p.add_argument("--students-per-school", type=int, default=250, help="at scale 1 (4800 x 250 = 1.2M rows)")
    p.add_argument("--month", default="2020-07")
    p.add_argument("--sources", default="masters,student_attendance")
    p.add_argument("--work", default=None, help="work folder (default: a temp folder, removed at the end)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    work = Path(a.work or tempfile.mkdtemp(prefix="cqube-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if a.one is not None:
        print("BENCH " + json.dumps(one(a.one, a.schools, a.students_per_school, a.month, work, a.sources)))
        return 0
    results = []
    try:
        for s in [int(x) for x in a.scales.split(",")]:
            cmd = [sys.executable, __file__, "--one", str(s), "--schools", str(a.schools), "--students-per-school",
                   str(a.students_per_school), "--month", a.month, "--sources", a.sources, "--work", str(work)]
            env = dict(os.environ, SPARK_LOCAL_IP=os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"))
            log = work / f"scale{s}.log"      # the job's logs and Spark's stderr, for a failed run
            with open(log, "w") as err:
                proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")), None)
            if proc.returncode or not line:
                tail = log.read_text(errors="replace")[-4000:]
                print(f"scale {s} failed (exit {proc.returncode}); log {log}:\n{tail}", file=sys.stderr)
                return 1
            r = json.loads(line[6:])
            results.append(r)
            print(f"scale {s:>2}: {r['attendance_rows']:>11,} rows  pipeline {r['pipeline_s']:7.1f}s "
                  f"({r['stages_s']})  baseline {r['baseline_s']:6.1f}s  ratio {r['ratio_to_baseline']:.2f}x "
                  f"(kpis alone {r['kpis_ratio_to_baseline']:.2f}x; storage floor {r['storage_floor_s']['total']:.1f}s "
                  f"= {r['storage_floor_ratio']:.2f}x)  {r['rows_per_s']:,} rows/s  "
                  f"JVM peak {r['driver_jvm_peak_rss_mb']} MB  python peak {r['python_peak_rss_mb']} MB", flush=True)
        if len(results) > 1:
            a0, a1 = results[0], results[-1]
            print(f"growth: rows x{a1['attendance_rows'] / a0['attendance_rows']:.1f}, time "
                  f"x{a1['pipeline_s'] / a0['pipeline_s']:.2f}, JVM peak x"
                  f"{a1['driver_jvm_peak_rss_mb'] / max(1, a0['driver_jvm_peak_rss_mb']):.2f}")
        print(json.dumps(results, indent=2))
    finally:
        if not a.keep and not a.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
