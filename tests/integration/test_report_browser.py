"""The report on real published outputs, driven in headless Chromium (Debian's, through Playwright).

One small pipeline run per module (generator → intake → kpis → publish → report, student attendance and PAT;
the other KPIs are absent, which the page must say). Then the page is opened from its file path and checked:
no console errors, no request outside the report folder, one map point per school, a click on a district shows
only its blocks, a period change shows that period's published values, a breakdown filter shows the published
breakdown rows, the CSV download equals the table, and every data file the page holds equals the published JSON
value for value. The report stage runs with ``scope=district``: one district's copy is opened from its own folder
too (it opens at that district, showing its blocks; no request outside it, only its schools on the map, no other
district to pick). The report job is also run on the same outputs in an S3 bucket, and that report opened over
http from the S3 server (the prefix readable anonymously) shows the same page.
"""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from cqube_spark.report import shape
from cqube_spark.runner import run_job
from cqube_spark.sample import generator

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
KPIS = ["student_attendance", "pat"]
PERIOD_DIRS = {"month": "monthly", "academic_year": "yearly", "week": "weekly", "day": "daily"}


def published_path(key: str) -> str:
    kpi, ptype, period, breakdown, level = key.split("/")
    parts = [kpi] + ([period] if ptype == "window" else [PERIOD_DIRS[ptype], period])
    if breakdown != "total":
        parts.append(f"by_{breakdown}")
    return "/".join(parts + [f"{level}.json"])


