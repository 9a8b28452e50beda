"""Pure data shaping of the report (cqube_spark.report.shape, .settings): selection, compaction, manifest."""
from __future__ import annotations

import json

import pytest

from cqube_spark.config import ConfigError
from cqube_spark.report import settings, shape

SETTINGS = settings.parse({
    "periodTypes": ["month", "window"], "breakdownLevels": ["district", "state"],
    "kpis": {"att": {"title": "Attendance", "main": "pct", "bands": [60, 85], "measures": ["students", "pct"],
                     "breakdowns": ["mgmt"]},
             "gone": {"main": "x", "bands": [1, 2], "measures": ["x"], "better": "lower"}}})


def f(kpi, ptype, period, level, breakdown="total", fmt="json"):
    return {"kpi": kpi, "period_type": ptype, "period": period, "level": level, "breakdown": breakdown,
            "format": fmt, "path": f"{kpi}/{period}/{breakdown}/{level}.{fmt}", "as_of": "2020-07-31"}


META = {"kpis": {"att": {"description": "d", "notes": ["n"], "measures": ["pct", "students", "schools"]}},
        "files": [f("att", "window", "overall", "school"), f("att", "window", "overall", "school", fmt="csv"),
                  f("att", "month", "2020-07", "district"), f("att", "month", "2020-06", "district"),
                  f("att", "day", "2020-07-01", "district"),                    # day grain: not carried
                  f("att", "window", "overall", "district", "mgmt"),
                  f("att", "window", "overall", "school", "mgmt"),             # breakdown below breakdownLevels
                  f("att", "window", "overall", "state", "other"),             # breakdown not configured
                  f("hierarchy", "window", "overall", "state")]}


def test_settings_keep_yaml_order_and_put_main_first():
    assert list(SETTINGS["kpis"]) == ["att", "gone"]
    assert SETTINGS["kpis"]["att"]["measures"] == ["students", "pct"]
    assert SETTINGS["kpis"]["gone"]["measures"] == ["x"] and SETTINGS["kpis"]["gone"]["better"] == "lower"


@pytest.mark.parametrize("doc, where", [
    ({"kpis": {}}, "$.kpis"),
    ({"kpis": {"a": {"main": "x", "bands": [2, 1], "measures": []}}}, "$.kpis.a.bands"),
    ({"kpis": {"a": {"main": "x", "bands": [1, 2], "measures": [], "better": "up"}}}, "$.kpis.a.better"),
    ({"kpis": {"a": {"bands": [1, 2], "measures": []}}}, "$.kpis.a.main"),
    ({"periodTypes": ["hour"], "kpis": {"a": {"main": "x", "bands": [1, 2], "measures": []}}}, "$.periodTypes"),
])
def test_bad_settings_name_the_path(doc, where):
    with pytest.raises(ConfigError) as e:
        settings.parse(doc, "r.yaml")
    assert where in str(e.value) and "r.yaml" in str(e.value)


def test_carried_files_filter_and_order():
    got = shape.carried_files(META, SETTINGS)
    assert got["gone"] == []
    assert [(x["period"], x["breakdown"], x["level"]) for x in got["att"]] == [
        ("2020-06", "total", "district"), ("2020-07", "total", "district"),
        ("overall", "mgmt", "district"), ("overall", "total", "school")]


def test_compact_copies_published_values_unchanged():
    doc = {"level": "district", "breakdown_columns": ["mgmt"], "measures": ["pct", "students", "schools"],
           "as_of": "2020-07-31",
           "data": [{"district_id": "7501", "district_name": "D1", "mgmt": "Govt", "pct": 88.3, "students": 10,
                     "schools": 2, "lat": 1.5, "lng": 2.5},
                    {"district_id": "7502", "district_name": "D2", "mgmt": None, "pct": None, "students": 0}]}
    c = shape.compact(doc, SETTINGS["kpis"]["att"])
    assert c["columns"] == ["district_id", "mgmt", "students", "pct"]
    assert c["rows"] == [["7501", "Govt", 10, 88.3], ["7502", None, 0, None]]
    assert c["measures"] == ["students", "pct"] and c["as_of"] == "2020-07-31"


def test_hierarchy_parent_is_the_nearest_existing_level():
    doc = {"level": "school", "data": [
        {"school_id": "1", "school_name": "S1", "cluster_id": "c", "block_id": "b", "lat": 1.0, "lng": 2.0},
        {"school_id": "2", "school_name": "S2", "cluster_id": None, "block_id": "b"},
        {"school_id": "3", "school_name": "S3"}]}
    t = shape.hierarchy_table(doc)
    assert t["rows"] == [["1", "S1", "cluster", "c", 1.0, 2.0], ["2", "S2", "block", "b", None, None],
                         ["3", "S3", None, None, None, None]]


def test_manifest_periods_levels_and_missing_kpis():
    m = shape.manifest(META, SETTINGS, shape.carried_files(META, SETTINGS), ["state", "school"])
    assert m["hierarchy"] == ["school", "state"] and m["kpi_order"] == ["att", "gone"]
    att = m["kpis"]["att"]
    assert [p["key"] for p in att["periods"]] == ["month/2020-06", "month/2020-07", "window/overall"]
    assert att["periods"][2]["label"] == "Overall" and att["periods"][0]["label"] == "Month 2020-06"
    assert att["breakdowns"] == ["total", "mgmt"] and att["levels"] == ["school", "district"]
    assert att["measures"] == ["students", "pct"]
    assert "att/window/overall/mgmt/district" in att["files"]
    assert "not in the published outputs" in m["kpis"]["gone"]["missing"]


def test_main_measure_not_published_is_reported():
    meta = {"kpis": {"att": {"measures": ["students"]}}, "files": META["files"]}
    m = shape.manifest(meta, SETTINGS, shape.carried_files(meta, SETTINGS), [])
    assert "main measure 'pct'" in m["kpis"]["att"]["missing"]


def test_js_file_is_deterministic_and_parseable():
    a = shape.js_file("k/x", {"b": [1.5, None], "a": "é</script>"})
    assert a == shape.js_file("k/x", {"a": "é</script>", "b": [1.5, None]})
    text = a.decode("ascii")
    assert text.startswith('CQ.put("k/x",') and text.endswith(");\n")
    assert json.loads(text[len('CQ.put("k/x",'):-3]) == {"a": "é</script>", "b": [1.5, None]}
