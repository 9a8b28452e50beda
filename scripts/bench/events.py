#!/usr/bin/env python
"""Benchmark: 1,000,000 program-user events through ``program-user-events`` (Kafka → Spark → Cassandra).

    .venv/bin/python scripts/bench/events.py [--events 1000000] [--partitions 2] [--max-offsets 200000] [--keep]

1. produces ``--events`` realistic events (``cqube_spark.streaming.samples.generated_events``: 50 programs,
   400,000 users, 5 locations, 1-3 sub-types; every 100th event malformed = 1%) to a fresh topic
   ``bench.ml.programUsers.<stamp>`` with confluent-kafka (lz4, acks=all);
2. runs the job in-process (``local[2]``, availableNow, ``maxOffsetsPerTrigger=--max-offsets``) into a private
   keyspace ``cqube_bench_events`` (same table definition as ``sunbird_programs.program_enrollment``);
3. checks the result (rows per program = distinct valid (program, user) pairs, dead letters = malformed) and
   prints events/s end to end and peak memory: the driver JVM's VmHWM (/proc/<pid>/status), this Python
   process's max RSS, and the peak of the summed RSS of the whole process tree (JVM + Python workers),
   sampled every 0.5 s.

The topic and keyspace are dropped at the end unless ``--keep``. Connection settings: CQUBE_KAFKA_BOOTSTRAP,
CQUBE_CASSANDRA_HOSTS. Lake (checkpoint, dead letters): CQUBE_DATA_ROOT (default /tmp/cqube-bench-events/<stamp>).
Target: ≥ 5,000 events/s end to end on 2 shared cores (Cassandra on the same machine).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
STAMP = dt.datetime.now().strftime("%Y%m%d%H%M%S")
os.environ.setdefault("CQUBE_DATA_ROOT", f"/tmp/cqube-bench-events/{STAMP}")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("CQUBE_SPARK_MASTER", "local[2]")
KEYSPACE = "cqube_bench_events"


def tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def is_java(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/exe").resolve().name == "java"
    except OSError:
        return False


class MemorySampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.peak_tree_kb, self.jvm_hwm_kb, self.jvm_pid = 0, 0, None
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            pids = tree(os.getpid())
            self.peak_tree_kb = max(self.peak_tree_kb, sum(status_kb(p, "VmRSS") for p in pids))
            for p in pids:
                if p != os.getpid() and is_java(p):
                    self.jvm_pid = p
                    self.jvm_hwm_kb = max(self.jvm_hwm_kb, status_kb(p, "VmHWM"))
            self.done.wait(0.5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=2, help="Kafka partitions of the bench topic")
    ap.add_argument("--max-offsets", type=int, default=200_000, help="maxOffsetsPerTrigger")
    ap.add_argument("--batch-size", type=int, default=10, help="cassandraBatchSize")
    ap.add_argument("--concurrency", type=int, default=32, help="cassandraConcurrency")
    ap.add_argument("--malformed-every", type=int, default=100)
    ap.add_argument("--keep", action="store_true", help="keep the topic and the keyspace")
    args = ap.parse_args()

    from cqube_spark.exhaust import settings
    from cqube_spark.runner import run_job
    from cqube_spark.streaming import samples

    bootstrap = os.environ.get("CQUBE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    topic = f"bench.ml.programUsers.{STAMP}"
    sampler = MemorySampler()
    sampler.start()

    samples.create_topic(bootstrap, topic, partitions=args.partitions)
    keys: set = set()
    t0 = time.monotonic()
    payloads = samples.generated_events(args.events, malformed_every=args.malformed_every, keys=keys)
    n = samples.produce(bootstrap, topic, ((None, v) for v in payloads),
                        config={"compression.type": "lz4", "linger.ms": 50, "batch.num.messages": 10000})
    t_produce = time.monotonic() - t0
    print(f"produced {n:,} events to {topic} in {t_produce:.1f}s ({n / t_produce:,.0f}/s)", flush=True)

    t1 = time.monotonic()
    code = run_job("program-user-events", params=[
        f"topic={topic}", f"keyspace={KEYSPACE}", f"maxOffsetsPerTrigger={args.max_offsets}",
        f"cassandraBatchSize={args.batch_size}", f"cassandraConcurrency={args.concurrency}"])
    t_job = time.monotonic() - t1
    sampler.done.set()
    sampler.join()
    if code != 0:
        print(f"job failed with exit code {code}", file=sys.stderr)
        return code

    from cqube_spark.session import get_spark

    spark = get_spark()
    lake = Path(os.environ["CQUBE_DATA_ROOT"]) / "lake"
    run = (spark.read.format("delta").load(str(lake / "meta" / "job_runs"))
           .orderBy("started_at", ascending=False).first())
    counters = json.loads(run["counters"])
    dead = spark.read.format("delta").load(str(lake / "dead_letter" / "program_user_events")).count()
    cluster = settings.cassandra().cluster()
    try:
        session = cluster.connect()
        programs = sorted({p for p, _ in keys})
        rows = sum(session.execute(f"SELECT count(*) FROM {KEYSPACE}.program_enrollment WHERE program_id = %s",
                                   (p,), timeout=300).one()[0] for p in programs)
        if not args.keep:
            session.execute(f"DROP KEYSPACE IF EXISTS {KEYSPACE}", timeout=300)
    finally:
        cluster.shutdown()
    if not args.keep:
        samples.delete_topic(bootstrap, topic)

    malformed = args.events // args.malformed_every if args.malformed_every else 0
    report = {
        "events": n, "kafka_partitions": args.partitions, "maxOffsetsPerTrigger": args.max_offsets,
        "produce_s": round(t_produce, 1), "job_s": round(t_job, 1), "job_runner_duration_s": run["duration_s"],
        "events_per_s_job": round(n / t_job), "events_per_s_produce_plus_job": round(n / (t_produce + t_job)),
        "batches": counters["batches"], "upserted": counters["upserted"], "dead_letters": dead,
        "cassandra_rows": rows, "expected_rows": len(keys), "expected_dead_letters": malformed,
        "driver_jvm_vmhwm_mib": round(sampler.jvm_hwm_kb / 1024), "python_maxrss_mib":
            round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_process_tree_rss_mib": round(sampler.peak_tree_kb / 1024),
        "load_avg_1m_at_end": os.getloadavg()[0],
    }
    print(json.dumps(report, indent=2))
    ok = rows == len(keys) and dead == malformed and counters["rows"] == n
    print("CHECK", "ok" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
