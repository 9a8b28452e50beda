"""The ``retention`` job: delete transactional data older than the retention window, like a replay, then VACUUM.

    cqube-spark run retention [--as-of 2020-12-31] [--param sources.crc=30] [--param vacuumHours=168]

* as-of: ``--as-of`` when given, else **today's wall-clock date** (retention is about storage age, the one
  place where the wall clock is the reference; pass ``--as-of`` for reproducible runs);
* per transactional source group (``sources``; ``retentionDays`` is the default, 90): the periods that end
  before ``as_of - days`` are turned into replay requests (whole months of attendance, a date range of CRC
  visits and DIKSHA rollups, the exam codes of PAT/SAT exams held before the cutoff) and executed by the
  replay engine (``kind = retention`` rows in ``meta/replay_log``: same atomic, resumable, tagged deletes);
* periods replayed in the last ``skipReplayedDays`` (5) days are skipped (a state may be re-emitting them);
* gold and outputs are recomputed once at the end; then every Delta table of the lake is VACUUMed with
  ``vacuumHours`` (168 by default, Delta's own default), recorded as a ``kind = vacuum`` row — undo of
  replays older than that window is refused from then on.
"""
from __future__ import annotations

import calendar
import datetime as dt
import json

from pyspark.sql import functions as F

from cqube_spark import storage
from cqube_spark.replay import request as R
from cqube_spark.replay.job import Replayer, delta_exists
from cqube_spark.replay.log import new_row

ATTENDANCE_TABLE = {"student_attendance": "student_attendance", "teacher_attendance": "teacher_attendance"}
DATED_GROUP = {"crc": ("inspection_master", "VisitDate"), "diksha_summary_rollup": ("diksha_summary_rollup", "Date")}
EXAM_GROUP = {"periodic_assessment_test": "periodic_exam_mst", "semester": "semester_exam_mst"}
RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"


def recent_replays(rows: list[dict], since: dt.datetime) -> dict[str, dict]:
    """group → {"months": {"YYYY-MM"}, "first_date": date|None, "codes": {...}} replayed since ``since``."""
    out: dict[str, dict] = {}
    for r in rows:
        if r["kind"] != "replay" or r["status"] in ("REFUSED", "UNDONE") or r["created_at"] < since:
            continue
        resolved = json.loads(r.get("resolved_json") or "{}")
        for p in json.loads(r.get("periods_json") or "[]"):
            g = out.setdefault(p["group"], {"months": set(), "first_date": None, "codes": set()})
            if "month" in p:
                g["months"].add(p["month"])
                first = dt.date.fromisoformat(p["month"] + "-01")
            elif "from_date" in p:
                first = dt.date.fromisoformat(p["from_date"])
            else:
                first = None
                g["codes"] |= set(p.get("codes") or [])
                g["codes"] |= set(resolved.get("exam_codes", {}).get(p["group"], []))
            if first is not None and (g["first_date"] is None or first < g["first_date"]):
                g["first_date"] = first
    return out


def month_end(y: int, m: int) -> dt.date:
    return dt.date(y, m, calendar.monthrange(y, m)[1])


def retention_requests(rp: Replayer, sources: dict[str, int], as_of: dt.date, recent: dict) -> list[dict]:
    """Request documents (the admin form) for everything older than each group's cutoff."""
    docs: list[dict] = []
    for group, days in sorted(sources.items()):
        if not days:
            continue
        cutoff = as_of - dt.timedelta(days=int(days))
        skip = recent.get(group, {"months": set(), "first_date": None, "codes": set()})
        reason = f"retention: older than {cutoff} ({days} days before {as_of})"
        if group in ATTENDANCE_TABLE:
            df = rp.read(f"silver/{ATTENDANCE_TABLE[group]}")
            if df is None:
                continue
            by_year: dict[int, list[int]] = {}
            for r in df.select("year", "month").distinct().collect():
                if r.year is None or r.month is None:
                    continue
                if month_end(r.year, r.month) < cutoff and f"{r.year:04d}-{r.month:02d}" not in skip["months"]:
                    by_year.setdefault(r.year, []).append(r.month)
            for y, ms in sorted(by_year.items()):
                docs.append({group: {"year": str(y), "months": [f"{m:02d}" for m in sorted(ms)]},
                             "requested_by": "retention", "reason": reason})
        elif group in DATED_GROUP:
            table, col = DATED_GROUP[group]
            df = rp.read(f"silver/{table}")
            if df is None:
                continue
            lo = df.agg(F.min(F.to_date(F.col(col)))).collect()[0][0]
            hi = cutoff - dt.timedelta(days=1)
            if skip["first_date"] is not None:
                hi = min(hi, skip["first_date"] - dt.timedelta(days=1))
            if lo is not None and lo <= hi:
                docs.append({group: {"from_date": lo.isoformat(), "to_date": hi.isoformat()},
                             "requested_by": "retention", "reason": reason})
        elif group in EXAM_GROUP:
            df = rp.read(f"silver/{EXAM_GROUP[group]}")
            if df is None:
                continue
            codes = sorted({r[0] for r in df.where(F.col("exam_date") < F.lit(cutoff)).select("exam_code")
                            .distinct().collect() if r[0]} - skip["codes"])
            if codes:
                docs.append({group: {"exam_code": codes}, "requested_by": "retention", "reason": reason})
    return docs


