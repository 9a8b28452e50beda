"""The ``kpis`` job: silver → hierarchy → every KPI spec at every level and period → ``lake/gold/<kpi>``.

    cqube-spark run kpis [--as-of 2020-07-31] [--param kpis='["student_attendance"]']

* hierarchy from the silver masters → ``gold/hierarchy`` (school grain) and ``gold/hierarchy_exceptions``;
* per spec (``configs/kpis/<kpi>.yaml``): prep → engine → ``gold/<kpi>`` (overwritten as a whole: every
  period is recomputed from silver each run, so a rerun over the same silver and as-of writes the same rows);
  a KPI whose silver tables do not exist yet is skipped and reported (``skipped``), not failed. Every prep
  runs first (plans only; each silver table is opened once), then ONE Spark job finds every KPI's latest date
  and lineage file names (:func:`engine.facts_summary`), then the KPIs are computed and written side by side;
* ``gold/exceptions_unknown_schools``: schools with data but not in the hierarchy (silver + quarantine).

As-of: ``--as-of`` when given (for every KPI), else each KPI's latest data date. Lineage: school-level gold
rows carry ``source_files`` (the distinct ``_file`` values of the silver rows behind them); higher levels
are sums of school rows with the same period and breakdown.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from pyspark import StorageLevel
from pyspark.sql import Observation, functions as F

from cqube_spark import progress
from cqube_spark.config import ConfigError
from cqube_spark.kpi import engine, hierarchy as H
from cqube_spark.kpi import prep as P
from cqube_spark.kpi.spec import KPI_DIR, load_specs
from cqube_spark.session import PROJECT_ROOT

STATE_FILE = PROJECT_ROOT / "configs" / "state.yaml"


def load_state(path: str | Path = STATE_FILE) -> dict:
    p = Path(path)
    if not p.exists():
        return {"state": {"code": "00", "name": "State"}}
    doc = yaml.safe_load(p.read_text()) or {}
    return doc


def delta_reader(spark, lake):
    from delta.tables import DeltaTable

    def read(*parts: str):
        path = lake(*parts)
        try:
            if DeltaTable.isDeltaTable(spark, path):
                return spark.read.format("delta").load(path)
        except Exception:  # noqa: BLE001 - a missing bucket/prefix is "no table"
            return None
        return None
    return read


def write_gold(df, path: str) -> int:
    """Overwrite a gold table; returns the rows written, counted by the write itself (an observed metric: no
    extra scan, and no read of the table's history after the commit, which cost 0.3-1.8 s a table)."""
    written = Observation()
    (df.observe(written, F.count(F.lit(1)).alias("rows")).write.format("delta").mode("overwrite")
     .option("overwriteSchema", "true").save(path))
    return int(written.get["rows"])


def _project(p: str | None, default: Path) -> Path:
    if not p:
        return default
    path = Path(p)
    return path if path.is_absolute() else PROJECT_ROOT / path


def build_hierarchy(read, state: dict):
    sm = read("school_master")
    if sm is None:
        raise RuntimeError("silver/school_master does not exist: run the intake job on the masters first")
    st = state.get("state") or {}
    return H.build(sm, read("cluster_master"), read("block_master"), read("district_master"),
                   read("school_management"), str(st.get("code", "00")), st.get("name", "State"))


def run(ctx) -> dict:
    spark = ctx.spark
    params = ctx.params
    state = load_state(_project(params.get("stateConfig"), STATE_FILE))
    start_month = int((state.get("state") or {}).get("academic_year_start_month", 6))
    names = params.get("kpis", "all")
    specs = load_specs(_project(params.get("kpiDir"), KPI_DIR), None if names == "all" else list(names))
    silver = delta_reader(spark, lambda *p: ctx.lake("silver", *p))
    quarantine = delta_reader(spark, lambda *p: ctx.lake("quarantine", *p))

    hier = build_hierarchy(silver, state).persist(StorageLevel.MEMORY_AND_DISK)
    dims = {k: v.persist(StorageLevel.MEMORY_AND_DISK) for k, v in H.level_dims(hier).items()}

    results: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    total_rows = 0
    lock, finished = threading.Lock(), []

    for spec in specs:
        if spec.prep not in P.PREPS:
            raise ConfigError(spec.path, "$.prep", f"unknown prep {spec.prep!r}; known: {sorted(P.PREPS)}")
    # 1. every KPI's fact (plans only) and the silver frames its prep read (their _file names are the lineage)
    facts: dict[str, tuple] = {}
    loaded: dict = {}

    def shared(source):
        """Every silver table is opened once for all KPIs."""
        if source not in loaded:
            loaded[source] = silver(source)
        return loaded[source]

    for spec in specs:
        read_frames: dict = {}

        def reading(source, _frames=read_frames):
            _frames[source] = shared(source)
            return _frames[source]
        pc = P.PrepContext(read=reading, hierarchy=hier, dims=dims, options=spec.prep_options,
                           state=state | {"academic_year_start_month": start_month}, spec_path=spec.path)
        try:
            fact = P.PREPS[spec.prep](pc)
        except P.MissingSource as e:
            ctx.log.info("kpi skipped", kpi=spec.name, reason=f"no silver/{e}")
            skipped[spec.name] = f"no silver/{e}"
            continue
        facts[spec.name] = (fact, [f for f in read_frames.values() if f is not None]
                            if "_file" in fact.columns else None)

    def summarise():
        """2. the latest dates and lineage file names of every KPI, in one Spark job."""
        t0 = time.monotonic()
        out = engine.facts_summary(facts, latest=ctx.as_of is None)
        ctx.log.info("kpi facts summarised", kpis=len(facts), seconds=round(time.monotonic() - t0, 2))
        return out

    def one(spec):
        """Compute and write one KPI (once the summary is there)."""
        latest, files = summary.result()[spec.name]
        t0 = time.monotonic()
        fact = facts[spec.name][0]
        cached: list = []
        gold, as_of = engine.compute(spec, fact, hier, dims, ctx.as_of or latest, ctx.run_id, start_month,
                                     cached=cached, files=files)
        rows = write_gold(gold, ctx.lake("gold", spec.name))
        for c in cached:
            c.unpersist()
        result = {"rows": rows, "as_of": str(as_of) if as_of else None, "seconds": round(time.monotonic() - t0, 2)}
        with lock:
            finished.append(spec.name)
            progress.step(f"KPI {len(finished)} of {len(specs)} computed", spec.name)
        ctx.log.info("kpi computed", kpi=spec.name, rows=rows, as_of=str(as_of or ""), seconds=result["seconds"])
        return result

    # 3. the gold tables do not depend on each other: they are written side by side (and the hierarchy's
    # beside the summary), so one's Spark jobs run while the other's plans are being built (planning is much
    # of their time on 2 cores)
    pc = P.PrepContext(read=shared, hierarchy=hier, dims=dims, options={},
                       state=state | {"academic_year_start_month": start_month})
    unknown = P.unknown_schools(pc, shared, quarantine)
    threads = max(1, int(params.get("threads", 2)))
    with ThreadPoolExecutor(threads, thread_name_prefix="kpi") as pool:
        summary = pool.submit(summarise)
        n_schools = pool.submit(write_gold, hier.withColumn("_run_id", F.lit(ctx.run_id)),
                                ctx.lake("gold", "hierarchy"))
        n_exc = pool.submit(write_gold, H.exceptions(hier).withColumn("_run_id", F.lit(ctx.run_id)),
                            ctx.lake("gold", "hierarchy_exceptions"))
        # before the KPIs, which wait for the summary: it needs no summary, so it fills that wait
        n_unknown = (pool.submit(write_gold, unknown.withColumn("_run_id", F.lit(ctx.run_id)),
                                 ctx.lake("gold", "exceptions_unknown_schools")) if unknown is not None else None)
        done = [(spec, pool.submit(one, spec)) for spec in specs if spec.name in facts]
        n_schools, n_exc = n_schools.result(), n_exc.result()
        ctx.log.info("hierarchy built", schools=n_schools, exceptions=n_exc)
        for spec, job in done:
            results[spec.name] = job.result()
            total_rows += results[spec.name]["rows"]
        n_unknown = n_unknown.result() if n_unknown is not None else 0
    for d in dims.values():
        d.unpersist()
    hier.unpersist()
    return {"rows": total_rows, "kpis": results, "skipped": skipped, "schools": n_schools,
            "hierarchy_exceptions": n_exc, "unknown_schools": n_unknown,
            "as_of": str(ctx.as_of) if ctx.as_of else None}
