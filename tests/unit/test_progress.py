"""The live progress line: drawn on a terminal only, cleared around log records, gone at the end."""
import io
import json
import sys

from cqube_spark import progress
from cqube_spark.logs import get_logger


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_on_a_terminal_shows_stage_step_and_clears_around_log_lines(monkeypatch):
    err = Tty()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.delenv("CQUBE_PROGRESS", raising=False)
    progress.stage("intake")
    progress.step("file 3 of 34 loaded", "school_master")
    get_logger("r1").info("file loaded", rows=7)
    progress.done()
    out = err.getvalue()
    assert "intake" in out and "file 3 of 34 loaded | school_master" in out
    # the JSON record is written on a cleared line and stays parseable; the progress line comes back after it
    record = next(part for part in out.split("\r\033[K") if part.startswith("{"))
    assert json.loads(record.splitlines()[0])["msg"] == "file loaded"
    assert out.rstrip("\n").endswith("\r\033[K")          # done() removes the line


def test_progress_writes_nothing_when_piped_or_turned_off(monkeypatch):
    for stream, env in ((io.StringIO(), None), (Tty(), "0")):
        monkeypatch.setattr(sys, "stderr", stream)
        if env:
            monkeypatch.setenv("CQUBE_PROGRESS", env)
        progress.stage("kpis")
        progress.step("KPI 1 of 10 computed", "crc")
        get_logger("r2").info("kpi computed")
        progress.done()
        lines = stream.getvalue().splitlines()
        assert [json.loads(ln)["msg"] for ln in lines] == ["kpi computed"]
