"""The API against the real services: Keycloak tokens (scripts/services.sh start keycloak), the S3 server,
PostgreSQL and the lake. One API process per emission kind (S3 presigned, local signed) for the module."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO, free_port, require_service

KC = f"http://127.0.0.1:{os.environ.get('CQUBE_KEYCLOAK_PORT', '8180')}"
ISSUER = f"{KC}/realms/cqube"
MGMT_HEADER = '"ManagementId"|"Management"|default_option'
LOCAL_TIMEOUT = 5   # requestTimeoutSeconds of the local-emission API


def token(user: str, client: str = "cqube-api", secret: str = "cqube-api-secret") -> str:
    r = requests.post(f"{ISSUER}/protocol/openid-connect/token", timeout=30, data={
        "grant_type": "password", "client_id": client, "client_secret": secret,
        "username": user, "password": f"{user}-pw"})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def client_token(client: str = "cqube-metrics", secret: str = "cqube-metrics-secret") -> str:
    """A service account's access token (client-credentials grant: no user)."""
    r = requests.post(f"{ISSUER}/protocol/openid-connect/token", timeout=30, data={
        "grant_type": "client_credentials", "client_id": client, "client_secret": secret})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


@pytest.fixture(scope="module")
def tokens():
    try:
        requests.get(f"{ISSUER}/.well-known/openid-configuration", timeout=5).raise_for_status()
    except requests.RequestException:
        pytest.fail(f"keycloak is not reachable at {KC}; start it with `scripts/services.sh start keycloak`",
                    pytrace=False)
    users = ["admin1", "emitter1", "viewer_state", "viewer_d1", "viewer_d2", "viewer_b1", "creator_d1", "pm1",
             "noroles", "noscope"]
    return {u: {"Authorization": f"Bearer {token(u)}"} for u in users}


def publish_fixture(output: Path) -> None:
    """A published run with rows of two districts at every level (what publish writes, tiny)."""
    run = output / "_runs" / "r1"
    def row(level, d, b=None):
        r = {"state_id": "75", "district_id": d, "attendance_pct": 90.0}
        if b:
            r["block_id"] = b
        return r
    files = []
    docs = {
        "student_attendance/overall/state.json": ("state", [{"state_id": "75", "attendance_pct": 89.0}]),
        "student_attendance/overall/district.json": ("district", [row("district", "7501"), row("district", "7502")]),
        "student_attendance/overall/block.json": ("block", [row("block", "7501", "750101"),
                                                           row("block", "7501", "750102"),
                                                           row("block", "7502", "750201")]),
    }
    for path, (level, data) in docs.items():
        p = run / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"data": data, "kpi": "student_attendance", "level": level}))
        files.append({"path": path, "kpi": "student_attendance", "level": level, "format": "json",
                      "period": "overall", "rows": len(data)})
    csv = run / "student_attendance/overall/block.csv"
    csv.write_text("block_id,district_id,state_id,attendance_pct\n750101,7501,75,90\n750201,7502,75,80\n")
    files.append({"path": "student_attendance/overall/block.csv", "kpi": "student_attendance", "level": "block",
                  "format": "csv", "period": "overall", "rows": 2})
    (run / "metadata.json").write_text(json.dumps({"files": files, "run_id": "r1"}))
    (output / "_current.json").write_text(json.dumps({"prefix": "_runs/r1", "run_id": "r1"}))


