"""The FastAPI application: routes, the error shape, timeouts, metrics (the body limit: ``limits``).

``create_app(settings)`` builds the app; nothing here starts Spark. Routes (all JSON; errors
``{"error": {"status", "code", "message"[, "field"]}}``):

    GET  /health                                   liveness (no auth)
    GET  /metrics                                  Prometheus text: a JWT with the metrics (or admin) role, or
                                                   the static metrics token
    POST /emission/uploads                         emitter: {file_name, size_bytes} -> one-time PUT URL
    PUT  /emission/uploads/{id}/content?sig=       the local one-time upload endpoint (signed link, no bearer)
    GET  /emission/uploads/{id}                    emitter: acknowledgement + file_tracker status per file
    GET  /download/buckets | /download/files?prefix= | /download/metadata | /download/uri?path=
                                                   report_viewer / report_creator: scope-filtered
    GET  /download/file?t=                         the signed download link (filtered to the signer's scope)
    POST /dataset/v1/request/submit, GET /dataset/v1/request/read/{tag}?requestId=, /list/{tag}
                                                   program_manager: exhaust requests (job_request)
    GET  /admin/job-runs | /admin/files | /admin/logs/{job}?lines=N     admin
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import tempfile
import threading
import time
import uuid

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from cqube_spark import storage
from cqube_spark.api import signing, tables, uploads
from cqube_spark.api.auth import Principal, Verifier, require
from cqube_spark.api.config import Settings
from cqube_spark.api.errors import ApiError
from cqube_spark.api.limits import UPLOAD_PUT, BodyLimit
from cqube_spark.api.outputs import Outputs, filter_metadata
from cqube_spark.api.scope import parse_scope

FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.zip$")


class UploadRequest(BaseModel):
    file_name: str = Field(description="the zip's name, e.g. state_2020-07.zip")
    size_bytes: int = Field(gt=0, description="exact size of the zip in bytes")


class SunbirdRequest(BaseModel):
    id: str | None = None
    ver: str | None = None
    params: dict | None = None
    request: dict


def fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def envelope(api_id: str, result: dict) -> dict:
    return {"id": api_id, "ver": "1.0", "ts": dt.datetime.now(dt.timezone.utc).isoformat(),
            "params": {"resmsgid": str(uuid.uuid4()), "status": "successful"}, "responseCode": "OK",
            "result": result}


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="cqube-spark API", version="1",
                  description="Emission, downloads, exhaust requests and admin views (OIDC bearer tokens).")
    store = storage.Storage()
    roots = settings.roots or storage.roots()
    outputs = Outputs(store, roots["output"])
    verifier = Verifier(settings.issuer, settings.audience, settings.jwks)
    registry = CollectorRegistry()
    m_requests = Counter("cqube_api_requests_total", "HTTP requests", ["method", "route", "status"],
                         registry=registry)
    m_latency = Histogram("cqube_api_request_seconds", "HTTP request latency", ["method", "route"],
                          registry=registry)
    m_files = Gauge("cqube_files", "file_tracker rows by status", ["status"], registry=registry)
    m_last_ok = Gauge("cqube_job_last_success_timestamp_seconds", "end of the last successful run per job",
                      ["job"], registry=registry)
    m_quarantined = Gauge("cqube_rows_quarantined", "rows quarantined, sum over file_tracker", registry=registry)
    lake = roots["lake"]
    tracker_uri, runs_uri = storage.join(lake, "meta", "file_tracker"), storage.join(lake, "meta", "job_runs")
    state = {"pg_ready": False}
    scrape_lock = threading.Lock()

    def pg():
        conn_cm = uploads.connect(settings.pg_dsn)
        return conn_cm

    def ensure_pg(conn):
        if not state["pg_ready"]:
            uploads.ensure_table(conn)
            from cqube_spark.exhaust import requests as jr

            jr.ensure_table(conn)
            state["pg_ready"] = True

    def who(request: Request) -> Principal:
        return verifier.verify(request.headers.get("authorization"))

    def secret() -> str:
        """The link-signing secret: the configured one, else the one every API process shares (PostgreSQL)."""
        if settings.signing_secret:
            return settings.signing_secret
        if "secret" not in state:
            with pg() as conn:
                ensure_pg(conn)
                state["secret"] = uploads.shared_secret(conn)
        return state["secret"]

    # -- middleware: limits, timeout, metrics ------------------------------------------------------------
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

    @app.middleware("http")
    async def limits_and_metrics(request: Request, call_next):
        t0 = time.perf_counter()
        route = request.url.path
        status = 500
        try:
            length = request.headers.get("content-length")
            limit = settings.max_upload_bytes if UPLOAD_PUT.match(route) else settings.max_body_bytes
            if length is not None and (not length.isdigit() or int(length) > limit):
                raise ApiError(413, "too_large", f"request body over the limit of {limit} bytes")
            try:
                # an upload may take longer than the timeout while its bytes keep coming: the route applies it
                # to each wait for the next chunk instead
                budget = None if UPLOAD_PUT.match(route) else settings.request_timeout_s
                response = await asyncio.wait_for(call_next(request), budget)
            except asyncio.TimeoutError:
                raise ApiError(504, "timeout", f"request took longer than {settings.request_timeout_s} s") from None
            status = response.status_code
            return response
        except ApiError as e:
            status = e.status
            return JSONResponse(e.body(), status_code=e.status)
        finally:
            r = request.scope.get("route")
            label = getattr(r, "path", "unmatched")
            m_requests.labels(request.method, label, str(status)).inc()
            m_latency.labels(request.method, label).observe(time.perf_counter() - t0)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        return JSONResponse(e.body(), status_code=e.status,
                            headers={"WWW-Authenticate": "Bearer"} if e.status == 401 else None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        loc = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return JSONResponse(ApiError(422, "invalid_request", f"{loc or 'request'}: {first.get('msg', 'invalid')}",
                                     field=loc or None).body(), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return JSONResponse(ApiError(e.status_code, code, str(e.detail)).body(), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def _crash(request: Request, e: Exception):
        return JSONResponse(ApiError(500, "internal", f"{type(e).__name__}: {str(e)[:200]}").body(),
                            status_code=500)

    # -- health and metrics ------------------------------------------------------------------------------
    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.get("/metrics")
    def metrics(request: Request):
        require(who(request), "metrics", "admin")
        rows = tables.query(tracker_uri, "SELECT status, count(*) AS n, sum(coalesce(quarantined_rows, 0)) AS q "
                                         "FROM t GROUP BY status")
        runs = tables.query(runs_uri, "SELECT model, max(ended_at) AS ended FROM t WHERE status = 'SUCCESS' "
                                      "GROUP BY model")
        with scrape_lock:   # one scrape at a time sets the gauges and renders them
            m_files.clear()   # a status no file holds any more (received → loaded) must not keep its last count
            for r in rows:
                m_files.labels(r["status"]).set(r["n"])
            m_quarantined.set(sum(r["q"] or 0 for r in rows))
            for r in runs:
                if r["ended"]:
                    m_last_ok.labels(r["model"]).set(dt.datetime.fromisoformat(r["ended"]).timestamp())
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # -- emission ----------------------------------------------------------------------------------------
    @app.post("/emission/uploads", status_code=201)
    def create_upload(body: UploadRequest, request: Request):
        p = require(who(request), "emitter")
        if not FILE_NAME.match(body.file_name):
            raise ApiError(422, "invalid_request", "file_name must be a plain name ending in .zip "
                           "(letters, digits, '.', '_', '-'; at most 128 characters)", field="file_name")
        if body.size_bytes > settings.max_upload_bytes:
            raise ApiError(413, "too_large", f"size_bytes over the limit of {settings.max_upload_bytes}",
                           field="size_bytes")
        with pg() as conn:
            ensure_pg(conn)
            g = uploads.create(conn, body.file_name, body.size_bytes, roots["emission"], p.username,
                               settings.upload_url_expiry_s)
        loc = storage.parse_uri(g["emission_uri"])
        if loc.is_s3:
            # If-None-Match: * is signed into the URL: a second PUT to the same key is refused (412), a PUT
            # without it or with another length does not match the signature (403).
            url = store.s3.generate_presigned_url(
                "put_object", Params={"Bucket": loc.bucket, "Key": loc.key, "IfNoneMatch": "*",
                                      "ContentLength": body.size_bytes}, ExpiresIn=settings.upload_url_expiry_s)
            headers = {"If-None-Match": "*", "Content-Length": str(body.size_bytes)}
        else:
            sig = signing.sign(secret(), {"u": g["upload_id"]}, settings.upload_url_expiry_s)
            url = f"{settings.base_url}/emission/uploads/{g['upload_id']}/content?sig={sig}"
            headers = {"Content-Length": str(body.size_bytes)}
        return {"upload_id": g["upload_id"], "method": "PUT", "url": url, "headers": headers,
                "expires_at": g["expires_at"].isoformat() + "Z", "size_bytes": body.size_bytes,
                "file_name": body.file_name}

    @app.put("/emission/uploads/{upload_id}/content", status_code=201)
    async def put_content(upload_id: str, request: Request, sig: str = Query("")):
        try:
            claims = signing.verify(secret(), sig)
        except signing.BadSignature as e:
            raise ApiError(403, "bad_link", f"upload refused: {e}") from None
        if claims.get("u") != upload_id:
            raise ApiError(403, "bad_link", "upload refused: the link is for another upload")
        with pg() as conn:
            ensure_pg(conn)
            g, why = uploads.consume(conn, upload_id)
        if why != "ok":
            raise ApiError(410 if g else 404, "upload_refused", f"upload refused: {why}")
        try:   # until the bytes are stored, a failure gives the link back (it stays one-time for a success)
            n, stream = 0, request.stream().__aiter__()
            with tempfile.NamedTemporaryFile(prefix="cqube-upload-") as spool:   # on disk, not in memory
                while True:
                    try:
                        chunk = await asyncio.wait_for(stream.__anext__(), settings.request_timeout_s)
                    except StopAsyncIteration:
                        break
                    except asyncio.TimeoutError:
                        raise ApiError(408, "timeout", f"no upload bytes for {settings.request_timeout_s} s") from None
                    n += len(chunk)
                    if n > g["size_bytes"]:
                        raise ApiError(413, "too_large", f"more bytes than the declared size_bytes {g['size_bytes']}")
                    spool.write(chunk)
                if n != g["size_bytes"]:
                    raise ApiError(400, "size_mismatch", f"received {n} bytes, declared size_bytes {g['size_bytes']}")
                spool.flush()
                await asyncio.to_thread(store.upload_file, spool.name, g["emission_uri"])
            loc = storage.parse_uri(g["emission_uri"])
            if not loc.is_s3:   # on disk before the 201, as write_bytes did (upload_file does not fsync)
                await asyncio.to_thread(fsync_file, loc.key)
        except BaseException:
            with pg() as conn:
                uploads.release(conn, upload_id)
            raise
        with pg() as conn:
            uploads.mark_received(conn, upload_id, n)
        return {"upload_id": upload_id, "status": "received", "bytes": n}

    @app.get("/emission/uploads/{upload_id}")
    def upload_status(upload_id: str, request: Request):
        p = require(who(request), "emitter")
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id):
            raise ApiError(404, "not_found", f"no upload {upload_id!r}", field="upload_id")
        with pg() as conn:
            ensure_pg(conn)
            g = uploads.get(conn, upload_id)
        if g is None or (g["requested_by"] != p.username and "admin" not in p.roles):
            raise ApiError(404, "not_found", f"no upload {upload_id!r} of {p.username}", field="upload_id")
        uri = g["emission_uri"]
        rows = tables.query(tracker_uri, "SELECT member, source, status, records, loaded_rows, quarantined_rows, "
                                         "error, run_id, updated_at FROM t WHERE emission_path = '"
                            + uri.replace("'", "''") + "' ORDER BY updated_at, member")
        if rows:
            status = "processed"
        elif store.exists(uri):
            status = "received"
        elif g["expires_at"] < uploads.utcnow():
            status = "expired"
        else:
            status = "awaiting_upload"
        return {"upload_id": upload_id, "acknowledgement": {"file_name": g["file_name"],
                "size_bytes": g["size_bytes"], "requested_by": g["requested_by"],
                "created_at": g["created_at"].isoformat() + "Z"}, "status": status, "files": rows}

    # -- downloads ---------------------------------------------------------------------------------------
    def viewer(request: Request) -> Principal:
        p = require(who(request), "report_viewer", "report_creator", scoped=True)
        if p.scope is None:  # admin without a claim sees the state
            return Principal(p.subject, p.username, p.roles, parse_scope("state"))
        return p

    @app.get("/download/buckets")
    def buckets(request: Request):
        p = viewer(request)
        return {"scope": str(p.scope), "buckets": [{"name": "output", "description": "published JSON/CSV"}]}

    @app.get("/download/files")
    def list_files(request: Request, bucket: str = "output", prefix: str = ""):
        p = viewer(request)
        if bucket != "output":
            raise ApiError(404, "not_found", f"no bucket {bucket!r} visible to {p.username}", field="bucket")
        if prefix and (".." in prefix or "%" in prefix or prefix.startswith("/") or "\\" in prefix):
            raise ApiError(400, "bad_path", f"prefix {prefix!r} refused", field="prefix")
        _, _, files = outputs.visible(p.scope, prefix)
        return {"scope": str(p.scope), "bucket": bucket, "prefix": prefix,
                "files": [{"path": f["path"], "kpi": f.get("kpi"), "level": f.get("level"),
                           "period": f.get("period"), "format": f.get("format")} for f in files]}

    @app.get("/download/metadata")
    def metadata(request: Request):
        p = viewer(request)
        _, meta, files = outputs.visible(p.scope)
        return filter_metadata(meta, files, p.scope)

    @app.get("/download/uri")
    def download_uri(request: Request, path: str = Query(..., description="a path from /download/files")):
        p = viewer(request)
        run, f = outputs.entry(p.scope, path)
        ttl = settings.download_url_expiry_s
        full = storage.join(run, f["path"])
        if p.scope.is_state and storage.parse_uri(full).is_s3:
            url = store.presigned_url(full, ttl)
        else:
            t = signing.sign(secret(), {"p": f["path"], "s": str(p.scope), "r": run}, ttl)
            url = f"{settings.base_url}/download/file?t={t}"
        return {"path": path, "scope": str(p.scope), "url": url, "expires_in_s": ttl}

    @app.get("/download/file")
    def download_file(t: str = Query("")):
        try:
            c = signing.verify(secret(), t)
        except signing.BadSignature as e:
            raise ApiError(403, "bad_link", f"download refused: {e}") from None
        data, mt = outputs.read_filtered(parse_scope(c["s"]), c["p"])
        return Response(data, media_type=mt)

    # -- exhaust requests (Sunbird dataset request API shape) -------------------------------------------
    from cqube_spark.api import exhaust_api

    exhaust_api.register(app, who, pg, ensure_pg, envelope)

    # -- admin views -------------------------------------------------------------------------------------
    @app.get("/admin/job-runs")
    def job_runs(request: Request, limit: int = Query(50, ge=1, le=1000), model: str | None = None):
        require(who(request), "admin")
        where = ""
        if model is not None:
            if not re.fullmatch(r"[a-z0-9-]{1,64}", model):
                raise ApiError(422, "invalid_request", "model must be a job name", field="model")
            where = f"WHERE model = '{model}'"
        return {"runs": tables.query(runs_uri, f"SELECT * FROM t {where} ORDER BY started_at DESC LIMIT {limit}")}

    @app.get("/admin/files")
    def files(request: Request, status: str | None = None, limit: int = Query(200, ge=1, le=5000)):
        require(who(request), "admin")
        where = ""
        if status is not None:
            if status not in ("received", "loaded", "rejected", "duplicate", "failed"):
                raise ApiError(422, "invalid_request", "status must be received|loaded|rejected|duplicate|failed",
                               field="status")
            where = f"WHERE status = '{status}'"
        return {"files": tables.query(tracker_uri, "SELECT file_id, source, emission_path, member, status, records, "
                                      "loaded_rows, quarantined_rows, error, run_id, updated_at FROM t "
                                      f"{where} ORDER BY updated_at DESC LIMIT {limit}")}

    @app.get("/admin/logs/{job}")
    def logs(job: str, request: Request, lines: int = Query(100, ge=1), day: str | None = None):
        require(who(request), "admin")
        from cqube_spark import logs as logs_mod

        if lines > settings.log_tail_max_lines:
            raise ApiError(422, "invalid_request", f"lines at most {settings.log_tail_max_lines}", field="lines")
        try:
            text = logs_mod.tail(job, lines, day, settings.log_dir)
        except ValueError as e:
            raise ApiError(422, "invalid_request", str(e), field="job") from None
        except FileNotFoundError as e:
            raise ApiError(404, "not_found", str(e), field="job") from None
        return {"job": job, "lines": text}

    return app
