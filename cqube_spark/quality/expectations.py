"""Great Expectations suites compiled from a source spec, run on Spark (ephemeral context, whole-dataframe batch).

The validated frame is a file's structurally sound rows (no blank line, right column count) with each
column twice: the raw text (``<col>``, NULL tokens already NULL) and the typed value (``__t_<col>``).

A suite holds **one expectation per rule**, ``expect_rule_to_hold`` (:class:`ExpectRuleToHold`, a Great
Expectations batch expectation of this project), whose parameters list every check of that rule in the
spec (:func:`cqube_spark.quality.rules.column_checks`: the column and what the rule needs to know, e.g.
``max_length``) and, as ``suite_checks``, every check of the suite. Its metric, ``cqube.rule_breaks``, takes
``suite_checks``, so Great Expectations computes it **once** per validation for all the suite's expectations:
the batch's rows and each check's breaking rows in one Spark query (:func:`rule_breaks`: a sum per check,
or for suites of hundreds of checks the indexes of the checks each row breaks, counted). Each
expectation's result carries the unexpected count of every check, so :func:`run_suite` reports one result
per (rule, column), with the same counts as the row-level rules (they are built from the same checks):

=====================  ===================================================================
rule                   check (one per column it applies to)
=====================  ===================================================================
mandatory_missing      the raw value is NULL
type_mismatch          a raw value that does not parse as the declared type
max_length             longer than ``max_length``
pattern_mismatch       does not match ``pattern``
out_of_domain          typed value not in ``domain`` / outside ``[min, max]``
invalid_latlong        typed lat outside 6..38 or long outside 68..98 (one check per lat/long pair)
marks_above_max        typed marks above the same row's maximum
=====================  ===================================================================

Why not one built-in expectation per (rule, column), as before: Great Expectations' own work is ~30 ms per
expectation (metric graph, domain resolution, ~100 JVM calls each), so the 707 expectations of the
230-column UDISE school profile took 36-60 s a file whatever its rows; a suite of one expectation per rule
takes well under a second (figures in docs/intake.md). Suites are compiled once per spec and process.

Key uniqueness is not an expectation: repeated keys are not a row-level rule but the dedupe step's business
(identical rows are kept once and counted, conflicting ones quarantined; both counts are in the log summary).
Foreign keys and ``max_from`` maxima need another table and stay with the row-level rules.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from typing import Any, Dict, Optional

from cqube_spark.quality.rules import CHECK_CHUNK, any_of, broken_sql, column_checks
from cqube_spark.quality.spec import SourceSpec

_CONTEXT: Any = None
_SUITES: dict[str, Any] = {}
_LOCK = threading.RLock()
EXPECTATION = "expect_rule_to_hold"
METRIC = "cqube.rule_breaks"


def _gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no usage events leave the machine
    import great_expectations as gx

    for name in ("great_expectations", "great_expectations._docs_decorators"):
        logging.getLogger(name).setLevel(logging.ERROR)
    _register()
    return gx


_REGISTERED: list = []


def _register() -> None:
    """Define (once) the project's expectation and its metric; defining the classes registers them with GE."""
    if _REGISTERED:
        return
    from great_expectations.core.metric_domain_types import MetricDomainTypes
    from great_expectations.execution_engine import SparkDFExecutionEngine
    from great_expectations.expectations.expectation import BatchExpectation
    from great_expectations.expectations.metrics.metric_provider import metric_value
    from great_expectations.expectations.metrics.table_metric_provider import TableMetricProvider

    class RuleBreaks(TableMetricProvider):
        """The batch's rows and the rows breaking each check of the suite, in check order: ``[rows, n0, n1,
        ...]``. Every expectation of a suite asks for it with the same ``suite_checks``, so Great Expectations
        computes it once per validation, in one Spark query (:func:`rule_breaks`)."""

        metric_name = METRIC
        value_keys = ("suite_checks",)

        @metric_value(engine=SparkDFExecutionEngine)
        def _spark(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics,
                   runtime_configuration):
            df, _, _ = execution_engine.get_compute_domain(metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE)
            return rule_breaks(df, metric_value_kwargs["suite_checks"])

    class ExpectRuleToHold(BatchExpectation):
        """Expect no row to break any check of one row-level rule (``checks`` from ``rules.column_checks``;
        they are ``suite_checks[offset:offset + len(checks)]``)."""

        rule: str
        checks: list
        offset: int
        suite_checks: list
        metric_dependencies = (METRIC,)
        success_keys = ("rule", "checks", "offset", "suite_checks")
        args_keys = ("rule", "checks", "offset", "suite_checks")

        def _validate(self, metrics: Dict, runtime_configuration: Optional[dict] = None,
                      execution_engine=None):
            rows, *counts = metrics[METRIC]
            part = counts[self.offset:self.offset + len(self.checks)]
            return {"success": not any(part),
                    "result": {"element_count": rows, "unexpected_counts": part}}

    _REGISTERED.append((RuleBreaks, ExpectRuleToHold))


