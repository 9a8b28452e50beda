"""Exhaust requests over HTTP in the Sunbird dataset request API's shape, on the same ``job_request`` table.

    POST /dataset/v1/request/submit   {"request": {"tag", "dataset", "requestedBy"?, "datasetConfig",
                                       "encryptionKey", "requestedChannel"?}}
    GET  /dataset/v1/request/read/{tag}?requestId=      (Sunbird's name; request_id works too)
    GET  /dataset/v1/request/list/{tag}

The rules are those of ``cqube-spark exhaust submit``: the job's ``authorizedRoles`` (the token's
``program_manager`` role is ``PROGRAM_MANAGER``), a non-empty encryption key, ``parse_filters`` on the request
data; the id is ``exhaust.requests.request_id``. The encryption key is never returned. As ``exhaust status``:
a finished request's download link (a presigned GET of the zip on S3, for ``presignedUrlExpirySeconds``) goes
only to its requester; anyone else gets ``downloadUrls: []`` and ``urlWithheld``, never the storage location.
A program manager needs a ``cqube_scope``; a scoped one (``district:7501``) may only request their own unit: the
request must hold the filter ``user_locations['district_id'] = '7501'`` (the filters are ANDed, so any further
filter narrows within it), else 403 ``forbidden_scope``.
"""
from __future__ import annotations

from fastapi import Request

from cqube_spark.api.auth import require
from cqube_spark.api.errors import ApiError


WITHHELD = "the download link is shown only to the requester"


def _links(req, username: str, store) -> dict:
    from cqube_spark.exhaust import JOB_ID
    from cqube_spark.exhaust.cli import job_params
    from cqube_spark.storage import parse_uri

    if not req.download_urls:
        return {}
    if username != req.requested_by:
        return {"downloadUrls": [], "urlWithheld": WITHHELD}
    try:
        expiry = job_params(JOB_ID)["presignedUrlExpirySeconds"]
    except Exception:  # noqa: BLE001 - the job's default when its config cannot be read
        expiry = 1800
    return {"downloadUrls": [store.presigned_url(u, expiry) if parse_uri(u).is_s3 else u for u in req.download_urls],
            "urlExpiresInSeconds": expiry}


def _view(req, username: str, store) -> dict:
    return {"tag": req.tag, "requestId": req.request_id, "dataset": req.job_id, "status": req.status,
            "requestedBy": req.requested_by, "requestedChannel": req.requested_channel,
            "jobStats": {"dtJobSubmitted": req.dt_job_submitted.isoformat() if req.dt_job_submitted else None,
                         "dtJobCompleted": req.dt_job_completed.isoformat() if req.dt_job_completed else None,
                         "executionTime": req.execution_time},
            "attempts": req.iteration, "downloadUrls": [], "error": req.err_message, **_links(req, username, store)}


def register(app, who, pg, ensure_pg, envelope) -> None:
    from cqube_spark.exhaust import JOB_ID
    from cqube_spark.exhaust import requests as jr
    from cqube_spark.storage import Storage

    store = Storage()

    @app.post("/dataset/v1/request/submit")
    def submit(body: dict, request: Request):
        p = require(who(request), "program_manager", scoped=True)
        from cqube_spark.exhaust.cli import job_params
        from cqube_spark.exhaust.filters import InvalidRequest, parse_filters
        from cqube_spark.logs import register_secret

        r = body.get("request") if isinstance(body, dict) else None
        if not isinstance(r, dict):
            raise ApiError(422, "invalid_request", "body must be {\"request\": {...}}", field="request")
        for k in ("tag", "dataset", "datasetConfig", "encryptionKey"):
            if not r.get(k):
                raise ApiError(422, "invalid_request", f"request.{k} is required", field=f"request.{k}")
        register_secret(str(r["encryptionKey"]))
        if r["dataset"] != JOB_ID:
            raise ApiError(422, "invalid_request", f"unknown dataset {str(r['dataset'])[:60]!r} (known: {JOB_ID})",
                           field="request.dataset")
        params = job_params(JOB_ID)
        roles = {x.upper() for x in p.roles}
        if not roles & set(params["authorizedRoles"]) and "ADMIN" not in roles:
            raise ApiError(403, "forbidden_role", f"{p.username} has none of the authorised roles "
                                                  f"({', '.join(params['authorizedRoles'])})")
        data = {"type": JOB_ID, "params": r["datasetConfig"]}
        try:
            f = parse_filters(data, params["allowedLocationKeys"])
        except InvalidRequest as e:
            raise ApiError(422, "invalid_request", f"Not a Valid Request: {e}", field="request.datasetConfig") from None
        if p.scope is not None and not p.scope.is_state and (f"{p.scope.level}_id", p.scope.unit) not in f.locations:
            raise ApiError(403, "forbidden_scope", f"{p.username} is scoped to {p.scope}: the request needs the filter "
                                                   f"user_locations['{p.scope.level}_id'] = '{p.scope.unit}'")
        with pg() as conn:
            ensure_pg(conn)
            req, outcome = jr.submit(conn, tag=str(r["tag"]), job_id=JOB_ID, requested_by=p.username,
                                     channel=str(r.get("requestedChannel") or "cqube-api"), request_data=data,
                                     encryption_key=str(r["encryptionKey"]))
        return envelope("ekstep.analytics.dataset.request.submit", {**_view(req, p.username, store),
                                                                    "outcome": outcome})

    @app.get("/dataset/v1/request/read/{tag}")
    def read(tag: str, request: Request, requestId: str | None = None, request_id: str | None = None):  # noqa: N803
        p = require(who(request), "program_manager")
        request_id = requestId or request_id   # Sunbird's clients send ?requestId=; request_id is kept too
        if not request_id:
            raise ApiError(422, "invalid_request", "requestId is required", field="requestId")
        with pg() as conn:
            ensure_pg(conn)
            req = jr.get(conn, request_id, tag)
        if req is None:
            raise ApiError(404, "not_found", f"no request {request_id!r} with tag {tag!r}", field="request_id")
        return envelope("ekstep.analytics.dataset.request.read", _view(req, p.username, store))

    @app.get("/dataset/v1/request/list/{tag}")
    def list_(tag: str, request: Request, limit: int = 50):
        p = require(who(request), "program_manager")
        with pg() as conn:
            ensure_pg(conn)
            with conn, conn.cursor() as cur:
                cur.execute(f"SELECT {jr.SELECT_COLUMNS} FROM job_request WHERE tag = %s "
                            "ORDER BY dt_job_submitted DESC LIMIT %s", (tag, max(1, min(limit, 1000))))
                reqs = [jr._row(cur, rec) for rec in cur.fetchall()]
        return envelope("ekstep.analytics.dataset.request.list",
                        {"count": len(reqs), "jobs": [_view(x, p.username, store) for x in reqs]})
