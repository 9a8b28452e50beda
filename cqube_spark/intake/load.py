"""Load one accepted file: parts → bronze → validate (rules + GE) → quarantine → dedupe → overlap → silver MERGE.

Everything for a file is computed from one cached frame (parsed + typed + violations); the per-file counts
come from two aggregations over it. Lake tables: ``bronze/<src>`` (append), ``quarantine/<src>`` (append),
``silver/<src>`` (MERGE on the spec keys; unchanged rows are not rewritten, so a rerun changes nothing).
"""
from __future__ import annotations

import datetime as dt
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cqube_spark import faults
from cqube_spark.quality import dedupe, expectations, rules
from cqube_spark.quality.rules import RAW, VIOLATIONS, ident, safe_name, sql_lit, typed_name
from cqube_spark.quality.spec import SourceSpec
from cqube_spark.sources import attendance, exams

ROW_INDEX_MASK = (1 << 33) - 1   # monotonically_increasing_id: record number within the partition
STRUCTURAL = ("blank_line", "column_count")
# Delta collects min/max/null statistics for the first 32 columns of every file it writes; on wide tables that
# doubles the write (student attendance bronze: 12.1 s → 6.2 s without). Lake tables keep statistics only for
# the columns readers filter on (set when the table is created).
STATS_COLUMNS = "delta.dataSkippingStatsColumns"


_CONF_LOCK = threading.Lock()
_CONF_DEPTH = [0]
_CONF_SAVED: dict = {}


@contextmanager
def loading_conf(spark, max_bytes: int = 1 << 30):
    """Session settings while files are validated and loaded (restored afterwards). Re-entrant: the intake
    sets them once for all its files (sources load side by side, and session settings are shared), and
    :func:`load_file` on its own sets them for itself.

    * every part file is read whole by one task (so position in the partition == position in the part);
    * constraint propagation is off: with ~40 typed columns and the violations array, the optimizer's
      constraint inference (PruneFilters/InferFiltersFromConstraints) explodes on the attendance plan;
    * ANSI mode is off: the rules type values with a plain cast, NULL on bad text (see ``rules.cast_sql``);
    * the file's cached frame is not compressed: it lives for one file, and building it is 30% faster
      (student attendance: 16.7 s → 11.8 s; scans of it 2.8 s → 1.5 s). It spills to disk when memory is short;
    * whole-stage code generation stays on for plans of up to 300 columns (Spark's cut-off is 100): student
      attendance's validated frame (each column raw and typed, ~80 columns) runs its aggregations ~1.5×
      faster with generated code. The 230-column UDISE files (~470 columns) stay interpreted: their
      generated code passes the JVM's 64 KB method limit, and Spark spent seconds compiling it only to fall
      back.
    """
    settings = {"spark.sql.files.maxPartitionBytes": str(max_bytes),
                "spark.sql.files.openCostInBytes": str(max_bytes),
                "spark.sql.constraintPropagation.enabled": "false",
                "spark.sql.ansi.enabled": "false",
                "spark.sql.inMemoryColumnarStorage.compressed": "false",
                "spark.sql.codegen.maxFields": "200"}
    with _CONF_LOCK:
        if _CONF_DEPTH[0] == 0:
            _CONF_SAVED.clear()
            _CONF_SAVED.update({k: spark.conf.get(k, None) for k in settings})
            for k, v in settings.items():
                spark.conf.set(k, v)
        _CONF_DEPTH[0] += 1
    try:
        yield
    finally:
        with _CONF_LOCK:
            _CONF_DEPTH[0] -= 1
            if _CONF_DEPTH[0] == 0:
                for k, v in _CONF_SAVED.items():
                    if v is None:
                        spark.conf.unset(k)
                    else:
                        spark.conf.set(k, v)


def read_lines(spark, parts_uri: str, file_label: str, header: bool) -> DataFrame:
    """Raw lines of one file with their 1-based line numbers (header removed, trailing CR stripped)."""
    df = spark.read.option("lineSep", "\n").text(parts_uri)
    first = F.regexp_extract(F.col("_metadata.file_name"), r"part-([0-9]+)\.csv", 1).cast("long")
    line = first + F.monotonically_increasing_id().bitwiseAND(F.lit(ROW_INDEX_MASK))
    out = df.select(F.lit(file_label).alias("_file"), line.alias("_line"),
                    F.regexp_replace("value", "\r$", "").alias("value"))
    return out.where(F.col("_line") > 1) if header else out


