"""Pure pieces of the API: scope parsing and filters, path safety, signed links, log files."""
import datetime as dt
import http.server
import json
import threading

import pytest

from cqube_spark import logs
from cqube_spark.api import signing
from cqube_spark.api.auth import principal, require
from cqube_spark.api.errors import ApiError
from cqube_spark.api.outputs import filter_csv, filter_json
from cqube_spark.api.scope import parse_scope, safe_relpath


def test_scope_parse_levels_and_rows():
    d = parse_scope("district:2101")
    assert (d.level, d.unit, str(d)) == ("district", "2101", "district:2101")
    assert d.sees_level("school") and d.sees_level("district") and not d.sees_level("state")
    assert d.sees_row({"district_id": "2101"}) and not d.sees_row({"district_id": "2102"})
    assert not d.sees_row({"state_id": "21"})
    assert parse_scope("state").sees_level("state")
    for bad in ("district", "district:", "country:1", "district:1/../2", "state:1", "district:a b"):
        with pytest.raises(ValueError):
            parse_scope(bad)


@pytest.mark.parametrize("path", ["../x.json", "a/../b.json", "/etc/passwd", "a//b", "a/./b", "a%2e%2e/b",
                                  "a\\b", "a\x00b", "s3a://b/k", "", "x" * 600, "a/\u0065\u0301.json"])
def test_safe_relpath_refuses(path):
    with pytest.raises(ValueError):
        safe_relpath(path)


def test_safe_relpath_accepts_plain():
    assert safe_relpath("pat/monthly/2020-07/by_grade/district.json") == "pat/monthly/2020-07/by_grade/district.json"


def test_filters_keep_only_the_unit():
    s = parse_scope("block:11")
    doc = {"data": [{"block_id": "11", "v": 1}, {"block_id": "12", "v": 2}, {"district_id": "1"}], "kpi": "k"}
    out = json.loads(filter_json(json.dumps(doc).encode(), s))
    assert out["data"] == [{"block_id": "11", "v": 1}] and out["kpi"] == "k" and out["scope"] == "block:11"
    assert filter_csv(b"block_id,v\n11,1\n12,2\n", s) == b"block_id,v\n11,1\n"
    assert filter_csv(b"district_id,v\n1,1\n", s) == b"district_id,v\n"   # no block column: nothing


def test_signed_links_expire_and_resist_tampering():
    t = signing.sign("k", {"p": "a.json"}, 60, now=1000)
    assert signing.verify("k", t, now=1059)["p"] == "a.json"
    with pytest.raises(signing.BadSignature, match="expired"):
        signing.verify("k", t, now=1061)
    with pytest.raises(signing.BadSignature, match="signature"):
        signing.verify("other", t, now=1000)
    body, mac = t.split(".")
    with pytest.raises(signing.BadSignature):
        signing.verify("k", body[:-2] + "xx." + mac, now=1000)


def test_principal_roles_scope_and_require():
    p = principal({"sub": "s", "preferred_username": "u", "realm_access": {"roles": ["emitter", "other"]},
                   "cqube_scope": "district:9"})
    assert p.roles == {"emitter"} and str(p.scope) == "district:9"
    require(p, "emitter")
    with pytest.raises(ApiError) as e:
        require(p, "report_viewer")
    assert e.value.status == 403 and "u lacks the role" in e.value.message
    bad = principal({"sub": "s", "realm_access": {"roles": ["report_viewer"]}, "cqube_scope": "district:../1"})
    with pytest.raises(ApiError) as e:
        require(bad, "report_viewer", scoped=True)
    assert e.value.code == "forbidden_scope"


def test_log_files_per_job_and_day_kept_seven_days(tmp_path):
    folder = logs.log_to_file("unit-job", name="cqube-unit-test", base=str(tmp_path))
    old = tmp_path / "unit-job" / "2000-01-01.log"
    old.write_text("old\n")
    logs.get_logger("r1", "cqube-unit-test").info("hello", n=1)
    logs.prune(folder, today=dt.date.today())
    assert not old.exists()
    lines = logs.tail("unit-job", 5, base=str(tmp_path))
    assert json.loads(lines[-1])["msg"] == "hello" and json.loads(lines[-1])["n"] == 1
    with pytest.raises(ValueError):
        logs.tail("../etc", 5, base=str(tmp_path))


