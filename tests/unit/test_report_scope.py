"""District-scoped report data (cqube_spark.report.scope): only the district's units, at every level, in every file;
the ``scope`` param of the report job (and of the pipeline's report stage)."""
from __future__ import annotations

import json
import types

import pytest

from cqube_spark.config import ConfigError, apply_params, load_job_config
from cqube_spark.models import pipeline
from cqube_spark.report import build, scope, settings, shape
from cqube_spark.session import PROJECT_ROOT

SETTINGS = settings.parse({
    "periodTypes": ["window"], "breakdownLevels": ["district", "state"],
    "kpis": {"att": {"title": "Attendance", "main": "pct", "bands": [60, 85], "measures": ["pct", "students"],
                     "breakdowns": ["mgmt"]}}})

STATE = {"state_id": "75", "state_name": "Test State"}
DISTRICTS = {"7501": "Northdale", "7502": "Southmoor"}


def school(sid, did, bid, cid, n):
    d = {**STATE, "school_id": sid, "school_name": f"School-{sid}", "lat": 19.0 + n, "lng": 73.0 + n}
    if did:
        d.update(district_id=did, district_name=DISTRICTS[did])
    if bid:
        d.update(block_id=bid, block_name=f"Block-{bid}")
    if cid:
        d.update(cluster_id=cid, cluster_name=f"Cluster-{cid}")
    return d


SCHOOLS = [school("75010101001", "7501", "750101", "7501010001", 1),
           school("75010101002", "7501", "750101", None, 2),            # no cluster: hangs from its block
           school("75010201001", "7501", "750102", "7501020001", 3),
           school("75020101001", "7502", "750201", "7502010001", 4),
           school("75020101002", "7502", "750201", "7502010002", 5),
           school("75990000001", None, None, None, 6)]                  # no district: in no district's copy


def units(level):
    """The hierarchy rows of ``level``, derived from the schools (as the published hierarchy is)."""
    above = shape.LEVELS[shape.LEVELS.index(level):]
    rows = {}
    for s in SCHOOLS:
        if s.get(f"{level}_id"):
            rows[s[f"{level}_id"]] = {k: v for k, v in s.items()
                                      if any(k.startswith(f"{a}_") for a in above) or k in ("lat", "lng")}
    return sorted(rows.values(), key=lambda r: r[f"{level}_id"])


def entry(level, breakdown="total"):
    return {"kpi": "att", "format": "json", "period_type": "window", "period": "overall", "level": level,
            "breakdown": breakdown, "path": f"att/overall/{breakdown}/{level}.json", "as_of": "2020-07-31"}


def doc(level, breakdown="total"):
    cols = ["mgmt"] if breakdown != "total" else []
    data = []
    for i, u in enumerate(units(level)):
        for m in (["Govt", "Private"] if cols else [None]):
            data.append({**u, "pct": 70.0 + i, "students": 10 + i, **({"mgmt": m} if cols else {})})
    if level == "school":
        data.append({"school_id": "75990000099", "pct": 50.0, "students": 3})   # unknown school with data
    return {"level": level, "breakdown_columns": cols, "measures": ["pct", "students"], "as_of": "2020-07-31",
            "data": data}


def shaped():
    files = [entry(lv) for lv in shape.LEVELS] + [entry("district", "mgmt"), entry("state", "mgmt")]
    meta = {"kpis": {"att": {"description": "d", "notes": [], "measures": ["pct", "students"]}},
            "files": files + [{"kpi": "hierarchy", "format": "json", "breakdown": "total", "level": lv,
                               "path": f"hierarchy/{lv}.json"} for lv in shape.LEVELS]}
    docs = {f["path"]: doc(f["level"], f["breakdown"]) for f in files}
    docs.update({f"hierarchy/{lv}.json": {"level": lv, "data": units(lv)} for lv in shape.LEVELS})

    class Published:
        metadata = meta

        @staticmethod
        def read_json(rel):
            return json.loads(json.dumps(docs[rel]))

    return build.shaped(Published, SETTINGS)


def district_of(scoped, level, uid):
    """Walk the scoped hierarchy's parent columns up to the district."""
    tables = {lv: {r[0]: r for r in t["rows"]} for lv, t in scoped["hierarchy"].items()}
    while level != "district":
        r = tables[level][uid]
        level, uid = r[2], r[3]
    return tables["district"][uid][0]


