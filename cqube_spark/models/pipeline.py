"""The ``pipeline`` model: intake → kpis → publish → report in one Spark session, then a short summary.

    cqube-spark run pipeline [--as-of 2020-07-31]

Each stage runs with its own job config (``configs/jobs/{intake,kpis,publish,report}.json``, validated like any job
config) under the pipeline's run id, so ``job_runs``, the intake log summary, gold ``_run_id`` and
``metadata.json`` all name the same run. Every stage's config, with its ``stageParams``, is validated before the
first stage runs (a bad ``stageParams.report.scope`` exits 2 before the intake starts). A stage failure stops
the pipeline (later stages do not run on half-made inputs). Each stage also runs alone:
``cqube-spark run intake|kpis|publish|report``.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import sys
import time
from pathlib import Path

from cqube_spark import progress, storage
from cqube_spark.config import apply_params, load_job_config
from cqube_spark.session import PROJECT_ROOT

STAGE_MODULES = {"intake": "cqube_spark.intake.job", "kpis": "cqube_spark.kpi.job",
                 "publish": "cqube_spark.publish.job", "report": "cqube_spark.report.job"}


def _config_path(p: str) -> Path:
    path = Path(p)
    return path if path.is_absolute() else PROJECT_ROOT / path


def stage_config(ctx, stage: str):
    """The stage's own job config (validated), with ``stageParams.<stage>`` applied like ``--param``s."""
    cfg = load_job_config(_config_path(ctx.params.get(stage, f"configs/jobs/{stage}.json")))
    overrides = (ctx.params.get("stageParams") or {}).get(stage) or {}
    if overrides:
        cfg = apply_params(cfg, [f"{k}={json.dumps(v)}" for k, v in sorted(overrides.items())])
    return cfg


def stage_context(ctx, stage: str):
    """The stage's context: its own config under the pipeline's run id, roots, log and session."""
    from cqube_spark.runner import JobContext

    return JobContext(config=stage_config(ctx, stage), run_id=ctx.run_id, as_of=ctx.as_of, log=ctx.log,
                      roots=ctx.roots, store=ctx.store, _spark=ctx.spark)


def quarantined_by_rule(ctx) -> dict[str, int]:
    """Rows quarantined by rule in this run (from the intake's ``meta/log_summary``)."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    path = ctx.lake("meta", "log_summary")
    if not DeltaTable.isDeltaTable(ctx.spark, path):
        return {}
    df = ctx.spark.read.format("delta").load(path)
    if "quarantined_by_rule" not in df.columns:
        return {}
    rows = (df.where(F.col("run_id") == ctx.run_id)
              .select(F.explode("quarantined_by_rule").alias("rule", "n"))
              .groupBy("rule").agg(F.sum("n").alias("n")).collect())
    return {r["rule"]: int(r["n"]) for r in sorted(rows, key=lambda r: r["rule"]) if r["n"]}


def summary_lines(run_id: str, results: dict, timings: dict, rules: dict, roots: dict) -> list[str]:
    out = [f"cqube-spark pipeline — run {run_id}"]
    if "intake" in results:
        i = results["intake"]
        out.append(f"  intake   {timings['intake']:6.1f}s  files in: {i.get('accepted', i.get('files', 0))} loaded, "
                   f"{i.get('rejected', 0)} rejected, {i.get('duplicate_files', 0)} already loaded; "
                   f"rows in: {i.get('rows', 0):,}; quarantined rows: {i.get('quarantined', 0):,}")
        out.append("           quarantined by rule: " + (", ".join(f"{k}={v:,}" for k, v in rules.items())
                                                          or "none"))
    if "kpis" in results:
        k = results["kpis"]
        done = k.get("kpis", {})
        out.append(f"  kpis     {timings['kpis']:6.1f}s  {len(done)} KPIs, {k.get('rows', 0):,} gold rows; "
                   f"{k.get('schools', 0):,} schools in the hierarchy, {k.get('hierarchy_exceptions', 0)} with a "
                   f"missing parent, {k.get('unknown_schools', 0)} unknown schools with data")
        for name, r in sorted(done.items()):
            out.append(f"           {name:<22} {r['rows']:>8,} rows  as-of {r['as_of']}")
        for name, why in sorted(k.get("skipped", {}).items()):
            out.append(f"           {name:<22} skipped ({why})")
    if "publish" in results:
        p = results["publish"]
        out.append(f"  publish  {timings['publish']:6.1f}s  {len(p.get('kpis', {}))} KPIs, {p.get('files', 0):,} files, "
                   f"{p.get('rows', 0):,} rows")
    if "report" in results:
        r = results["report"]
        out.append(f"  report   {timings['report']:6.1f}s  {r.get('files', 0):,} files, "
                   f"{r.get('data_bytes', 0) / 1e6:.1f} MB of data"
                   + (f"; {r['districts']} district copies" if r.get("districts") else ""))
    output = roots.get("output", "")
    out.append("  look at:")
    out.append(f"    {storage.join(output, 'metadata.json')}   (every published file, with KPI, level, period, rows)")
    out.append(f"    {storage.join(output, 'student_attendance', 'last_7_days', 'district.json')}   (for example)")
    if "report" in results:
        out.append(f"    {results['report'].get('index', storage.join(output, 'report', 'index.html'))}   "
                   f"(the report: open it in a browser, offline)")
    out.append(f"    {storage.join(roots.get('lake', ''), 'gold')}/<kpi>   (Delta tables, all levels and periods)")
    out.append(f"    {storage.join(roots.get('lake', ''), 'quarantine')}/<source>   (rejected rows, with rule and reason)")
    return out


def stages_of(ctx) -> list[str]:
    return list(ctx.params.get("stages", list(STAGE_MODULES)))


def warm_up(ctx) -> None:
    """The first stage's warm-up (runner), with that stage's own config."""
    stages = stages_of(ctx)
    if stages:
        module = importlib.import_module(STAGE_MODULES[stages[0]])
        if hasattr(module, "warm_up"):     # a context without a session: the runner is starting it meanwhile
            module.warm_up(dataclasses.replace(ctx, config=stage_config(ctx, stages[0])))


def run(ctx) -> dict:
    stages = stages_of(ctx)
    results: dict[str, dict] = {}
    timings: dict[str, float] = {}
    contexts = {stage: stage_context(ctx, stage) for stage in stages}   # every stage's config checked before any runs
    for stage in stages:
        sctx = contexts[stage]
        module = importlib.import_module(STAGE_MODULES[stage])
        ctx.log.info("stage start", stage=stage)
        progress.stage(stage)
        t0 = time.monotonic()
        results[stage] = module.run(sctx) or {}
        timings[stage] = round(time.monotonic() - t0, 2)
        ctx.log.info("stage end", stage=stage, seconds=timings[stage])
    progress.done()
    rules = quarantined_by_rule(ctx) if "intake" in results else {}
    lines = summary_lines(ctx.run_id, results, timings, rules, ctx.roots)
    print("\n".join(lines), file=sys.stdout, flush=True)
    return {"rows": int(results.get("publish", {}).get("rows", results.get("kpis", {}).get("rows", 0)) or 0),
            "stages": {s: {k: v for k, v in r.items() if not isinstance(v, dict) or k in ("skipped",)}
                       for s, r in results.items()},
            "seconds": timings, "quarantined_by_rule": rules}
