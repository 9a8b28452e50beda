"""Publishing without Spark: deterministic rendering, the documented layout, the atomic local switch."""
from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time

from cqube_spark.publish import render, switch
from cqube_spark.publish.job import file_path


def test_json_is_sorted_compact_and_stable():
    a = render.json_bytes({"b": 1, "a": [render.clean(87.25000000001, 1), render.clean(100.0)], "c": None})
    b = render.json_bytes({"c": None, "a": [87.3, 100.0], "b": 1})
    assert a == b == b'{"a":[87.3,100.0],"b":1,"c":null}\n'


def test_clean_rounds_and_normalises():
    assert render.clean(float("nan")) is None
    assert render.clean(-0.0001, 2) == 0.0 and str(render.clean(-0.0001, 2)) == "0.0"
    assert render.clean(dt.date(2020, 7, 31)) == "2020-07-31"
    assert render.clean(19.123456789, 7) == 19.1234568
    assert render.clean(12) == 12 and render.clean("x") == "x"


def test_csv_has_header_and_fixed_cells():
    out = render.csv_bytes(["a", "b", "c"], [{"a": 1.5, "b": None, "c": "x,y"}, {"a": 2, "c": True}])
    assert out == b'a,b,c\n1.5,,"x,y"\n2,,true\n'


def test_documented_layout():
    assert file_path("student_attendance", "month", "2020-07", "total", "district", "json") == \
        "student_attendance/monthly/2020-07/district.json"
    assert file_path("student_attendance", "window", "last_7_days", "total", "school", "json") == \
        "student_attendance/last_7_days/school.json"
    assert file_path("pat", "academic_year", "2020-21", "grade", "state", "csv") == "pat/yearly/2020-21/by_grade/state.csv"
    assert file_path("diksha_content", "day", "2020-07-01", "total", "state", "json") == \
        "diksha_content/daily/2020-07-01/state.json"


def _stage(out, run_id, content):
    d = out / "_runs" / run_id / "kpi_a"
    d.mkdir(parents=True)
    (d / "state.json").write_text(content)
    (out / "_runs" / run_id / "metadata.json").write_text(json.dumps({"run_id": run_id}))


def test_local_switch_is_one_rename_and_prunes_old_runs(tmp_path):
    out = tmp_path / "output"
    out.mkdir()
    (out / "kpi_a").mkdir()                                     # an old real folder is replaced by the link
    for i, rid in enumerate(["20200101T000000Z-a", "20200101T000001Z-b", "20200101T000002Z-c",
                             "20200101T000003Z-d"]):
        _stage(out, rid, f"run {i}")
        switch.switch_local(str(out), rid, ["kpi_a", "metadata.json"], keep=2)
        assert (out / "kpi_a" / "state.json").read_text() == f"run {i}"
        assert json.loads((out / "metadata.json").read_text())["run_id"] == rid
        assert json.loads((out / "_current.json").read_text()) == {"prefix": f"_runs/{rid}", "run_id": rid}
        assert os.readlink(out / "current") == f"_runs/{rid}"
    assert sorted(p.name for p in (out / "_runs").iterdir()) == ["20200101T000002Z-c", "20200101T000003Z-d"]
    assert not any(p.name.startswith(".current.tmp") for p in out.iterdir())


def test_a_reader_never_sees_a_mix_of_two_runs(tmp_path):
    """Readers resolve `current` once and read two files: both always come from the same run."""
    out = tmp_path / "output"
    out.mkdir()
    ids = [f"20200101T0000{i:02d}Z-x" for i in range(30)]
    for rid in ids:
        for name in ("a.json", "b.json"):
            p = out / "_runs" / rid / "kpi_a" / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(rid)
        (out / "_runs" / rid / "metadata.json").write_text("{}")
    switch.switch_local(str(out), ids[0], ["kpi_a", "metadata.json"], keep=100)
    mixed, errors, reads, stop = [], [], [0], threading.Event()

    def reader():
        # a failure in a thread is only a warning to pytest: everything is collected, asserted in the test
        try:
            while not stop.is_set():
                base = out / os.readlink(out / "current")
                a, b = (base / "kpi_a" / "a.json").read_text(), (base / "kpi_a" / "b.json").read_text()
                if a != b:
                    mixed.append((a, b))
                whole = (out / "kpi_a" / "a.json").read_text()    # the documented path: always a whole file
                if whole not in ids:
                    mixed.append(("documented path", whole))
                reads[0] += 1
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(f"{type(e).__name__}: {e}")
    t = threading.Thread(target=reader)
    t.start()
    while reads[0] == 0 and t.is_alive():   # the reader is reading before the switches start
        time.sleep(0.001)
    for rid in ids[1:]:
        switch.switch_local(str(out), rid, ["kpi_a", "metadata.json"], keep=100)
    stop.set()
    t.join()
    assert errors == []
    assert mixed == []
    assert reads[0] > 0
