#!/usr/bin/env python3
"""Write a deterministic sample state (cQube emission zips) -- thin wrapper over
cqube_spark.sample.generator.generate (pure Python, no Spark). Same options as `cqube-spark generate`.

Examples:
  python scripts/generate_sample_data.py --out data/emission
  python scripts/generate_sample_data.py --out /tmp/em --schools 4800 --students-per-school 250 \
      --sources student_attendance
  python scripts/generate_sample_data.py --out /tmp/em --start-month 2020-06 --num-months 3
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from cqube_spark.sample import cli  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cli.add_arguments(p)
    return cli.run(p.parse_args(argv), p)


if __name__ == "__main__":
    sys.exit(main())
