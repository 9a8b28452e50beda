"""Great Expectations suites compiled from a source spec, run on Spark (ephemeral context, whole-dataframe batch).

The validated frame is a file's structurally sound rows (no blank line, right column count) with each
column twice: the raw text (``<col>``, NULL tokens already NULL) and the typed value (``__t_<col>``).

A suite holds **one expectation per rule**, ``expect_rule_to_hold`` (:class:`ExpectRuleToHold`, a Great
Expectations batch expectation of this project), whose parameters list every check of that rule in the
spec (:func:`cqube_spark.quality.rules.column_checks`: the column and what the rule needs to know, e.g.
``max_length``). Its metric, ``cqube.rule_breaks``, is an aggregate partial: Great Expectations bundles it
with the row count into **one** Spark aggregation for the whole suite, whatever the number of columns. Each
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

from cqube_spark.quality.rules import broken_sql, column_checks
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
    from great_expectations.compatibility.pyspark import functions as F
    from great_expectations.core.metric_domain_types import MetricDomainTypes
    from great_expectations.core.metric_function_types import MetricPartialFunctionTypes
    from great_expectations.execution_engine import SparkDFExecutionEngine
    from great_expectations.expectations.expectation import BatchExpectation
    from great_expectations.expectations.metrics.metric_provider import metric_partial
    from great_expectations.expectations.metrics.table_metric_provider import TableMetricProvider

    class RuleBreaks(TableMetricProvider):
        """Rows breaking each check of one rule: a struct ``c0, c1, ...`` of counts (an aggregate partial,
        bundled by Great Expectations with every other aggregate of the batch into one Spark job)."""

        metric_name = METRIC
        value_keys = ("rule", "checks")

        @metric_partial(engine=SparkDFExecutionEngine, partial_fn_type=MetricPartialFunctionTypes.AGGREGATE_FN,
                        domain_type=MetricDomainTypes.TABLE)
        def _spark(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics,
                   runtime_configuration):
            # one SQL expression for the whole struct: a Column per check costs ~10 Python → JVM calls each
            counts = ", ".join(f"'c{i}', sum(CAST({broken_sql(c)} AS BIGINT))"
                               for i, c in enumerate(metric_value_kwargs["checks"]))
            return F.expr(f"named_struct({counts})"), metric_domain_kwargs, {}

    class ExpectRuleToHold(BatchExpectation):
        """Expect no row to break any check of one row-level rule (``checks`` from ``rules.column_checks``)."""

        rule: str
        checks: list
        metric_dependencies = (METRIC, "table.row_count")
        success_keys = ("rule", "checks")
        args_keys = ("rule", "checks")

        def _validate(self, metrics: Dict, runtime_configuration: Optional[dict] = None,
                      execution_engine=None):
            row = metrics.get(METRIC)     # the struct's values in check order (GE hands it over as a list)
            counts = [int((row[i] if row is not None else 0) or 0) for i in range(len(self.checks))]
            return {"success": not any(counts),
                    "result": {"element_count": int(metrics.get("table.row_count") or 0),
                               "unexpected_counts": counts}}

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
            _SUITES[key] = gx.ExpectationSuite(
                name=spec.name, expectations=[exp_cls(rule=rule, checks=cs, meta={"rule": rule})
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
