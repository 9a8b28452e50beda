"""The ``replay`` job: validated deletion requests → Delta DELETEs → recomputed gold and outputs.

    cqube-spark run replay [--request FILE] [--as-of D]
    cqube-spark replay list | undo <replay_id> [--force]

Requests come from ``--request FILE`` (``--param request=FILE``) and from ``<emission>/data_replay/*.json``
(moved to ``_done/`` or to ``_refused/`` with a ``.reason.json`` once handled). For each request:

1. validate and plan (:mod:`cqube_spark.replay.request`); a refused request deletes nothing and is recorded
   (``REFUSED``) in ``meta/replay_log`` and ``<output>/data_replay/``;
2. resolve against the lake (exam codes of the selected semesters, the files whose rows go) and record a
   ``PLANNED`` row with every target table's current Delta version (the undo point);
3. one Delta DELETE per table (silver, bronze, quarantine of each source; then file_tracker), each atomic,
   each tagged with the replay id in the commit's ``userMetadata``: a rerun finds the tagged commit in the
   table's history and does not delete (or count) twice;
4. recompute gold and republish through the ``kpis`` and ``publish`` jobs (publication switches atomically,
   so readers see the old outputs or the new ones; every period is recomputed from silver, and deterministic
   outputs keep untouched periods byte-identical);
5. mark ``DONE``. A crash leaves the row ``PLANNED``/``RUNNING``; the next ``replay`` run resumes it first.

Undo (``cqube-spark replay undo <id>``) RESTOREs each table to its recorded version and republishes; it is
refused when the replay is not DONE, when a table changed after the replay (unless ``--force``), or when a
VACUUM has removed the files of the recorded version (past the retention window).
"""
from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os

from pyspark.sql import functions as F

from cqube_spark import safenames, storage
from cqube_spark.replay import request as R
from cqube_spark.replay.log import ReplayLog, new_row

LAYERS = ("silver", "bronze", "quarantine")
TRACKER = "meta/file_tracker"
USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
REQUEST_DIR = "data_replay"


class ReplayFailure(RuntimeError):
    pass


class InjectedFailure(RuntimeError):
    """Raised by the ``failAfterTables`` test hook (simulates a crash in the middle of a replay)."""


# --------------------------------------------------------------------------------------------- Delta helpers

def delta_exists(spark, path: str) -> bool:
    from delta.tables import DeltaTable

    try:
        return DeltaTable.isDeltaTable(spark, path)
    except Exception:  # noqa: BLE001 - a missing prefix is "no table"
        return False


def current_version(spark, path: str) -> int | None:
    from delta.tables import DeltaTable

    if not delta_exists(spark, path):
        return None
    return int(DeltaTable.forPath(spark, path).history(1).select("version").collect()[0][0])


def tagged_commit(spark, path: str, tag: str, after: int | None) -> dict | None:
    """The commit of this table made by ``tag`` (userMetadata) after version ``after``, if any."""
    from delta.tables import DeltaTable

    h = DeltaTable.forPath(spark, path).history()
    if after is not None:
        h = h.where(F.col("version") > F.lit(after))
    rows = (h.where(F.col("userMetadata") == F.lit(tag)).orderBy(F.col("version").desc())
            .select("version", "operation", "operationMetrics").limit(1).collect())
    return rows[0].asDict() if rows else None


class tagged:
    """Context manager: every Delta commit inside carries ``userMetadata = tag``."""

    def __init__(self, spark, tag: str):
        self.spark, self.tag = spark, tag

    def __enter__(self):
        self.old = self.spark.conf.get(USER_METADATA, None)
        self.spark.conf.set(USER_METADATA, self.tag)

    def __exit__(self, *exc):
        if self.old is None:
            self.spark.conf.unset(USER_METADATA)
        else:
            self.spark.conf.set(USER_METADATA, self.old)


def table_keys(req: R.ReplayRequest) -> list[str]:
    """Every lake table a request touches, in deletion order (silver first, file_tracker last)."""
    keys = [f"{layer}/{t}" for t in req.tables() for layer in LAYERS]
    return keys + [TRACKER]


# --------------------------------------------------------------------------------------------- the engine

