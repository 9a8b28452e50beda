"""Scoped copies of the report: shaped report data (:func:`cqube_spark.report.build.shaped`) → one district's. Pure.

A unit belongs to district ``D`` when its parent chain in the published hierarchy (the nearest level above that
it has, as :func:`cqube_spark.report.shape.hierarchy_table` keeps it) reaches ``D``. The district's copy keeps
``D``, its blocks, clusters and schools, in the hierarchy and in every data file; rows of units not in the
hierarchy (unknown schools with data) cannot be placed in a district and are left out.

The page opens at the district (``root``); the state's hierarchy row stays above it, for the breadcrumb (id and
name only, no coordinates), but no state-level data file is carried. The state aggregate is made of the other
districts' numbers: with a few districts, the state's counts minus the district's own give the others'. This is
the API's rule too (a district user never gets the state file, ``cqube_spark.api.scope``).
"""
from __future__ import annotations

BELOW_DISTRICT = ("block", "cluster", "school")       # coarse to fine: a parent is resolved before its children


def district_ids(sh: dict) -> list[str]:
    """The districts of the published hierarchy, sorted."""
    return sorted({r[0] for r in sh["hierarchy"].get("district", {}).get("rows", []) if r[0] not in (None, "")})


def members(hierarchy: dict, district_id: str) -> dict[str, set]:
    """``{level: ids}`` of the district and every unit under it (district, block, cluster, school)."""
    out = {"district": {r[0] for r in hierarchy.get("district", {}).get("rows", []) if r[0] == district_id}}
    for level in BELOW_DISTRICT:
        out[level] = {r[0] for r in hierarchy.get(level, {}).get("rows", [])
                      if r[2] in out and r[3] in out[r[2]]}
    return out


def _hierarchy(hierarchy: dict, keep: dict[str, set], state_ids: set) -> dict:
    out = {}
    for level, table in hierarchy.items():
        if level == "state":
            rows = [[r[0], r[1], None, None, None, None] for r in table["rows"] if r[0] in state_ids]
        else:
            rows = [r for r in table["rows"] if r[0] in keep.get(level, ())]
        out[level] = {**table, "rows": rows}
    return out


def _data(doc: dict, level: str, ids: set) -> dict:
    col = doc["columns"].index(f"{level}_id")
    return {**doc, "rows": [r for r in doc["rows"] if r[col] in ids]}


def for_district(sh: dict, district_id: str) -> dict:
    """The shaped data of one district's report: same form as ``sh``, nothing of another district."""
    keep = members(sh["hierarchy"], district_id)
    state_ids = {r[3] for r in sh["hierarchy"].get("district", {}).get("rows", [])
                 if r[0] == district_id and r[2] == "state"}
    carried = {kpi: [f for f in entries if f["level"] in keep] for kpi, entries in sh["carried"].items()}
    data = {}
    for key, doc in sh["data"].items():
        level = key.rsplit("/", 1)[1]
        if level in keep:
            data[key] = _data(doc, level, keep[level])
    return {"metadata": sh["metadata"], "hierarchy": _hierarchy(sh["hierarchy"], keep, state_ids),
            "carried": carried, "data": data, "root": {"level": "district", "id": district_id}}