@pytest.fixture(scope="module")
def out(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("report") / "data"
    generator.generate(str(root / "emission"), schools=12, students_per_school=4, months=["2020-06", "2020-07"],
                       seed=11, sources=["masters", "student_attendance", "pat"])
    stage = json.dumps({"intake": {"greatExpectations": False}, "kpis": {"kpis": KPIS}, "publish": {"kpis": KPIS},
                        "report": {"scope": "district"}})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CQUBE_DATA_ROOT", str(root))
        for name in ("EMISSION", "INPUT", "OUTPUT", "LAKE"):
            mp.delenv(f"CQUBE_{name}_URI", raising=False)
        assert run_job("pipeline", params=[f"stageParams={stage}"]) == 0
    return root / "output"


def pub(out: Path, rel: str) -> dict:
    return json.loads((out / "current" / rel).read_text())


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def folder(out: Path, rel: str = "report") -> str:
    return (out / rel).resolve().as_uri()


class Page:
    def __init__(self, browser, url: str):
        self.base = url + "/"                   # the report folder: every request must be under it
        self.page = browser.new_page(viewport={"width": 1400, "height": 1200}, accept_downloads=True,
                                     bypass_csp=True)   # the page forbids eval; Playwright polls with it
        self.errors, self.requests = [], []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        t0 = time.monotonic()
        self.page.goto(self.base + "index.html")
        self.wait()
        self.load_seconds = time.monotonic() - t0

    def wait(self):
        self.page.wait_for_function("document.body.dataset.ready === '1'", timeout=15000)

    def select(self, sel: str, value: str):
        self.page.select_option(sel, value)
        self.wait()

    def js(self, expr: str):
        return self.page.evaluate(expr)

    def table(self) -> list[dict]:
        return self.js("""() => { const t = document.getElementById('table');
            const h = [...t.tHead.rows[0].cells].map(c => c.dataset.col);
            return [...t.tBodies[0].rows].map(r => Object.fromEntries([...r.cells].map((c, i) => [h[i], c.textContent])));
        }""")


@pytest.fixture(scope="module")
def page(browser, out):
    p = Page(browser, folder(out))
    yield p
    p.page.close()


def fmt(v) -> str:
    return "" if v is None else (str(v) if not isinstance(v, float) or not v.is_integer() else str(int(v)))


def test_loads_without_errors_and_only_from_the_report_folder(page):
    assert page.errors == []
    outside = [u for u in page.requests if not u.startswith(page.base)]
    assert outside == []
    assert any(u.endswith("/vendor/echarts.min.js") for u in page.requests)
    assert page.load_seconds < 3.0, page.load_seconds
    assert page.js("CQ.state.kpi") == "student_attendance" and page.js("CQ.state.level") == "district"


def test_map_shows_one_point_per_school(page, out):
    page.select("#level", "school")
    schools = pub(out, "student_attendance/overall/school.json")["data"]
    hierarchy = {r["school_id"] for r in pub(out, "hierarchy/school.json")["data"]}
    assert len(schools) == len(hierarchy) == 12
    points = page.js("echarts.getInstanceByDom(document.getElementById('map')).getOption().series[0].data")
    assert sorted(p["id"] for p in points) == sorted(r["school_id"] for r in schools)
    by_id = {r["school_id"]: r for r in schools}
    for p in points:
        r = by_id[p["id"]]
        assert p["value"] == [r["lng"], r["lat"], r["attendance_pct"]]
    page.select("#level", "district")


def test_clicking_a_district_shows_only_its_blocks(page, out):
    districts = pub(out, "student_attendance/overall/district.json")["data"]
    d = districts[-1]
    x, y = page.js(f"""echarts.getInstanceByDom(document.getElementById('map'))
                      .convertToPixel({{seriesIndex: 0}}, [{d['lng']}, {d['lat']}])""")
    box = page.page.locator("#map").bounding_box()
    page.page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait()
    assert page.js("CQ.state.unitLevel") == "district" and page.js("CQ.state.unitId") == d["district_id"]
    assert page.js("CQ.state.level") == "block"
    blocks = [b for b in pub(out, "student_attendance/overall/block.json")["data"]
              if b["district_id"] == d["district_id"]]
    assert blocks
    assert sorted(r["id"] for r in page.table()) == sorted(b["block_id"] for b in blocks)
    assert sorted(page.js("CQ.shown.map(o => o.id)")) == sorted(b["block_id"] for b in blocks)
    crumbs = page.page.locator("#breadcrumb a")
    assert crumbs.count() == 2
    crumbs.first.click()                                    # back up to the state
    page.wait()
    assert page.js("CQ.state.unitLevel") == "state"
    assert sorted(r["id"] for r in page.table()) == sorted(x["district_id"] for x in districts)


def test_period_selector_shows_that_periods_published_values(page, out):
    periods = page.js("CQ.manifest.kpis.student_attendance.periods.map(p => p.key)")
    assert {"month/2020-06", "month/2020-07", "window/overall", "window/last_7_days"} <= set(periods)
    for key, rel in (("month/2020-06", "monthly/2020-06"), ("month/2020-07", "monthly/2020-07"),
                     ("window/last_7_days", "last_7_days")):
        page.select("#period", key)
        want = {r["district_id"]: r for r in pub(out, f"student_attendance/{rel}/district.json")["data"]}
        got = {r["id"]: r for r in page.table()}
        assert got.keys() == want.keys()
        for i, r in got.items():
            assert r["attendance_pct"] == fmt(want[i]["attendance_pct"])
            assert r["students"] == fmt(want[i]["students"])
    page.select("#period", "window/overall")


def test_breakdown_filter_shows_published_breakdown_rows(page, out):
    page.select("#kpi", "pat")
    page.select("#breakdown", "grade_subject")
    values = page.js("[...document.getElementById('bdvalue').options].map(o => o.value)")
    assert len(values) > 1
    page.select("#bdvalue", values[-1])
    grade, subject = values[-1].split(" · ")
    period = page.js("CQ.state.period")
    rel = published_path(f"pat/{period}/grade_subject/district")
    want = {r["district_id"]: r for r in pub(out, rel)["data"] if fmt(r["grade"]) == grade and r["subject"] == subject}
    got = {r["id"]: r["performance_pct"] for r in page.table()}
    assert got == {i: fmt(r["performance_pct"]) for i, r in want.items()}
    page.select("#breakdown", "total")
    page.select("#kpi", "student_attendance")


def test_csv_download_equals_the_table(page):
    page.page.locator("#table th[data-col=students]").click()      # a sorted view: the CSV follows it
    with page.page.expect_download() as dl:
        page.page.click("#csv")
    text = Path(dl.value.path()).read_text()
    rows = page.table()
    header = list(rows[0].keys())
    lines = text.strip("\n").split("\n")
    assert lines[0].split(",") == header
    assert [dict(zip(header, ln.split(","))) for ln in lines[1:]] == rows
    students = [int(r["students"]) for r in rows]
    assert students == sorted(students)


def test_missing_kpi_is_a_message_not_a_blank(page):
    page.select("#kpi", "teacher_attendance")
    assert "not in the published outputs" in page.page.inner_text("#messages")
    assert page.errors == []
    page.select("#kpi", "student_attendance")


def test_every_data_file_equals_the_published_json(page, out):
    keys = page.js("Object.values(CQ.manifest.kpis).flatMap(k => k.files || [])")
    assert any(k.startswith("pat/") and "/exam/" in k for k in keys)
    page.page.evaluate("keys => Promise.all(keys.map(k => CQ.load(k)))", keys)
    store = page.js("CQ.store")
    settings = page.js("CQ.manifest.kpis")
    for key in keys:
        data, doc = store[key], pub(out, published_path(key))
        assert data["measures"] == [m for m in settings[key.split("/")[0]]["measures"] if m in doc["measures"]]
        want = [[r.get(c) for c in data["columns"]] for r in doc["data"]]
        assert data["rows"] == want, key
    assert page.errors == []


def test_unreadable_outputs_exit_1(tmp_path, monkeypatch):
    monkeypatch.setenv("CQUBE_DATA_ROOT", str(tmp_path / "data"))
    for name in ("EMISSION", "INPUT", "OUTPUT", "LAKE"):
        monkeypatch.delenv(f"CQUBE_{name}_URI", raising=False)
    assert run_job("report") == 1


def test_same_outputs_give_identical_report(out, tmp_path):
    from cqube_spark import storage
    from cqube_spark.report import build, job, reader, settings
    from cqube_spark.session import PROJECT_ROOT

    cfg = settings.load(PROJECT_ROOT / "configs" / "report.yaml")
    published = reader.open_current(storage.Storage(), str(out))
    files = build.build(published, cfg)
    on_disk = {str(p.relative_to(out / "report")): p.read_bytes() for p in (out / "report").rglob("*") if p.is_file()}
    state = {k: v for k, v in on_disk.items() if k != "metadata.json" and not k.startswith("district/")}
    assert state == files
    copies = job.scoped_copies(build.shaped(published, cfg), cfg, build.static_files())
    assert len(copies) == len(pub(out, "hierarchy/district.json")["data"]) > 1
    scoped = {k: v for k, v in on_disk.items() if k.startswith("district/") and not k.endswith("/metadata.json")}
    assert scoped == {f"{d}/{rel}": b for d, fs in copies.items() for rel, b in fs.items()}
    assert sum(len(v) for k, v in files.items() if k.startswith("data/")) < 2_000_000
    assert shape.dumps({"b": 1, "a": 2}) == '{"a":2,"b":1}'


@pytest.fixture(scope="module")
def district(out):
    """The published district with the most schools, and its schools (from the published hierarchy)."""
    schools = pub(out, "hierarchy/school.json")["data"]
    ids = sorted({r["district_id"] for r in schools})
    assert len(ids) > 1
    did = max(ids, key=lambda d: (sum(r["district_id"] == d for r in schools), d))
    return did, [r for r in schools if r["district_id"] == did]


def test_district_copy_shows_only_that_district(browser, out, district):
    did, schools = district
    p = Page(browser, folder(out, f"report/district/{did}"))
    try:
        assert p.errors == []
        assert [u for u in p.requests if not u.startswith(p.base)] == []
        assert p.js("Object.keys(CQ.H.district)") == [did]
        assert p.js("[CQ.state.unitLevel, CQ.state.unitId, CQ.state.level]") == ["district", did, "block"]
        blocks = {r["block_id"]: r for r in pub(out, "student_attendance/overall/block.json")["data"]
                  if r["district_id"] == did}
        assert blocks and {r["id"]: r["attendance_pct"] for r in p.table()} == {
            i: fmt(r["attendance_pct"]) for i, r in blocks.items()}
        assert p.page.inner_text("#messages") == ""                     # its own trend: no "no monthly files"
        crumbs = p.js("[...document.querySelectorAll('#breadcrumb > :not(.sep)')].map(e => [e.tagName, e.textContent])")
        state, name = pub(out, "hierarchy/state.json")["data"][0]["state_name"], schools[0]["district_name"]
        assert crumbs == [["SPAN", state], ["A", name]]                 # the state: a name above it, not a link
        assert p.js("[...document.getElementById('level').options].map(o => o.value)") == ["block", "cluster", "school"]
        options = p.js("[...document.getElementById('unit').options].map(o => o.value).filter(v => v)")
        assert sorted(options) == sorted(blocks)
        p.select("#level", "school")
        points = p.js("echarts.getInstanceByDom(document.getElementById('map')).getOption().series[0].data")
        assert sorted(x["id"] for x in points) == sorted(r["school_id"] for r in schools)
        by_id = {r["school_id"]: r for r in pub(out, "student_attendance/overall/school.json")["data"]}
        assert all(x["value"][:2] == [by_id[x["id"]]["lng"], by_id[x["id"]]["lat"]] for x in points)
        assert p.js("Object.values(CQ.manifest.kpis).flatMap(k => k.files || []).filter(f => f.endsWith('/state'))") \
            == []
        assert p.errors == []
    finally:
        p.page.close()


@pytest.fixture(scope="module")
def bucket_report(out, s3):
    """The module's published outputs in a fresh bucket, the report job run there (CQUBE_OUTPUT_URI=s3a://...),
    and the report prefix readable anonymously (a bucket policy, as a deployment would set): its http URL."""
    from cqube_spark import storage

    bucket = f"cqube-report-{uuid.uuid4().hex[:8]}"
    root = f"s3a://{bucket}/output"
    s3.ensure_bucket(root)
    for p in [out / "_current.json", *sorted((out / "_runs").rglob("*"))]:
        if p.is_file():
            s3.upload_file(str(p), storage.join(root, str(p.relative_to(out))))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CQUBE_DATA_ROOT", str(out.parent))
        mp.setenv("CQUBE_OUTPUT_URI", root)
        assert run_job("report") == 0
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                                      "Resource": f"arn:aws:s3:::{bucket}/output/report/*"}]}
    s3.s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    yield f"{s3.s3.meta.endpoint_url}/{bucket}/output/report"
    s3.delete(root, recursive=True)


def test_opens_from_an_s3_bucket(browser, out, bucket_report):
    p, local = Page(browser, bucket_report), Page(browser, folder(out))
    try:
        assert bucket_report.startswith("http://")
        assert p.errors == []
        assert [u for u in p.requests if not u.startswith(p.base)] == []
        assert any(u.endswith("/vendor/echarts.min.js") for u in p.requests)
        styled = "getComputedStyle(document.querySelector('header')).backgroundColor"   # not with a text/plain CSS
        assert p.js(styled) == local.js(styled) == "rgb(31, 59, 87)"
        assert p.table() == local.table() and p.table()
        keys = local.js("Object.values(CQ.manifest.kpis).flatMap(k => k.files || [])")
        for x in (p, local):
            x.page.evaluate("keys => Promise.all(keys.map(k => CQ.load(k)))", keys)
        assert p.js("CQ.store") == local.js("CQ.store")
        assert p.errors == []
    finally:
        p.page.close()
        local.page.close()