class Replayer:
    """Plans, executes, resumes and undoes replays against one lake (a job context's roots)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.spark = ctx.spark
        self.log = ReplayLog(ctx)
        self.start_month = int(ctx.params.get("academicYearStartMonth", 6))
        self.fail_after = ctx.params.get("failAfterTables")
        self._deleted_in_run = 0

    def path(self, key: str) -> str:
        return self.ctx.lake(*key.split("/"))

    def read(self, key: str):
        p = self.path(key)
        return self.spark.read.format("delta").load(p) if delta_exists(self.spark, p) else None

    # -- planning ---------------------------------------------------------------------------------------
    def resolve(self, req: R.ReplayRequest) -> dict:
        """Facts the predicates need that only the lake knows, fixed before anything is deleted."""
        resolved: dict = {"exam_codes": {}, "exam_ids": {}, "files": {}, "lineage": {}}
        for g, mst in (("semester", "semester_exam_mst"), ("periodic_assessment_test", "periodic_exam_mst")):
            if g not in req.groups:
                continue
            df = self.read(f"silver/{mst}")
            target = next(t for t in R.plan(req, {}, self.start_month) if t.table == mst)
            if df is None:
                resolved["exam_codes"][g], resolved["exam_ids"][g] = [], []
                continue
            rows = df.where(target.typed).select("exam_code", "exam_id").distinct().collect()
            resolved["exam_codes"][g] = sorted({r.exam_code for r in rows if r.exam_code})
            resolved["exam_ids"][g] = sorted({str(r.exam_id) for r in rows if r.exam_id is not None})
        for t in R.plan(req, resolved, self.start_month):
            files: set[str] = set()
            silver = self.read(f"silver/{t.table}")
            if silver is not None and "_file" in silver.columns:
                # one pass: per file, does any / does every row go?
                hit_i = F.when(t.typed, 1).otherwise(0)
                per_file = (silver.groupBy("_file").agg(F.max(hit_i).alias("any"), F.min(hit_i).alias("all"))
                            .where(F.col("any") == 1).collect())
                hit = {r["_file"] for r in per_file}
                resolved["lineage"][t.table] = [] if t.full else sorted(r["_file"] for r in per_file
                                                                        if r["all"] == 1 and r["_file"])
                files |= hit
            for layer in ("bronze", "quarantine"):
                df = self.read(f"{layer}/{t.table}")
                if df is not None and "_file" in df.columns:
                    files |= {r[0] for r in df.where(t.raw).select("_file").distinct().collect()}
            resolved["files"][t.table] = sorted(f for f in files if f)
        return resolved

    def versions(self, req: R.ReplayRequest) -> dict:
        return {k: current_version(self.spark, self.path(k)) for k in table_keys(req)}

    def new_replay(self, req: R.ReplayRequest, kind: str, request_file: str | None, sha: str | None,
                   replay_id: str) -> dict:
        resolved = self.resolve(req)
        who = req.requested_by or os.environ.get("CQUBE_USER") or _user()
        row = new_row(replay_id, kind, "PLANNED", requested_by=who, reason=req.reason, request_file=request_file,
                      request_sha256=sha, request_json=req.to_json(), resolved_json=json.dumps(resolved, sort_keys=True),
                      versions_json=json.dumps(self.versions(req), sort_keys=True), post_versions_json="{}",
                      deleted_json="{}", periods_json=json.dumps(R.periods(req), sort_keys=True),
                      run_id=self.ctx.run_id)
        self.log.upsert(row)
        self.ctx.log.info("replay planned", replay_id=replay_id, sources=sorted(req.groups), who=who)
        return row

    # -- execution --------------------------------------------------------------------------------------
    def execute(self, row: dict, recompute: bool = True) -> dict:
        """Run (or resume) a PLANNED/RUNNING replay to DONE. Idempotent."""
        from delta.tables import DeltaTable

        rid = row["replay_id"]
        req = R.ReplayRequest.from_json(row["request_json"])
        resolved = json.loads(row["resolved_json"] or "{}")
        versions = json.loads(row["versions_json"] or "{}")
        post = json.loads(row["post_versions_json"] or "{}")
        deleted = json.loads(row["deleted_json"] or "{}")
        row.update(status="RUNNING", run_id=self.ctx.run_id, error=None)
        self.log.upsert(row)
        targets = R.plan(req, resolved, self.start_month)
        tag = f"replay:{rid}"
        preds = {}
        for t in targets:
            preds[f"silver/{t.table}"] = t.typed
            preds[f"bronze/{t.table}"] = t.raw
            preds[f"quarantine/{t.table}"] = t.raw
        tracker = [t.tracker for t in targets]
        preds[TRACKER] = R._any(tracker)
        try:
            for key in table_keys(req):
                path = self.path(key)
                if key in deleted or versions.get(key) is None or not delta_exists(self.spark, path):
                    continue
                done = tagged_commit(self.spark, path, tag, versions.get(key))
                if done is None:
                    with tagged(self.spark, tag):
                        DeltaTable.forPath(self.spark, path).delete(preds[key])
                    done = tagged_commit(self.spark, path, tag, versions.get(key))
                metrics = (done or {}).get("operationMetrics") or {}
                deleted[key] = int(metrics.get("numDeletedRows", 0) or 0)
                post[key] = int(done["version"]) if done else current_version(self.spark, path)
                row.update(deleted_json=json.dumps(deleted, sort_keys=True),
                           post_versions_json=json.dumps(post, sort_keys=True))
                # progress: the cheap metadata file per table (the Delta row at each state change; on resume,
                # the tagged commits in each table's history are the truth)
                self.log.write_metadata(row)
                self.ctx.log.info("replay deleted", replay_id=rid, table=key, rows=deleted[key])
                self._deleted_in_run += 1
                if self.fail_after is not None and self._deleted_in_run >= int(self.fail_after):
                    raise InjectedFailure(f"failAfterTables={self.fail_after}: stopping replay {rid} after {key}")
            if recompute:
                self.recompute()
        except Exception as e:
            row.update(error=f"{type(e).__name__}: {str(e).splitlines()[0][:500] if str(e) else ''}")
            try:
                self.log.upsert(row)        # still RUNNING: the next run resumes it
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
            raise
        row.update(status="DONE", done_at=dt.datetime.now().replace(microsecond=0), error=None)
        self.log.upsert(row)
        self.ctx.log.info("replay done", replay_id=rid, deleted=deleted)
        return row

    def recompute(self) -> dict:
        """Gold and published outputs from the current silver (kpis + publish jobs, this run's id)."""
        from cqube_spark.models.pipeline import stage_context

        if not self.ctx.params.get("recompute", True):
            return {}
        if not delta_exists(self.spark, self.ctx.lake("silver", "school_master")):
            self.ctx.log.info("recompute skipped", reason="no silver/school_master")
            return {}
        import importlib

        out = {}
        for stage, module in (("kpis", "cqube_spark.kpi.job"), ("publish", "cqube_spark.publish.job")):
            sctx = stage_context(self.ctx, stage)
            out[stage] = importlib.import_module(module).run(sctx) or {}
        return out

    # -- undo -------------------------------------------------------------------------------------------
    def undo(self, replay_id: str, force: bool = False) -> dict:
        from delta.tables import DeltaTable

        row = self.log.get(replay_id)
        if row is None:
            raise ReplayFailure(f"unknown replay {replay_id!r} (see `cqube-spark replay list`)")
        if row["status"] not in ("DONE", "UNDOING"):
            raise ReplayFailure(f"replay {replay_id} is {row['status']}, not DONE: only a completed replay can be "
                                f"undone" + (" (run `cqube-spark run replay` to complete it first)"
                                             if row["status"] in ("PLANNED", "RUNNING") else ""))
        versions = json.loads(row["versions_json"] or "{}")
        post = json.loads(row["post_versions_json"] or "{}")
        vac = self.vacuumed_since(row)
        if vac:
            raise ReplayFailure(f"replay {replay_id} cannot be undone: the files of its previous version were "
                                f"removed by VACUUM ({vac}); past the retention window")
        if row["status"] == "DONE" and not force:
            for key, v in sorted(post.items()):
                now = current_version(self.spark, self.path(key))
                if now != v:
                    raise ReplayFailure(f"replay {replay_id} cannot be undone safely: {key} changed after the replay "
                                        f"(version {v} → {now}); undo --force restores it anyway and drops the "
                                        f"later changes")
        row.update(status="UNDOING", error=None)
        self.log.upsert(row)
        restored = {}
        for key, v in sorted(versions.items()):
            if v is None or key not in post:
                continue
            try:
                DeltaTable.forPath(self.spark, self.path(key)).restoreToVersion(int(v))
            except Exception as e:  # noqa: BLE001 - reported with the table and version
                raise ReplayFailure(f"replay {replay_id}: RESTORE of {key} to version {v} failed "
                                    f"(past the retention window?): {str(e).splitlines()[0][:300]}") from None
            restored[key] = int(v)
        self.recompute()
        row.update(status="UNDONE", undone_at=dt.datetime.now().replace(microsecond=0))
        self.log.upsert(row)
        self.ctx.log.info("replay undone", replay_id=replay_id, restored=restored)
        return {"replay_id": replay_id, "restored": restored}

    def vacuumed_since(self, row: dict) -> str | None:
        done = row.get("done_at")
        if done is None:
            return None
        for v in self.log.rows(F.col("kind") == F.lit("vacuum")):
            d = json.loads(v.get("deleted_json") or "{}")
            hours = float(d.get("hours", 168))
            if v["created_at"] >= done and v["created_at"] - dt.timedelta(hours=hours) >= done:
                return f"{v['replay_id']} at {v['created_at']:%Y-%m-%d %H:%M}, retention {hours:g} h"
        return None


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return "unknown"


# --------------------------------------------------------------------------------------------- requests

def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def replay_id_for(run_id: str, i: int) -> str:
    """``rp-<run_id>-<i>``: becomes a file name under ``<output>/data_replay/``, so the run id is checked."""
    return f"rp-{safenames.segment(run_id, 'run_id')}-{i}"


def _refuse(ctx, rp: Replayer, uri: str | None, data: bytes, err: Exception, rid: str) -> None:
    rp.log.upsert(new_row(rid, "refused", "REFUSED", request_file=uri, request_sha256=_sha(data),
                          request_json=data.decode("utf-8", "replace")[:100000], error=str(err),
                          run_id=ctx.run_id, requested_by=os.environ.get("CQUBE_USER") or _user()))
    ctx.log.warning("replay request refused", file=uri, error=str(err))


def _move(ctx, uri: str, folder: str, reason: dict | None = None) -> str:
    base = storage.join(ctx.roots["emission"], REQUEST_DIR, folder)
    name = safenames.segment(uri.rstrip("/").rsplit("/", 1)[-1], "request file name", 200)
    dest = safenames.within(base, storage.join(base, f"{safenames.segment(ctx.run_id, 'run_id')}_{name}"),
                            "request file name")
    ctx.store.move(uri, dest)
    if reason is not None:
        ctx.store.write_bytes(dest + ".reason.json", (json.dumps(reason, indent=2, sort_keys=True) + "\n").encode())
    return dest


def pending_requests(ctx) -> list[str]:
    base = storage.join(ctx.roots["emission"], REQUEST_DIR)
    return sorted(u for u in ctx.store.list(base, recursive=False) if u.lower().endswith(".json"))


def run(ctx) -> dict:
    from cqube_spark.config import ConfigError

    rp = Replayer(ctx)
    if ctx.params.get("undo"):
        try:
            safenames.segment(str(ctx.params["undo"]), "undo (replay id)")
            out = rp.undo(str(ctx.params["undo"]), bool(ctx.params.get("force", False)))
        except safenames.UnsafeName as e:
            raise ConfigError("replay undo", "--param undo", str(e)) from None
        except ReplayFailure as e:
            raise ConfigError("replay undo", str(ctx.params["undo"]), str(e)) from None
        return {"rows": 0, **out}
    counters = {"rows": 0, "resumed": 0, "done": [], "refused": [], "deleted": {}}

    def account(row):
        d = json.loads(row["deleted_json"] or "{}")
        counters["rows"] += sum(d.values())
        counters["deleted"][row["replay_id"]] = d
        counters["done"].append(row["replay_id"])

    # 1. finish what a crash left behind (idempotent), before anything new
    for row in rp.log.open_replays():
        ctx.log.info("replay resumed", replay_id=row["replay_id"], status=row["status"])
        counters["resumed"] += 1
        account(rp.execute(row))

    # 2. new requests: --request FILE, then <emission>/data_replay/*.json
    handled = {r["request_sha256"]: r for r in rp.log.rows(F.col("kind") == F.lit("replay"))}
    sources: list[tuple[str, bool]] = []
    if ctx.params.get("request"):
        sources.append((str(ctx.params["request"]), False))
    sources += [(u, True) for u in pending_requests(ctx)]
    for i, (uri, from_emission) in enumerate(sources):
        rid = replay_id_for(ctx.run_id, i)
        try:
            data = ctx.store.read_bytes(uri) if ctx.store.exists(uri) else None
        except OSError:
            data = None
        if data is None:
            raise ConfigError("--request", uri, "file not found")
        sha = _sha(data)
        if from_emission and sha in handled and handled[sha]["request_file"] == uri:
            _move(ctx, uri, "_done")      # planned by a run that crashed before moving the file: already done
            continue
        try:
            req = R.load_request(data, uri)
        except R.RequestError as e:
            _refuse(ctx, rp, uri, data, e, rid)
            counters["refused"].append({"file": uri, "error": str(e)})
            if from_emission:
                _move(ctx, uri, "_refused", {"file": uri, "error": str(e), "replay_id": rid, "run_id": ctx.run_id})
            continue
        row = rp.new_replay(req, "replay", uri, sha, rid)
        if from_emission:
            _move(ctx, uri, "_done")
        account(rp.execute(row))
    if not counters["done"] and not counters["refused"]:
        ctx.log.info("no replay requests", folder=storage.join(ctx.roots["emission"], REQUEST_DIR))
    if ctx.params.get("request") and counters["refused"] and not counters["done"]:
        err = counters["refused"][0]["error"]
        raise ConfigError("--request", ctx.params["request"], "request refused, nothing deleted: " + err)
    return counters
