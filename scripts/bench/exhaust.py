#!/usr/bin/env python
"""Benchmark: the Program User exhaust on one program with 1,000,000 enrollments.

    .venv/bin/python scripts/bench/exhaust.py [--users 1000000] [--writers 3] [--skip-generate]

Generates (once; ``--skip-generate`` reuses it) a program ``bench-<users>`` in Cassandra
``sunbird_programs.program_enrollment`` — 60% of the rows require PII consent, half of those have an ACTIVE
consent in ``sunbird.user_consent`` — and one Redis ``user:<id>`` hash per user (email/phone encrypted),
written by ``--writers`` processes (Cassandra ``execute_concurrent_with_args``, Redis pipelines). Then it
submits one request and runs the job in-process on ``local[2]`` and prints the wall time per stage, rows/s,
and the peak memory (sum of RSS over this process, its JVM and the Python workers, sampled every 0.5 s; and
each process's own high-water mark). Target: the whole request (submit → SUCCESS) under 3 minutes.

Connection settings come from CQUBE_POSTGRES_DSN / CQUBE_REDIS_URL / CQUBE_CASSANDRA_HOSTS; the PII key from
CQUBE_PII_KEY (a fixed bench key is used when unset). Output goes to CQUBE_DATA_ROOT (default /tmp/cqube-bench).
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import multiprocessing as mp
import os
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("CQUBE_PII_KEY", "YmVuY2gta2V5LWJlbmNoLWtleS1iZW5jaC1rZXktMzI=")  # base64 of 32 bytes
os.environ.setdefault("CQUBE_DATA_ROOT", "/tmp/cqube-bench")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

DISTRICTS, BLOCKS, CLUSTERS = 30, 10, 10


def user_id(i: int) -> str:
    return str(uuid.UUID(bytes=hashlib.md5(f"bench-user-{i}".encode()).digest(), version=4))


def enrollment(program_id: str, i: int) -> dict:
    d, b, c = i % DISTRICTS, (i // DISTRICTS) % BLOCKS, (i // (DISTRICTS * BLOCKS)) % CLUSTERS
    school = (i // 7) % 50000
    locs = {"state_id": "s1", "state_name": "Karnataka", "district_id": f"d{d}", "district_name": f"District {d:02d}",
            "block_id": f"b{d}-{b}", "block_name": f"Block {d:02d}-{b}", "cluster_name": f"Cluster {d}-{b}-{c}",
            "school_code": f"29{school:08d}", "school_name": f"Government School {school}"}
    return dict(program_id=program_id, program_externalId="PGM-BENCH", program_name="Bench Program, 2024",
                pii_consent_required=(i % 10) < 6, user_id=user_id(i), user_locations=None if i % 97 == 0 else locs,
                organisation_id="org-1", organisation_name="Department of School Education",
                user_type="administrator", user_sub_type=("hm", "crp", "teacher")[i % 3],
                created_at=dt.date(2024, 1, 1), updated_at=dt.date(2024, 1 + i % 12, 1 + i % 28))


def consented(i: int) -> bool:
    return (i % 10) in (0, 2, 4)  # half of the 60% that require consent


def write_chunk(args) -> tuple[int, int, int]:
    """Writes one chunk; the writes are idempotent upserts, so a chunk that hit a timeout (one Cassandra node
    on 2 busy cores) is simply written again. Errors go back to the parent as plain text (driver exceptions
    do not pickle)."""
    last = None
    for _attempt in range(3):
        try:
            return _write_chunk(args)
        except Exception as e:  # noqa: BLE001 - retried, then reported
            last = f"{type(e).__name__}: {e}"
            time.sleep(5)
    raise RuntimeError(f"chunk {args[1]}..{args[2]} failed 3 times: {last}")


def _write_chunk(args) -> tuple[int, int, int]:
    program_id, lo, hi = args
    import redis

    from cqube_spark.exhaust import crypto, seed, settings

    cluster = settings.cassandra().cluster()
    session = cluster.connect()
    session.default_timeout = 60
    cipher = crypto.PiiCipher(crypto.key_from_env())
    rds = redis.Redis.from_url(settings.redis_url())
    n_e = seed.insert_enrollments(session, (enrollment(program_id, i) for i in range(lo, hi)), concurrency=16)
    when = dt.datetime(2024, 2, 1, 10, tzinfo=dt.timezone.utc)
    n_c = seed.insert_consents(session, (dict(user_id=user_id(i), object_id=program_id, status="ACTIVE",
                                              created_on=when, last_updated_on=when)
                                         for i in range(lo, hi) if consented(i)), concurrency=16)
    n_u = seed.put_users(rds, (dict(user_id=user_id(i), firstname=f"First{i}", lastname=f"Last{i}",
                                    email=f"user{i}@example.org", phone=f"9{i:09d}") for i in range(lo, hi)),
                         cipher, batch=2000)
    cluster.shutdown()
    rds.close()
    return n_e, n_c, n_u


def generate(program_id: str, users: int, writers: int) -> dict:
    chunk = max(1, users // (writers * 8))
    parts = [(program_id, lo, min(users, lo + chunk)) for lo in range(0, users, chunk)]
    t = time.monotonic()
    with mp.get_context("spawn").Pool(writers) as pool:
        totals = [sum(x) for x in zip(*pool.map(write_chunk, parts))]
    secs = time.monotonic() - t
    return {"enrollments": totals[0], "consents": totals[1], "redis_users": totals[2], "seconds": round(secs, 1),
            "rows_per_s": round(totals[0] / secs)}


# ---------------------------------------------------------------------------------------- memory
def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
    return out


def _status(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class MemorySampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.peak_total, self.hwm, self.names, self._halt = 0, {}, {}, threading.Event()

    def run(self):
        while not self._halt.is_set():
            total = 0
            for p in _tree(os.getpid()):
                total += _status(p, "VmRSS")
                self.hwm[p] = max(self.hwm.get(p, 0), _status(p, "VmHWM"))
                try:  # re-read: a launcher script exec()s into java under the same pid
                    self.names[p] = Path(f"/proc/{p}/comm").read_text().strip()
                except OSError:
                    pass
            self.peak_total = max(self.peak_total, total)
            self._halt.wait(0.5)

    def stop(self):
        self._halt.set()
        self.join()


def mib(n: int) -> str:
    return f"{n / 2 ** 20:,.0f} MiB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--writers", type=int, default=3)
    ap.add_argument("--skip-generate", action="store_true")
    ap.add_argument("--param", action="append", default=[], help="modelParams override key=value")
    args = ap.parse_args()
    program_id = f"bench-{args.users}"

    from cqube_spark import cli
    from cqube_spark.exhaust import requests

    assert cli.main(["exhaust", "init"]) == 0
    report: dict = {"program_id": program_id, "users": args.users}
    if not args.skip_generate:
        print(f"generating {args.users:,} enrollments + users with {args.writers} writers ...", flush=True)
        report["generate"] = generate(program_id, args.users, args.writers)
        print(json.dumps(report["generate"]), flush=True)

    from cqube_spark.config import apply_params, load_job_config
    from cqube_spark.exhaust import job
    from cqube_spark.logs import get_logger
    from cqube_spark.runner import JobContext, resolve_config_path
    from cqube_spark.session import get_spark

    sampler = MemorySampler()
    sampler.start()
    t_all = time.monotonic()
    t = time.monotonic()
    spark = get_spark("cqube-bench-exhaust", {"spark.master": "local[2]", "spark.default.parallelism": "2"})
    stage = {"spark_session_s": round(time.monotonic() - t, 2)}
    tag = "bench-" + uuid.uuid4().hex[:8]
    data = {"type": "program-user-exhaust", "title": "bench", "params": {"filters": [
        {"table_name": "program_enrollment",
         "table_filters": [{"name": "program_id", "operator": "=", "value": program_id}]}]}}
    t_req = time.monotonic()
    with requests.connect() as conn:
        requests.ensure_table(conn)
        req, _ = requests.submit(conn, tag=tag, job_id="program-user-exhaust", requested_by="bench",
                                 channel="bench", request_data=data, encryption_key="bench-zip-key")
    cfg = apply_params(load_job_config(resolve_config_path("program-user-exhaust")), args.param)
    ctx = JobContext(config=cfg, run_id=tag, as_of=None, log=get_logger(tag), _spark=spark)
    counters = job.run(ctx)
    stage["request_total_s"] = round(time.monotonic() - t_req, 2)
    total = round(time.monotonic() - t_all, 2)
    sampler.stop()
    with requests.connect() as conn:
        final = requests.get(conn, req.request_id, tag)
        with conn, conn.cursor() as cur:
            cur.execute("DELETE FROM job_request WHERE tag = %s", (tag,))
    mine = [r for r in counters["results"] if r["request_id"] == req.request_id][0]
    rows = mine.get("rows", 0)
    jvm = [p for p, n in sampler.names.items() if n == "java"]
    workers = [p for p, n in sampler.names.items() if n.startswith("python") and p != os.getpid()]
    report.update({
        "status": final.status, "error": final.err_message, "rows": rows,
        "rows_with_pii": mine.get("rows_with_pii"), "csv_bytes": mine.get("csv_bytes"),
        "zip": mine.get("uri"), "stages_s": {**stage, **mine.get("stages", {})},
        "total_s": total, "rows_per_s": round(rows / stage["request_total_s"]) if rows else 0,
        "peak_rss_total": mib(sampler.peak_total),
        "peak_rss_driver_python": mib(sampler.hwm.get(os.getpid(), 0)),
        "peak_rss_jvm": mib(sum(sampler.hwm[p] for p in jvm)),
        "peak_rss_python_workers_max": mib(max([sampler.hwm[p] for p in workers] or [0])),
        "target": "request_total_s < 180", "met": stage["request_total_s"] < 180 and final.status == "SUCCESS",
    })
    print(json.dumps(report, indent=2))
    spark.stop()
    return 0 if report["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