def start_api(env: dict, port: int, expiry: int = 300, timeout: float = 30) -> subprocess.Popen:
    cfg = json.loads((REPO / "configs" / "jobs" / "serve.json").read_text())
    cfg["modelParams"].update(port=port, issuer=ISSUER, uploadUrlExpirySeconds=expiry, requestTimeoutSeconds=timeout)
    cfg_path = Path(env["CQUBE_DATA_ROOT"]) / f"serve-{port}.json"
    cfg_path.write_text(json.dumps(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "cqube_spark.cli", "serve", "--config", str(cfg_path)],
                            env=env, cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(120):
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        if proc.poll() is not None:
            pytest.fail(f"API exited: {proc.stderr.read().decode()[-2000:]}", pytrace=False)
        time.sleep(0.25)
    proc.kill()
    pytest.fail("API did not answer /health in 30 s", pytrace=False)


@pytest.fixture(scope="module")
def api(tmp_path_factory, s3):
    """API with emission on S3 (presigned PUT), input/output/lake local; and one on a local emission folder."""
    require_service("postgres")
    root = tmp_path_factory.mktemp("api") / "data"
    for sub in ("input", "output", "lake", "emission"):
        (root / sub).mkdir(parents=True)
    publish_fixture(root / "output")
    bucket = f"s3a://cqube-api-{uuid.uuid4().hex[:8]}"
    s3.ensure_bucket(bucket)
    env = dict(os.environ, CQUBE_DATA_ROOT=str(root), CQUBE_EMISSION_URI=f"{bucket}/emission",
               CQUBE_LOG_DIR=str(root / "logs"), PYTHONPATH=str(REPO))
    for k in ("CQUBE_INPUT_URI", "CQUBE_OUTPUT_URI", "CQUBE_LAKE_URI", "CQUBE_API_SIGNING_SECRET"):
        env.pop(k, None)
    local_root = root.parent / "local"
    for sub in ("emission", "output", "lake"):
        (local_root / sub).mkdir(parents=True)
    publish_fixture(local_root / "output")
    local_env = dict(env, CQUBE_DATA_ROOT=str(local_root), CQUBE_LOG_DIR=str(local_root / "logs"))
    local_env.pop("CQUBE_EMISSION_URI")
    p1, p2 = free_port(), free_port()
    procs = [start_api(env, p1), start_api(local_env, p2, expiry=2, timeout=LOCAL_TIMEOUT)]
    yield {"url": f"http://127.0.0.1:{p1}", "local_url": f"http://127.0.0.1:{p2}", "env": env, "root": root,
           "local_root": local_root, "bucket": bucket, "pids": [p.pid for p in procs]}
    for p in procs:
        p.terminate()
        p.wait(10)


@pytest.fixture(scope="module")
def s3_api(api, s3, tmp_path_factory):
    """A third API process with emission and output both on S3 (its own emission prefix: the main API's intake
    test counts what its emission holds), and upload links that live 2 s."""
    staged = tmp_path_factory.mktemp("s3-output")
    publish_fixture(staged)
    out = f"{api['bucket']}/output"
    for f in sorted(p for p in staged.rglob("*") if p.is_file()):
        s3.write_bytes(f"{out}/{f.relative_to(staged).as_posix()}", f.read_bytes())
    root = tmp_path_factory.mktemp("s3-api") / "data"
    for sub in ("input", "lake"):
        (root / sub).mkdir(parents=True)
    emission = f"{api['bucket']}/emission-s3"
    env = dict(api["env"], CQUBE_DATA_ROOT=str(root), CQUBE_OUTPUT_URI=out, CQUBE_EMISSION_URI=emission,
               CQUBE_LOG_DIR=str(root / "logs"))
    port = free_port()
    proc = start_api(env, port, expiry=2)
    yield {"url": f"http://127.0.0.1:{port}", "emission": emission, "env": env}
    proc.terminate()
    proc.wait(10)


def zip_bytes(tmp_path: Path, rows: tuple[str, ...] = ('1|"Govt"|', '2|"Tribal"|')) -> bytes:
    z = tmp_path / "school_management_master.zip"
    text = MGMT_HEADER + "\n" + "".join(r + "\n" for r in rows)
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("school_management_master.csv", text)
        zf.writestr("manifest.json", json.dumps({"files": [
            {"name": "school_management_master.csv", "size_bytes": len(text.encode()), "records": len(rows)}]}))
    return z.read_bytes()


# -- authentication and roles -------------------------------------------------------------------------------

def test_no_token_bad_token_and_wrong_audience_are_401(api, tokens):
    u = api["url"]
    r = requests.get(f"{u}/download/buckets", timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
    assert "Bearer" in r.json()["error"]["message"]
    r = requests.get(f"{u}/download/buckets", headers={"Authorization": "Bearer not.a.jwt"}, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
    forged = tokens["viewer_d1"]["Authorization"][:-6] + "AAAAAA"   # signature altered
    r = requests.get(f"{u}/download/buckets", headers={"Authorization": forged}, timeout=10)
    assert r.status_code == 401


def test_expired_token_is_401(api):
    short = token("viewer_state", "cqube-api-short", "cqube-api-short-secret")   # 2 s lifespan
    h = {"Authorization": f"Bearer {short}"}
    assert requests.get(f"{api['url']}/download/buckets", headers=h, timeout=10).status_code == 200
    time.sleep(3.2)
    r = requests.get(f"{api['url']}/download/buckets", headers=h, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_expired"


def test_wrong_audience_wrong_issuer_and_id_tokens_are_401(api):
    """Real Keycloak tokens that fail one check each: another client's (no cqube-api audience), one issued under
    another host name (same realm and keys, another issuer), and an ID token (right audience, not an access token)."""
    u = f"{api['url']}/download/buckets"
    r = requests.post(f"{ISSUER}/protocol/openid-connect/token", timeout=30, data={
        "grant_type": "password", "client_id": "admin-cli", "username": "viewer_d1", "password": "viewer_d1-pw"})
    assert r.status_code == 200, r.text
    r = requests.get(u, headers={"Authorization": f"Bearer {r.json()['access_token']}"}, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token" and "aud" in r.text
    r = requests.post(f"{ISSUER.replace('127.0.0.1', 'localhost')}/protocol/openid-connect/token", timeout=30, data={
        "grant_type": "password", "client_id": "cqube-api", "client_secret": "cqube-api-secret",
        "username": "viewer_d1", "password": "viewer_d1-pw", "scope": "openid"})
    assert r.status_code == 200, r.text
    r = requests.get(u, headers={"Authorization": f"Bearer {r.json()['access_token']}"}, timeout=10)
    assert r.status_code == 401 and "issuer" in r.json()["error"]["message"]
    r = requests.post(f"{ISSUER}/protocol/openid-connect/token", timeout=30, data={
        "grant_type": "password", "client_id": "cqube-api", "client_secret": "cqube-api-secret",
        "username": "admin1", "password": "admin1-pw", "scope": "openid"})
    id_token = r.json()["id_token"]
    r = requests.get(f"{api['url']}/admin/files", headers={"Authorization": f"Bearer {id_token}"}, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token", r.text
    assert "ID token" in r.json()["error"]["message"]


@pytest.mark.parametrize("user,method,path,body", [
    ("noroles", "get", "/download/buckets", None),
    ("emitter1", "get", "/download/files", None),
    ("viewer_d1", "post", "/emission/uploads", {"file_name": "a.zip", "size_bytes": 10}),
    ("pm1", "get", "/download/metadata", None),
    ("viewer_state", "post", "/dataset/v1/request/submit", {"request": {}}),
    ("creator_d1", "get", "/admin/job-runs", None),
    ("emitter1", "get", "/admin/files", None),
    ("viewer_d1", "get", "/admin/logs/intake", None),
    ("noscope", "get", "/download/files", None),
    ("noscope", "get", "/download/uri?path=student_attendance/overall/block.json", None),
    ("emitter1", "get", "/dataset/v1/request/list/t1", None),
    ("viewer_d1", "get", "/dataset/v1/request/read/t1?request_id=x", None),
    ("noroles", "post", "/emission/uploads", {"file_name": "a.zip", "size_bytes": 10}),
])
def test_every_role_and_scope_refusal_is_403(api, tokens, user, method, path, body):
    r = getattr(requests, method)(api["url"] + path, headers=tokens[user], json=body, timeout=10)
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["code"] in ("forbidden_role", "forbidden_scope") and user in err["message"]


def test_openapi_and_error_shape(api):
    doc = requests.get(f"{api['url']}/openapi.json", timeout=10).json()
    assert "/emission/uploads" in doc["paths"] and "/download/uri" in doc["paths"]
    r = requests.get(f"{api['url']}/nope", timeout=10)
    assert r.status_code == 404 and set(r.json()["error"]) >= {"status", "code", "message"}
    r = requests.post(f"{api['url']}/emission/uploads", data=b"x" * 2_000_000, timeout=10)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


def test_a_chunked_body_over_the_limit_is_413(api, tokens):
    """No Content-Length (chunked transfer): the body is counted as it arrives, not trusted to a header."""
    def chunks():
        for _ in range(200):
            yield b"x" * 10_000
    r = requests.post(f"{api['url']}/emission/uploads", data=chunks(), timeout=30,
                      headers={**tokens["emitter1"], "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large", r.text
    small = iter([json.dumps({"file_name": "chunked.zip", "size_bytes": 10}).encode()])
    r = requests.post(f"{api['url']}/emission/uploads", data=small, timeout=30,
                      headers={**tokens["emitter1"], "Content-Type": "application/json"})
    assert r.status_code == 201, r.text


# -- downloads, filtered by scope -----------------------------------------------------------------------------

def test_district_viewer_lists_and_downloads_only_their_district(api, tokens):
    u, h = api["url"], tokens["viewer_d1"]
    files = requests.get(f"{u}/download/files", headers=h, timeout=10).json()["files"]
    assert sorted(f["path"] for f in files) == ["student_attendance/overall/block.csv",
                                                "student_attendance/overall/block.json",
                                                "student_attendance/overall/district.json"]   # no state file
    meta = requests.get(f"{u}/download/metadata", headers=h, timeout=10).json()
    assert meta["scope"] == "district:7501" and len(meta["files"]) == 3
    for path, want in [("student_attendance/overall/block.json", ["750101", "750102"]),
                       ("student_attendance/overall/district.json", [None])]:
        link = requests.get(f"{u}/download/uri", params={"path": path}, headers=h, timeout=10).json()
        assert "X-Amz" not in link["url"]   # a scoped user never gets the raw object
        doc = requests.get(link["url"], timeout=10).json()
        assert {r["district_id"] for r in doc["data"]} == {"7501"}
        assert [r.get("block_id") for r in doc["data"]] == want
    link = requests.get(f"{u}/download/uri", params={"path": "student_attendance/overall/block.csv"},
                        headers=h, timeout=10).json()
    assert requests.get(link["url"], timeout=10).text.splitlines() == [
        "block_id,district_id,state_id,attendance_pct", "750101,7501,75,90"]
    # a block user sees only the block file, with its one row
    hb = tokens["viewer_b1"]
    assert {f["level"] for f in requests.get(f"{u}/download/files", headers=hb, timeout=10).json()["files"]} \
        == {"block"}
    link = requests.get(f"{u}/download/uri", params={"path": "student_attendance/overall/block.json"},
                        headers=hb, timeout=10).json()
    assert [r["block_id"] for r in requests.get(link["url"], timeout=10).json()["data"]] == ["750101"]


@pytest.mark.parametrize("path", [
    "student_attendance/overall/state.json",          # coarser than the scope
    "../output/_runs/r1/student_attendance/overall/state.json",
    "student_attendance/overall/../overall/state.json",
    "student_attendance/overall/%2e%2e/state.json",
    "student_attendance%2Foverall%2Fstate.json",
    "/etc/passwd",
    "student_attendance\\overall\\state.json",
    "_runs/r1/student_attendance/overall/state.json",
    "metadata.json",
    "_current.json",
    "student_attendance/overall/./district.json",
    "s3a://bucket/output/student_attendance/overall/state.json",
])
def test_district_viewer_cannot_reach_other_rows_by_any_path(api, tokens, path):
    r = requests.get(f"{api['url']}/download/uri", params={"path": path}, headers=tokens["viewer_d1"], timeout=10)
    assert r.status_code in (400, 404), r.text
    assert "url" not in r.json()


def test_tampered_or_expired_download_link_is_refused(api, tokens):
    u = api["url"]
    link = requests.get(f"{u}/download/uri", params={"path": "student_attendance/overall/district.json"},
                        headers=tokens["viewer_d1"], timeout=10).json()["url"]
    body, mac = link.split("t=")[1].split(".")
    import base64
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["s"] = "state"   # widen the scope
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    r = requests.get(f"{u}/download/file", params={"t": f"{forged}.{mac}"}, timeout=10)
    assert r.status_code == 403 and "signature" in r.json()["error"]["message"]


def test_a_link_signed_by_one_api_process_verifies_in_another(api, tokens):
    """No CQUBE_API_SIGNING_SECRET: both processes share the secret kept in PostgreSQL."""
    link = requests.get(f"{api['url']}/download/uri", params={"path": "student_attendance/overall/block.json"},
                        headers=tokens["viewer_d1"], timeout=10).json()["url"]
    other = link.replace(api["url"], api["local_url"])
    doc = requests.get(other, timeout=10)
    assert doc.status_code == 200, doc.text
    assert {r["district_id"] for r in doc.json()["data"]} == {"7501"}


def test_the_scrapers_service_account_reads_metrics_and_nothing_else(api, tokens):
    """Prometheus' client ``cqube-metrics`` (client-credentials grant, its service account holds the ``metrics``
    role) scrapes /metrics; its token opens no other route, and a user without the role is refused /metrics."""
    u = api["url"]
    scraper = {"Authorization": f"Bearer {client_token()}"}
    assert requests.get(f"{u}/metrics", timeout=10).status_code == 401
    assert requests.get(f"{u}/metrics", headers={"Authorization": "Bearer wrong-token"}, timeout=10).status_code == 401
    for h in (scraper, tokens["admin1"]):
        r = requests.get(f"{u}/metrics", headers=h, timeout=10)
        assert r.status_code == 200 and "cqube_api_requests_total" in r.text
    for method, path, body in (("get", "/admin/files", None), ("get", "/admin/job-runs", None),
                               ("get", "/admin/logs/intake", None), ("get", "/download/buckets", None),
                               ("get", "/download/files", None), ("get", "/download/metadata", None),
                               ("get", "/download/uri?path=student_attendance/overall/state.json", None),
                               ("post", "/emission/uploads", {"file_name": "a.zip", "size_bytes": 10}),
                               ("get", "/emission/uploads/x", None),
                               ("post", "/dataset/v1/request/submit", {"request": {}}),
                               ("get", "/dataset/v1/request/list/t1", None)):
        r = getattr(requests, method)(u + path, headers=scraper, json=body, timeout=10)
        assert r.status_code == 403, (path, r.text)
        err = r.json()["error"]
        assert err["code"] == "forbidden_role" and "service-account-cqube-metrics lacks the role" in err["message"]
    for user in ("viewer_state", "emitter1", "creator_d1", "pm1", "noroles"):
        r = requests.get(f"{u}/metrics", headers=tokens[user], timeout=10)
        assert r.status_code == 403, r.text
        err = r.json()["error"]
        assert err["code"] == "forbidden_role" and f"{user} lacks the role" in err["message"] and \
            "metrics" in err["message"]
    r = requests.post(f"{ISSUER}/protocol/openid-connect/token", timeout=30, data={   # no user logs in through it
        "grant_type": "password", "client_id": "cqube-metrics", "client_secret": "cqube-metrics-secret",
        "username": "admin1", "password": "admin1-pw"})
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"


def test_state_viewer_gets_presigned_get_of_the_whole_file(api, tokens):
    link = requests.get(f"{api['url']}/download/uri", params={"path": "student_attendance/overall/state.json"},
                        headers=tokens["viewer_state"], timeout=10).json()
    doc = requests.get(link["url"], timeout=10).json()   # local output: a signed link, unfiltered
    assert doc["data"][0]["state_id"] == "75"


def test_outputs_on_s3_state_gets_a_presigned_get_districts_their_rows(s3_api, tokens):
    u = s3_api["url"]
    link = requests.get(f"{u}/download/uri", params={"path": "student_attendance/overall/state.json"},
                        headers=tokens["viewer_state"], timeout=10).json()["url"]
    assert "X-Amz-Signature" in link
    assert requests.get(link, timeout=10).json()["data"] == [{"state_id": "75", "attendance_pct": 89.0}]
    for user, district in (("viewer_d1", "7501"), ("viewer_d2", "7502")):
        link = requests.get(f"{u}/download/uri", params={"path": "student_attendance/overall/block.json"},
                            headers=tokens[user], timeout=10).json()["url"]
        assert "X-Amz" not in link
        assert {r["district_id"] for r in requests.get(link, timeout=10).json()["data"]} == {district}
    listed = requests.get(f"{u}/download/files", params={"prefix": "student_attendance/overall/block"},
                          headers=tokens["viewer_d1"], timeout=10).json()["files"]
    assert sorted(f["path"] for f in listed) == ["student_attendance/overall/block.csv",
                                                 "student_attendance/overall/block.json"]
    for bad in ("../output", "student_attendance/%2e%2e/", "/student_attendance"):
        r = requests.get(f"{u}/download/files", params={"prefix": bad}, headers=tokens["viewer_d1"], timeout=10)
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_path"
    meta = requests.get(f"{u}/download/metadata", headers=tokens["viewer_d1"], timeout=10).json()
    assert all("rows" not in f and "sha256" not in f for f in meta["files"])   # counts of the whole state


def test_an_expired_presigned_put_is_refused_by_s3(s3_api, tokens, tmp_path, s3):
    data = zip_bytes(tmp_path)
    grant = requests.post(f"{s3_api['url']}/emission/uploads", json={"file_name": "late.zip", "size_bytes": len(data)},
                          headers=tokens["emitter1"], timeout=10).json()
    assert "X-Amz-Signature" in grant["url"]
    time.sleep(3)   # this server's links live 2 s
    r = requests.put(grant["url"], data=data, headers=grant["headers"], timeout=30)
    assert r.status_code == 403 and "expired" in r.text.lower()
    ack = requests.get(f"{s3_api['url']}/emission/uploads/{grant['upload_id']}", headers=tokens["emitter1"],
                       timeout=10).json()
    assert ack["status"] == "expired"


def test_emit_command_uploads_a_folder_to_s3_by_presigned_url(s3_api, tokens, tmp_path, s3):
    folder = tmp_path / "state_2020-07"
    folder.mkdir()
    (folder / "school_management_master.csv").write_text(MGMT_HEADER + '\n1|"Govt"|\n')
    env = dict(s3_api["env"], CQUBE_API_TOKEN=tokens["emitter1"]["Authorization"].split()[1])
    out = subprocess.run([sys.executable, "-m", "cqube_spark.cli", "emit", str(folder), "--api", s3_api["url"]],
                         env=env, cwd=str(REPO), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    ack = json.loads(out.stdout)
    assert ack["status"] == "received" and ack["acknowledgement"]["file_name"] == "state_2020-07.zip"
    keys = [k for k in s3.list(s3_api["emission"]) if k.endswith(f"{ack['upload_id']}_state_2020-07.zip")]
    assert len(keys) == 1
    out = subprocess.run([sys.executable, "-m", "cqube_spark.cli", "emit", str(folder), "--api", s3_api["url"]],
                         env=dict(env, CQUBE_API_TOKEN="x"), cwd=str(REPO), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1 and "401" in out.stderr


# -- emission -------------------------------------------------------------------------------------------------

def test_emitter_uploads_by_presigned_url_once_and_intake_loads_it(api, tokens, tmp_path, spark, monkeypatch):
    u, h = api["url"], tokens["emitter1"]
    data = zip_bytes(tmp_path)
    grant = requests.post(f"{u}/emission/uploads", json={"file_name": "mgmt.zip", "size_bytes": len(data)},
                          headers=h, timeout=10).json()
    assert "X-Amz-Signature" in grant["url"]
    ack = requests.get(f"{u}/emission/uploads/{grant['upload_id']}", headers=h, timeout=10).json()
    assert ack["status"] == "awaiting_upload"
    assert requests.put(grant["url"], data=data, headers=grant["headers"], timeout=30).status_code == 200
    again = requests.put(grant["url"], data=b"evil" + data[4:], headers=grant["headers"], timeout=30)
    assert again.status_code in (403, 412)   # used once: the object exists (If-None-Match: * is signed)
    no_cond = requests.put(grant["url"], data=data, timeout=30)
    assert no_cond.status_code == 403        # dropping the signed condition breaks the signature
    ack = requests.get(f"{u}/emission/uploads/{grant['upload_id']}", headers=h, timeout=10).json()
    assert ack["status"] == "received" and ack["acknowledgement"]["size_bytes"] == len(data)
    # the next intake run loads it
    from cqube_spark.runner import run_job

    for k, v in api["env"].items():
        if k.startswith("CQUBE_") or k.startswith("AWS_"):
            monkeypatch.setenv(k, v)
    assert run_job("intake", params=["greatExpectations=false"]) == 0
    ack = requests.get(f"{u}/emission/uploads/{grant['upload_id']}", headers=h, timeout=10).json()
    assert ack["status"] == "processed"
    assert [(f["member"], f["status"], f["loaded_rows"]) for f in ack["files"]] == \
        [("school_management_master.csv", "loaded", 2)]
    # another emitter's upload is not visible; the admin sees the file and the intake run
    assert requests.get(f"{u}/emission/uploads/{grant['upload_id']}", headers=tokens["viewer_d1"],
                        timeout=10).status_code == 403
    files = requests.get(f"{u}/admin/files", headers=tokens["admin1"], timeout=10).json()["files"]
    assert [f["status"] for f in files] == ["loaded"]
    runs = requests.get(f"{u}/admin/job-runs", headers=tokens["admin1"], timeout=10).json()["runs"]
    assert runs[0]["model"] == "intake" and runs[0]["status"] == "SUCCESS"
    logs = requests.get(f"{u}/admin/logs/intake", params={"lines": 5}, headers=tokens["admin1"], timeout=10)
    assert logs.status_code == 200 and 0 < len(logs.json()["lines"]) <= 5
    # the same URL again once intake has moved the object away: S3 takes the PUT (the key is free again; same
    # length, other content), the next intake refuses the key it already took in and loads nothing of it
    evil = zip_bytes(tmp_path, ('1|"Govt"|', '2|"Evil!!"|'))
    assert len(evil) == len(data) and evil != data
    assert requests.put(grant["url"], data=evil, headers=grant["headers"], timeout=30).status_code == 200
    assert run_job("intake", params=["greatExpectations=false"]) == 0
    ack = requests.get(f"{u}/emission/uploads/{grant['upload_id']}", headers=h, timeout=10).json()
    assert sorted((f["status"], (f["error"] or "").split(":")[0]) for f in ack["files"]) == \
        [("loaded", ""), ("rejected", "upload_reused")]
    silver = spark.read.format("delta").load(str(api["root"] / "lake" / "silver" / "school_management"))
    assert sorted(r[0] for r in silver.select("Management").collect()) == ["Govt", "Tribal"]
    metrics = requests.get(f"{u}/metrics", headers=tokens["admin1"], timeout=10).text
    assert 'cqube_files{status="loaded"} 1.0' in metrics
    assert 'cqube_job_last_success_timestamp_seconds{job="intake"}' in metrics
    assert "cqube_api_request_seconds_bucket" in metrics


def test_local_upload_link_works_once_and_expires(api, tokens, tmp_path):
    u, h = api["local_url"], tokens["emitter1"]
    data = zip_bytes(tmp_path)
    grant = requests.post(f"{u}/emission/uploads", json={"file_name": "m.zip", "size_bytes": len(data)},
                          headers=h, timeout=10).json()
    short = requests.put(grant["url"], data=data[:-10], timeout=10)   # a failed upload gives the link back
    assert short.status_code == 400 and short.json()["error"]["code"] == "size_mismatch"
    assert not list((api["local_root"] / "emission").rglob("*_m.zip"))
    assert requests.put(grant["url"], data=data, timeout=10).status_code == 201
    again = requests.put(grant["url"], data=data, timeout=10)
    assert again.status_code == 410 and "already used" in again.json()["error"]["message"]
    assert list((api["local_root"] / "emission").rglob("*_m.zip"))[0].read_bytes() == data
    late = requests.post(f"{u}/emission/uploads", json={"file_name": "late.zip", "size_bytes": len(data)},
                         headers=h, timeout=10).json()
    time.sleep(2.5)   # this server's links live 2 s
    r = requests.put(late["url"], data=data, timeout=10)
    assert r.status_code == 403 and "expired" in r.json()["error"]["message"]
    bad = requests.post(f"{u}/emission/uploads", json={"file_name": "../../x.zip", "size_bytes": 3},
                        headers=h, timeout=10)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "file_name"


def test_a_slow_local_upload_is_not_cut_by_the_request_timeout_a_stalled_one_is(api, tokens, tmp_path):
    """The request timeout is an idle limit for uploads: bytes that keep coming may take longer than it (a large
    zip on a slow line); no byte for a whole timeout ends the upload (408) and gives the link back."""
    u, h = api["local_url"], tokens["emitter1"]
    data = zip_bytes(tmp_path)
    grant = requests.post(f"{u}/emission/uploads", json={"file_name": "slow.zip", "size_bytes": len(data)},
                          headers=h, timeout=10).json()

    def trickle(pause, parts=8):
        step = -(-len(data) // parts)
        for i in range(0, len(data), step):
            yield data[i:i + step]
            time.sleep(pause)
    t0 = time.monotonic()
    r = requests.put(grant["url"], data=trickle(0.9), timeout=60)
    assert r.status_code == 201, r.text
    assert time.monotonic() - t0 > LOCAL_TIMEOUT + 1
    assert list((api["local_root"] / "emission").rglob("*_slow.zip"))[0].read_bytes() == data
    grant = requests.post(f"{u}/emission/uploads", json={"file_name": "stall.zip", "size_bytes": len(data)},
                          headers=h, timeout=10).json()

    def stall():
        yield data[:10]
        time.sleep(LOCAL_TIMEOUT + 1.5)
        yield data[10:]
    r = requests.put(grant["url"], data=stall(), timeout=60)
    assert r.status_code == 408 and r.json()["error"]["code"] == "timeout", r.text
    from cqube_spark.api import uploads
    from cqube_spark.exhaust import settings as exhaust_settings

    with uploads.connect(exhaust_settings.postgres_dsn()) as conn:   # the link was given back (until it expires)
        assert uploads.get(conn, grant["upload_id"])["used_at"] is None
    assert not list((api["local_root"] / "emission").rglob("*_stall.zip"))


def test_emit_client_zips_with_manifest_and_uploads(api, tokens, tmp_path):
    from cqube_spark.api import emit

    folder = tmp_path / "state"
    folder.mkdir()
    (folder / "school_management_master.csv").write_text(MGMT_HEADER + '\n1|"Govt"|\n2|"Tribal"|\n3|"A"|\n')
    ack = emit.emit(str(folder), api["local_url"], tokens["emitter1"]["Authorization"].split()[1])
    assert ack["status"] == "received" and ack["acknowledgement"]["file_name"] == "state.zip"
    z = [p for p in (api["local_root"] / "emission").rglob("*_state.zip")][0]
    with zipfile.ZipFile(z) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["files"] == [{"name": "school_management_master.csv", "records": 3,
                                  "size_bytes": len((folder / "school_management_master.csv").read_bytes())}]


# -- exhaust requests -------------------------------------------------------------------------------------------

def test_exhaust_request_submit_read_list(api, tokens):
    u, h = api["url"], tokens["pm1"]
    tag = f"api-{uuid.uuid4().hex[:6]}"
    body = {"id": "ekstep.analytics.dataset.request.submit", "request": {
        "tag": tag, "dataset": "program-user-exhaust", "encryptionKey": "k3y-secret",
        "datasetConfig": {"filters": [{"table_name": "program_enrollment", "table_filters": [
            {"name": "program_id", "operator": "=", "value": "P1"}]}]}}}
    r = requests.post(f"{u}/dataset/v1/request/submit", json=body, headers=h, timeout=10)
    assert r.status_code == 200, r.text
    res = r.json()["result"]
    assert res["status"] == "SUBMITTED" and "k3y-secret" not in r.text
    for name in ("requestId", "request_id"):   # Sunbird's query parameter, and the older name
        got = requests.get(f"{u}/dataset/v1/request/read/{tag}", params={name: res["requestId"]},
                           headers=h, timeout=10)
        assert got.status_code == 200, got.text
        assert got.json()["result"]["requestId"] == res["requestId"]
    r = requests.get(f"{u}/dataset/v1/request/read/{tag}", headers=h, timeout=10)
    assert r.status_code == 422 and r.json()["error"]["field"] == "requestId"
    assert requests.get(f"{u}/dataset/v1/request/list/{tag}", headers=h, timeout=10).json()["result"]["count"] == 1
    bad = dict(body, request={**body["request"], "encryptionKey": ""})
    r = requests.post(f"{u}/dataset/v1/request/submit", json=bad, headers=h, timeout=10)
    assert r.status_code == 422 and r.json()["error"]["field"] == "request.encryptionKey"
    bad = dict(body, request={**body["request"], "datasetConfig": {"filters": "x"}})
    r = requests.post(f"{u}/dataset/v1/request/submit", json=bad, headers=h, timeout=10)
    assert r.status_code == 422 and "Not a Valid Request" in r.json()["error"]["message"]


def test_a_district_program_manager_requests_only_their_district(api, tokens):
    """``pm_d1`` (``cqube_scope=district:7501``): a request filtered on district 7501 is taken; one on another
    district, or on no district, is refused before anything is stored. A state program manager is not bound."""
    u, tag = api["url"], f"api-{uuid.uuid4().hex[:6]}"
    pm_d1 = {"Authorization": f"Bearer {token('pm_d1')}"}

    def submit(headers, *locations):
        filters = [{"name": "program_id", "operator": "=", "value": "P1"}] + [
            {"name": f"user_locations['{k}']", "operator": "=", "value": v} for k, v in locations]
        return requests.post(f"{u}/dataset/v1/request/submit", headers=headers, timeout=10, json={"request": {
            "tag": tag, "dataset": "program-user-exhaust", "encryptionKey": "k3y",
            "datasetConfig": {"filters": [{"table_name": "program_enrollment", "table_filters": filters}]}}})
    r = submit(pm_d1, ("district_id", "7501"), ("block_id", "750101"))
    assert r.status_code == 200, r.text
    assert r.json()["result"]["status"] == "SUBMITTED" and r.json()["result"]["requestedBy"] == "pm_d1"
    for locations in ((("district_id", "7502"),), (("block_id", "750201"),), ()):
        r = submit(pm_d1, *locations)
        assert r.status_code == 403, r.text
        err = r.json()["error"]
        assert err["code"] == "forbidden_scope" and err["message"] == (
            "pm_d1 is scoped to district:7501: the request needs the filter user_locations['district_id'] = '7501'")
    listed = requests.get(f"{u}/dataset/v1/request/list/{tag}", headers=pm_d1, timeout=10).json()["result"]
    assert listed["count"] == 1   # the refused requests stored nothing
    assert submit(tokens["pm1"], ("district_id", "7502")).status_code == 200   # state scope: any district


def test_exhaust_download_link_only_for_the_requester(api, tokens, s3):
    """As ``exhaust status``: the requester gets a presigned GET of the finished zip, anyone else sees that it is
    withheld (not the link, not the storage location)."""
    import datetime as dt

    from cqube_spark.api import uploads
    from cqube_spark.exhaust import requests as jr
    from cqube_spark.exhaust import settings as exhaust_settings

    u, tag = api["url"], f"api-{uuid.uuid4().hex[:6]}"
    body = {"request": {"tag": tag, "dataset": "program-user-exhaust", "encryptionKey": "k3y",
                        "datasetConfig": {"filters": [{"table_name": "program_enrollment", "table_filters": [
                            {"name": "program_id", "operator": "=", "value": "P2"}]}]}}}
    rid = requests.post(f"{u}/dataset/v1/request/submit", json=body, headers=tokens["pm1"],
                        timeout=10).json()["result"]["requestId"]
    location = f"{api['bucket']}/exhaust/{tag}/{rid}.zip"
    s3.write_bytes(location, b"PK-zip-bytes")
    with uploads.connect(exhaust_settings.postgres_dsn()) as conn:   # as the exhaust job ends a request
        jr.mark_success(conn, jr.get(conn, rid, tag), [location], dt.datetime.now(), 5)
    read = f"{u}/dataset/v1/request/read/{tag}"
    mine = requests.get(read, params={"request_id": rid}, headers=tokens["pm1"], timeout=10).json()["result"]
    assert mine["status"] == "SUCCESS" and "X-Amz-Signature" in mine["downloadUrls"][0]
    assert requests.get(mine["downloadUrls"][0], timeout=10).content == b"PK-zip-bytes"
    for r in (requests.get(read, params={"request_id": rid}, headers=tokens["admin1"], timeout=10),
              requests.get(f"{u}/dataset/v1/request/list/{tag}", headers=tokens["admin1"], timeout=10)):
        assert r.status_code == 200 and location.split("://")[1] not in r.text and "X-Amz" not in r.text
    other = requests.get(read, params={"request_id": rid}, headers=tokens["admin1"], timeout=10).json()["result"]
    assert other["downloadUrls"] == [] and "requester" in other["urlWithheld"]
    listed = requests.get(f"{u}/dataset/v1/request/list/{tag}", headers=tokens["pm1"], timeout=10).json()
    assert "X-Amz-Signature" in listed["result"]["jobs"][0]["downloadUrls"][0]


def test_the_api_processes_never_started_a_jvm(api):
    """Last in the module, after every route was called: no Spark in the request path (no child process, no
    libjvm mapped into the API's processes)."""
    for pid in api["pids"]:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        assert children == [], f"API process {pid} has children {children}"
        assert "libjvm" not in Path(f"/proc/{pid}/maps").read_text()
