"""The request's filters (the seed doc's ``request_data`` format), validated into a ``ReportFilter``.

    {"type": "program-user-exhaust", "title": "...",
     "params": {"filters": [
        {"table_name": "program_enrollment", "table_filters": [
            {"name": "program_id", "operator": "=", "value": "602512d8e6aefa27d9629bc3"},
            {"name": "user_locations['district_id']", "operator": "=", "value": "..."},
            {"name": "organisation_id", "operator": "=", "value": "..."},
            {"name": "updated_at", "operator": ">=", "value": "YYYY-MM-DD"}, ...]},
        {"table_name": "user_consent", "table_filters": [
            {"name": "object_id", "operator": "=", "value": "602512d8e6aefa27d9629bc3"}]}]}}

Allowed, everything else is ``InvalidRequest`` (reported as ``Not a Valid Request: <why>``):

* program_enrollment: ``program_id =`` (exactly one, required), ``organisation_id =``,
  ``user_locations['<key>'] =`` (key from ``allowedLocationKeys``), ``updated_at`` with ``>=``, ``<=`` or ``=``
  (a date ``YYYY-MM-DD``; when absent, no date bound: the documented default range 1901-01-01..2101-01-01
  covers every date, and rows without ``updated_at`` are kept);
* user_consent: ``object_id =`` (default: the program id), ``user_id =``.

Values are only ever used as literals (Spark ``lit`` / bound CQL parameters), never spliced into query text.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any, Iterable

from cqube_spark.exhaust import JOB_ID

DEFAULT_START = dt.date(1901, 1, 1)
DEFAULT_END = dt.date(2101, 1, 1)
DEFAULT_LOCATION_KEYS = (
    "state_id", "state_name", "state_code", "district_id", "district_name", "district_code",
    "block_id", "block_name", "block_code", "cluster_id", "cluster_name", "cluster_code",
    "school_id", "school_name", "school_code",
)
LOCATION_FILTER = re.compile(r"^user_locations\[\s*'([A-Za-z0-9_]+)'\s*\]$")
MAX_VALUE_LEN = 512


class InvalidRequest(ValueError):
    """The request cannot be processed as asked; the message says why (no data values in it)."""


@dataclass(frozen=True)
class ReportFilter:
    program_id: str
    organisation_ids: tuple[str, ...] = ()
    locations: tuple[tuple[str, str], ...] = ()  # (key, value) equalities on user_locations
    updated_from: dt.date | None = None  # inclusive
    updated_to: dt.date | None = None  # inclusive
    consent_object_id: str = ""
    consent_user_ids: tuple[str, ...] = ()
    title: str = ""

    @property
    def location_keys(self) -> tuple[str, ...]:
        return tuple(sorted({k for k, _ in self.locations}))


def _value(f: dict, where: str) -> str:
    value = f.get("value")
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{where}: value must be a non-empty string")
    if len(value) > MAX_VALUE_LEN:
        raise InvalidRequest(f"{where}: value longer than {MAX_VALUE_LEN} characters")
    return value.strip()


def _date(value: str, where: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{where}: expected a date YYYY-MM-DD") from None


def load_request_data(raw: Any) -> dict:
    """request_data as stored (JSON text or an already-parsed dict) → dict, or InvalidRequest."""
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise InvalidRequest(f"request_data is not valid JSON ({e.msg})") from None
        except RecursionError:
            raise InvalidRequest("request_data is not valid JSON (nested too deeply)") from None
    if not isinstance(raw, dict):
        raise InvalidRequest("request_data must be a JSON object")
    return raw


def parse_filters(raw: Any, allowed_location_keys: Iterable[str] = DEFAULT_LOCATION_KEYS,
                  job_id: str = JOB_ID) -> ReportFilter:
    data = load_request_data(raw)
    rtype = data.get("type", job_id)
    if rtype != job_id:
        raise InvalidRequest(f"type {str(rtype)[:60]!r} is not {job_id!r}")
    params = data.get("params")
    if not isinstance(params, dict) or not isinstance(params.get("filters"), list):
        raise InvalidRequest("params.filters must be a list")
    allowed_keys = set(allowed_location_keys)

    program_ids: list[str] = []
    orgs: list[str] = []
    locations: list[tuple[str, str]] = []
    lower: list[dt.date] = []
    upper: list[dt.date] = []
    objects: list[str] = []
    consent_users: list[str] = []
    seen_tables: set[str] = set()
    for i, table in enumerate(params["filters"]):
        where_t = f"params.filters[{i}]"
        if not isinstance(table, dict):
            raise InvalidRequest(f"{where_t} must be an object")
        name = table.get("table_name")
        if name not in ("program_enrollment", "user_consent"):
            raise InvalidRequest(f"{where_t}: unknown table_name {str(name)[:60]!r} "
                                 "(allowed: program_enrollment, user_consent)")
        if name in seen_tables:
            raise InvalidRequest(f"{where_t}: table {name} is listed twice")
        seen_tables.add(name)
        items = table.get("table_filters", [])
        if not isinstance(items, list):
            raise InvalidRequest(f"{where_t}.table_filters must be a list")
        for j, f in enumerate(items):
            where = f"{where_t}.table_filters[{j}]"
            if not isinstance(f, dict):
                raise InvalidRequest(f"{where} must be an object")
            fname, op = f.get("name"), f.get("operator")
            if not isinstance(fname, str) or not isinstance(op, str):
                raise InvalidRequest(f"{where}: name and operator must be strings")
            if op not in ("=", ">=", "<="):
                raise InvalidRequest(f"{where}: operator {op[:10]!r} is not allowed (allowed: =, >=, <=)")
            if name == "program_enrollment":
                loc = LOCATION_FILTER.match(fname)
                if fname == "updated_at":
                    day = _date(_value(f, where), where)
                    if op in (">=", "="):
                        lower.append(day)
                    if op in ("<=", "="):
                        upper.append(day)
                    continue
                if op != "=":
                    raise InvalidRequest(f"{where}: {fname[:60]} only allows operator '='")
                if fname == "program_id":
                    program_ids.append(_value(f, where))
                elif fname == "organisation_id":
                    orgs.append(_value(f, where))
                elif loc:
                    if loc.group(1) not in allowed_keys:
                        raise InvalidRequest(f"{where}: user_locations key {loc.group(1)!r} is not allowed")
                    locations.append((loc.group(1), _value(f, where)))
                else:
                    raise InvalidRequest(f"{where}: filter {fname[:60]!r} is not allowed on program_enrollment")
            else:
                if op != "=":
                    raise InvalidRequest(f"{where}: {fname[:60]} only allows operator '='")
                if fname == "object_id":
                    objects.append(_value(f, where))
                elif fname == "user_id":
                    consent_users.append(_value(f, where))
                else:
                    raise InvalidRequest(f"{where}: filter {fname[:60]!r} is not allowed on user_consent")

    if not program_ids:
        raise InvalidRequest("a program_enrollment filter program_id '=' is required")
    if len(set(program_ids)) > 1:
        raise InvalidRequest("exactly one program_id is allowed per request")
    if len(set(objects)) > 1:
        raise InvalidRequest("at most one user_consent object_id is allowed per request")
    start = max(lower) if lower else None
    end = min(upper) if upper else None
    for d in (start, end):
        if d is not None and not (DEFAULT_START <= d <= DEFAULT_END):
            raise InvalidRequest("updated_at must be between 1901-01-01 and 2101-01-01")
    if start and end and start > end:
        raise InvalidRequest("updated_at range is empty (>= is after <=)")
    title = data.get("title", "")
    return ReportFilter(
        program_id=program_ids[0],
        organisation_ids=tuple(dict.fromkeys(orgs)),
        locations=tuple(dict.fromkeys(locations)),
        updated_from=start,
        updated_to=end,
        consent_object_id=objects[0] if objects else program_ids[0],
        consent_user_ids=tuple(dict.fromkeys(consent_users)),
        title=title if isinstance(title, str) else "",
    )


def canonical_json(data: Any) -> str:
    """Stable text of request data (key order and whitespace do not matter)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
