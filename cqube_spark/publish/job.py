"""The ``publish`` job: gold Delta tables → JSON + CSV files + ``metadata.json``, switched in atomically.

    cqube-spark run publish [--param kpis='["student_attendance"]'] [--param formats='["json"]']

Layout (see docs/outputs.md)::

    <output>/<kpi>/monthly/<YYYY-MM>/<level>.json        month grain
    <output>/<kpi>/<window>/<level>.json                 last_day | last_7_days | last_30_days | overall
    <output>/<kpi>/yearly/<YYYY-YY>/<level>.json         academic year grain
    <output>/<kpi>/weekly/<YYYY-MM-DD>/<level>.json      week grain (the Monday)
    <output>/<kpi>/daily/<YYYY-MM-DD>/<level>.json       day grain
    <output>/<kpi>/<period...>/by_<breakdown>/<level>.json   breakdowns (the total has no by_ folder)
    ... and the same with .csv;  <output>/hierarchy/..., <output>/exceptions/unknown_schools.json
    <output>/metadata.json                                every file: kpi, level, period, as-of, rows; run id/time

Each file is ``{"data": [...], "kpi", "level", "period_type", "period", "breakdown", "as_of", "measures",
"notes"}``; every element has ``<level>_id``, ``<level>_name``, the ids/names of its parents, ``lat``/``lng``
where known, the breakdown values and the KPI's output measures. A gold table of up to ``COLLECT_MAX_ROWS``
rows is fetched in one Spark job and sorted and split into its files in Python; a bigger one is streamed from
Spark in sorted order (``toLocalIterator``: one partition in driver memory at a time). Rows are rendered
deterministically (:mod:`cqube_spark.publish.render`) and staged under ``_runs/<run_id>/``; then
:mod:`cqube_spark.publish.switch` makes the run current in one step.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from functools import reduce
from pathlib import Path

from pyspark.sql import functions as F

from cqube_spark import faults, storage
from cqube_spark.kpi import hierarchy as H
from cqube_spark.kpi.job import delta_reader
from cqube_spark.kpi.spec import KPI_DIR, LEVELS, KpiSpec, load_specs
from cqube_spark.publish import render, switch
from cqube_spark.session import PROJECT_ROOT

PERIOD_DIRS = {"month": "monthly", "academic_year": "yearly", "week": "weekly", "day": "daily"}


def period_path(period_type: str, period: str) -> str:
    if period_type == "window":
        return period
    return f"{PERIOD_DIRS[period_type]}/{period}"


def file_path(kpi: str, period_type: str, period: str, breakdown: str, level: str, ext: str) -> str:
    parts = [kpi, period_path(period_type, period)]
    if breakdown != "total":
        parts.append(f"by_{breakdown}")
    return "/".join(parts + [f"{level}.{ext}"])


def parents(level: str) -> list[str]:
    return list(LEVELS[LEVELS.index(level) + 1:])


def decimals(spec: KpiSpec) -> dict[str, int]:
    d = {r.name: r.round for r in spec.ratios}
    return d


def record_maker(spec: KpiSpec, level: str, bd_cols: tuple[str, ...], dec: dict[str, int]):
    """``row -> the published element`` for one level and breakdown (the names are worked out once per file,
    not once per row)."""
    own = ((f"{level}_id", "id"), (f"{level}_name", "name"))
    up = [f"{p}_{k}" for p in parents(level) for k in ("id", "name")]
    values = [(c, render.DEFAULT_DECIMALS) for c in bd_cols] + \
        [(o, dec.get(o, render.DEFAULT_DECIMALS)) for o in spec.outputs]
    clean = render.clean

    def record(row: dict) -> dict:
        rec = {k: row[src] for k, src in own}
        for c in up:
            rec[c] = row.get(c)
        lat, lng = row.get("lat"), row.get("lng")
        if lat is not None and lng is not None:
            rec["lat"] = clean(lat, 7)
            rec["lng"] = clean(lng, 7)
        for c, d in values:
            rec[c] = clean(row.get(c), d)
        return rec
    return record


def csv_columns(spec: KpiSpec, level: str, bd_cols: tuple[str, ...]) -> list[str]:
    cols = [f"{level}_id", f"{level}_name"]
    for p in parents(level):
        cols += [f"{p}_id", f"{p}_name"]
    return cols + ["lat", "lng", *bd_cols, *spec.outputs]


class Stager:
    """Writes the run's files under ``<output>/_runs/<run_id>/`` and remembers what it wrote."""

    def __init__(self, store: storage.Storage, output: str, run_id: str):
        self.store, self.output, self.run_id = store, output, run_id
        self.prefix = switch.run_prefix(output, run_id)
        self.local = not storage.parse_uri(output).is_s3
        self.files: list[dict] = []

    def put(self, rel: str, data: bytes, meta: dict) -> None:
        if self.local:
            p = Path(storage.parse_uri(storage.join(self.prefix, rel)).key)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        else:
            self.store.write_bytes(storage.join(self.prefix, rel), data)
        self.files.append({"path": rel, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), **meta})


