"""Request filter validation and request-id hashing (pure)."""
import datetime as dt
import json

import pytest

from cqube_spark.exhaust.filters import InvalidRequest, ReportFilter, parse_filters
from cqube_spark.exhaust.requests import request_id


def req(enroll=None, consent=None, **extra):
    filters = [{"table_name": "program_enrollment",
                "table_filters": enroll if enroll is not None else [{"name": "program_id", "operator": "=",
                                                                     "value": "P1"}]}]
    if consent is not None:
        filters.append({"table_name": "user_consent", "table_filters": consent})
    return {"type": "program-user-exhaust", "title": "t", "params": {"filters": filters}, **extra}


def test_minimal_request_defaults_consent_object_to_program():
    f = parse_filters(req())
    assert f == ReportFilter(program_id="P1", consent_object_id="P1", title="t")
    assert f.updated_from is None and f.updated_to is None


def test_every_allowed_filter():
    f = parse_filters(json.dumps(req(
        enroll=[{"name": "program_id", "operator": "=", "value": "P1"},
                {"name": "organisation_id", "operator": "=", "value": "O1"},
                {"name": "user_locations['district_id']", "operator": "=", "value": "D1"},
                {"name": "user_locations['block_name']", "operator": "=", "value": "B1"},
                {"name": "updated_at", "operator": ">=", "value": "2023-01-01"},
                {"name": "updated_at", "operator": "<=", "value": "2023-12-31"}],
        consent=[{"name": "object_id", "operator": "=", "value": "OBJ"},
                 {"name": "user_id", "operator": "=", "value": "U1"}])))
    assert f.program_id == "P1" and f.organisation_ids == ("O1",)
    assert f.locations == (("district_id", "D1"), ("block_name", "B1"))
    assert f.location_keys == ("block_name", "district_id")
    assert (f.updated_from, f.updated_to) == (dt.date(2023, 1, 1), dt.date(2023, 12, 31))
    assert f.consent_object_id == "OBJ" and f.consent_user_ids == ("U1",)


def test_updated_at_equals_is_a_one_day_range():
    f = parse_filters(req(enroll=[{"name": "program_id", "operator": "=", "value": "P1"},
                                  {"name": "updated_at", "operator": "=", "value": "2023-05-05"}]))
    assert f.updated_from == f.updated_to == dt.date(2023, 5, 5)


@pytest.mark.parametrize("data, why", [
    ("not json", "not valid JSON"),
    ([1, 2], "JSON object"),
    ({"type": "other-job", "params": {"filters": []}}, "is not 'program-user-exhaust'"),
    ({"params": {}}, "params.filters must be a list"),
    (req(enroll=[]), "program_id '=' is required"),
    (req(enroll=[{"name": "program_id", "operator": ">=", "value": "P1"}]), "only allows operator '='"),
    (req(enroll=[{"name": "program_id", "operator": "=", "value": "P1"},
                 {"name": "program_id", "operator": "=", "value": "P2"}]), "exactly one program_id"),
    (req(enroll=[{"name": "program_id", "operator": "=", "value": ""}]), "non-empty string"),
    (req(enroll=[{"name": "program_id", "operator": "=", "value": 5}]), "non-empty string"),
    (req(enroll=[{"name": "program_id", "operator": "LIKE", "value": "P1"}]), "operator 'LIKE' is not allowed"),
    (req(enroll=[{"name": "program_id", "operator": "=", "value": "P1"},
                 {"name": "user_type", "operator": "=", "value": "x"}]), "'user_type' is not allowed"),
    (req(enroll=[{"name": "program_id", "operator": "=", "value": "P1"},
                 {"name": "user_locations['x; drop']", "operator": "=", "value": "x"}]), "not allowed"),
    (req(enroll=[{"name": "program_id", "operator": "=", "value": "P1"},
                 {"name": "user_locations['password']", "operator": "=", "value": "x"}]), "key 'password'"),
    (req(enroll=[{"name": "program_id", "operator": "=", "value": "P1"},
                 {"name": "updated_at", "operator": ">=", "value": "01/02/2023"}]), "YYYY-MM-DD"),
    (req(enroll=[{"name": "program_id", "operator": "=", "value": "P1"},
                 {"name": "updated_at", "operator": ">=", "value": "2024-01-01"},
                 {"name": "updated_at", "operator": "<=", "value": "2023-01-01"}]), "range is empty"),
    (req(enroll=[{"name": "program_id", "operator": "=", "value": "P1"},
                 {"name": "updated_at", "operator": ">=", "value": "1800-01-01"}]), "between 1901-01-01"),
    (req(consent=[{"name": "status", "operator": "=", "value": "active"}]), "'status' is not allowed"),
    (req(consent=[{"name": "user_id", "operator": "<=", "value": "u"}]), "only allows operator '='"),
    ({"params": {"filters": [{"table_name": "user", "table_filters": []}]}}, "unknown table_name 'user'"),
])
def test_invalid_requests_say_why(data, why):
    with pytest.raises(InvalidRequest, match=None) as e:
        parse_filters(data)
    assert why in str(e.value)


def test_request_id_is_stable_and_ignores_key_order():
    day = dt.date(2024, 3, 1)
    a = {"type": "program-user-exhaust", "params": {"filters": [1, 2]}}
    b = json.loads('{"params": {"filters": [1, 2]}, "type": "program-user-exhaust"}')
    rid = request_id("tag", "program-user-exhaust", "u1", "ch", day, a)
    assert rid == request_id("tag", "program-user-exhaust", "u1", "ch", day, b)
    assert rid == request_id("tag", "program-user-exhaust", "u1", "ch", day, json.dumps(b))
    assert len(rid) == 32 and rid == rid.upper()


@pytest.mark.parametrize("change", [
    {"tag": "tag2"}, {"requested_by": "u2"}, {"channel": "ch2"}, {"day": dt.date(2024, 3, 2)},
    {"data": {"type": "program-user-exhaust", "params": {"filters": [2, 1]}}},
])
def test_request_id_changes_with_each_part(change):
    base = dict(tag="tag", requested_by="u1", channel="ch", day=dt.date(2024, 3, 1),
                data={"type": "program-user-exhaust", "params": {"filters": [1, 2]}})
    def rid(p):
        return request_id(p["tag"], "program-user-exhaust", p["requested_by"], p["channel"], p["day"], p["data"])
    assert rid(base) != rid({**base, **change})


def test_job_params_are_checked_for_consistency():
    from cqube_spark.config import ConfigError
    from cqube_spark.exhaust.job import params_with_defaults

    base = {"label_mapping": {"user_id": "User UUID"}, "order_of_csv_column": ["User UUID"]}
    assert params_with_defaults(base)["maxIterations"] == 3
    with pytest.raises(ConfigError, match=r"sort\[0\].*'District' is not a label"):
        params_with_defaults({**base, "sort": ["District"]})
    with pytest.raises(ConfigError, match="label_mapping.password.*unknown column"):
        params_with_defaults({**base, "label_mapping": {"user_id": "User UUID", "password": "P"}})
