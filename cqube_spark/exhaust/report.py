"""The Program User report as pure transforms (``DataFrame -> DataFrame``), driven by the job config.

Input frames:

* enrollment: ``sources.enrollment_schema`` — program and user columns plus ``loc_<key>`` for the
  ``user_locations`` keys the report or the filters need;
* consent: ``user_id, status, last_updated_on`` of the consent object.

``consent_status`` folds consent rows per user (active = ``status`` is ``active`` in any case; date = the
latest active row's ``last_updated_on``, else the latest row's). ``report_rows`` applies the consent rules per
enrollment row:

=====================================  ===========  ================  ==========================
row                                    PII columns  Consent Provided  Consent Provided Date
=====================================  ===========  ================  ==========================
pii_consent_required false/null        blank        No                blank
required, no active consent            blank        No                consent row's date, if any
required, active consent               from Redis   Yes               dd/MM/yyyy
=====================================  ===========  ================  ==========================

PII itself is not in these frames: ``_need_pii`` marks the rows whose name/phone/email are filled from
Redis later, inside the executors (``sources.pii_lines``). ``labelled`` renames with ``label_mapping``,
orders with ``order_of_csv_column`` (dropping the consent columns when no row requires consent), quotes
``quote_column`` values and sorts by ``sort``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cqube_spark.exhaust.filters import ReportFilter

PII_COLUMNS = ("username", "phone", "email")
CONSENT_COLUMNS = ("username", "phone", "email", "consentflag", "consentprovideddate")
HIDDEN = ("_uid", "_need_pii")


def apply_filters(enrollment: DataFrame, f: ReportFilter) -> DataFrame:
    """Row filters of the request (program_id is already the partition read); values are literals."""
    cond: Column = F.col("program_id") == F.lit(f.program_id)
    for org in f.organisation_ids:
        cond = cond & (F.col("organisation_id") == F.lit(org))
    for key, value in f.locations:
        cond = cond & (F.col(f"loc_{key}") == F.lit(value))
    if f.updated_from is not None:
        cond = cond & (F.col("updated_at") >= F.lit(f.updated_from))
    if f.updated_to is not None:
        cond = cond & (F.col("updated_at") <= F.lit(f.updated_to))
    return enrollment.where(cond)


def consent_status(consent: DataFrame) -> DataFrame:
    """One row per user: consent_active, consent_date."""
    active = F.lower(F.trim(F.col("status"))) == F.lit("active")
    return (consent.groupBy("user_id")
            .agg(F.max(F.coalesce(active, F.lit(False))).alias("consent_active"),
                 F.max(F.when(active, F.col("last_updated_on"))).alias("_active_date"),
                 F.max("last_updated_on").alias("_any_date"))
            .select("user_id", "consent_active",
                    F.when(F.col("consent_active"), F.col("_active_date"))
                    .otherwise(F.col("_any_date")).alias("consent_date")))


def report_rows(enrollment: DataFrame, status: DataFrame, location_columns: Sequence[str],
                date_format: str = "dd/MM/yyyy") -> DataFrame:
    """Enrollment ⟕ consent status → the report's columns (config names) + _uid, _need_pii, _required."""
    joined = enrollment.join(status, "user_id", "left")
    required = F.coalesce(F.col("pii_consent_required"), F.lit(False))
    active = F.coalesce(F.col("consent_active"), F.lit(False))
    blank = F.lit(None).cast("string")
    return joined.select(
        F.col("user_id"),
        blank.alias("username"), blank.alias("phone"), blank.alias("email"),
        F.when(required & active, F.lit("Yes")).otherwise(F.lit("No")).alias("consentflag"),
        F.when(required, F.date_format("consent_date", date_format)).alias("consentprovideddate"),
        F.col("program_name"), F.col("program_externalId"),
        *[F.col(f"loc_{k}").alias(k) for k in location_columns],
        F.col("user_type"), F.col("user_sub_type"), F.col("organisation_name"),
        F.col("user_id").alias("_uid"),
        (required & active).alias("_need_pii"),
        required.alias("_required"),
    )


def output_columns(params: Mapping[str, Any], include_consent: bool) -> list[tuple[str, str]]:
    """(config column, CSV label) pairs in CSV order."""
    labels: Mapping[str, str] = params["label_mapping"]
    by_label = {v: k for k, v in labels.items()}
    consent = set(params.get("consent_columns", CONSENT_COLUMNS))
    out = []
    for label in params["order_of_csv_column"]:
        key = by_label[label]
        if key in consent and not include_consent:
            continue
        out.append((key, label))
    return out


def labelled(rows: DataFrame, params: Mapping[str, Any], include_consent: bool) -> DataFrame:
    """Rename/order/quote/sort: the CSV's columns (labels) followed by the hidden _uid, _need_pii."""
    cols = output_columns(params, include_consent)
    quote = set(params.get("quote_column", []))
    pii_labels = {params["label_mapping"][k] for k in PII_COLUMNS if k in params["label_mapping"]}
    exprs = []
    for key, label in cols:
        c = F.col(key)
        if label in quote and label not in pii_labels:  # PII is quoted where it is filled in
            c = F.when(c.isNotNull() & (c != F.lit("")), F.concat(F.lit("'"), c, F.lit("'"))).otherwise(c)
        exprs.append(c.alias(label))
    need = F.col("_need_pii") if include_consent else F.lit(False)
    out = rows.select(*exprs, F.col("_uid"), need.alias("_need_pii"))
    labels = [label for _, label in cols]
    sort = [s for s in params.get("sort", []) if s in labels]
    return out.orderBy(*[F.col(s).asc_nulls_first() for s in sort]) if sort else out


def csv_field(c: Column) -> Column:
    """A CSV field as Python's csv.writer (QUOTE_MINIMAL) writes it: null → empty; quoted when it holds a
    comma, a double quote or a line break, with quotes doubled."""
    text = F.coalesce(c.cast("string"), F.lit(""))
    return F.when(text.rlike('[",\\r\\n]'),
                  F.concat(F.lit('"'), F.regexp_replace(text, '"', '""'), F.lit('"'))).otherwise(text)


def csv_template(labels: Sequence[str], pii_labels: Mapping[str, str]) -> list[tuple[str, Any]]:
    """The line layout: ("seg", i) for the i-th run of non-PII columns (pre-joined by Spark) and
    ("pii", name) for a PII column filled in the executors. ``pii_labels`` maps label → PII column name."""
    template: list[tuple[str, Any]] = []
    run: list[str] = []
    segments: list[list[str]] = []
    for label in labels:
        if label in pii_labels:
            if run:
                template.append(("seg", len(segments)))
                segments.append(run)
                run = []
            template.append(("pii", pii_labels[label]))
        else:
            run.append(label)
    if run:
        template.append(("seg", len(segments)))
        segments.append(run)
    return template, segments


def csv_segments(out: DataFrame, segments: Sequence[Sequence[str]]) -> DataFrame:
    """Sorted labelled rows → one pre-joined CSV text per non-PII run (``_seg<i>``) + _uid, _need_pii.
    The formatting of the whole report happens in the JVM; Python only splices PII into the ~30% of rows
    that show it."""
    exprs = [F.concat_ws(",", *[csv_field(F.col(label)) for label in seg]).alias(f"_seg{i}")
             for i, seg in enumerate(segments)]
    return out.select(*exprs, "_uid", "_need_pii")