# a gold table of up to this many rows is fetched in ONE Spark job (a collect) and sorted and split into its
# files in Python; a bigger one is streamed in sorted order (toLocalIterator: one partition in driver memory
# at a time, but a sort, a sampling job and a job per partition). The demo's biggest gold table has ~121k rows.
COLLECT_MAX_ROWS = 250_000


def _order_key(columns: list[str]):
    """The sort key of ``orderBy(*columns)`` (ascending, NULLs first) for rows as dicts. Strings compare by
    code point in Python and by UTF-8 bytes in Spark: the same order."""
    return lambda row: tuple([(row[c] is not None, row[c]) for c in columns])


def sorted_rows(df, order: list[str], max_rows: int = COLLECT_MAX_ROWS):
    """The rows of ``df`` as dicts in ``orderBy(*order)`` order: one collect when ``df`` has at most
    ``max_rows`` rows (a bounded fetch, so a big table is never held whole), else streamed from Spark. The
    collected rows are sorted by Spark in their one partition (no sampling job): sorting the demo's 121k SAT
    rows in Python took 6.5-13.6 s of the driver's one Python thread, in the JVM 4.9-5.2 s with the fetch."""
    keys = [F.col(c).asc_nulls_first() for c in order]
    head = df.coalesce(1).sortWithinPartitions(*keys).limit(max_rows + 1).collect()
    if len(head) <= max_rows:
        return [r.asDict() for r in head]
    del head
    it = df.orderBy(*keys).toLocalIterator(prefetchPartitions=True)
    return (r.asDict() for r in it)


def kpi_rows(spec: KpiSpec, gold, max_rows: int = COLLECT_MAX_ROWS):
    """A gold table's published columns, in file order (:func:`sorted_rows`)."""
    parent_cols = [f"{lv}_{k}" for lv in LEVELS[1:] for k in ("id", "name")]
    cols = ["level", "id", "name", *[c for c in parent_cols if c in gold.columns], "lat", "lng",
            "period_type", "period", "breakdown", *spec.breakdown_columns, *spec.outputs, "as_of"]
    order = ["period_type", "period", "breakdown", "level", "id", *spec.breakdown_columns]
    return sorted_rows(gold.select(*cols), order, max_rows)


def publish_kpi(spec: KpiSpec, rows, stager: Stager, formats: list[str]) -> dict:
    """Render one KPI's rows (from :func:`kpi_rows`) into its files, one per period, breakdown and level."""
    bd_of = {b.name: b.columns for b in spec.breakdowns}
    dec = decimals(spec)
    stats = {"files": 0, "rows": 0}
    key, recs, as_of = None, [], None

    def flush():
        if key is None:
            return
        period_type, period, breakdown, level = key
        bd = bd_of.get(breakdown, ())
        meta = {"kpi": spec.name, "level": level, "period_type": period_type, "period": period,
                "breakdown": breakdown, "as_of": as_of, "rows": len(recs)}
        if "json" in formats:
            doc = {"data": recs, "kpi": spec.name, "level": level, "period_type": period_type, "period": period,
                   "breakdown": breakdown, "breakdown_columns": list(bd), "as_of": as_of,
                   "measures": list(spec.outputs), "notes": list(spec.notes)}
            stager.put(file_path(spec.name, period_type, period, breakdown, level, "json"), render.json_bytes(doc),
                       {**meta, "format": "json"})
            stats["files"] += 1
        if "csv" in formats:
            stager.put(file_path(spec.name, period_type, period, breakdown, level, "csv"),
                       render.csv_bytes(csv_columns(spec, level, bd), recs), {**meta, "format": "csv"})
            stats["files"] += 1
        stats["rows"] += len(recs)

    make = None
    for row in rows:
        k = (row["period_type"], row["period"], row["breakdown"], row["level"])
        if k != key:
            flush()
            key, recs = k, []
            as_of = row["as_of"].isoformat() if row["as_of"] else None
            make = record_maker(spec, row["level"], bd_of.get(row["breakdown"], ()), dec)
        recs.append(make(row))
    flush()
    return stats


def publish_table(rows: list[dict], rel: str, doc_meta: dict, stager: Stager, formats: list[str],
                  meta: dict) -> int:
    columns = sorted({k for r in rows for k in r}) if rows else []
    n = 0
    if "json" in formats:
        stager.put(f"{rel}.json", render.json_bytes({"data": rows, **doc_meta}), {**meta, "rows": len(rows),
                                                                                   "format": "json"})
        n += 1
    if "csv" in formats:
        stager.put(f"{rel}.csv", render.csv_bytes(columns, rows), {**meta, "rows": len(rows), "format": "csv"})
        n += 1
    return n


def _clean_rows(df, order: list[str]) -> list[dict]:
    return [{k: render.clean(v, 7) for k, v in r.items()} for r in sorted_rows(df, order)]


