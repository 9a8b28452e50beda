"""Replay requests: validation (JSON Schema + semantic checks) → a typed plan of (table, predicate) targets.

A request is the admin screen's JSON (see docs/replay.md)::

    {"student_attendance": {"year": "2020", "months": ["01", "03"]},
     "crc": {"year": "2020", "months": ["02"]},                  # or {"from_date", "to_date"}
     "diksha_summary_rollup": {"from_date": "2020-07-01", "to_date": "2020-07-31"},
     "semester": {"semester": [1, 2], "academic_year": "2020-21"},
     "periodic_assessment_test": {"exam_code": ["PAT010101012021"]},
     "diksha_tpd": {"batch_id": ["0123"]},
     "udise": {"selection": "yes"}, "infrastructure": {"selection": "no"}, "static": {"selection": "no"},
     "requested_by": "admin@state", "reason": "wrong July file"}

Source keys are case-insensitive (``"Infrastructure"`` is accepted). An empty selection (no months, empty
dates, empty lists, ``"no"``) leaves the source untouched; a request that selects nothing at all, an unknown
source, a month outside 1..12, a bad date, a date range the wrong way round are refused as a whole
(:class:`RequestError` naming the file, the JSON path and what was expected) before anything is deleted.

The plan is pure: :func:`plan` maps a :class:`ReplayRequest` plus the *resolved* facts (exam codes/ids of
the selected semesters, the files whose rows are deleted — see :mod:`cqube_spark.replay.job`) to
:class:`Target` s, each with a Spark Column predicate built from literals (never SQL text with values):
``typed`` for the silver table, ``raw`` for bronze and quarantine (the raw strings as received, plus the
``_file`` lineage of files whose silver rows all go).
"""
from __future__ import annotations

import calendar
import datetime as dt
import json
import re
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from pyspark.sql import Column
from pyspark.sql import functions as F

from cqube_spark.config.loader import json_path

SCHEMA_FILE = Path(__file__).resolve().parent / "request.schema.json"
META_KEYS = ("requested_by", "reason")

# request source → spec sources (silver table names) it covers
GROUP_TABLES: dict[str, tuple[str, ...]] = {
    "student_attendance": ("student_attendance",),
    "teacher_attendance": ("teacher_attendance",),
    "crc": ("inspection_master", "user_location_master"),
    "diksha_summary_rollup": ("diksha_summary_rollup",),
    "semester": ("semester_exam_mst", "semester_exam_result_trans", "semester_exam_qst_mst"),
    "periodic_assessment_test": ("periodic_exam_mst", "periodic_exam_result_trans", "periodic_exam_qst_mst"),
    "diksha_tpd": ("diksha_tpd",),
    "udise": ("udise_sch_enr_fresh", "udise_sch_facility", "udise_sch_profile", "udise_tch_profile"),
    "infrastructure": ("infra_trans", "infrastructure_master"),
    "static": ("district_master", "block_master", "cluster_master", "school_master", "school_management"),
}
KNOWN = tuple(GROUP_TABLES)

# per table: how its rows are selected. Columns are silver names (typed) / raw names (bronze, quarantine).
ATTENDANCE = {"student_attendance": ("AcademicYear", "Month"), "teacher_attendance": ("AC_YEAR", "MONTH")}
DATED = {"inspection_master": ("VisitDate", "yyyy-MM-dd"),
         "user_location_master": ("CreatedOn", "yyyy-MM-dd HH:mm:ss"),
         "diksha_summary_rollup": ("Date", "yyyy-MM-dd")}


class RequestError(Exception):
    """A refused request: nothing is deleted. ``str()`` names the file, the JSON path and the problem."""

    def __init__(self, source: str, path: str, message: str):
        self.source, self.path, self.message = source, path, message
        super().__init__(f"{source}: at {path}: {message}")