# -- silver shape ---------------------------------------------------------------------------------------

def silver_columns(spec: SourceSpec) -> dict[str, str]:
    """spec column → silver column name (safe names; a derived ``month`` replaces Month/MONTH)."""
    names = {c.name: safe_name(c.name) for c in spec.active_columns}
    if spec.period.get("kind") == "academic_year_month":
        names[spec.period["month"]] = "month"
    return names


def conform(df: DataFrame, spec: SourceSpec, run_id: str, loaded_at: dt.datetime, start_month: int = 6) -> DataFrame:
    """Typed silver rows: spec columns (active only) + derived columns + lineage."""
    names = silver_columns(spec)
    cols = [F.col(typed_name(c.name)).alias(names[c.name]) for c in spec.active_columns]
    out = df.select(*cols, "_file", "_line")
    kind = spec.period.get("kind")
    if kind == "academic_year_month":
        out = attendance.calendar_period(out, safe_name(spec.period["academic_year"]), "month", start_month)
    elif kind == "exam_code":
        out = exams.exam_date_from_code(out, safe_name(spec.period["column"]), spec.period.get("date_offset", 7),
                                        spec.period.get("date_format", "ddMMyyyy"),
                                        out="exam_date" if "exam_date" not in out.columns else "exam_date_from_code")
    return out.withColumn("_run_id", F.lit(run_id)).withColumn("_loaded_at", F.lit(loaded_at).cast("timestamp"))


def silver_keys(spec: SourceSpec) -> list[str]:
    names = silver_columns(spec)
    return [names[k] for k in spec.keys]


@dataclass
class FileResult:
    summary: dict
    validation: dict | None
    steps: dict | None = None      # seconds per step (logged with "file loaded")


class _Steps(dict):
    """Wall seconds per step of a file's load, for the JSON log."""

    def __init__(self):
        super().__init__()
        self._t = time.monotonic()

    def done(self, step: str) -> None:
        now = time.monotonic()
        self[step] = round(now - self._t, 3)
        self._t = now


def _delta_exists(spark, path: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, path)


def merge_silver(spark, path: str, df: DataFrame, spec: SourceSpec) -> dict:
    """MERGE on the keys: insert new keys; update a key only when a value changed (idempotent)."""
    from delta.tables import DeltaTable

    keys = silver_keys(spec)
    if not _delta_exists(spark, path):
        stats = [c for c in keys + ["year", "month", "exam_date"] if c in df.columns]
        df.write.format("delta").mode("append").option(STATS_COLUMNS, ",".join(dict.fromkeys(stats))).save(path)
        return {"inserted": None, "updated": 0}
    table = DeltaTable.forPath(spark, path)
    if not _any_key_exists(table.toDF(), df, keys):
        # none of the file's keys is in silver (a new month, a new school): the MERGE would only insert, so
        # the rows are appended (one write job; a MERGE joins the whole table first)
        df.write.format("delta").mode("append").option("mergeSchema", "true").save(path)
        return {"inserted": None, "updated": 0}
    lineage = {"_file", "_line", "_run_id", "_loaded_at"}
    values = [c for c in df.columns if c not in keys and c not in lineage]
    day_cols = set(attendance_day_columns(spec)) if spec.overlap else set()
    cond = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
    new_val = {c: (f"coalesce(s.`{c}`, t.`{c}`)" if c in day_cols else f"s.`{c}`") for c in values}
    changed = " OR ".join(f"NOT ({new_val[c]} <=> t.`{c}`)" for c in values) or "false"
    update = {f"`{c}`": new_val[c] for c in values}
    update.update({f"`{c}`": f"s.`{c}`" for c in lineage})
    m = (table.alias("t").merge(df.alias("s"), cond)
         .whenMatchedUpdate(condition=changed, set=update).whenNotMatchedInsertAll())
    try:
        m = m.withSchemaEvolution()
    except AttributeError:
        pass
    metrics = m.execute().collect()[0].asDict()      # Delta returns the MERGE's metrics as a one-row frame
    return {"inserted": int(metrics.get("num_inserted_rows", 0) or 0),
            "updated": int(metrics.get("num_updated_rows", 0) or 0)}


