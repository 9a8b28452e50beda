"""``cqube-spark exhaust init|submit|status`` and ``cqube-spark pii encrypt|decrypt|keygen``.

    cqube-spark exhaust init
    cqube-spark exhaust submit --job program-user-exhaust --tag T --requested-by U --channel C \
        --roles PROGRAM_MANAGER --encryption-key K --request-data '{"type": ..., "params": {...}}'
    cqube-spark exhaust status <request_id> [--tag T] [--requested-by U] [--json]
    cqube-spark pii keygen | encrypt <text> | decrypt <token>      (key from CQUBE_PII_KEY)

``status`` prints a download link (a presigned GET that expires after ``presignedUrlExpirySeconds``) only to
the requester: ``--requested-by`` must equal the request's ``requested_by``; anyone else sees the status and
``url_withheld``, never the link.

Exit codes: 0 ok; 1 service or decryption failure; 2 bad arguments, invalid request or unauthorised
requester; 3 unknown request id.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from cqube_spark.exhaust import JOB_ID
from cqube_spark.logs import redact_text

CQL_FILE = Path(__file__).resolve().parents[2] / "configs" / "exhaust" / "schema.cql"
EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_NOT_FOUND = 0, 1, 2, 3


def cql_statements(text: str) -> list[str]:
    """Statements of a CQL file (``--`` comments dropped, split on ';')."""
    body = "\n".join(re.sub(r"--.*$", "", line) for line in text.splitlines())
    return [s.strip() for s in body.split(";") if s.strip()]


def init_cassandra() -> int:
    from cqube_spark.exhaust import settings

    cluster = settings.cassandra().cluster()
    try:
        session = cluster.connect()
        statements = cql_statements(CQL_FILE.read_text())
        for stmt in statements:
            session.execute(stmt, timeout=60)
        return len(statements)
    finally:
        cluster.shutdown()


def cmd_init(args) -> int:
    from cqube_spark.exhaust import requests

    try:
        n = init_cassandra()
        print(f"cassandra: {n} statement(s) applied from {CQL_FILE.name}")
        with requests.connect() as conn:
            requests.ensure_table(conn)
        print("postgres: job_request ready")
    except Exception as e:  # noqa: BLE001 - a CLI reports, it does not trace
        print(redact_text(f"exhaust init failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"),
              file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def job_params(job: str) -> dict:
    from cqube_spark.exhaust.job import params_with_defaults
    from cqube_spark.runner import resolve_config_path
    from cqube_spark.config import load_job_config

    cfg = load_job_config(resolve_config_path(job))
    return params_with_defaults(cfg.model_params)


def cmd_submit(args) -> int:
    from cqube_spark.config import ConfigError
    from cqube_spark.exhaust import requests
    from cqube_spark.exhaust.filters import InvalidRequest, load_request_data, parse_filters
    from cqube_spark.logs import register_secret

    register_secret(args.encryption_key)
    if args.job != JOB_ID:
        print(f"unknown exhaust job {args.job!r} (known: {JOB_ID})", file=sys.stderr)
        return EXIT_INVALID
    try:
        params = job_params(args.job)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return EXIT_INVALID
    roles = {r.strip() for r in args.roles.split(",") if r.strip()}
    if not roles & set(params["authorizedRoles"]):
        print(f"refused: {args.requested_by} has none of the authorised roles "
              f"({', '.join(params['authorizedRoles'])})", file=sys.stderr)
        return EXIT_INVALID
    if not args.encryption_key:
        print("Not a Valid Request: --encryption-key must not be empty", file=sys.stderr)
        return EXIT_INVALID
    try:
        data = load_request_data(args.request_data)
        parse_filters(data, params["allowedLocationKeys"])
    except InvalidRequest as e:
        print(f"Not a Valid Request: {e}", file=sys.stderr)
        return EXIT_INVALID
    try:
        with requests.connect() as conn:
            requests.ensure_table(conn)
            req, outcome = requests.submit(conn, tag=args.tag, job_id=args.job, requested_by=args.requested_by,
                                           channel=args.channel, request_data=data,
                                           encryption_key=args.encryption_key)
    except Exception as e:  # noqa: BLE001
        print(redact_text(f"submit failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"),
              file=sys.stderr)
        return EXIT_FAILED
    print(req.request_id)
    print(f"{outcome}: status {req.status}", file=sys.stderr)
    return EXIT_OK


def cmd_status(args) -> int:
    from cqube_spark.exhaust import requests
    from cqube_spark.storage import Storage, parse_uri

    try:
        with requests.connect() as conn:
            requests.ensure_table(conn)
            req = requests.get(conn, args.request_id, args.tag)
    except Exception as e:  # noqa: BLE001
        print(redact_text(f"status failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"),
              file=sys.stderr)
        return EXIT_FAILED
    if req is None:
        print(f"no request {args.request_id}", file=sys.stderr)
        return EXIT_NOT_FOUND
    out = {"request_id": req.request_id, "tag": req.tag, "job_id": req.job_id, "status": req.status,
           "iteration": req.iteration, "error": req.err_message,
           "submitted": req.dt_job_submitted.isoformat() if req.dt_job_submitted else None,
           "completed": req.dt_job_completed.isoformat() if req.dt_job_completed else None,
           "execution_time_ms": req.execution_time}
    allowed = args.requested_by is not None and args.requested_by == req.requested_by
    if req.status == requests.SUCCESS and req.download_urls and not allowed:
        out["url_withheld"] = "the download link is shown only to the requester (--requested-by)"
    elif req.status == requests.SUCCESS and req.download_urls:
        location = req.download_urls[0]
        out["location"] = location
        if parse_uri(location).is_s3:
            try:
                expiry = job_params(JOB_ID)["presignedUrlExpirySeconds"]
            except Exception:  # noqa: BLE001 - the default when the config cannot be read
                expiry = 1800
            out["url"] = Storage().presigned_url(location, expiry)
            out["url_expires_in_s"] = expiry
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k in ("request_id", "status", "error", "location", "url", "url_expires_in_s", "url_withheld"):
            if out.get(k) is not None:
                print(f"{k}: {out[k]}")
    return EXIT_OK


def cmd_pii(args) -> int:
    from cqube_spark.exhaust import crypto

    if args.pii_command == "keygen":
        print(crypto.generate_key())
        return EXIT_OK
    try:
        cipher = crypto.PiiCipher(crypto.key_from_env())
        text = args.value if args.value != "-" else sys.stdin.read().rstrip("\n")
        print(cipher.encrypt(text) if args.pii_command == "encrypt" else cipher.decrypt(text))
    except crypto.PiiError as e:
        print(f"pii {args.pii_command} failed: {e}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def register(subparsers) -> None:
    ex = subparsers.add_parser("exhaust", help="on-demand exhaust requests (job_request)")
    ex_sub = ex.add_subparsers(dest="exhaust_command", required=True, parser_class=type(ex))
    init = ex_sub.add_parser("init", help="create Cassandra keyspaces/tables and the job_request table")
    init.set_defaults(func=cmd_init)

    sub = ex_sub.add_parser("submit", help="submit a request; prints its id")
    sub.add_argument("--job", default=JOB_ID)
    sub.add_argument("--tag", required=True)
    sub.add_argument("--requested-by", required=True)
    sub.add_argument("--channel", required=True)
    sub.add_argument("--roles", required=True, help="comma list of the requester's roles")
    sub.add_argument("--encryption-key", required=True, help="password of the report zip")
    sub.add_argument("--request-data", required=True, help="the request JSON (filters)")
    sub.set_defaults(func=cmd_submit)

    st = ex_sub.add_parser("status", help="status, error and download location of a request")
    st.add_argument("request_id")
    st.add_argument("--tag")
    st.add_argument("--requested-by", help="who asks: the download link is shown only to the requester")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    pii = subparsers.add_parser("pii", help="encrypt/decrypt PII values with CQUBE_PII_KEY")
    pii_sub = pii.add_subparsers(dest="pii_command", required=True, parser_class=type(pii))
    pii_sub.add_parser("keygen", help="print a new random key (base64, 32 bytes)").set_defaults(func=cmd_pii)
    for verb in ("encrypt", "decrypt"):
        p = pii_sub.add_parser(verb, help=f"{verb} one value ('-' reads stdin)")
        p.add_argument("value")
        p.set_defaults(func=cmd_pii)
