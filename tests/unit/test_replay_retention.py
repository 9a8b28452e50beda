"""Retention helpers (pure): what counts as recently replayed, month ends, the vacuum window check."""
from __future__ import annotations

import datetime as dt
import json

from cqube_spark.replay import request as R
from cqube_spark.replay.retention import month_end, recent_replays


def _row(kind, status, created, doc, resolved=None):
    req = R.parse_request(doc)
    return {"kind": kind, "status": status, "created_at": created, "periods_json": json.dumps(R.periods(req)),
            "resolved_json": json.dumps(resolved or {})}


def test_recent_replays_collects_months_dates_and_codes_since_the_cutoff():
    now = dt.datetime(2020, 12, 31, 12, 0)
    rows = [
        _row("replay", "DONE", now - dt.timedelta(days=1), {"student_attendance": {"year": "2020", "months": ["07"]}}),
        _row("replay", "DONE", now - dt.timedelta(days=9), {"student_attendance": {"year": "2020", "months": ["06"]}}),
        _row("replay", "UNDONE", now, {"teacher_attendance": {"year": "2020", "months": ["05"]}}),
        _row("retention", "DONE", now, {"teacher_attendance": {"year": "2020", "months": ["04"]}}),
        _row("replay", "RUNNING", now, {"crc": {"from_date": "2020-08-03", "to_date": "2020-08-04"}}),
        _row("replay", "DONE", now, {"semester": {"semester": [1]}}, {"exam_codes": {"semester": ["SAT1"]}}),
    ]
    got = recent_replays(rows, now - dt.timedelta(days=5))
    assert got["student_attendance"]["months"] == {"2020-07"}
    assert got["student_attendance"]["first_date"] == dt.date(2020, 7, 1)
    assert "teacher_attendance" not in got                 # undone replays and retention passes do not count
    assert got["crc"]["first_date"] == dt.date(2020, 8, 3)
    assert got["semester"]["codes"] == {"SAT1"}


def test_month_end():
    assert month_end(2020, 2) == dt.date(2020, 2, 29) and month_end(2021, 2) == dt.date(2021, 2, 28)
    assert month_end(2020, 12) == dt.date(2020, 12, 31)