def _any_key_exists(target: DataFrame, rows: DataFrame, keys: list[str]) -> bool:
    """Whether any key of ``rows`` is already in ``target`` (NULL-safe, as the MERGE condition)."""
    t = target.select(*[F.col(k).alias(f"__k_{k}") for k in keys])
    cond = [rows[k].eqNullSafe(t[f"__k_{k}"]) for k in keys]
    return bool(rows.select(*keys).join(t, cond, "left_semi").limit(1).collect())


def attendance_day_columns(spec: SourceSpec) -> list[str]:
    names = silver_columns(spec)
    return [names[d] for d in spec.day_columns]


def reference_frames(spark, lake, spec: SourceSpec, memo: dict | None = None
                     ) -> tuple[dict[str, rules.Reference], list[str]]:
    """Lookups for foreign keys and max_from checks from the referenced silver tables (and what was skipped).

    ``memo``: the references already opened in this run, ``{(source, column, key): Reference}``, filled here.
    A run loads a source only after the sources it references (:mod:`cqube_spark.intake.schedule`), so their tables do not
    change while it lasts and each is read, and its keys collected, once per run instead of once per file
    (24 schools, all sources: 103 Spark jobs for key collects → 54). A source's references to itself are
    never kept."""
    refs, skipped = {}, []
    wanted = [(fk["references"]["source"], fk["references"]["column"], None) for fk in spec.foreign_keys]
    wanted += [(c["max_from"]["source"], c["max_from"]["column"], c["max_from"]["key"])
               for c in spec.checks if c.get("max_from")]
    for source, column, key in wanted:
        memo_key = (source, column, tuple(key or ()))
        if memo is not None and memo_key in memo:
            refs[f"{source}.{column}"] = memo[memo_key]
            continue
        path = lake("silver", source)
        if not _delta_exists(spark, path):
            skipped.append(f"{source}.{column}")
            continue
        t = spark.read.format("delta").load(path)
        col = safe_name(column) if safe_name(column) in t.columns else column
        if col not in t.columns:
            skipped.append(f"{source}.{column}")
            continue
        sel = [F.col(col).alias("v")] + [F.col(safe_name(k)).alias(k) for k in (key or [])]
        refs[f"{source}.{column}"] = ref = rules.Reference(t.select(*sel))
        if memo is not None and source != spec.name:
            memo[memo_key] = ref
    return refs, skipped


def file_counts(v: DataFrame, spec: SourceSpec) -> dict:
    """A file's counts from its validated frame: rows, invalid rows, NULLs per active column (structurally
    sound rows) and whether a valid row repeats a key (``count(DISTINCT key)`` < valid rows; NULL key parts
    compare equal, as in the dedupe's grouping) in one Spark job, and only when some row broke a rule, a
    second one for the violations (all, and first per row) by rule. The repeated-key test was a Spark job of
    its own for every file (the dedupe's), and is one only for files where a key repeats."""
    active = [safe_name(c.name) for c in spec.active_columns]
    sound = f"NOT exists({VIOLATIONS}, x -> x.rule IN ({', '.join(map(sql_lit, STRUCTURAL))}))"
    keys = ", ".join(ident(typed_name(k)) for k in spec.keys)
    aggs = ["count(1) AS total", f"sum(CASE WHEN size({VIOLATIONS}) > 0 THEN 1 ELSE 0 END) AS invalid",
            f"count(DISTINCT CASE WHEN size({VIOLATIONS}) = 0 THEN struct({keys}) END) AS valid_keys"]
    aggs += [f"sum(CASE WHEN {ident(c)} IS NULL AND __sound THEN 1 ELSE 0 END) AS null__{i}"
             for i, c in enumerate(active)]
    agg = v.selectExpr("*", f"{sound} AS __sound").selectExpr(*aggs).collect()[0]
    total, invalid = int(agg["total"]), int(agg["invalid"] or 0)
    every, first = {}, {}
    if invalid:
        for r in (v.where(F.size(VIOLATIONS) > 0).select(F.posexplode(VIOLATIONS).alias("pos", "viol"))
                  .groupBy(F.col("viol.rule").alias("rule"))
                  .agg(F.count(F.lit(1)).alias("n"), F.sum(F.when(F.col("pos") == 0, 1).otherwise(0)).alias("first"))
                  .collect()):
            every[r.rule] = int(r.n)
            if r.first:
                first[r.rule] = int(r.first)
    return {"total": total, "invalid": invalid,
            "nulls": {spec.active_columns[i].name: int(agg[f"null__{i}"] or 0) for i in range(len(active))},
            "violations_by_rule": every, "by_rule_rows": first,
            "repeated_keys": int(agg["valid_keys"]) < total - invalid}