def delta_tables(ctx) -> list[str]:
    """Every Delta table under the lake (roots of ``_delta_log`` folders), sorted."""
    roots = set()
    for uri in ctx.store.list(ctx.roots["lake"]):
        if "/_delta_log/" in uri:
            roots.add(uri.split("/_delta_log/", 1)[0])
    return sorted(roots)


def vacuum(ctx, hours: float) -> dict:
    from delta.tables import DeltaTable

    spark = ctx.spark
    old = spark.conf.get(RETENTION_CHECK, None)
    if hours < 168:
        spark.conf.set(RETENTION_CHECK, "false")
    done = []
    try:
        for root in delta_tables(ctx):
            path = storage.spark_path(root)
            if delta_exists(spark, path):
                DeltaTable.forPath(spark, path).vacuum(float(hours))
                done.append(root)
    finally:
        if old is None:
            spark.conf.unset(RETENTION_CHECK)
        else:
            spark.conf.set(RETENTION_CHECK, old)
    return {"hours": hours, "tables": len(done)}


def run(ctx) -> dict:
    p = ctx.params
    as_of = ctx.as_of or dt.date.today()
    default = int(p.get("retentionDays", 90))
    groups = p.get("sources") or {g: default for g in ("student_attendance", "teacher_attendance", "crc",
                                                        "diksha_summary_rollup", "periodic_assessment_test",
                                                        "semester")}
    sources = {g: (default if d is None else d) for g, d in groups.items()}
    rp = Replayer(ctx)
    counters: dict = {"rows": 0, "as_of": as_of.isoformat(), "resumed": 0, "retention": [], "deleted": {}}

    for row in rp.log.open_replays():            # a crashed pass (or replay) first: deletes stay whole
        row = rp.execute(row, recompute=False)
        counters["resumed"] += 1
        counters["deleted"][row["replay_id"]] = json.loads(row["deleted_json"] or "{}")

    since = dt.datetime.now() - dt.timedelta(days=int(p.get("skipReplayedDays", 5)))
    recent = recent_replays(rp.log.rows(), since)
    docs = retention_requests(rp, sources, as_of, recent)
    for i, doc in enumerate(docs):
        req = R.parse_request(doc, f"retention[{i}]")
        rid = f"rt-{ctx.run_id}-{i}"
        row = rp.new_replay(req, "retention", None, None, rid)
        row = rp.execute(row, recompute=False)
        d = json.loads(row["deleted_json"] or "{}")
        counters["deleted"][rid] = d
        counters["retention"].append({"replay_id": rid, "request": doc})
    counters["rows"] = sum(sum(d.values()) for d in counters["deleted"].values())
    if counters["deleted"]:
        rp.recompute()
    if p.get("vacuum", True):
        hours = float(p.get("vacuumHours", 168))
        v = vacuum(ctx, hours)
        rp.log.upsert(new_row(f"vc-{ctx.run_id}", "vacuum", "DONE", run_id=ctx.run_id, requested_by="retention",
                              deleted_json=json.dumps(v), done_at=dt.datetime.now().replace(microsecond=0)))
        counters["vacuum"] = v
    return counters
