"""``cqube-spark replay list | undo <replay_id> [--force]``.

``list`` prints every row of ``meta/replay_log`` (id, kind, status, who, when, rows deleted per table);
``undo`` runs the ``replay`` job with ``--param undo=<id>`` (a normal job: ``job_runs`` row, exit codes
0 ok, 1 failure, 2 refused — not DONE, changed since, or vacuumed past the retention window).
"""
from __future__ import annotations

import argparse
import json
import sys

from cqube_spark.runner import run_job


def cmd_undo(args) -> int:
    params = [f"undo={args.replay_id}"] + (["force=true"] if args.force else []) + list(args.param)
    return run_job(args.config, args.as_of, params)


def cmd_list(args) -> int:
    from cqube_spark import storage
    from cqube_spark.replay.job import delta_exists
    from cqube_spark.session import get_spark

    spark = get_spark("cqube-replay-list")
    path = storage.spark_path(storage.join(storage.roots()["lake"], "meta", "replay_log"))
    if not delta_exists(spark, path):
        print("no replays yet (meta/replay_log does not exist)")
        return 0
    rows = [r.asDict() for r in spark.read.format("delta").load(path).orderBy("created_at", "replay_id").collect()]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for r in rows:
        deleted = json.loads(r["deleted_json"] or "{}")
        total = sum(v for v in deleted.values() if isinstance(v, int)) if r["kind"] != "vacuum" else ""
        print(f"{r['replay_id']:<44} {r['kind']:<9} {r['status']:<8} {str(r['created_at'])[:19]}  "
              f"{r['requested_by'] or '':<12} rows={total}  {r['error'] or ''}")
    return 0


def register(subparsers) -> None:
    rp = subparsers.add_parser("replay", help="data replay: list replays, undo one")
    sub = rp.add_subparsers(dest="replay_command", required=True, parser_class=type(rp))
    ls = sub.add_parser("list", help="every replay, retention pass, vacuum and refused request")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    undo = sub.add_parser("undo", help="restore every table a replay changed to its previous Delta version")
    undo.add_argument("replay_id")
    undo.add_argument("--force", action="store_true", help="undo even if a table changed after the replay")
    undo.add_argument("--as-of", help="reference date for the recomputed outputs")
    undo.add_argument("--config", default="replay", help=argparse.SUPPRESS)
    undo.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    undo.set_defaults(func=cmd_undo)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0)