def load_file(ctx, spec: SourceSpec, parts_uri: str, file_label: str, meta: dict,
              run_ge: bool = True, start_month: int = 6, references: dict | None = None) -> FileResult:
    """Validate and load one file. ``meta``: tracker fields to copy into the summary (sha256, member...).
    ``references``: the run's memo of referenced tables (:func:`reference_frames`)."""
    spark = ctx.spark
    run_id = ctx.run_id
    started = dt.datetime.now()
    steps = _Steps()
    refs, skipped = reference_frames(spark, ctx.lake, spec, references)
    steps.done("references")
    raw_names = [safe_name(c.name) for c in spec.columns]
    with loading_conf(spark):
        lines = read_lines(spark, parts_uri, file_label, spec.header)
        # The cache holds what varies per row. The file name and run id are constants, added back on top of
        # the cache; the raw line is kept only for rows that broke a rule (quarantine's raw_line). Both were
        # stored once per row: ~290 of ~720 bytes a row for student attendance, which spilled at 10×.
        cached = (rules.validate(lines, spec, refs).drop("_file")
                  .withColumn(RAW, F.when(F.size(VIOLATIONS) > 0, F.col(RAW)))
                  .persist(StorageLevel.MEMORY_AND_DISK))
        v = cached.select(F.lit(file_label).alias("_file"), "*", F.lit(run_id).alias("_run_id"))
        try:
            res = _load_cached(ctx, spec, v, raw_names, file_label, meta, started, skipped, run_ge, lines,
                               start_month, steps)
            res.steps = dict(steps)
            return res
        finally:
            cached.unpersist()


