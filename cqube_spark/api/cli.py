"""``cqube-spark serve [--config F] [--host H] [--port P]`` and ``cqube-spark emit`` (see ``api.emit``)."""
from __future__ import annotations

import sys

from cqube_spark.api import emit


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the HTTP API (FastAPI on uvicorn; 127.0.0.1 by default)")
    p.add_argument("--config", help="serve config (default configs/jobs/serve.json or CQUBE_API_CONFIG)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=cmd_serve)
    emit.register(sub)


def cmd_serve(args) -> int:
    import dataclasses

    import uvicorn

    from cqube_spark.api import config
    from cqube_spark.api.app import create_app
    from cqube_spark.config import ConfigError
    from cqube_spark.logs import log_to_file

    try:
        s = config.load(args.config)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    s = dataclasses.replace(s, host=args.host or s.host, port=args.port or s.port)
    log_to_file("serve")
    uvicorn.run(create_app(s), host=s.host, port=s.port, log_level="warning", timeout_keep_alive=5,
                limit_concurrency=200, access_log=False)
    return 0
