"""Report settings: ``configs/report.yaml`` → a validated dict (what each KPI shows, its benchmark bands).

Input: the YAML file (path). Output: a plain dict ``{"periodTypes", "breakdownLevels", "kpis": {kpi: {...}}}``.
Pure apart from reading the file; a bad file raises :class:`cqube_spark.config.ConfigError` naming the file
and the path (the job then exits 2).
"""
from __future__ import annotations

from pathlib import Path

import yaml

from cqube_spark.config import ConfigError

LEVELS = ("school", "cluster", "block", "district", "state")
PERIOD_TYPES = ("month", "academic_year", "window", "week", "day")


def parse(doc, source: str = "report.yaml") -> dict:
    if not isinstance(doc, dict) or not isinstance(doc.get("kpis"), dict) or not doc["kpis"]:
        raise ConfigError(source, "$.kpis", "expected a mapping of KPI name -> settings")
    period_types = doc.get("periodTypes", ["month", "academic_year", "window"])
    bad = [p for p in period_types if p not in PERIOD_TYPES]
    if bad:
        raise ConfigError(source, "$.periodTypes", f"unknown period type(s) {bad}; expected {list(PERIOD_TYPES)}")
    bd_levels = doc.get("breakdownLevels", list(LEVELS))
    bad = [lv for lv in bd_levels if lv not in LEVELS]
    if bad:
        raise ConfigError(source, "$.breakdownLevels", f"unknown level(s) {bad}; expected {list(LEVELS)}")
    kpis = {}
    for name, k in doc["kpis"].items():          # the YAML order is the page order
        where = f"$.kpis.{name}"
        if not isinstance(k, dict):
            raise ConfigError(source, where, "expected a mapping")
        for key in ("main", "bands", "measures"):
            if key not in k:
                raise ConfigError(source, f"{where}.{key}", "required")
        better = k.get("better", "higher")
        if better not in ("higher", "lower"):
            raise ConfigError(source, f"{where}.better", f"expected higher or lower, got {better!r}")
        bands = k["bands"]
        if (not isinstance(bands, list) or len(bands) != 2 or not all(isinstance(b, (int, float)) for b in bands)
                or bands[0] > bands[1]):
            raise ConfigError(source, f"{where}.bands", f"expected [low, high] numbers with low <= high, got {bands!r}")
        measures = list(k["measures"])
        if k["main"] not in measures:
            measures = [k["main"]] + measures
        kpis[name] = {"title": str(k.get("title", name)), "main": k["main"], "unit": str(k.get("unit", "")),
                      "better": better, "bands": [bands[0], bands[1]], "measures": measures,
                      "breakdowns": list(k.get("breakdowns", []))}
    return {"periodTypes": list(period_types), "breakdownLevels": list(bd_levels), "kpis": kpis}


def load(path: str | Path) -> dict:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(str(path), "$", "report settings file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(str(path), "$", f"not valid YAML: {e}") from None
    return parse(doc, str(path))