def _load_cached(ctx, spec, v, raw_names, file_label, meta, started, skipped, run_ge, lines,
                 start_month: int = 6, steps: _Steps | None = None) -> FileResult:
    """``lines``: the file's raw lines (not cached: using them reads the file again). The raw text of valid
    rows is not in ``v``, and a conflicting duplicate is a valid row that still goes to quarantine with it."""
    spark, run_id = ctx.spark, ctx.run_id
    # 1. bronze: every row as received (strings) + lineage
    bronze = ctx.lake("bronze", spec.name)
    create_opts = {} if _delta_exists(spark, bronze) else {STATS_COLUMNS: "_file,_line,_run_id"}
    (v.select(*raw_names, "_file", "_line", "_run_id").write.format("delta").mode("append")
     .option("mergeSchema", "true").options(**create_opts).save(bronze))
    steps = steps if steps is not None else _Steps()
    steps.done("bronze")
    faults.point("intake.after_bronze")

    # 2. per-file counts and whether a valid row repeats a key (one aggregation), violations by rule
    counts = file_counts(v, spec)
    total, invalid, nulls = counts["total"], counts["invalid"], counts["nulls"]
    violations_by_rule, by_rule_rows = counts["violations_by_rule"], counts["by_rule_rows"]
    steps.done("counts")

    # 3. Great Expectations on the structurally sound rows (typed frame, cached above)
    validation = None
    if run_ge:
        sound = v.where(~F.exists(VIOLATIONS, lambda x: x.rule.isin(*STRUCTURAL)))
        validation = expectations.run_suite(sound, spec)
        validation.update({"source": spec.name, "file": file_label, "run_id": run_id,
                           "sha256": meta.get("sha256")})
        steps.done("great_expectations")

    # 4. dedupe the valid rows, quarantine rejected + conflicting rows
    valid = v.where(F.size(VIOLATIONS) == 0)
    dup_keys, d, n_dup_keys = None, None, 0
    try:
        if counts["repeated_keys"]:     # only then are the repeated keys found (and their rows ranked)
            dup_keys = dedupe.duplicate_keys(valid, spec).persist(StorageLevel.MEMORY_AND_DISK)
            n_dup_keys = dup_keys.count()
        d = dedupe.mark_duplicates(valid, spec, dup_keys, n_dup_keys)
        if n_dup_keys or any(c["rule"] == "unique_value_per_key" for c in spec.checks):
            d = d.persist(StorageLevel.MEMORY_AND_DISK)
            dup_counts = {r["_dup"]: int(r["count"]) for r in d.groupBy("_dup").count().collect()}
        else:   # no key repeats: every valid row is kept, nothing to rank or count again
            dup_counts = {"keep": total - invalid}
        conflicts = dup_counts.get("conflict", 0)
        quarantined = invalid + conflicts
        steps.done("dedupe")
        if quarantined:
            q = v.where(F.size(VIOLATIONS) > 0)
            if conflicts:
                conflicting = d.where(F.col("_dup") == "conflict").drop("_dup", RAW)
                raw = lines.select("_line", F.col("value").alias(RAW))
                q = q.unionByName(conflicting.join(raw, "_line", "left"))
            first = F.col(VIOLATIONS)[0]
            (q.select(*raw_names, "_file", "_line", "_run_id", first["rule"].alias("rule"),
                      first["column"].alias("column"), first["reason"].alias("reason"),
                      F.col(RAW).alias("raw_line"), F.col(VIOLATIONS).alias("violations"))
             .write.format("delta").mode("append").option("mergeSchema", "true")
             .save(ctx.lake("quarantine", spec.name)))
            if conflicts:
                by_rule_rows["duplicate_conflict"] = by_rule_rows.get("duplicate_conflict", 0) + conflicts
                violations_by_rule["duplicate_conflict"] = violations_by_rule.get("duplicate_conflict", 0) + conflicts
            steps.done("quarantine")
            faults.point("intake.after_quarantine")

        # 5. silver: conform, overlap (attendance), MERGE
        loaded_at = dt.datetime.now().replace(microsecond=0)
        silver = conform(d.where(F.col("_dup") == "keep"), spec, run_id, loaded_at, start_month)
        path = ctx.lake("silver", spec.name)
        overlap_ignored = 0
        if spec.overlap:
            names = silver_columns(spec)
            key = [names[k] for k in spec.overlap["key"]]
            days = attendance_day_columns(spec)
            last = (attendance.last_loaded_day(spark.read.format("delta").load(path), key, days)
                    if _delta_exists(spark, path) else None)
            silver = attendance.apply_overlap(silver, last, key, days)
            if last is not None:
                silver = silver.persist(StorageLevel.MEMORY_AND_DISK)
                overlap_ignored = int(silver.agg(F.sum("_overlap_ignored")).collect()[0][0] or 0)
            silver = silver.drop("_overlap_ignored")
        processed = dup_counts.get("keep", 0)
        merged = merge_silver(spark, path, silver, spec)
        steps.done("silver")
        faults.point("intake.after_silver")
        if merged["inserted"] is None:
            merged["inserted"] = processed
    finally:
        for frame in (d, dup_keys):
            if frame is not None:
                frame.unpersist()
    ended = dt.datetime.now()
    summary = {
        "source": spec.name, "file": file_label, "run_id": run_id, **meta,
        "status": "loaded",
        "total_rows": total,
        "blank_lines": violations_by_rule.get("blank_line", 0),
        "column_count_errors": violations_by_rule.get("column_count", 0),
        "duplicates_identical": dup_counts.get("identical", 0),
        "duplicate_conflicts": conflicts,
        "type_mismatches": violations_by_rule.get("type_mismatch", 0),
        "nulls": nulls,
        "quarantined_rows": quarantined,
        "quarantined_by_rule": dict(sorted(by_rule_rows.items())),
        "violations_by_rule": dict(sorted(violations_by_rule.items())),
        "overlap_ignored": overlap_ignored,
        "processed_rows": processed,
        "inserted_rows": merged["inserted"], "updated_rows": merged["updated"],
        "inactive_columns": spec.inactive_columns,
        "skipped_checks": [f"unknown_foreign_key:{s} (table not loaded yet)" for s in skipped],
        "ge_success": validation["success"] if validation else None,
        "start_time": started.isoformat(timespec="seconds"), "end_time": ended.isoformat(timespec="seconds"),
        "duration_s": round((ended - started).total_seconds(), 3),
    }
    return FileResult(summary, validation)
