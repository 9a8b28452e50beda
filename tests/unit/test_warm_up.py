"""A job's warm-up (Python-side preparation beside the Spark session's start): what it prepares, that it never
starts a session itself, and that its failure does not fail the run."""
from __future__ import annotations

import types

from cqube_spark import runner
from cqube_spark.config import load_job_config
from cqube_spark.logs import get_logger
from cqube_spark.models import pipeline
from cqube_spark.quality import expectations


def _ctx(name: str, params: list[str] | None = None) -> runner.JobContext:
    cfg = runner.apply_params(load_job_config(runner.resolve_config_path(name)), params or [])
    return runner.JobContext(config=cfg, run_id="warm-up-test", as_of=None, log=get_logger("warm-up-test"))


def test_pipeline_warm_up_prepares_great_expectations_without_a_session(monkeypatch):
    monkeypatch.setattr(expectations, "_CONTEXT", None)
    ctx = _ctx("pipeline")
    pipeline.warm_up(ctx)
    assert expectations._CONTEXT is not None
    assert ctx._spark is None


def test_no_great_expectations_no_warm_up(monkeypatch):
    monkeypatch.setattr(expectations, "_CONTEXT", None)
    pipeline.warm_up(_ctx("pipeline", ['stageParams={"intake": {"greatExpectations": false}}']))
    assert expectations._CONTEXT is None


def test_a_failed_warm_up_is_logged_not_raised(caplog):
    def broken(ctx):
        raise RuntimeError("no such thing")

    thread = runner.start_warm_up(types.SimpleNamespace(warm_up=broken), _ctx("intake"))
    thread.join(30)
    assert not thread.is_alive()
    assert any("warm-up failed" in r.getMessage() and "no such thing" in str(r.__dict__) for r in caplog.records)
    assert runner.start_warm_up(types.SimpleNamespace(), _ctx("intake")) is None