def test_serve_config_loads_with_env_overrides_and_names_bad_fields(tmp_path):
    from cqube_spark.api import config
    from cqube_spark.config import ConfigError

    s = config.load(env={"CQUBE_API_PORT": "9999", "CQUBE_DATA_ROOT": str(tmp_path)})
    assert (s.host, s.port, s.audience, s.upload_url_expiry_s) == ("127.0.0.1", 9999, "cqube-api", 300)
    assert s.jwks.endswith("/realms/cqube/protocol/openid-connect/certs")
    bad = tmp_path / "serve.json"
    bad.write_text(json.dumps({"model": "serve", "modelParams": {"issuer": "x", "audience": "a"}}))
    with pytest.raises(ConfigError, match=r"\$\.modelParams\.issuer"):
        config.load(bad, env={})


# -- tokens and /metrics without Keycloak: a key of our own, its JWKS served on 127.0.0.1 ---------------------

ISS, AUD = "https://issuer.test/realms/cqube", "cqube-api"


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    certs = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Certs(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(certs)

        def log_message(self, *a):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Certs)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def make(roles=(), **claims):
        now = int(dt.datetime.now(dt.timezone.utc).timestamp())
        body = {"iss": ISS, "aud": AUD, "sub": "s1", "exp": now + 60, "iat": now, "typ": "Bearer",
                "preferred_username": "scraper", "realm_access": {"roles": list(roles)}, **claims}
        return jwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})
    yield f"http://127.0.0.1:{server.server_port}/certs", make
    server.shutdown()


def test_verifier_checks_audience_issuer_expiry_and_token_type(signer):
    from cqube_spark.api.auth import Verifier

    url, make = signer
    v = Verifier(ISS, AUD, url)
    assert v.verify(f"Bearer {make(['emitter'])}").roles == {"emitter"}
    for bad, code in ((make(aud="account"), "invalid_token"), (make(iss="https://other/realms/cqube"), "invalid_token"),
                      (make(exp=1), "token_expired"), (make(typ="ID"), "invalid_token"),
                      (make(typ="Refresh"), "invalid_token")):
        with pytest.raises(ApiError) as e:
            v.verify(f"Bearer {bad}")
        assert (e.value.status, e.value.code) == (401, code)


def metrics_call(app, authorization=None):
    from starlette.requests import Request

    route = next(r for r in app.routes if getattr(r, "path", None) == "/metrics")
    headers = [(b"authorization", authorization.encode())] if authorization else []
    return route.endpoint(Request({"type": "http", "method": "GET", "path": "/metrics", "headers": headers,
                                   "query_string": b""}))


def test_metrics_take_the_metrics_role_and_drop_a_status_no_file_holds(signer, tmp_path):
    from arro3.core import Array, DataType, Table
    from deltalake import write_deltalake

    from cqube_spark.api.app import create_app
    from cqube_spark.api.config import Settings

    url, make = signer
    roots = {k: str(tmp_path / k) for k in ("emission", "input", "output", "lake")}
    app = create_app(Settings(issuer=ISS, audience=AUD, jwks_url=url, roots=roots))
    tracker = str(tmp_path / "lake" / "meta" / "file_tracker")

    def statuses(*values):
        write_deltalake(tracker, Table.from_pydict({"status": Array(list(values), DataType.string()),
                                                    "quarantined_rows": Array([1] * len(values), DataType.int64())}),
                        mode="overwrite")
    statuses("received", "loaded")
    text = metrics_call(app, f"Bearer {make(['metrics'])}").body.decode()
    assert 'cqube_files{status="received"} 1.0' in text and "cqube_rows_quarantined 2.0" in text
    statuses("loaded", "loaded")   # the received file was loaded
    text = metrics_call(app, f"Bearer {make(['admin'])}").body.decode()
    assert 'cqube_files{status="loaded"} 2.0' in text and 'status="received"' not in text
    for roles, status in ((["report_viewer"], 403), (["emitter"], 403)):
        with pytest.raises(ApiError) as e:
            metrics_call(app, f"Bearer {make(roles)}")
        assert e.value.status == status and "metrics" in e.value.message
    with pytest.raises(ApiError) as e:
        metrics_call(app)
    assert e.value.status == 401