def context():
    """One ephemeral GE context per process (creating one costs a second)."""
    global _CONTEXT
    with _LOCK:
        if _CONTEXT is None:
            gx = _gx()
            _CONTEXT = gx.get_context(mode="ephemeral")
            try:
                from great_expectations.data_context.types.base import ProgressBarsConfig

                _CONTEXT.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            except Exception:  # noqa: BLE001 - cosmetic only
                pass
    return _CONTEXT


# a suite with more checks than this counts the checks each row breaks (explode) instead of a sum per check
WIDE_SUITE_CHECKS = 200


def rule_breaks(df, checks: list[dict]) -> list[int]:
    """``[rows, n0, n1, ...]``: the frame's rows and how many rows break each check, in one Spark query.

    Up to :data:`WIDE_SUITE_CHECKS` checks: one aggregation with a sum per check (the 1.16M-row attendance
    month, 116 checks: the cheapest). More (the 230-column UDISE files, ~600-720 checks): a sum per check is
    an aggregation ~700 buffers wide that a cold JVM plans and compiles for seconds whatever the rows, so each
    row lists only the indexes of the checks it breaks, in chunks (:data:`rules.CHECK_CHUNK`), plus ``-1``
    for itself, and the indexes are counted (UDISE school profile, 723 checks: 13.4 s → 4.6 s cold, 6.2 s →
    3.2 s warm; scratch bench in docs/intake.md)."""
    broken = [broken_sql(c) for c in checks]
    if len(broken) <= WIDE_SUITE_CHECKS:
        sums = [f"sum(CAST({b} AS BIGINT)) AS c{i}" for i, b in enumerate(broken)]
        row = df.selectExpr("count(1) AS rows", *sums).collect()[0]
        return [int(row["rows"])] + [int(row[f"c{i}"] or 0) for i in range(len(broken))]
    chunks = []
    for at in range(0, len(broken), CHECK_CHUNK):
        part = broken[at:at + CHECK_CHUNK]
        hits = ", ".join(f"CASE WHEN {b} THEN {at + i} END" for i, b in enumerate(part))
        chunks.append(f"CASE WHEN {any_of(part)} THEN array_compact(array({hits})) END")
    none = "CAST(array() AS array<int>)"
    indexes = f"concat(array(-1), {', '.join(f'coalesce({c}, {none})' for c in chunks)})"
    rows = df.selectExpr(f"explode({indexes}) AS i").groupBy("i").count().collect()     # ≤ checks + 1 rows
    found = {int(r["i"]): int(r["count"]) for r in rows}
    return [found.get(-1, 0)] + [found.get(i, 0) for i in range(len(broken))]


def warm_up() -> None:
    """Import Great Expectations and make the process's context ahead of the first validation (the import
    alone is ~6 s of Python; the intake starts it while the Spark session starts)."""
    context()


