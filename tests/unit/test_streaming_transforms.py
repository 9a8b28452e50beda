"""Pure transforms of program-user events on tiny frames (chispa): parse, classify, map, latest per key."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from chispa import assert_df_equality
from pyspark.sql import types as T

from cqube_spark.streaming import samples, transforms
from cqube_spark.streaming.schema import ENROLLMENT

KAFKA = T.StructType([
    T.StructField("key", T.BinaryType()), T.StructField("value", T.BinaryType()),
    T.StructField("topic", T.StringType()), T.StructField("partition", T.IntegerType()),
    T.StructField("offset", T.LongType()), T.StructField("timestamp", T.TimestampType()),
])
KAFKA_TS = dt.datetime(2024, 3, 1, 6, 30, tzinfo=dt.timezone.utc)
TABLE_COLUMNS = [f for f in ENROLLMENT.fieldNames() if f != "write_ts"]


def kafka_frame(spark, payloads, partition=0, start=0):
    rows = []
    for i, p in enumerate(payloads):
        value = p if p is None or isinstance(p, bytes) else (p.encode() if isinstance(p, str) else json.dumps(p).encode())
        rows.append((None, value, "t", partition, start + i, KAFKA_TS))
    return spark.createDataFrame(rows, KAFKA)


def enrollments(spark, payloads):
    df = kafka_frame(spark, payloads).transform(transforms.parse_events).transform(transforms.classify)
    return transforms.to_enrollment(transforms.valid(df))


def expected(spark, rows):
    schema = T.StructType([f for f in ENROLLMENT.fields if f.name != "write_ts"])
    return spark.createDataFrame([tuple(r[c] for c in schema.fieldNames()) for r in rows], schema)


def row(**overrides):
    base = dict(samples.SAMPLE_ROW)
    base["program_externalId"] = base.pop("program_externalid")
    base.update(overrides)
    return base


def test_sample_event_maps_to_program_enrollment(spark):
    out = enrollments(spark, [samples.SAMPLE_EVENT])
    assert_df_equality(out.select(*TABLE_COLUMNS), expected(spark, [row()]), ignore_nullable=True)
    # write timestamp = updatedAt in microseconds
    assert out.first()["write_ts"] == 1673505056829000


def test_empty_strings_and_nulls_become_nulls_and_defaults(spark):
    e = samples.event(programName="", programExternalId=None, requestForPIIConsent="", createdAt="",
                      updatedAt=None, userProfile={"userLocations": "", "profileUserTypes": None, "rootOrg": ""})
    out = enrollments(spark, [e])
    assert_df_equality(out.select(*TABLE_COLUMNS), expected(spark, [row(
        program_name=None, program_externalId=None, pii_consent_required=False, user_locations=None,
        organisation_id=None, organisation_name=None, user_sub_type=None, user_type=None,
        created_at=None, updated_at=None)]), ignore_nullable=True)
    # no event dates: the Kafka timestamp orders the write
    assert out.first()["write_ts"] == int(KAFKA_TS.timestamp()) * 1_000_000


def test_missing_user_profile_and_root_org(spark):
    no_profile = samples.event(drop=["userProfile"], userId="u-1")
    no_org = samples.event(userId="u-2", userProfile={k: v for k, v in samples.SAMPLE_EVENT["userProfile"].items()
                                                      if k != "rootOrg"})
    out = enrollments(spark, [no_profile, no_org]).orderBy("user_id")
    assert_df_equality(out.select(*TABLE_COLUMNS), expected(spark, [
        row(user_id="u-1", user_locations=None, organisation_id=None, organisation_name=None, user_sub_type=None,
            user_type=None),
        row(user_id="u-2", organisation_id=None, organisation_name=None),
    ]), ignore_nullable=True)


def test_locations_types_trimmed_lowercased_first_wins_and_empty_values_left_out(spark):
    profile = {"userLocations": [
        {"type": " State ", "name": "Karnataka", "id": "st-29", "code": "29"},
        {"type": "district", "name": "", "id": "di-1", "code": None},
        {"type": "state", "name": "Duplicate", "id": "st-xx", "code": "99"},
        {"type": "", "name": "no type", "id": "x", "code": "x"},
        None,
        {"type": "school", "name": "  School 1  ", "id": "sc-1", "code": "1001", "parentId": "di-1"},
    ], "profileUserTypes": [], "rootOrg": {"id": " ", "orgName": "Org"}}
    out = enrollments(spark, [samples.event(userProfile=profile)])
    r = out.first()
    assert r["user_locations"] == {"state_name": "Karnataka", "state_id": "st-29", "state_code": "29",
                                   "district_id": "di-1", "school_name": "School 1", "school_id": "sc-1",
                                   "school_code": "1001"}
    assert (r["organisation_id"], r["organisation_name"], r["user_type"], r["user_sub_type"]) == (None, "Org", None, None)


def test_user_types_distinct_in_first_seen_order(spark):
    profile = {"profileUserTypes": [
        {"type": "administrator", "subType": "hm"}, {"type": "teacher", "subType": "crp"},
        {"type": "administrator", "subType": "hm"}, {"type": "administrator", "subType": " "},
        {"type": "administrator", "subType": "deo"}, {"type": None, "subType": "crp"}, None,
    ]}
    r = enrollments(spark, [samples.event(userProfile=profile)]).first()
    assert (r["user_type"], r["user_sub_type"]) == ("administrator,teacher", "hm,crp,deo")


@pytest.mark.parametrize("value, expected_true", [
    (True, True), ("true", True), ("TRUE", True), (1, True), (False, False), ("false", False), (None, False),
    ("", False), ("maybe", False)])
def test_pii_consent_flag(spark, value, expected_true):
    r = enrollments(spark, [samples.event(requestForPIIConsent=value)]).first()
    assert r["pii_consent_required"] is expected_true


def test_dates_iso_offsets_date_only_and_epoch_millis(spark):
    events = [
        samples.event(userId="a", createdAt="2023-01-12T20:00:00Z", updatedAt="2023-01-12T20:00:00+05:30"),
        samples.event(userId="b", createdAt="2023-01-12", updatedAt="2023-01-13 09:15:00"),
        samples.event(userId="c", createdAt=1673505009476, updatedAt="1673505056829"),
    ]
    got = {r["user_id"]: (r["created_at"], r["updated_at"], r["write_ts"])
           for r in enrollments(spark, events).collect()}
    assert got["a"][:2] == (dt.date(2023, 1, 13), dt.date(2023, 1, 12))  # 20:00Z is the 13th in Asia/Kolkata
    assert got["a"][2] == int(dt.datetime(2023, 1, 12, 14, 30, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000
    assert got["b"][:2] == (dt.date(2023, 1, 12), dt.date(2023, 1, 13))
    assert got["c"] == (dt.date(2023, 1, 12), dt.date(2023, 1, 12), 1673505056829000)


def classified(spark, payloads):
    return (kafka_frame(spark, payloads).transform(transforms.parse_events).transform(transforms.classify)
            .select("offset", "error_code", "reason").orderBy("offset"))


def test_classify_reasons(spark):
    payloads = [
        samples.SAMPLE_EVENT,                                            # 0 valid
        "{not json",                                                     # 1
        "[1, 2]",                                                        # 2 valid JSON, not an object
        None,                                                            # 3 Kafka tombstone
        "",                                                              # 4
        samples.event(drop=["programId"]),                               # 5
        samples.event(programId="  ", userId=None),                      # 6
        samples.event(updatedAt="12/31/2024"),                           # 7
        samples.event(createdAt="2023-02-30T00:00:00Z"),                 # 8 impossible date
        samples.event(createdAt="2023"),                                 # 9 too vague
        samples.event(userProfile={"userLocations": {"type": "state"}}),  # 10 object where a list is expected
        samples.event(programId=12345, userId=678),                      # 11 numbers are fine as ids
    ]
    schema = "offset long, error_code string, reason string"
    want = spark.createDataFrame([
        (0, None, None),
        (1, "malformed_json", "malformed JSON: not a JSON object"),
        (2, "malformed_json", "malformed JSON: not a JSON object"),
        (3, "empty_message", "empty message (null or zero-length value)"),
        (4, "empty_message", "empty message (null or zero-length value)"),
        (5, "missing_program_id", "missing programId"),
        (6, "missing_program_id", "missing programId; missing userId"),
        (7, "bad_updated_at", "unparseable updatedAt '12/31/2024'"),
        (8, "bad_created_at", "unparseable createdAt '2023-02-30T00:00:00Z'"),
        (9, "bad_created_at", "unparseable createdAt '2023'"),
        (10, "schema_mismatch", "does not match the event schema"),
        (11, None, None),
    ], schema)
    assert_df_equality(classified(spark, payloads), want, ignore_nullable=True)


def test_dead_letters_keep_raw_bytes_and_position(spark):
    df = kafka_frame(spark, [samples.SAMPLE_EVENT, b"\xff\xfe{bad"], partition=3, start=41)
    out = transforms.dead_letters(df.transform(transforms.parse_events).transform(transforms.classify)).collect()
    assert len(out) == 1
    r = out[0]
    assert (r["topic"], r["partition"], r["offset"], r["error_code"]) == ("t", 3, 42, "malformed_json")
    assert bytes(r["value"]) == b"\xff\xfe{bad"  # the exact bytes, even when they are not UTF-8


def test_latest_per_key_by_event_time_then_offset(spark):
    p, u = "prog-1", "user-1"
    events = [
        samples.event(programId=p, userId=u, programName="v2", updatedAt="2024-01-02T00:00:00Z"),
        samples.event(programId=p, userId=u, programName="v3", updatedAt="2024-01-03T00:00:00Z"),
        samples.event(programId=p, userId=u, programName="v1-late", updatedAt="2024-01-01T00:00:00Z"),
        samples.event(programId=p, userId="user-2", programName="a", updatedAt="2024-01-05T00:00:00Z"),
        samples.event(programId=p, userId="user-2", programName="b", updatedAt="2024-01-05T00:00:00Z"),
    ]
    out = enrollments(spark, events).transform(transforms.latest_per_key)
    assert out.columns == ENROLLMENT.fieldNames()
    got = {r["user_id"]: r["program_name"] for r in out.collect()}
    assert got == {"user-1": "v3", "user-2": "b"}  # same event time: the later offset wins