def test_scoped_metadata_has_no_whole_file_figures():
    from cqube_spark.api.outputs import filter_metadata

    files = [{"path": "k/overall/block.json", "level": "block", "rows": 40, "bytes": 900, "sha256": "ab"}]
    assert filter_metadata({"files": files}, files, parse_scope("district:1"))["files"] == \
        [{"path": "k/overall/block.json", "level": "block"}]
    assert filter_metadata({"files": files}, files, parse_scope("state"))["files"] == files


def test_a_scoped_program_manager_may_only_request_their_own_unit(signer, tmp_path):
    """A district program manager's exhaust request must filter on their district: without that filter, or with
    another district's, it is refused before anything is stored."""
    import psycopg2
    from starlette.requests import Request

    from cqube_spark.api.app import create_app
    from cqube_spark.api.config import Settings

    url, make = signer
    app = create_app(Settings(issuer=ISS, audience=AUD, jwks_url=url, pg_dsn="postgresql://x@127.0.0.1:1/none",
                              roots={k: str(tmp_path / k) for k in ("emission", "input", "output", "lake")}))
    submit = next(r for r in app.routes if getattr(r, "path", None) == "/dataset/v1/request/submit").endpoint

    def call(token, *locations):
        filters = [{"name": "program_id", "operator": "=", "value": "P1"}] + [
            {"name": f"user_locations['{k}']", "operator": "=", "value": v} for k, v in locations]
        body = {"request": {"tag": "t", "dataset": "program-user-exhaust", "encryptionKey": "k",
                            "datasetConfig": {"filters": [{"table_name": "program_enrollment",
                                                           "table_filters": filters}]}}}
        return submit(body, Request({"type": "http", "method": "POST", "path": "/", "query_string": b"",
                                     "headers": [(b"authorization", f"Bearer {token}".encode())]}))
    pm_d1 = make(["program_manager"], cqube_scope="district:7501", preferred_username="pm_d1")
    for locations in ((), (("district_id", "7502"),), (("block_id", "750101"),)):
        with pytest.raises(ApiError) as e:
            call(pm_d1, *locations)
        assert (e.value.status, e.value.code) == (403, "forbidden_scope")
        assert "user_locations['district_id'] = '7501'" in e.value.message
    with pytest.raises(ApiError) as e:
        call(make(["program_manager"]))   # no cqube_scope claim: nothing
    assert e.value.code == "forbidden_scope"
    for token in (pm_d1, make(["program_manager"], cqube_scope="state")):   # past the checks: the database
        with pytest.raises(psycopg2.OperationalError):
            call(token, ("district_id", "7501"), ("block_id", "750101"))


@pytest.mark.parametrize("text", [b"h\n1\n2\n", b"h\n1\n\n2\n", b"h\n1\n2\n\n", b"h\r\n1\r\n", b"h\n1", b"h\n", b"h"])
def test_emit_counts_records_as_intake_does(text, tmp_path):
    """The manifest's record count is checked by intake: a blank line is a row there, so it is one here too
    (a CSV with a blank line used to be rejected whole as a manifest mismatch)."""
    import zipfile

    from cqube_spark.api.emit import manifest_entry
    from cqube_spark.intake.fingerprint import extract

    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.csv", text)
    with zipfile.ZipFile(z) as zf:
        ex = extract(zf, zf.getinfo("a.csv"), str(tmp_path / "out"))
    assert manifest_entry("a.csv", text)["records"] == ex.records
