"""spark-submit entry point for every config-driven job.

    spark-submit jobs/run.py --config configs/jobs/<name>.json [--as-of YYYY-MM-DD] [--param key=value ...]

Exit codes: 0 success, 1 job failure, 2 bad config/arguments.
"""
import os
import sys

# Allow running from a checkout without `pip install -e .` (spark-submit ships only this file).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cqube_spark.cli import ArgumentParser, add_run_options  # noqa: E402
from cqube_spark.runner import run_job  # noqa: E402


def main(argv=None) -> int:
    parser = ArgumentParser(prog="jobs/run.py", description="run one cqube-spark job")
    parser.add_argument("--config", required=True, help="path of the job config JSON")
    add_run_options(parser)
    args = parser.parse_args(argv)
    return run_job(args.config, args.as_of, args.param, args.run_id)


if __name__ == "__main__":
    sys.exit(main())
