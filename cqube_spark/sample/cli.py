"""Command-line options of the sample-state generator, shared by `cqube-spark generate` and
`scripts/generate_sample_data.py`."""
from __future__ import annotations

import argparse
import json
import time

from cqube_spark.sample import generator


def add_arguments(p: argparse.ArgumentParser, out_default: str | None = None) -> None:
    p.add_argument("--out", required=out_default is None, default=out_default, help="emission root directory")
    p.add_argument("--schools", type=int, default=160)
    p.add_argument("--students-per-school", type=int, default=30)
    p.add_argument("--months", help="YYYY-MM[,YYYY-MM...] (default 2020-07)")
    p.add_argument("--start-month", help="YYYY-MM, with --num-months (alternative to --months)")
    p.add_argument("--num-months", type=int, default=1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--sources", default="all",
                   help="all, or a comma list of source names or groups (" + ", ".join(generator.GROUPS) + ")")
    p.add_argument("--no-manifest", action="store_true", help="do not add manifest.json to the zips")
    p.add_argument("--inject-exceptions", action="store_true",
                   help="add a few schools that are not in the school master to the transactional files")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(a: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    if a.months and a.start_month:
        p.error("use either --months or --start-month/--num-months")
    months = a.months.split(",") if a.months else generator.month_range(a.start_month or "2020-07", a.num_months)
    t0 = time.perf_counter()
    try:
        summary = generator.generate(a.out, schools=a.schools, students_per_school=a.students_per_school,
                                     months=months, seed=a.seed, sources=a.sources, manifest=not a.no_manifest,
                                     inject_exceptions=a.inject_exceptions)
    except ValueError as e:
        p.error(str(e))
    elapsed = time.perf_counter() - t0
    if a.json:
        print(json.dumps(summary, indent=2))
    else:
        for f in summary["files"]:
            print(f"{f['path']:60s} {f['records']:>10d} rows {f['size_bytes']:>12d} bytes")
        print(f"{len(summary['files'])} file(s) under {a.out} in {elapsed:.1f}s")
    return 0