def rule_checks(spec: SourceSpec) -> dict[str, list[dict]]:
    """rule → its checks, in the order of :func:`rules.column_checks`."""
    out: dict[str, list[dict]] = {}
    for c in column_checks(spec):
        out.setdefault(c["rule"], []).append(c)
    return out


def compile_suite(spec: SourceSpec):
    """The spec's ExpectationSuite (one ``expect_rule_to_hold`` per rule), compiled once per spec and process."""
    checks = rule_checks(spec)
    key = hashlib.sha256(json.dumps([spec.name, checks], sort_keys=True, default=str).encode()).hexdigest()
    with _LOCK:
        if key not in _SUITES:
            gx = _gx()
            context()
            exp_cls = _REGISTERED[0][1]
            every = [c for cs in checks.values() for c in cs]
            offsets, at = {}, 0
            for rule, cs in checks.items():
                offsets[rule], at = at, at + len(cs)
            _SUITES[key] = gx.ExpectationSuite(
                name=spec.name, expectations=[exp_cls(rule=rule, checks=cs, offset=offsets[rule], suite_checks=every,
                                                      meta={"rule": rule})
                                              for rule, cs in checks.items()])
        return _SUITES[key]


def _batch(df, spec: SourceSpec):
    ctx = context()
    name = f"cqube_{spec.name}"
    with _LOCK:   # the ephemeral context's registries are plain dicts: one thread at a time adds to them
        try:
            ds = ctx.data_sources.get(name)
        except (KeyError, ValueError, Exception):  # noqa: BLE001 - GE raises its own not-found errors
            # persist=False: the frame is already cached by the loader; GE's default would cache a second copy
            ds = ctx.data_sources.add_spark(name=name, persist=False)
        try:
            asset = ds.get_asset(spec.name)
        except (LookupError, Exception):  # noqa: BLE001
            asset = ds.add_dataframe_asset(name=spec.name)
        try:
            bd = asset.get_batch_definition("whole")
        except (KeyError, Exception):  # noqa: BLE001
            bd = asset.add_batch_definition_whole_dataframe("whole")
    return bd.get_batch(batch_parameters={"dataframe": df})


def run_suite(df, spec: SourceSpec, suite=None) -> dict:
    """Validate a frame in one Great Expectations round (one Spark aggregation); returns a JSON-able dict:
    success, GE's statistics, and one result per (rule, column) check:
    ``{expectation, rule, column, kwargs, success, element_count, unexpected_count, unexpected_percent,
    exception}``."""
    suite = suite or compile_suite(spec)
    with _LOCK:     # sources validate from several threads; GE's validator is not known to be thread-safe
        res = _batch(df, spec).validate(suite, result_format={"result_format": "BASIC"})
    results = []
    for r in res.results:
        cfg = r.expectation_config
        kw = cfg.kwargs
        failed = isinstance(r.exception_info, dict) and r.exception_info.get("raised_exception")
        out = r.result or {}
        n = out.get("element_count")
        counts = out.get("unexpected_counts") or [None] * len(kw["checks"])
        for check, bad in zip(kw["checks"], counts):
            results.append({
                "expectation": cfg.type, "rule": kw["rule"], "column": check["column"],
                "kwargs": {k: v for k, v in check.items() if k not in ("rule", "column")},
                "success": not failed and bad == 0,
                "element_count": n, "unexpected_count": bad,
                "unexpected_percent": (100.0 * bad / n) if n and bad is not None else (0.0 if n else None),
                "exception": (r.exception_info or {}).get("exception_message") if failed else None,
            })
    return json.loads(json.dumps({"suite": suite.name, "success": bool(res.success),
                                  "statistics": dict(res.statistics or {}), "results": results}, default=str))


def counts_by_rule(result: dict) -> dict[tuple[str, str], int]:
    """(rule, column) → unexpected count, summed over the expectations of that rule and column."""
    out: dict[tuple[str, str], int] = {}
    for r in result["results"]:
        if r["rule"] is None:
            continue
        k = (r["rule"], r["column"])
        out[k] = out.get(k, 0) + int(r["unexpected_count"] or 0)
    return out
