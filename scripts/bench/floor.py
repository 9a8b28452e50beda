"""The storage floor of the main pipeline: what its required Delta tables alone cost on this machine, with no
parsing rules, expectations, dedupe or MERGE. The CSV (typed, so cheaper to write than bronze's strings) is
written once as a Delta table (bronze), read back and written again (silver), and, for the pipeline, the
baseline's aggregate is computed from that copy and written as a third table (gold). A pipeline that writes
these tables cannot take less time than this, whatever it validates. The benches measure it after their timed
run, in a JVM that has already compiled the Parquet and Delta write paths, so it is a lower bound.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

from pyspark.sql import DataFrame


def storage_floor(spark, read_csv: Callable[[], DataFrame], root: Path, stats: str,
                  gold: Callable[[DataFrame], DataFrame] | None = None) -> dict[str, float]:
    """Seconds per table (``bronze``, ``silver``, ``gold`` when asked) and ``total``. ``stats``: the columns Delta
    keeps statistics for (the intake's tables keep them for the key columns only)."""
    from cqube_spark.intake.load import STATS_COLUMNS

    shutil.rmtree(root, ignore_errors=True)
    spark.range(10).write.format("delta").save(str(root / "warm-up"))      # Delta's first-use cost, not charged
    out = {}
    t = time.monotonic()
    read_csv().write.format("delta").option(STATS_COLUMNS, stats).save(str(root / "bronze"))
    out["bronze"] = time.monotonic() - t
    t = time.monotonic()
    (spark.read.format("delta").load(str(root / "bronze"))
     .write.format("delta").option(STATS_COLUMNS, stats).save(str(root / "silver")))
    out["silver"] = time.monotonic() - t
    if gold is not None:
        t = time.monotonic()
        gold(spark.read.format("delta").load(str(root / "silver"))).write.format("delta").save(str(root / "gold"))
        out["gold"] = time.monotonic() - t
    out["total"] = sum(out.values())
    shutil.rmtree(root, ignore_errors=True)
    return {k: round(v, 2) for k, v in out.items()}
