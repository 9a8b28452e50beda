"""Pure transforms of program-user events: ``DataFrame -> DataFrame``, Spark SQL functions only (no UDF).

    kafka rows ─ parse_events ─ classify ─┬─ (error_code is null) ─ to_enrollment ─ latest_per_key ─▶ Cassandra
                                          └─ (error_code set)     ─ dead_letters ──────────────────▶ Delta

* ``parse_events``: the message bytes as text (``raw``) parsed with the declared ``schema.EVENT``
  (``from_json``, PERMISSIVE: a record that does not fit keeps its text in ``_corrupt_record``). An empty string
  where an object/array is expected (``"rootOrg": ""``, common from JavaScript producers) counts as absent.
* ``classify``: ``error_code``/``reason`` (null for a valid event). Reasons: ``empty_message``,
  ``malformed_json`` (not a JSON object), ``schema_mismatch`` (also: a ``programId``/``userId`` that is an
  object or array, or longer than ``MAX_ID_LENGTH``), ``missing_program_id``, ``missing_user_id``,
  ``bad_created_at``, ``bad_updated_at``; several may apply (``reason`` joins them with ``; ``).
* ``to_enrollment``: the ``program_enrollment`` columns (see the mapping in ``docs/streaming.md``) and
  ``write_ts``, the event time in microseconds used as the Cassandra write timestamp.
* ``latest_per_key``: one row per (program_id, user_id): the latest by event time, then by Kafka position.

Strings are trimmed and an empty string is null. Dates accept ISO-8601 (``2023-01-12T06:30:56.829Z``, with an
offset, without a zone = session time zone, or a bare date) and epoch milliseconds; anything else that is
not empty is an unparseable date. ``created_at``/``updated_at`` are the dates of those instants in the session
time zone (``CQUBE_TIMEZONE``, default Asia/Kolkata), like every other date of the project.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from cqube_spark.streaming.schema import CORRUPT, ENROLLMENT, EVENT, KAFKA_COLUMNS

# "key": ""  →  "key": null, for the keys whose value must be an object or an array.
_EMPTY_CONTAINER = r'"(userProfile|userLocations|profileUserTypes|rootOrg)"\s*:\s*""'
ISO_INSTANT = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$"
EPOCH_MILLIS = r"^\d{12,13}$"
MAX_REASON_VALUE = 60  # characters of an offending value quoted in a reason
# programId/userId are the Cassandra key: longer ones are refused (Cassandra refuses keys over 64 KiB, which
# would fail the whole micro-batch; an exhaust request cannot name an id over 512 characters anyway).
MAX_ID_LENGTH = 512

ERROR_CODES = ("empty_message", "malformed_json", "schema_mismatch", "missing_program_id", "missing_user_id",
               "bad_created_at", "bad_updated_at")


def clean(c: Column) -> Column:
    """Trimmed string, empty → null."""
    return F.nullif(F.trim(c), F.lit(""))


def parse_instant(c: Column) -> Column:
    """ISO-8601 text or epoch milliseconds → timestamp; null when empty or unparseable."""
    s = clean(c)
    return (F.when(s.rlike(EPOCH_MILLIS), F.timestamp_millis(s.cast("long")))
            .when(s.rlike(ISO_INSTANT), s.try_cast("timestamp")))


def parse_events(df: DataFrame) -> DataFrame:
    """Kafka source rows → + ``raw`` (text) and ``e`` (the event parsed with the declared schema)."""
    raw = F.col("value").cast("string")
    text = F.regexp_replace(raw, _EMPTY_CONTAINER, '"$1":null')
    return df.select(*KAFKA_COLUMNS, raw.alias("raw"),
                     F.from_json(text, EVENT, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}).alias("e"))


def _quoted(c: Column) -> Column:
    return F.concat(F.lit("'"), F.substring(F.trim(c), 1, MAX_REASON_VALUE), F.lit("'"))


def _container(c: Column) -> Column:
    """An object or array where a string is declared: ``from_json`` keeps its JSON text, which is no id."""
    s = F.trim(c)
    return F.when(s.startswith("{") | s.startswith("["),
                  F.json_object_keys(s).isNotNull() | F.json_array_length(s).isNotNull()).otherwise(False)


def _id_checks(name: str, c: Column) -> list:
    return [("schema_mismatch", _container(c), F.lit(f"{name} is an object or array, not a string")),
            ("schema_mismatch", F.length(clean(c)) > MAX_ID_LENGTH,
             F.lit(f"{name} longer than {MAX_ID_LENGTH} characters"))]


def classify(df: DataFrame) -> DataFrame:
    """+ ``created_ts``/``updated_ts`` (parsed instants), ``error_code`` and ``reason`` (null when valid)."""
    e = F.col("e")
    created, updated = parse_instant(e["createdAt"]), parse_instant(e["updatedAt"])
    empty = F.col("value").isNull() | (F.length("value") == 0)
    # json_object_keys is only evaluated for the rare rows that did not fit the schema (CASE is lazy).
    malformed = e.isNull() | F.when(e[CORRUPT].isNotNull(), F.json_object_keys("raw").isNull()).otherwise(False)
    checks = [
        ("schema_mismatch", e[CORRUPT].isNotNull(), F.lit("does not match the event schema")),
        *_id_checks("programId", e["programId"]), *_id_checks("userId", e["userId"]),
        ("missing_program_id", clean(e["programId"]).isNull(), F.lit("missing programId")),
        ("missing_user_id", clean(e["userId"]).isNull(), F.lit("missing userId")),
        ("bad_created_at", clean(e["createdAt"]).isNotNull() & created.isNull(),
         F.concat(F.lit("unparseable createdAt "), _quoted(e["createdAt"]))),
        ("bad_updated_at", clean(e["updatedAt"]).isNotNull() & updated.isNull(),
         F.concat(F.lit("unparseable updatedAt "), _quoted(e["updatedAt"]))),
    ]
    codes = F.array_compact(F.array(*[F.when(cond, F.lit(code)) for code, cond, _ in checks]))
    texts = F.array_compact(F.array(*[F.when(cond, text) for _, cond, text in checks]))
    error_code = (F.when(empty, F.lit("empty_message")).when(malformed, F.lit("malformed_json"))
                  .otherwise(codes[0]))
    reason = (F.when(empty, F.lit("empty message (null or zero-length value)"))
              .when(malformed, F.lit("malformed JSON: not a JSON object"))
              .otherwise(F.nullif(F.array_join(texts, "; "), F.lit(""))))
    return df.select("*", created.alias("created_ts"), updated.alias("updated_ts"),
                     error_code.alias("error_code"), reason.alias("reason"))


def location_entries(locations: Column) -> Column:
    """userLocations[{type, name, id, code}] → array of (k, v): ``<type>_name``, ``<type>_id``, ``<type>_code``.

    Types are trimmed and lower-cased; entries without a type and empty values are left out (Cassandra maps
    cannot hold nulls). ``to_enrollment`` turns it into the map (first entry of a type wins; none → null).
    """
    def entries(loc):
        kind = F.lower(clean(loc["type"]))
        return F.array(*[F.struct(F.concat(kind, F.lit(f"_{suffix}")).alias("k"), clean(loc[field]).alias("v"))
                         for suffix, field in (("name", "name"), ("id", "id"), ("code", "code"))])

    typed = F.filter(locations, lambda loc: loc.isNotNull() & clean(loc["type"]).isNotNull())
    return F.filter(F.flatten(F.transform(typed, entries)), lambda kv: kv["v"].isNotNull())


def _first_per_key(col: str) -> Column:
    c = F.col(col)
    return F.filter(c, lambda kv, i: ~F.exists(F.slice(c, F.lit(1), i), lambda other: other["k"] == kv["k"]))


def distinct_joined(items: Column, field: str) -> Column:
    """Distinct non-empty ``field`` values of an array of structs, in first-seen order, comma-joined."""
    values = F.filter(F.transform(items, lambda t: clean(t[field])), lambda v: v.isNotNull())
    return F.nullif(F.array_join(F.array_distinct(values), ","), F.lit(""))


def to_enrollment(df: DataFrame) -> DataFrame:
    """Valid classified events → ``program_enrollment`` columns + ``write_ts`` (+ ``partition``/``offset``)."""
    e, profile = F.col("e"), F.col("e.userProfile")
    event_time = F.coalesce(F.col("updated_ts"), F.col("created_ts"), F.col("timestamp"))
    staged = df.select(
        "partition", "offset", "e", "created_ts", "updated_ts",
        location_entries(profile["userLocations"]).alias("_loc"),
        F.unix_micros(event_time).alias("write_ts"))
    m = F.map_from_entries(_first_per_key("_loc"))
    return staged.select(
        clean(e["programId"]).alias("program_id"),
        clean(e["programExternalId"]).alias("program_externalId"),
        clean(e["programName"]).alias("program_name"),
        F.coalesce(F.lower(clean(e["requestForPIIConsent"])).isin("true", "1", "yes"), F.lit(False))
        .alias("pii_consent_required"),
        clean(e["userId"]).alias("user_id"),
        F.when(F.size("_loc") > 0, m).alias("user_locations"),
        clean(profile["rootOrg"]["id"]).alias("organisation_id"),
        clean(profile["rootOrg"]["orgName"]).alias("organisation_name"),
        distinct_joined(profile["profileUserTypes"], "subType").alias("user_sub_type"),
        distinct_joined(profile["profileUserTypes"], "type").alias("user_type"),
        F.to_date("created_ts").alias("created_at"),
        F.to_date("updated_ts").alias("updated_at"),
        "write_ts", "partition", "offset",
    )


def latest_per_key(df: DataFrame) -> DataFrame:
    """One row per (program_id, user_id): highest ``write_ts``, then the latest Kafka position."""
    w = Window.partitionBy("program_id", "user_id").orderBy(
        F.col("write_ts").desc(), F.col("partition").desc(), F.col("offset").desc())
    return (df.withColumn("_rank", F.row_number().over(w)).where(F.col("_rank") == 1)
            .select(*ENROLLMENT.fieldNames()))


def dead_letters(df: DataFrame) -> DataFrame:
    """Rejected classified events → the dead-letter columns known without the batch context."""
    return df.where(F.col("error_code").isNotNull()).select(
        "topic", "partition", "offset", F.col("timestamp").alias("kafka_timestamp"), "key", "value", "raw",
        "error_code", "reason")


def valid(df: DataFrame) -> DataFrame:
    return df.where(F.col("error_code").isNull())
