"""``cqube-spark``: the command line.

    cqube-spark run <name-or-path> [--as-of D] [--param k=v ...] [--submit [--master URL]]
    cqube-spark generate --out DIR [...]        (sample state; see scripts/generate_sample_data.py)
    cqube-spark <verb> ...                      (verbs registered by COMMAND_MODULES, e.g. exhaust, pii)

Exit codes: 0 success, 1 job failure, 2 bad config or arguments, 3 another run holds the job's lock.
"""
from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from cqube_spark.sample import cli as sample_cli
from cqube_spark.runner import EXIT_CONFIG, resolve_config_path, run_job
from cqube_spark.session import DEFAULTS_FILE, PROJECT_ROOT, driver_java_options, read_defaults, resolve_jars

# Modules that add verbs: each has register(subparsers) and sets `func` on its parsers.
COMMAND_MODULES: list[str] = ["cqube_spark.exhaust.cli", "cqube_spark.replay.cli", "cqube_spark.api.cli"]


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 as well; keep the message short and clear
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--as-of", help="reference date YYYY-MM-DD for windows (default: latest data date)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="override modelParams (dotted keys; JSON values allowed)")
    p.add_argument("--run-id", help=argparse.SUPPRESS)


def package_zip(workdir: str) -> str:
    """Zip the cqube_spark package so executors on other machines can import it (--py-files)."""
    target = os.path.join(workdir, "cqube_spark.zip")
    pkg = PROJECT_ROOT / "cqube_spark"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(pkg.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, path.relative_to(PROJECT_ROOT))
    return target


def submit_command(config: Path, args: argparse.Namespace, workdir: str) -> list[str]:
    """The spark-submit command line for a job (jars and defaults resolved to absolute paths)."""
    import pyspark

    conf = read_defaults(DEFAULTS_FILE)
    conf["spark.jars"] = resolve_jars(conf.get("spark.jars", ""))
    props = os.path.join(workdir, "spark-defaults.conf")
    with open(props, "w") as fh:
        for k, v in conf.items():
            fh.write(f"{k} {v}\n")
    cmd = [os.path.join(os.path.dirname(pyspark.__file__), "bin", "spark-submit"),
           "--properties-file", props, "--py-files", package_zip(workdir)]
    java_options = driver_java_options()   # log4j config + the class archive (the driver runs here)
    if java_options:
        cmd += ["--driver-java-options", java_options]
    if args.master:
        cmd += ["--master", args.master]
    cmd += [str(PROJECT_ROOT / "jobs" / "run.py"), "--config", str(config)]
    if args.as_of:
        cmd += ["--as-of", args.as_of]
    for p in args.param:
        cmd += ["--param", p]
    if args.run_id:
        cmd += ["--run-id", args.run_id]
    return cmd


def cmd_run(args: argparse.Namespace) -> int:
    if getattr(args, "continuous", False):
        args.param = [*args.param, "continuous=true"]
    if getattr(args, "request", None):
        args.param = [*args.param, f"request={args.request}"]
    if not args.submit:
        return run_job(args.job, args.as_of, args.param, args.run_id)
    config = resolve_config_path(args.job)
    if not config.exists():
        print(f"config error: {config}: at $: file not found", file=sys.stderr)
        return EXIT_CONFIG
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    with tempfile.TemporaryDirectory(prefix="cqube-submit-") as workdir:
        return subprocess.call(submit_command(config.resolve(), args, workdir), env=env)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="cqube-spark", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    run = sub.add_parser("run", help="run a job by config name (configs/jobs/<name>.json) or path")
    run.add_argument("job", help="config name or path")
    add_run_options(run)
    run.add_argument("--submit", action="store_true", help="run through spark-submit instead of in-process")
    run.add_argument("--master", help="with --submit: the cluster master URL (default: local[*])")
    run.add_argument("--continuous", action="store_true",
                     help="streaming jobs: run until SIGTERM/SIGINT (= --param continuous=true)")
    run.add_argument("--request", metavar="FILE",
                     help="replay: a deletion request JSON file (= --param request=FILE)")
    run.set_defaults(func=cmd_run)

    gen = sub.add_parser("generate", help="write a deterministic sample state into an emission folder")
    sample_cli.add_arguments(gen, out_default=os.path.join(os.environ.get("CQUBE_DATA_ROOT", "./data"), "emission"))
    gen.set_defaults(func=lambda a: sample_cli.run(a, gen))

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