@dataclass(frozen=True)
class ReplayRequest:
    """A validated request: ``groups`` maps each selected request source to its normalized selection."""

    groups: dict[str, dict]
    requested_by: str | None = None
    reason: str | None = None
    raw: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"groups": self.groups, "requested_by": self.requested_by, "reason": self.reason},
                          sort_keys=True)

    @staticmethod
    def from_json(text: str) -> "ReplayRequest":
        d = json.loads(text)
        return ReplayRequest(d["groups"], d.get("requested_by"), d.get("reason"))

    def tables(self) -> list[str]:
        return [t for g in self.groups for t in GROUP_TABLES[g]]


@dataclass
class Target:
    group: str
    table: str
    typed: Column          # silver rows to delete
    raw: Column            # bronze / quarantine rows to delete (raw strings, lineage included)
    full: bool = False     # full refresh: every row of the table
    tracker: Column | None = None  # file_tracker rows to delete


# ----------------------------------------------------------------------------------------------- validation

def _schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


def _int(value: Any, source: str, path: str, what: str) -> int:
    if isinstance(value, bool):
        raise RequestError(source, path, f"expected {what}, got {json.dumps(value)}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not re.fullmatch(r"[0-9]{1,4}", text):
        raise RequestError(source, path, f"expected {what}, got {json.dumps(value)}")
    return int(text)


def _date(value: str, source: str, path: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise RequestError(source, path, f"expected a date YYYY-MM-DD, got {json.dumps(value)}") from None


def _codes(values: list, source: str, path: str) -> list[str]:
    out = []
    for i, v in enumerate(values):
        text = str(v).strip()
        if not text:
            raise RequestError(source, f"{path}[{i}]", "expected a non-empty code")
        out.append(text)
    return sorted(set(out))


def parse_request(raw: Any, source: str = "<request>") -> ReplayRequest:
    """Validate a decoded request document; returns the normalized request or raises RequestError."""
    if not isinstance(raw, dict):
        raise RequestError(source, "$", f"expected a JSON object, got {type(raw).__name__}")
    doc: dict[str, Any] = {}
    for key, value in raw.items():
        k = str(key).strip().lower()
        if k not in KNOWN and k not in META_KEYS:
            raise RequestError(source, json_path((key,)), f"unknown source {key!r}; known sources: {list(KNOWN)}")
        if k in doc:
            raise RequestError(source, json_path((key,)), f"source {k!r} given twice")
        doc[k] = value
    errors = sorted(Draft202012Validator(_schema()).iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        if e.validator == "required":
            msg = f"missing key: {e.message.split(' ')[0]}"
        elif e.validator == "additionalProperties":
            msg = f"unexpected key ({e.message})"
        elif e.validator == "oneOf":
            msg = "expected {\"year\", \"months\"} or {\"from_date\", \"to_date\"}"
        else:
            msg = e.message
        raise RequestError(source, json_path(tuple(e.absolute_path)), msg)

    groups: dict[str, dict] = {}
    for g in KNOWN:
        if g not in doc:
            continue
        v, p = doc[g], f"$.{g}"
        sel: dict | None = None
        if "months" in v:                                   # attendance, crc by month
            months = [_int(m, source, f"{p}.months[{i}]", "a month 1..12") for i, m in enumerate(v["months"])]
            for i, m in enumerate(months):
                if not 1 <= m <= 12:
                    raise RequestError(source, f"{p}.months[{i}]", f"month {m} is outside 1..12")
            if months:
                year = _int(v["year"], source, f"{p}.year", "a year YYYY")
                if not 1900 <= year <= 2999:
                    raise RequestError(source, f"{p}.year", f"year {year} is outside 1900..2999")
                sel = {"year": year, "months": sorted(set(months))}
        elif "from_date" in v:                              # diksha summary rollup, crc by dates
            if v["from_date"].strip() or v["to_date"].strip():
                lo = _date(v["from_date"], source, f"{p}.from_date")
                hi = _date(v["to_date"], source, f"{p}.to_date")
                if lo > hi:
                    raise RequestError(source, p, f"from_date {lo} is after to_date {hi} (range the wrong way round)")
                sel = {"from_date": lo.isoformat(), "to_date": hi.isoformat()}
        elif "selection" in v:                              # udise, infrastructure, static
            if v["selection"].lower() == "yes":
                sel = {"selection": "yes"}
        elif g == "semester":
            sems = [_int(s, source, f"{p}.semester[{i}]", "a semester 1 or 2") for i, s in enumerate(v.get("semester", []))]
            for i, s in enumerate(sems):
                if s not in (1, 2):
                    raise RequestError(source, f"{p}.semester[{i}]", f"semester {s} is not 1 or 2")
            codes = _codes(v.get("exam_code", []), source, f"{p}.exam_code")
            ay = v.get("academic_year")
            if ay is not None and not re.fullmatch(r"[0-9]{4}-[0-9]{2}", ay.strip()):
                raise RequestError(source, f"{p}.academic_year", f"expected an academic year YYYY-YY, got {ay!r}")
            if sems or codes:
                sel = {"semester": sorted(set(sems)), "exam_code": codes}
                if ay:
                    sel["academic_year"] = ay.strip()
        elif "exam_code" in v:
            codes = _codes(v["exam_code"], source, f"{p}.exam_code")
            if codes:
                sel = {"exam_code": codes}
        elif "batch_id" in v:
            ids = _codes(v["batch_id"], source, f"{p}.batch_id")
            if ids:
                sel = {"batch_id": ids}
        if sel is not None:
            groups[g] = sel
    if not groups:
        raise RequestError(source, "$", "the request selects nothing to delete (every source is empty or \"no\")")
    return ReplayRequest(groups, doc.get("requested_by"), doc.get("reason"), raw)


def load_request(text: str | bytes, source: str) -> ReplayRequest:
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f"line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else "$"
        raise RequestError(source, where, f"invalid JSON: {getattr(e, 'msg', e)}") from None
    except RecursionError:
        raise RequestError(source, "$", "invalid JSON: nested too deeply") from None
    return parse_request(raw, source)


# ----------------------------------------------------------------------------------------------- periods

def academic_year(year: int, month: int, start_month: int = 6) -> str:
    """Calendar (year, month) → the academic year label ``YYYY-YY`` (June..May by default)."""
    first = year if month >= start_month else year - 1
    return f"{first}-{(first + 1) % 100:02d}"


def month_ranges(year: int, months: list[int]) -> list[tuple[dt.date, dt.date]]:
    return [(dt.date(year, m, 1), dt.date(year, m, calendar.monthrange(year, m)[1])) for m in months]


def selected_ranges(sel: dict) -> list[tuple[dt.date, dt.date]]:
    if "months" in sel:
        return month_ranges(sel["year"], sel["months"])
    return [(dt.date.fromisoformat(sel["from_date"]), dt.date.fromisoformat(sel["to_date"]))]


def periods(req: ReplayRequest) -> list[dict]:
    """The (source, period) pairs a request touches — what the retention job must not touch for 5 days."""
    out = []
    for g, sel in sorted(req.groups.items()):
        if "months" in sel:
            out += [{"group": g, "month": f"{sel['year']:04d}-{m:02d}"} for m in sel["months"]]
        elif "from_date" in sel:
            out.append({"group": g, "from_date": sel["from_date"], "to_date": sel["to_date"]})
        else:
            out.append({"group": g, "codes": sel.get("exam_code") or sel.get("batch_id") or [],
                        "semester": sel.get("semester")})
    return out


# ----------------------------------------------------------------------------------------------- predicates

def _any(cols: list[Column]) -> Column:
    return reduce(lambda a, b: a | b, cols) if cols else F.lit(False)


def _in_ranges(d: Column, ranges: list[tuple[dt.date, dt.date]]) -> Column:
    return _any([d.between(F.lit(lo), F.lit(hi)) for lo, hi in ranges])


def attendance_typed(sel: dict) -> Column:
    return (F.col("year") == F.lit(sel["year"])) & F.col("month").isin([F.lit(m) for m in sel["months"]])


def attendance_raw(table: str, sel: dict, start_month: int = 6) -> Column:
    ay_col, month_col = ATTENDANCE[table]
    month = F.trim(F.col(month_col)).try_cast("int")
    return _any([(F.trim(F.col(ay_col)) == F.lit(academic_year(sel["year"], m, start_month)))
                 & (month == F.lit(m)) for m in sel["months"]])


def dated_typed(table: str, sel: dict) -> Column:
    return _in_ranges(F.to_date(F.col(DATED[table][0])), selected_ranges(sel))


def dated_raw(table: str, sel: dict) -> Column:
    col, fmt = DATED[table]
    return _in_ranges(F.to_date(F.try_to_timestamp(F.trim(F.col(col)), F.lit(fmt))), selected_ranges(sel))


def in_list(col: str, values: list, cast: str | None = None) -> Column:
    c = F.col(col) if cast is None else F.col(col)
    return c.isin([F.lit(v) for v in values]) if values else F.lit(False)


def raw_in_list(col: str, values: list) -> Column:
    return F.trim(F.col(col)).isin([F.lit(str(v)) for v in values]) if values else F.lit(False)


def _coalesce(c: Column) -> Column:
    return F.coalesce(c, F.lit(False))


def plan(req: ReplayRequest, resolved: dict | None = None, start_month: int = 6) -> list[Target]:
    """The targets of a request. ``resolved`` (from the lake, recorded in replay_log before any delete):

    * ``exam_codes`` / ``exam_ids``: ``{group: [...]}`` — the exams of the selected semesters / exam codes;
    * ``lineage``: ``{table: [_file, ...]}`` — files all of whose silver rows are deleted (their bronze and
      quarantine rows go too, whatever their raw values);
    * ``files``: ``{table: [_file, ...]}`` — every file with a deleted row (its file_tracker entries go).
    """
    resolved = resolved or {}
    lineage, files = resolved.get("lineage", {}), resolved.get("files", {})
    out: list[Target] = []
    for g, sel in req.groups.items():
        for table in GROUP_TABLES[g]:
            full = False
            if g in ("student_attendance", "teacher_attendance"):
                typed, raw = attendance_typed(sel), attendance_raw(table, sel, start_month)
            elif table in DATED:
                typed, raw = dated_typed(table, sel), dated_raw(table, sel)
            elif g in ("semester", "periodic_assessment_test"):
                codes = sorted(set(resolved.get("exam_codes", {}).get(g, [])) | set(sel.get("exam_code", [])))
                ids = resolved.get("exam_ids", {}).get(g, [])
                if table.endswith("_qst_mst"):
                    typed, raw = in_list("exam_id", [int(i) for i in ids]), raw_in_list("exam_id", ids)
                elif g == "semester" and table == "semester_exam_mst" and sel.get("semester"):
                    sem = F.col("semester").isin([F.lit(s) for s in sel["semester"]])
                    sem_raw = raw_in_list("semester", sel["semester"])
                    if sel.get("academic_year"):
                        sem = sem & (F.col("assessment_year") == F.lit(sel["academic_year"]))
                        sem_raw = sem_raw & (F.trim(F.col("assessment_year")) == F.lit(sel["academic_year"]))
                    typed = sem | in_list("exam_code", codes)
                    raw = sem_raw | raw_in_list("exam_code", codes)
                else:
                    typed, raw = in_list("exam_code", codes), raw_in_list("exam_code", codes)
            elif g == "diksha_tpd":
                typed, raw = in_list("Batch_Id", sel["batch_id"]), raw_in_list("Batch_Id", sel["batch_id"])
            else:                                                         # full refresh
                typed, raw, full = F.lit(True), F.lit(True), True
            typed, raw = _coalesce(typed), _coalesce(raw)
            lin = lineage.get(table) or []
            if lin and not full:
                raw = raw | F.col("_file").isin([F.lit(f) for f in lin])
            if full:
                tracker = F.col("source") == F.lit(table)
            else:
                fl = files.get(table) or []
                tracker = ((F.col("source") == F.lit(table)) & F.col("input_path").isin([F.lit(f) for f in fl])
                           if fl else F.lit(False))
            out.append(Target(g, table, typed, raw, full, _coalesce(tracker)))
    return out