def test_district_copy_holds_only_its_units_at_every_level():
    sh = shaped()
    assert scope.district_ids(sh) == ["7501", "7502"]
    for did in ("7501", "7502"):
        sc = scope.for_district(sh, did)
        for level in ("district", "block", "cluster", "school"):
            want = {s[f"{level}_id"] for s in SCHOOLS if s.get("district_id") == did and s.get(f"{level}_id")}
            assert want
            assert {r[0] for r in sc["hierarchy"][level]["rows"]} == want, level
            assert all(district_of(sc, level, r[0]) == did for r in sc["hierarchy"][level]["rows"])
            for key, d in sc["data"].items():
                if key.endswith("/" + level):
                    ids = {r[0] for r in d["rows"]}
                    assert ids == want, key
                    assert all(district_of(sc, level, i) == did for i in ids)
        assert {r[0] for r in sc["hierarchy"]["state"]["rows"]} == {"75"}
        assert sc["hierarchy"]["state"]["rows"][0][2:] == [None, None, None, None]     # no coordinates
        assert not [k for k in sc["data"] if k.endswith("/state")]
        assert not [f for fs in sc["carried"].values() for f in fs if f["level"] == "state"]


def test_nothing_of_the_other_district_in_the_serialized_files():
    sh = shaped()
    before = build.data_files(sh, SETTINGS)
    for did, other in (("7501", "7502"), ("7502", "7501")):
        files = build.data_files(scope.for_district(sh, did), SETTINGS)
        assert files == build.data_files(scope.for_district(sh, did), SETTINGS)      # reproducible
        text = "".join(b.decode("ascii") for b in files.values())
        theirs = [s for s in SCHOOLS if s.get("district_id") == other]
        ids = {s[f"{lv}_id"] for s in theirs for lv in ("district", "block", "cluster", "school") if s.get(f"{lv}_id")}
        names = {s[f"{lv}_name"] for s in theirs for lv in ("district", "block", "cluster", "school")
                 if s.get(f"{lv}_name")}
        assert ids and names
        for x in sorted(ids):
            assert f'"{x}"' not in text, x
        for x in sorted(names):
            assert x not in text, x
        assert '"75990000001"' not in text and '"75990000099"' not in text     # not placed in a district
        assert DISTRICTS[did] in text and f'"{did}"' in text
        man = json.loads(files["data/manifest.js"].decode()[len("CQ.manifest="):-2])
        assert man["root"] == {"level": "district", "id": did}          # the page opens at the district
        assert "state" not in man["kpis"]["att"]["levels"]
        assert not [k for k in man["kpis"]["att"]["files"] if k.endswith("/state")]
        assert set(files) == {f"data/{k}.js" for k in man["kpis"]["att"]["files"]} | {
            f"data/hierarchy/{lv}.js" for lv in shape.LEVELS} | {"data/manifest.js"}
    assert build.data_files(sh, SETTINGS) == before           # the state report's data is not touched
    assert '"root"' not in before["data/manifest.js"].decode()  # the state report opens at the state


def test_unknown_district_gives_an_empty_copy():
    sc = scope.for_district(shaped(), "9999")
    assert all(not t["rows"] for t in sc["hierarchy"].values())
    assert all(not d["rows"] for d in sc["data"].values())


def test_scope_param_is_state_or_district_and_named_when_wrong():
    cfg = load_job_config(PROJECT_ROOT / "configs" / "jobs" / "report.json")
    assert apply_params(cfg, ["scope=district"]).model_params["scope"] == "district"
    with pytest.raises(ConfigError) as e:
        apply_params(cfg, ["scope=county"])
    assert "$.modelParams.scope" in str(e.value) and "county" in str(e.value)

    def ctx(scope_value):     # the pipeline's report stage: stageParams.report applied like --param
        return types.SimpleNamespace(params={"stageParams": {"report": {"scope": scope_value}}}, run_id="r",
                                     as_of=None, log=None, roots={}, store=None, spark=None)
    assert pipeline.stage_context(ctx("district"), "report").params["scope"] == "district"
    with pytest.raises(ConfigError) as e:
        pipeline.stage_context(ctx("county"), "report")
    assert "$.modelParams.scope" in str(e.value)
