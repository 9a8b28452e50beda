"""Great Expectations suites compiled from a source spec, run on Spark (ephemeral context, whole-dataframe batch).

The validated frame is a file's structurally sound rows (no blank line, right column count) with each
column twice: the raw text (``<col>``, NULL tokens already NULL) and the typed value (``__t_<col>``).
:func:`run_suite` adds ``__parsed_<col>`` for each typed column: 1 when the value is missing or parses as the
declared type, NULL on a type mismatch. Each expectation mirrors one row-level rule, so its
``unexpected_count`` equals the rule's count for that column:

=====================  ===================================================================
rule                   expectation
=====================  ===================================================================
mandatory_missing      expect_column_values_to_not_be_null(<col>)
type_mismatch          expect_column_values_to_not_be_null(__parsed_<col>)
max_length             expect_column_value_lengths_to_be_between(<col>, max_value=max_length)
pattern_mismatch       expect_column_values_to_match_regex(<col>, pattern)
out_of_domain          expect_column_values_to_be_in_set(__t_<col>, domain) / _to_be_between(min, max)
invalid_latlong        expect_column_values_to_be_between(__t_lat, 6, 38) and (__t_long, 68, 98)
marks_above_max        expect_column_pair_values_a_to_be_greater_than_b(max, marks) (same-row maximum)
=====================  ===================================================================

Key uniqueness is not an expectation: repeated keys are not a row-level rule but the dedupe step's business
(identical rows are kept once and counted, conflicting ones quarantined; both counts are in the log summary).
As an expectation it failed every file with harmless identical duplicates, and Great Expectations computes it
with a window over the keys plus two more scans (student attendance: 2.2 s of a 12.4 s suite at 1.2M rows,
18.3 s of 82.1 s at 11.6M).

Every expectation has the same domain (the whole frame, no row condition), so Great Expectations computes
all of their metrics in a handful of Spark aggregations. (A row condition per type check made it one
domain, and four Spark jobs, per column: 140 jobs for student attendance.)

The suite runs in two rounds. The first is ``BOOLEAN_ONLY``: the aggregations only, no per-expectation
"partial unexpected list" query (in ``BASIC`` each of those is one more planned query on the wide frame:
114 of them cost ~11 s for student attendance, even with a list length of 0). Every expectation here is
all-or-nothing (no ``mostly``), so success means an unexpected count of 0 and the element count is the
frame's row count. Only the expectations that failed are validated again in ``BASIC`` to get Great
Expectations' own counts; a clean file pays for one round. A file whose row-level rules already found bad
rows goes straight to one ``BASIC`` round.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any

from cqube_spark.quality.rules import INDIA_LAT, INDIA_LON, safe_name, typed_name
from cqube_spark.quality.spec import SourceSpec

_CONTEXT: Any = None


def _gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no usage events leave the machine
    import great_expectations as gx

    for name in ("great_expectations", "great_expectations._docs_decorators"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return gx


def context():
    """One ephemeral GE context per process (creating one costs a second)."""
    global _CONTEXT
    if _CONTEXT is None:
        gx = _gx()
        _CONTEXT = gx.get_context(mode="ephemeral")
        try:
            from great_expectations.data_context.types.base import ProgressBarsConfig

            _CONTEXT.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        except Exception:  # noqa: BLE001 - cosmetic only
            pass
    return _CONTEXT


def parsed_name(name: str) -> str:
    return "__parsed_" + safe_name(name)


def with_parsed_flags(df, spec: SourceSpec):
    """Adds ``__parsed_<col>`` (1 when missing or typed, NULL on a type mismatch) for each typed column."""
    from pyspark.sql import functions as F

    flags = [F.when(F.col(safe_name(c.name)).isNull() | F.col(typed_name(c.name)).isNotNull(), F.lit(1))
             .alias(parsed_name(c.name)) for c in spec.active_columns if c.type != "string"]
    return df.select("*", *flags)


def rule_of(expectation_type: str, kwargs: dict) -> str:
    return kwargs.get("meta_rule") or expectation_type


def compile_suite(spec: SourceSpec):
    """An ExpectationSuite for a spec; every expectation carries ``meta = {rule, column}``."""
    gx = _gx()
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=f"{spec.name}")
    latlong = {c for chk in spec.checks if chk["rule"] == "latlong_valid" for c in chk.get("columns", [])}

    def add(exp, rule: str, column: str):
        exp.meta = {"rule": rule, "column": column}
        suite.add_expectation(exp)

    for c in spec.active_columns:
        raw, typed = safe_name(c.name), typed_name(c.name)
        if c.mandatory:
            add(gxe.ExpectColumnValuesToNotBeNull(column=raw), "mandatory_missing", c.name)
        if c.type != "string":
            add(gxe.ExpectColumnValuesToNotBeNull(column=parsed_name(c.name)), "type_mismatch", c.name)
        if c.max_length:
            add(gxe.ExpectColumnValueLengthsToBeBetween(column=raw, max_value=c.max_length), "max_length", c.name)
        if c.pattern:
            add(gxe.ExpectColumnValuesToMatchRegex(column=raw, regex=c.pattern), "pattern_mismatch", c.name)
        if c.domain is not None:
            add(gxe.ExpectColumnValuesToBeInSet(column=typed, value_set=list(c.domain)), "out_of_domain", c.name)
        if (c.min is not None or c.max is not None) and c.name not in latlong:
            add(gxe.ExpectColumnValuesToBeBetween(column=typed, min_value=c.min, max_value=c.max),
                "out_of_domain", c.name)
    for chk in spec.checks:
        if chk["rule"] == "latlong_valid":
            lat, lon = chk["columns"][:2]
            add(gxe.ExpectColumnValuesToBeBetween(column=typed_name(lat), min_value=INDIA_LAT[0],
                                                  max_value=INDIA_LAT[1]), "invalid_latlong", lat)
            add(gxe.ExpectColumnValuesToBeBetween(column=typed_name(lon), min_value=INDIA_LON[0],
                                                  max_value=INDIA_LON[1]), "invalid_latlong", lon)
        elif chk["rule"] == "marks_not_above_max" and chk.get("max_column"):
            add(gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A=typed_name(chk["max_column"]),
                                                            column_B=typed_name(chk["column"]), or_equal=True,
                                                            ignore_row_if="either_value_is_missing"),
                "marks_above_max", chk["column"])
    return suite


BASIC = {"result_format": "BASIC", "partial_unexpected_count": 0, "include_unexpected_rows": False}


def _batch(df, spec: SourceSpec):
    ctx = context()
    name = f"cqube_{spec.name}"
    try:
        ds = ctx.data_sources.get(name)
    except (KeyError, ValueError, Exception):  # noqa: BLE001 - GE raises its own not-found errors
        # persist=False: the frame is already cached by the loader; GE's default would cache a second copy
        # of the file (time, and the heap: 12M attendance rows ran the 4g driver out of memory)
        ds = ctx.data_sources.add_spark(name=name, persist=False)
    try:
        asset = ds.get_asset(spec.name)
    except (LookupError, Exception):  # noqa: BLE001
        asset = ds.add_dataframe_asset(name=spec.name)
    try:
        bd = asset.get_batch_definition("whole")
    except (KeyError, Exception):  # noqa: BLE001
        bd = asset.add_batch_definition_whole_dataframe("whole")
    return bd.get_batch(batch_parameters={"dataframe": with_parsed_flags(df, spec)})


def _result(r, counts: dict) -> dict:
    """One expectation's result; ``counts``: GE's BASIC result, or 0 unexpected over the rows for a
    BOOLEAN_ONLY success."""
    cfg = r.expectation_config
    meta = cfg.meta or {}
    failed = isinstance(r.exception_info, dict) and r.exception_info.get("raised_exception")
    return {
        "expectation": cfg.type,
        "rule": meta.get("rule"),
        "column": meta.get("column"),
        "kwargs": {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id",)},
        "success": bool(r.success),
        "element_count": counts.get("element_count"),
        "unexpected_count": counts.get("unexpected_count"),
        "unexpected_percent": counts.get("unexpected_percent"),
        "exception": (r.exception_info or {}).get("exception_message") if failed else None,
    }


def run_suite(df, spec: SourceSpec, suite=None, rows: int | None = None, clean: bool = True) -> dict:
    """Validate a frame; returns a JSON-able dict: success, statistics, per-expectation results.

    ``rows``: the frame's row count when the caller knows it (else one count of the frame is run).
    ``clean``: the caller expects the frame to pass (its row-level rules found nothing); a frame known to be
    dirty goes straight to one ``BASIC`` round instead of two rounds.
    """
    gx = _gx()
    batch = _batch(df, spec)
    suite = suite or compile_suite(spec)
    if not clean:
        res = batch.validate(suite, result_format=BASIC)
        return _summary(suite, res, [_result(r, r.result or {}) for r in res.results])
    first = batch.validate(suite, result_format={"result_format": "BOOLEAN_ONLY"})
    failed = [r.expectation_config for r in first.results if not r.success]
    basic = {}
    if failed:
        again = gx.ExpectationSuite(name=f"{suite.name}_failed")
        for cfg in failed:
            again.add_expectation(cfg.to_domain_obj())
        res = batch.validate(again, result_format=BASIC)
        basic = {_key(r.expectation_config): r for r in res.results}
    if rows is None and len(basic) < len(first.results):
        rows = df.count()
    results = []
    for r in first.results:
        again = basic.get(_key(r.expectation_config))
        if again is not None:
            results.append(_result(again, again.result or {}))
        else:
            results.append(_result(r, {"element_count": rows, "unexpected_count": 0, "unexpected_percent": 0.0}))
    return _summary(suite, first, results)


def _summary(suite, res, results: list[dict]) -> dict:
    return json.loads(json.dumps({"suite": suite.name, "success": bool(res.success),
                                  "statistics": dict(res.statistics or {}), "results": results}, default=str))


def _key(cfg) -> str:
    return json.dumps([cfg.type, {k: v for k, v in cfg.kwargs.items() if k != "batch_id"}], sort_keys=True,
                      default=str)


def counts_by_rule(result: dict) -> dict[tuple[str, str], int]:
    """(rule, column) → unexpected count, summed over the expectations of that rule and column."""
    out: dict[tuple[str, str], int] = {}
    for r in result["results"]:
        if r["rule"] is None:
            continue
        k = (r["rule"], r["column"])
        out[k] = out.get(k, 0) + int(r["unexpected_count"] or 0)
    return out
