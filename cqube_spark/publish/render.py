"""Deterministic JSON and CSV rendering of published rows (pure Python, no Spark).

Same rows in → same bytes out: rows are sorted by the caller, keys are sorted, floats are rounded to a fixed
number of decimals and printed with Python's shortest round-trip ``repr`` (``87.3``, ``100.0``), there are no
timestamps and no run ids inside the files (those live in ``metadata.json`` only).
"""
from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import math
from typing import Any, Iterable

DEFAULT_DECIMALS = 2


def clean(value: Any, decimals: int = DEFAULT_DECIMALS) -> Any:
    """JSON-ready scalar: fixed-decimal floats, ISO dates, lists of cleaned values; NaN/inf → None."""
    t = type(value)
    if t is str or t is int or value is None:       # the common cases first (publish cleans every cell)
        return value
    if t is float and value - value == 0:           # finite
        r = round(value, decimals)
        return 0.0 if r == 0 else r
    if isinstance(value, bool) or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        r = round(value, decimals)
        return 0.0 if r == 0 else r       # no "-0.0"
    if isinstance(value, decimal.Decimal):
        return clean(float(value), decimals)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [clean(v, decimals) for v in value]
    return str(value)


def json_bytes(doc: dict) -> bytes:
    return (json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            + "\n").encode("utf-8")


def _csv_cell(v: Any) -> str:
    t = type(v)
    if t is str:
        return v
    if t is float:
        return repr(v)
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    return str(v)


def csv_bytes(columns: list[str], records: Iterable[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in records:
        w.writerow([_csv_cell(r.get(c)) for c in columns])
    return buf.getvalue().encode("utf-8")
