"""Crash anywhere, rerun, same lake (19.7): a real ``cqube-spark run intake`` process is SIGKILLed at each
step of a file's path (fault points, ``CQUBE_FAULT=kill:<point>``); the next run (in this process) must end
with exactly the bronze, quarantine, silver, tracker and input/ of one uninterrupted run of the same emission.

One small emission (two files, one with a quarantined row); the killed processes run side by side, and the
uninterrupted run is done once per module.
"""
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from cqube_spark.runner import run_job

REPO = Path(__file__).resolve().parents[2]
PARAMS = ["greatExpectations=false"]
FILES = {
    "school_management": ("school_management_master.csv",
                          "ManagementId|Management|default_option\n1|Govt|\n2|Tribal|\nx|Bad|\n3|Aided|\n"),
    "block": ("block_mst.csv", "block_name|udise_block_code|udise_dist_code|udise_state_code\n"
                               "B1|290101|2901|29\nB2|290102|2901|29\n"),
}
POINTS = ["intake.after_copy", "intake.after_bronze", "intake.after_quarantine", "intake.after_silver",
          "intake.before_bookkeeping"]
LINEAGE = ("_run_id", "_loaded_at")
TRACKED = ["source", "sha256", "member", "status", "records", "loaded_rows", "quarantined_rows", "duplicate_rows",
           "size_bytes", "error"]


def new_root(tmp_path_factory, name):
    root = tmp_path_factory.mktemp(name) / "data"
    for sub in ("emission", "input", "output", "lake"):
        (root / sub).mkdir(parents=True)
    for folder, (member, text) in FILES.items():
        path = root / "emission" / folder / f"{folder}.zip"
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(member, text)
    return root


def in_process_run(root) -> int:
    with pytest.MonkeyPatch.context() as mp:
        for k in ("CQUBE_EMISSION_URI", "CQUBE_INPUT_URI", "CQUBE_OUTPUT_URI", "CQUBE_LAKE_URI", "CQUBE_FAULT"):
            mp.delenv(k, raising=False)
        mp.setenv("CQUBE_DATA_ROOT", str(root))
        return run_job("intake", params=PARAMS)


def lake_state(spark, root):
    """Every lake table of the run (lineage columns dropped) and the tracker's per-file facts."""
    out = {}
    for layer in ("bronze", "quarantine", "silver"):
        for t in sorted((root / "lake" / layer).iterdir()):
            df = spark.read.format("delta").load(str(t))
            df = df.drop(*[c for c in LINEAGE if c in df.columns])
            out[f"{layer}/{t.name}"] = df.withColumn("_file", F.regexp_replace("_file", re.escape(str(root)), "<root>"))
    out["tracker"] = spark.read.format("delta").load(str(root / "lake" / "meta" / "file_tracker")).select(*TRACKED)
    return out


def rel_files(p: Path) -> list[str]:
    return sorted(str(f.relative_to(p)) for f in p.rglob("*") if f.is_file())


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory):
    """The killed runs, one process per fault point, started together (they are mostly JVM start-up), while
    this process does the uninterrupted run; returns (baseline root, its state, {point: (root, process)})."""
    killed = {}
    for point in POINTS:
        root = new_root(tmp_path_factory, point.replace(".", "_"))
        env = dict(os.environ, CQUBE_DATA_ROOT=str(root), PYTHONPATH=str(REPO), CQUBE_FAULT=f"kill:{point}")
        for k in ("CQUBE_EMISSION_URI", "CQUBE_INPUT_URI", "CQUBE_OUTPUT_URI", "CQUBE_LAKE_URI"):
            env.pop(k, None)
        log = open(root.parent / "killed.log", "w")
        killed[point] = (root, subprocess.Popen(
            [sys.executable, "-m", "cqube_spark.cli", "run", "intake", *sum((["--param", x] for x in PARAMS), [])],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        base = new_root(tmp_path_factory, "crash_baseline")
        assert in_process_run(base) == 0
        for root, p in killed.values():
            p.wait(timeout=1800)
    finally:
        for _, p in killed.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    return base, lake_state(spark, base), killed


@pytest.mark.parametrize("point", POINTS)
def test_killed_at_a_step_then_rerun_gives_the_uninterrupted_lake(spark, runs, point):
    base_root, want, killed = runs
    root, p = killed[point]
    assert p.returncode == -9, f"not killed at {point} (exit {p.returncode}):\n" \
                               f"{(root.parent / 'killed.log').read_text()[-3000:]}"
    assert in_process_run(root) == 0
    got = lake_state(spark, root)
    assert sorted(got) == sorted(want)
    for name in want:
        assert_df_equality(got[name], want[name], ignore_row_order=True, ignore_nullable=True,
                           ignore_column_order=True)
    assert rel_files(root / "input") == rel_files(base_root / "input")
    assert not list((root / "emission").rglob("*.zip"))        # nothing left behind, nothing rejected
    statuses = [r.status for r in got["tracker"].collect()]
    assert statuses == ["loaded"] * len(FILES), statuses
