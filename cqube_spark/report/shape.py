"""Pure data shaping for the report: published metadata + JSON documents → compact, deterministic data files.

Inputs: the published ``metadata.json`` (dict), published documents (dicts) and the report settings.
Outputs: plain dicts and bytes; no I/O here. Every number is copied from the published document as is
(never recomputed); only the columns the report shows are kept, in a columnar ``{"columns", "rows"}`` form,
so a 4,800-school state stays small. Same inputs → same bytes (sorted keys, no timestamps).

Data files are JavaScript (``CQ.put("<key>", {...});``): a page opened from a plain file path cannot
``fetch()`` JSON, but it can load ``<script>`` files, on demand, from the report folder.
"""
from __future__ import annotations

import json

LEVELS = ("school", "cluster", "block", "district", "state")          # finest first
PERIOD_TYPE_ORDER = {"month": 0, "academic_year": 1, "week": 2, "day": 3, "window": 4}
WINDOW_ORDER = {"last_day": 0, "last_7_days": 1, "last_30_days": 2, "overall": 3}
WINDOW_LABELS = {"last_day": "Last day", "last_7_days": "Last 7 days", "last_30_days": "Last 30 days",
                 "overall": "Overall"}
TYPE_LABELS = {"month": "Month", "academic_year": "Academic year", "week": "Week", "day": "Day"}


def dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def js_file(key: str, obj) -> bytes:
    """A data file: one call that hands the object to the page (``CQ.put``)."""
    return f"CQ.put({dumps(key)},{dumps(obj)});\n".encode()


def period_sort_key(period_type: str, period: str):
    return (PERIOD_TYPE_ORDER.get(period_type, 9), WINDOW_ORDER.get(period, -1), period)


def period_label(period_type: str, period: str) -> str:
    if period_type == "window":
        return WINDOW_LABELS.get(period, period)
    return f"{TYPE_LABELS.get(period_type, period_type)} {period}"


def data_key(kpi: str, period_type: str, period: str, breakdown: str, level: str) -> str:
    """Key and path (under ``data/``, without ``.js``) of one KPI × period × breakdown × level file."""
    return f"{kpi}/{period_type}/{period}/{breakdown}/{level}"


def carried_files(metadata: dict, settings: dict) -> dict[str, list[dict]]:
    """The published JSON files the report carries, per configured KPI (sorted, deterministic)."""
    out: dict[str, list[dict]] = {k: [] for k in settings["kpis"]}
    for f in metadata.get("files", []):
        kpi = f.get("kpi")
        if f.get("format") != "json" or kpi not in out:
            continue
        if f.get("period_type") not in settings["periodTypes"] or f.get("level") not in LEVELS:
            continue
        bd = f.get("breakdown", "total")
        if bd != "total" and (bd not in settings["kpis"][kpi]["breakdowns"]
                              or f["level"] not in settings["breakdownLevels"]):
            continue
        out[kpi].append(f)
    for kpi in out:
        out[kpi].sort(key=lambda f: (period_sort_key(f["period_type"], f["period"]), f.get("breakdown", "total"),
                                     LEVELS.index(f["level"])))
    return out


def compact(doc: dict, kpi_settings: dict) -> dict:
    """A published document → ``{"columns", "rows", "breakdown_columns", "measures", "as_of"}``.

    Columns: ``<level>_id``, the breakdown columns, then the configured measures the document publishes (in
    the configured order). Values are the published values, unchanged; rows keep the published order.
    """
    level = doc["level"]
    bd_cols = list(doc.get("breakdown_columns") or [])
    published = list(doc.get("measures") or [])
    measures = [m for m in kpi_settings["measures"] if m in published]
    columns = [f"{level}_id"] + bd_cols + measures
    rows = [[r.get(c) for c in columns] for r in doc.get("data", [])]
    return {"as_of": doc.get("as_of"), "breakdown_columns": bd_cols, "columns": columns, "measures": measures,
            "rows": rows}


def hierarchy_table(doc: dict) -> dict:
    """``hierarchy/<level>.json`` → ``{"columns": [id, name, parent_level, parent_id, lat, lng], "rows"}``.

    The parent is the nearest level above that the unit has (a school whose cluster is missing hangs from its
    block), as the published hierarchy says.
    """
    level = doc["level"]
    above = LEVELS[LEVELS.index(level) + 1:]
    rows = []
    for r in doc.get("data", []):
        parent_level = next((p for p in above if r.get(f"{p}_id") not in (None, "")), None)
        rows.append([r.get(f"{level}_id"), r.get(f"{level}_name"), parent_level,
                     r.get(f"{parent_level}_id") if parent_level else None, r.get("lat"), r.get("lng")])
    return {"columns": ["id", "name", "parent_level", "parent_id", "lat", "lng"], "rows": rows}


def kpi_entry(kpi: str, kpi_settings: dict, meta_kpi: dict | None, files: list[dict]) -> dict:
    """The manifest's description of one KPI: what it shows, its periods, breakdowns, levels and files."""
    entry = {"title": kpi_settings["title"], "main": kpi_settings["main"], "unit": kpi_settings["unit"],
             "better": kpi_settings["better"], "bands": kpi_settings["bands"]}
    if meta_kpi is None or not files:
        entry["missing"] = (f"{kpi_settings['title']} ({kpi}) is not in the published outputs of this run"
                            if meta_kpi is None else f"{kpi_settings['title']} ({kpi}) has no published files "
                                                     f"for the periods the report carries")
        return entry
    published_measures = list(meta_kpi.get("measures") or [])
    entry["measures"] = [m for m in kpi_settings["measures"] if m in published_measures]
    if kpi_settings["main"] not in published_measures:
        entry["missing"] = f"{kpi}: the main measure {kpi_settings['main']!r} is not published"
        return entry
    entry["description"] = meta_kpi.get("description", "")
    entry["notes"] = list(meta_kpi.get("notes") or [])
    periods: dict[str, dict] = {}
    breakdowns: set[str] = set()
    levels: set[str] = set()
    keys = []
    for f in files:
        pk = f"{f['period_type']}/{f['period']}"
        periods.setdefault(pk, {"key": pk, "type": f["period_type"], "period": f["period"],
                                "label": period_label(f["period_type"], f["period"]),
                                "as_of": f.get("as_of")})
        breakdowns.add(f.get("breakdown", "total"))
        levels.add(f["level"])
        keys.append(data_key(kpi, f["period_type"], f["period"], f.get("breakdown", "total"), f["level"]))
    entry["periods"] = sorted(periods.values(), key=lambda p: period_sort_key(p["type"], p["period"]))
    entry["breakdowns"] = ["total"] + [b for b in kpi_settings["breakdowns"] if b in breakdowns]
    entry["levels"] = [lv for lv in LEVELS if lv in levels]
    entry["files"] = sorted(keys)
    return entry


def manifest(metadata: dict, settings: dict, carried: dict[str, list[dict]], hierarchy_levels: list[str],
             root: dict | None = None) -> dict:
    """``root`` (``{"level", "id"}``, scoped copies only) is the unit the page opens at instead of the state."""
    kpis = {k: kpi_entry(k, s, (metadata.get("kpis") or {}).get(k), carried.get(k, []))
            for k, s in settings["kpis"].items()}
    return {"hierarchy": [lv for lv in LEVELS if lv in hierarchy_levels], "kpis": kpis,
            "kpi_order": list(settings["kpis"]), "levels": list(LEVELS), **({"root": root} if root else {})}
