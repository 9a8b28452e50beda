"""Build the whole report in memory: published outputs (one run) → ``{relative path: bytes}``.

Input: a :class:`cqube_spark.report.reader.Published` and the settings. Output: every file of
``<output>/report/`` (index.html, assets, the vendored ECharts, ``data/manifest.js``, ``data/hierarchy/*.js``,
one ``data/<kpi>/<period_type>/<period>/<breakdown>/<level>.js`` per carried published file). Deterministic:
the same published files give the same bytes (``metadata.json`` beside them is the only file with times/ids
and is written by the job). Reads only.
"""
from __future__ import annotations

from pathlib import Path

from cqube_spark.report import shape

WEB = Path(__file__).resolve().parent / "web"
ECHARTS = WEB / "node_modules" / "echarts" / "dist" / "echarts.min.js"
ECHARTS_LICENSE = WEB / "node_modules" / "echarts" / "LICENSE"


class MissingLibrary(RuntimeError):
    pass


def static_files() -> dict[str, bytes]:
    if not ECHARTS.is_file():
        raise MissingLibrary(f"{ECHARTS} not found: run scripts/setup.sh (npm ci in cqube_spark/report/web)")
    files = {"index.html": (WEB / "index.html").read_bytes(),
             "assets/app.js": (WEB / "app.js").read_bytes(),
             "assets/app.css": (WEB / "app.css").read_bytes(),
             "vendor/echarts.min.js": ECHARTS.read_bytes()}
    if ECHARTS_LICENSE.is_file():
        files["vendor/echarts.LICENSE.txt"] = ECHARTS_LICENSE.read_bytes()
    return files


def shaped(published, settings: dict) -> dict:
    """The report's data before serialization (plain dicts): ``{"metadata", "hierarchy": {level: table},
    "carried": {kpi: [published file entries]}, "data": {data key: compact document}}``. Reads only."""
    meta = published.metadata
    hierarchy: dict[str, dict] = {}
    for f in meta["files"]:
        if f.get("kpi") == "hierarchy" and f.get("format") == "json" and f.get("breakdown") == "total" \
                and f.get("level") in shape.LEVELS:
            hierarchy[f["level"]] = shape.hierarchy_table(published.read_json(f["path"]))
    carried = shape.carried_files(meta, settings)
    data = {}
    for kpi, entries in carried.items():
        for f in entries:
            key = shape.data_key(kpi, f["period_type"], f["period"], f.get("breakdown", "total"), f["level"])
            data[key] = shape.compact(published.read_json(f["path"]), settings["kpis"][kpi])
    return {"metadata": meta, "hierarchy": hierarchy, "carried": carried, "data": data}


def data_files(sh: dict, settings: dict) -> dict[str, bytes]:
    """Shaped data → the ``data/`` files (hierarchy, one per carried file, the manifest). Pure."""
    files = {f"data/hierarchy/{lv}.js": shape.js_file(f"hierarchy/{lv}", t) for lv, t in sh["hierarchy"].items()}
    for kpi, entries in sh["carried"].items():
        for f in entries:
            key = shape.data_key(kpi, f["period_type"], f["period"], f.get("breakdown", "total"), f["level"])
            files[f"data/{key}.js"] = shape.js_file(key, sh["data"][key])
    man = shape.manifest(sh["metadata"], settings, sh["carried"], list(sh["hierarchy"]), sh.get("root"))
    files["data/manifest.js"] = f"CQ.manifest={shape.dumps(man)};\n".encode()
    return files


def build(published, settings: dict) -> dict[str, bytes]:
    return {**static_files(), **data_files(shaped(published, settings), settings)}
