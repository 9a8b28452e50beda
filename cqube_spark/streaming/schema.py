"""Declared schemas of the program-user event and of the dead-letter table (no inference anywhere).

Scalars are declared as strings on purpose: Spark's JSON reader turns any scalar token into its text for a
string field, so ``"requestForPIIConsent": "true"`` or a numeric ``userId`` do not make the whole record
unparseable; the transforms convert and validate them. Objects that the mapping does not use
(``userRoleInformation``, ``appInformation``) are kept as their raw JSON text.
"""
from __future__ import annotations

from pyspark.sql import types as T

CORRUPT = "_corrupt_record"
_S = T.StringType()


def _strings(*names: str) -> list[T.StructField]:
    return [T.StructField(n, _S) for n in names]


LOCATION = T.StructType(_strings("type", "name", "id", "code", "parentId"))
PROFILE_USER_TYPE = T.StructType(_strings("type", "subType"))
ROOT_ORG = T.StructType(_strings("id", "orgName"))
USER_PROFILE = T.StructType([
    T.StructField("userLocations", T.ArrayType(LOCATION)),
    T.StructField("profileUserTypes", T.ArrayType(PROFILE_USER_TYPE)),
    T.StructField("rootOrg", ROOT_ORG),
])

EVENT = T.StructType(
    _strings("_id", "programId", "programName", "programExternalId", "requestForPIIConsent", "userId",
             "deleted", "createdAt", "updatedAt", "userRoleInformation", "appInformation")
    + [T.StructField("userProfile", USER_PROFILE), T.StructField(CORRUPT, _S)]
)

# The Kafka source's columns this job reads.
KAFKA_COLUMNS = ("key", "value", "topic", "partition", "offset", "timestamp")

# program_enrollment columns (configs/exhaust/schema.cql), plus the
# Cassandra write timestamp (event time in microseconds) used with USING TIMESTAMP.
ENROLLMENT = T.StructType([
    T.StructField("program_id", _S, False),
    T.StructField("program_externalId", _S),
    T.StructField("program_name", _S),
    T.StructField("pii_consent_required", T.BooleanType(), False),
    T.StructField("user_id", _S, False),
    T.StructField("user_locations", T.MapType(_S, _S)),
    T.StructField("organisation_id", _S),
    T.StructField("organisation_name", _S),
    T.StructField("user_sub_type", _S),
    T.StructField("user_type", _S),
    T.StructField("created_at", T.DateType()),
    T.StructField("updated_at", T.DateType()),
    T.StructField("write_ts", T.LongType(), False),
])

DEAD_LETTER = T.StructType([
    T.StructField("topic", _S, False),
    T.StructField("partition", T.IntegerType(), False),
    T.StructField("offset", T.LongType(), False),
    T.StructField("kafka_timestamp", T.TimestampType()),
    T.StructField("key", T.BinaryType()),
    T.StructField("value", T.BinaryType()),
    T.StructField("raw", _S),
    T.StructField("error_code", _S, False),
    T.StructField("reason", _S, False),
    T.StructField("batch_id", T.LongType()),
    T.StructField("run_id", _S),
    T.StructField("dead_lettered_at", T.TimestampType()),
])