def publish_reference(spark, read, stager: Stager, formats: list[str]) -> int:
    """The hierarchy per level, the hierarchy exceptions and the unknown-school exceptions (small tables)."""
    n = 0
    hier = read("hierarchy")
    if hier is not None:
        dims = H.level_dims(hier)
        keep = {level: [f"{level}_id", f"{level}_name", *[f"{p}_{k}" for p in parents(level) for k in ("id", "name")],
                        "lat", "lng"] for level in LEVELS}
        # every level in one Spark job: the level frames side by side, tagged, fetched together
        parts = [dims[level].withColumn("lat", F.round("lat", 7)).withColumn("lng", F.round("lng", 7))
                 .withColumnRenamed("id", f"{level}_id").withColumnRenamed("name", f"{level}_name")
                 .select(F.lit(level).alias("_level"), *keep[level]) for level in LEVELS]
        every = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), parts).collect()
        for level in LEVELS:
            rows = sorted(({k: render.clean(r[k], 7) for k in keep[level]} for r in every if r["_level"] == level),
                          key=_order_key([f"{level}_id"]))
            n += publish_table(rows, f"hierarchy/{level}", {"kind": "hierarchy", "level": level}, stager, formats,
                               {"kpi": "hierarchy", "level": level, "period_type": None, "period": None,
                                "breakdown": "total", "as_of": None})
    exc = read("hierarchy_exceptions")
    if exc is not None:
        rows = _clean_rows(exc.drop("_run_id"), ["school_id"])
        n += publish_table(rows, "hierarchy/exceptions", {"kind": "hierarchy_exceptions",
                                                          "description": "schools whose cluster, block or district "
                                                                         "is missing from its master"},
                           stager, formats, {"kpi": "hierarchy", "level": "school", "period_type": None,
                                             "period": None, "breakdown": "exceptions", "as_of": None})
    unk = read("exceptions_unknown_schools")
    if unk is not None:
        rows = _clean_rows(unk.drop("_run_id"), ["source", "period", "school_id", "origin"])
        n += publish_table(rows, "exceptions/unknown_schools",
                           {"kind": "unknown_schools",
                            "description": "schools with data but not in the hierarchy (silver rows, and rows "
                                           "quarantined for an unknown school)"},
                           stager, formats, {"kpi": "exceptions", "level": "school", "period_type": None,
                                             "period": None, "breakdown": "unknown_schools", "as_of": None})
    return n


def run(ctx) -> dict:
    spark = ctx.spark
    params = ctx.params
    formats = list(params.get("formats", ["json", "csv"]))
    names = params.get("kpis", "all")
    kdir = params.get("kpiDir")
    kdir = (Path(kdir) if Path(kdir).is_absolute() else PROJECT_ROOT / kdir) if kdir else KPI_DIR
    specs = load_specs(kdir, None if names == "all" else list(names))
    gold = delta_reader(spark, lambda *p: ctx.lake("gold", *p))
    output = ctx.roots["output"]
    stager = Stager(ctx.store, output, ctx.run_id)
    published: dict[str, dict] = {}
    kpi_meta: dict[str, dict] = {}
    tables = []
    for spec in specs:
        g = gold(spec.name)
        if g is None:
            ctx.log.info("publish skipped", kpi=spec.name, reason="no gold table")
        else:
            tables.append((spec, g))
    # the next KPI's rows are fetched (a Spark sort and collect) while this one's files are rendered in
    # Python; at most two tables' rows are held at a time
    with ThreadPoolExecutor(1, thread_name_prefix="publish-fetch") as pool:
        fetch = pool.submit(kpi_rows, *tables[0]) if tables else None
        for i, (spec, _g) in enumerate(tables):
            rows = fetch.result()
            fetch = pool.submit(kpi_rows, *tables[i + 1]) if i + 1 < len(tables) else None
            published[spec.name] = publish_kpi(spec, rows, stager, formats)
            del rows
            kpi_meta[spec.name] = {"description": spec.description, "levels": list(spec.rollup_levels),
                                   "measures": list(spec.outputs), "breakdowns": [b.name for b in spec.breakdowns],
                                   "notes": list(spec.notes)}
            ctx.log.info("published", kpi=spec.name, **published[spec.name])
    ref_files = publish_reference(spark, gold, stager, formats)
    generated = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    files = sorted(stager.files, key=lambda f: f["path"])
    meta = {"run_id": ctx.run_id, "generated_at": generated, "as_of": str(ctx.as_of) if ctx.as_of else None,
            "kpis": kpi_meta, "files": files}
    stager.put("metadata.json", render.json_bytes(meta), {"kpi": None, "format": "json"})
    tops = sorted({f["path"].split("/")[0] for f in files} | {"metadata.json"})
    keep = int(params.get("keepRuns", 3))
    faults.point("publish.after_staging")    # the whole run is staged; nothing of it is visible yet
    if stager.local:
        switch.switch_local(output, ctx.run_id, tops, keep)
    else:
        switch.switch_s3(ctx.store, output, ctx.run_id, [f["path"] for f in stager.files], keep)
    n_files = len(files)
    rows = sum(p["rows"] for p in published.values())
    return {"rows": rows, "files": n_files, "kpis": published, "reference_files": ref_files,
            "output": output, "metadata": storage.join(output, "metadata.json"),
            "run_prefix": os.path.relpath(stager.prefix, output) if stager.local else stager.prefix}
