"""Program User exhaust end to end on the real servers (PostgreSQL, Cassandra, Redis, S3):
submit → run → status → encrypted zip, with every consent case, filters, failures and retries.

Start the servers with ``scripts/services.sh start postgres redis cassandra s3``.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import socket
import urllib.request
import uuid
from pathlib import Path

import pytest
import pyzipper

PORTS = {"postgres": int(os.environ.get("CQUBE_PG_PORT", 5432)),
         "redis": int(os.environ.get("CQUBE_REDIS_PORT", 6379)),
         "cassandra": int(os.environ.get("CQUBE_CASSANDRA_PORT", 9042)),
         "s3": int(os.environ.get("CQUBE_S3_PORT", 8333))}
os.environ.setdefault("CQUBE_POSTGRES_DSN", f"postgresql://cqube:cqube@127.0.0.1:{PORTS['postgres']}/cqube")
os.environ.setdefault("CQUBE_REDIS_URL", f"redis://127.0.0.1:{PORTS['redis']}/0")
os.environ.setdefault("CQUBE_CASSANDRA_HOSTS", f"127.0.0.1:{PORTS['cassandra']}")

from cqube_spark import cli  # noqa: E402
from cqube_spark.config import apply_params, load_job_config  # noqa: E402
from cqube_spark.exhaust import crypto, job, requests, seed, settings  # noqa: E402
from cqube_spark.logs import get_logger  # noqa: E402
from cqube_spark.runner import JobContext, resolve_config_path  # noqa: E402

JOB = "program-user-exhaust"
PII_LABELS = ["User Name(On user consent)", "Mobile number(On user consent)", "Email ID(On user consent)",
              "Consent Provided", "Consent Provided Date"]
ALL_LABELS = ["User UUID", *PII_LABELS, "Program Name", "Program ID", "State", "District", "Block", "Cluster",
              "School Id", "School Name", "Usertype", "Usersubtype", "Org Name"]


def require(name: str) -> None:
    try:
        socket.create_connection(("127.0.0.1", PORTS[name]), timeout=2).close()
    except OSError:
        pytest.fail(f"{name} is not reachable on 127.0.0.1:{PORTS[name]}; start it with "
                    f"`scripts/services.sh start {name}`", pytrace=False)


@pytest.fixture(scope="module")
def services():
    for name in ("postgres", "redis", "cassandra"):
        require(name)
    assert cli.main(["exhaust", "init"]) == 0
    cluster = settings.cassandra().cluster()
    session = cluster.connect()
    import redis

    rds = redis.Redis.from_url(settings.redis_url())
    key = crypto.generate_key()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CQUBE_PII_KEY", key)
        yield {"cassandra": session, "redis": rds, "cipher": crypto.PiiCipher(crypto.derive_key(key))}
    rds.close()
    cluster.shutdown()


class Exhaust:
    """One test's world: its own tag, program ids, users, storage roots and temp folder."""

    def __init__(self, spark, services, root: Path, capsys):
        self.spark, self.s, self.root, self.capsys = spark, services, root, capsys
        self.tag = "t-" + uuid.uuid4().hex[:10]
        self.user_keys: list[str] = []
        self.params: list[str] = []

    def pid(self, name: str = "p") -> str:
        return f"{name}-{uuid.uuid4().hex[:12]}"

    def enroll(self, program_id: str, users: list[dict], pii: bool | None = True, name: str = "Program, One",
               ext: str = "EXT-1") -> list[str]:
        """users: dicts with optional user_id, pii, locs, org, updated_at, consent(status, date), person."""
        rows, consents, people = [], [], []
        ids = []
        for u in users:
            uid = u.get("user_id") or str(uuid.uuid4())
            ids.append(uid)
            rows.append(dict(program_id=program_id, program_externalId=ext, program_name=name,
                             pii_consent_required=u.get("pii", pii), user_id=uid, user_locations=u.get("locs"),
                             organisation_id=u.get("org", "org-1"), organisation_name=u.get("org_name", "Org One"),
                             user_type="administrator", user_sub_type=u.get("sub_type", "hm"),
                             created_at=dt.date(2023, 1, 1), updated_at=u.get("updated_at", dt.date(2023, 6, 1))))
            if "consent" in u:
                status, when = u["consent"]
                consents.append(dict(user_id=uid, object_id=u.get("consent_object", program_id), status=status,
                                     created_on=when, last_updated_on=when, consumer_id=u.get("consumer", "ml")))
            person = u.get("person", {"firstname": "First", "lastname": "Last", "email": f"{uid[:8]}@example.org",
                                      "phone": "9876543210"})
            if person is not None:
                people.append({"user_id": uid, **person})
                self.user_keys.append("user:" + uid)
        seed.insert_enrollments(self.s["cassandra"], rows)
        seed.insert_consents(self.s["cassandra"], consents)
        seed.put_users(self.s["redis"], people, self.s["cipher"])
        return ids

    def request_data(self, program_id: str, enroll: list | None = None, consent: list | None = None) -> dict:
        filters = [{"table_name": "program_enrollment", "table_filters":
                    [{"name": "program_id", "operator": "=", "value": program_id}, *(enroll or [])]}]
        if consent is not None:
            filters.append({"table_name": "user_consent", "table_filters": consent})
        return {"type": JOB, "title": "Program users", "params": {"filters": filters}}

    def submit(self, data, key="s3cret-zip", roles="PROGRAM_MANAGER", requested_by="manager-1",
               expect_code=0) -> str:
        self.capsys.readouterr()
        code = cli.main(["exhaust", "submit", "--job", JOB, "--tag", self.tag, "--requested-by", requested_by,
                         "--channel", "channel-1", "--roles", roles, "--encryption-key", key,
                         "--request-data", data if isinstance(data, str) else json.dumps(data)])
        out = self.capsys.readouterr()
        assert code == expect_code, out.err
        self.last_err = out.err
        return out.out.strip()

    def insert_raw(self, data, key: str | None = "k") -> str:
        rid = uuid.uuid4().hex.upper()
        with requests.connect() as conn:
            requests.insert_raw(conn, requests.JobRequest(
                tag=self.tag, request_id=rid, job_id=JOB, status=requests.SUBMITTED,
                request_data=data if isinstance(data, str) else json.dumps(data), requested_by="upstream",
                requested_channel="c", encryption_key=key))
        return rid

    def run(self) -> dict:
        cfg = apply_params(load_job_config(resolve_config_path(JOB)), self.params)
        ctx = JobContext(config=cfg, run_id="test-" + self.tag, as_of=None, log=get_logger("test"),
                         _spark=self.spark)
        return job.run(ctx)

    def get(self, rid: str) -> requests.JobRequest:
        with requests.connect() as conn:
            return requests.get(conn, rid, self.tag)

    def status(self, rid: str, requested_by: str | None = None) -> dict:
        self.capsys.readouterr()
        who = ["--requested-by", requested_by] if requested_by else []
        assert cli.main(["exhaust", "status", rid, "--json", *who]) == 0
        return json.loads(self.capsys.readouterr().out)

    def read(self, rid: str, key="s3cret-zip") -> tuple[list[str], list[dict]]:
        req = self.get(rid)
        assert req.status == requests.SUCCESS, req.err_message
        from cqube_spark.storage import Storage

        data = Storage().read_bytes(req.download_urls[0])
        with pyzipper.AESZipFile(io.BytesIO(data)) as zf:
            zf.setpassword(key.encode())
            (name,) = zf.namelist()
            assert name.startswith(rid) and name.endswith(".csv")
            text = zf.read(name).decode("utf-8")
        reader = csv.reader(io.StringIO(text))
        header = next(reader)
        return header, [dict(zip(header, row)) for row in reader]

    def cleanup(self) -> None:
        with requests.connect() as conn, conn, conn.cursor() as cur:
            cur.execute("DELETE FROM job_request WHERE tag = %s", (self.tag,))
        if self.user_keys:
            self.s["redis"].delete(*self.user_keys)


@pytest.fixture
def ex(spark, services, data_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CQUBE_EXHAUST_TMP", str(tmp_path / "exhaust-tmp"))
    e = Exhaust(spark, services, data_root, capsys)
    yield e
    e.cleanup()


def by_user(rows):
    return {r["User UUID"]: r for r in rows}


def test_consent_cases_sorting_quoting_and_the_encrypted_zip(ex, tmp_path):
    pid = ex.pid()
    feb3 = dt.datetime(2023, 2, 3, 6, 0, tzinfo=dt.timezone.utc)
    loc = {"state_name": "Karnataka", "district_name": "Mysuru", "block_name": "Hunsur", "cluster_name": "C1",
           "school_code": "2901", "school_name": "GHPS Hunsur"}
    active, revoked, no_row, not_required, upper, no_loc = ex.enroll(pid, [
        {"locs": loc, "consent": ("ACTIVE", feb3),
         "person": {"firstname": " Asha ", "lastname": "Rao", "email": "asha@example.org", "phone": "9000000001"}},
        {"locs": {**loc, "district_name": "Bengaluru"}, "consent": ("REVOKED", feb3)},
        {"locs": {**loc, "district_name": "Bengaluru", "block_name": "Anekal"}},
        {"pii": False, "locs": {**loc, "district_name": "Alpha"}, "consent": ("ACTIVE", feb3)},
        {"locs": {**loc, "district_name": "Mysuru", "block_name": "Zed"}, "consent": ("Active", feb3),
         "person": {"firstname": "Ravi", "lastname": None, "email": None, "phone": "9000000002"}},
        {"locs": None, "consent": ("active", feb3), "person": None},
    ])
    ex.params = ["redisBatchSize=2"]  # several pipelined batches per partition
    rid = ex.submit(ex.request_data(pid))
    counters = ex.run()
    assert ex.get(rid).status == requests.SUCCESS and counters["success"] >= 1
    header, rows = ex.read(rid)
    assert header == ALL_LABELS
    # sorted by District, Block, Cluster, School Id, User UUID (users without a location first)
    assert [r["User UUID"] for r in rows] == [no_loc, not_required, no_row, revoked, active, upper]
    u = by_user(rows)
    assert [u[active][c] for c in PII_LABELS] == ["'Asha Rao'", "9000000001", "asha@example.org", "Yes", "03/02/2023"]
    assert [u[upper][c] for c in PII_LABELS] == ["'Ravi'", "9000000002", "", "Yes", "03/02/2023"]
    assert [u[revoked][c] for c in PII_LABELS] == ["", "", "", "No", "03/02/2023"]
    assert [u[no_row][c] for c in PII_LABELS] == ["", "", "", "No", ""]
    assert [u[not_required][c] for c in PII_LABELS] == ["", "", "", "No", ""]
    assert [u[no_loc][c] for c in PII_LABELS] == ["", "", "", "Yes", "03/02/2023"]  # consented, no Redis hash
    assert u[active]["Program Name"] == "'Program, One'" and u[active]["Program ID"] == "EXT-1"
    assert (u[active]["State"], u[active]["School Id"], u[active]["School Name"]) == ("Karnataka", "2901",
                                                                                         "GHPS Hunsur")
    assert u[no_loc]["District"] == "" and u[active]["Usertype"] == "administrator"

    # the zip: AES-256, opens only with the request's key; nothing plain left behind
    req = ex.get(rid)
    path = Path(req.download_urls[0])
    assert path == ex.root / "output" / "ml_reports" / JOB / f"{rid}_{requests.today():%Y%m%d}.zip"
    raw = path.read_bytes()
    assert raw[6] & 0x1 and int.from_bytes(raw[8:10], "little") == 99  # encrypted, method 99 = WinZip AES
    aes = raw.index(b"\x01\x99\x07\x00")  # AES extra field: vendor "AE", strength 3 = AES-256
    assert raw[aes + 6:aes + 8] == b"AE" and raw[aes + 8] == 3
    with pyzipper.AESZipFile(path) as zf:
        info = zf.infolist()[0]
        with pytest.raises(RuntimeError, match="password"):
            zf.read(info.filename)
        zf.setpassword(b"wrong-key")
        with pytest.raises(RuntimeError, match="Bad password"):
            zf.read(info.filename)
    assert b"asha@example.org" not in path.read_bytes()
    assert sorted(p.name for p in (ex.root / "output").rglob("*") if p.is_file()) == [path.name]
    assert list((tmp_path / "exhaust-tmp").iterdir()) == []
    assert req.execution_time > 0 and req.dt_job_completed and req.dt_file_created and req.iteration == 0

    st = ex.status(rid, "manager-1")
    assert st["status"] == "SUCCESS" and st["location"] == str(path) and "url" not in st


def test_mixed_programs_and_no_consent_columns(ex):
    shared_user = str(uuid.uuid4())
    p_open, p_pii = ex.pid("open"), ex.pid("pii")
    open_users = ex.enroll(p_open, [{"user_id": shared_user, "locs": {"district_name": "D1"}},
                                    {"locs": {"district_name": "D2"}}], pii=False, name="Open Program")
    feb = dt.datetime(2023, 2, 1, tzinfo=dt.timezone.utc)
    pii_users = ex.enroll(p_pii, [{"user_id": shared_user, "consent": ("ACTIVE", feb)},
                                  {"pii": False}], pii=True, name="PII Program")
    r_open, r_pii = ex.submit(ex.request_data(p_open)), ex.submit(ex.request_data(p_pii))
    ex.run()
    header, rows = ex.read(r_open)
    assert header == [c for c in ALL_LABELS if c not in PII_LABELS]  # no row requires consent
    assert sorted(r["User UUID"] for r in rows) == sorted(open_users)
    assert {r["Program Name"] for r in rows} == {"'Open Program'"}
    header, rows = ex.read(r_pii)
    assert header == ALL_LABELS
    u = by_user(rows)
    assert set(u) == set(pii_users)
    assert u[shared_user]["Consent Provided"] == "Yes" and u[shared_user]["Email ID(On user consent)"]
    assert u[pii_users[1]]["Consent Provided"] == "No" and u[pii_users[1]]["Email ID(On user consent)"] == ""


def test_every_filter_and_combinations(ex):
    pid = ex.pid()
    feb = dt.datetime(2023, 2, 1, tzinfo=dt.timezone.utc)
    a, b, c, d, e = ex.enroll(pid, [
        {"org": "org-A", "locs": {"district_id": "d1", "block_name": "B1"}, "updated_at": dt.date(2023, 1, 10),
         "consent": ("ACTIVE", feb)},
        {"org": "org-A", "locs": {"district_id": "d1", "block_name": "B2"}, "updated_at": dt.date(2023, 3, 10),
         "consent": ("ACTIVE", feb), "consent_object": "other-object"},
        {"org": "org-B", "locs": {"district_id": "d2", "block_name": "B1"}, "updated_at": dt.date(2023, 5, 10),
         "consent": ("ACTIVE", feb)},
        {"org": "org-B", "locs": {"district_id": "d1"}, "updated_at": None},
        {"org": "org-A", "locs": None, "updated_at": dt.date(2023, 3, 10)},
    ])
    def f(name, op, value):
        return {"name": name, "operator": op, "value": value}
    cases = {
        "all": ([], None, {a, b, c, d, e}),
        "org": ([f("organisation_id", "=", "org-A")], None, {a, b, e}),
        "district": ([f("user_locations['district_id']", "=", "d1")], None, {a, b, d}),
        "block": ([f("user_locations['block_name']", "=", "B1")], None, {a, c}),
        "from": ([f("updated_at", ">=", "2023-03-10")], None, {b, c, e}),
        "to": ([f("updated_at", "<=", "2023-03-10")], None, {a, b, e}),
        "range": ([f("updated_at", ">=", "2023-02-01"), f("updated_at", "<=", "2023-04-01")], None, {b, e}),
        "combo": ([f("organisation_id", "=", "org-A"), f("user_locations['district_id']", "=", "d1"),
                   f("updated_at", ">=", "2023-02-01")], None, {b}),
        "default object": ([], [f("object_id", "=", pid)], {a, b, c, d, e}),
        "consent user": ([], [f("user_id", "=", c)], {a, b, c, d, e}),
        "other object": ([], [f("object_id", "=", "other-object")], {a, b, c, d, e}),
    }
    rids = {name: ex.submit(ex.request_data(pid, enroll, consent)) for name, (enroll, consent, _) in cases.items()}
    assert len(set(rids.values())) == len(cases)
    ex.run()
    results = {name: by_user(ex.read(rid)[1]) for name, rid in rids.items()}
    for name, (_, _, want) in cases.items():
        assert set(results[name]) == want, name
    yes = {name: {u for u, r in res.items() if r["Consent Provided"] == "Yes"} for name, res in results.items()}
    assert yes["all"] == yes["default object"] == {a, c}  # b consented to another object only
    assert yes["consent user"] == {c}  # only c's consent rows are considered
    assert yes["other object"] == {b}


def test_unknown_program_invalid_requests_and_one_bad_request_never_stops_the_others(ex):
    pid = ex.pid()
    ex.enroll(pid, [{"pii": False}])
    good = ex.submit(ex.request_data(pid))
    unknown = ex.submit(ex.request_data(ex.pid("nobody")))
    bad_filter = ex.insert_raw(ex.request_data(pid, [{"name": "user_type", "operator": "=", "value": "x"}]))
    no_program = ex.insert_raw({"type": JOB, "params": {"filters": [{"table_name": "program_enrollment",
                                                                     "table_filters": []}]}})
    no_key = ex.insert_raw(ex.request_data(pid), key=None)
    bad_json = ex.insert_raw('"just a string"')
    counters = ex.run()
    assert counters["failed"] >= 5
    assert ex.get(good).status == requests.SUCCESS
    for rid, msg in [(unknown, "No Data Found"),
                     (bad_filter, "Not a Valid Request: params.filters[0].table_filters[1]: filter 'user_type' "
                                  "is not allowed on program_enrollment"),
                     (no_program, "Not a Valid Request: a program_enrollment filter program_id '=' is required"),
                     (no_key, "Not a Valid Request: encryption_key is required (the report is an encrypted zip)"),
                     (bad_json, "Not a Valid Request: request_data must be a JSON object")]:
        req = ex.get(rid)
        assert (req.status, req.err_message, req.iteration, req.download_urls) == (requests.FAILED, msg, 1, None)
        st = ex.status(rid)
        assert st["status"] == "FAILED" and st["error"] == msg and "location" not in st


def test_submit_refuses_unauthorised_and_invalid_requests(ex):
    pid = ex.pid()
    assert ex.submit(ex.request_data(pid), roles="TEACHER,CONTENT_CREATOR", expect_code=2) == ""
    assert "authorised roles" in ex.last_err
    assert ex.submit(ex.request_data(pid, [{"name": "program_id; DROP TABLE job_request", "operator": "=",
                                            "value": "x"}]), expect_code=2) == ""
    assert "Not a Valid Request" in ex.last_err
    assert ex.submit("{not json", expect_code=2) == ""
    with requests.connect() as conn, conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM job_request WHERE tag = %s", (ex.tag,))
        assert cur.fetchone()[0] == 0
    assert ex.submit(ex.request_data(pid), roles="TEACHER,PROGRAM_MANAGER")  # one authorised role is enough


def test_duplicate_same_day_submissions_and_resubmitting_a_failed_one(ex):
    pid = ex.pid()
    data = ex.request_data(pid)
    first = ex.submit(data)
    assert "created" in ex.last_err
    reordered = json.loads(json.dumps(data))
    reordered = {"params": reordered["params"], "title": reordered["title"], "type": reordered["type"]}
    assert ex.submit(reordered) == first and "existing" in ex.last_err
    assert ex.submit(data, requested_by="manager-2") != first
    ex.run()  # the program has no enrollments: FAILED No Data Found
    assert (ex.get(first).status, ex.get(first).iteration) == (requests.FAILED, 1)
    ex.enroll(pid, [{"pii": False}])
    assert ex.submit(data, key="new-key") == first and "resubmitted" in ex.last_err
    req = ex.get(first)
    assert (req.status, req.iteration, req.err_message) == (requests.SUBMITTED, 0, None)
    ex.run()
    assert ex.read(first, key="new-key")[1]
    with requests.connect() as conn:  # another day is another request
        other, outcome = requests.submit(conn, tag=ex.tag, job_id=JOB, requested_by="manager-1", channel="channel-1",
                                         request_data=data, encryption_key="k",
                                         day=requests.today() + dt.timedelta(days=1))
    assert other.request_id != first and outcome == "created"


def test_retries_stop_after_three_and_errors_publish_nothing(ex, tmp_path):
    pid = ex.pid()
    (uid,) = ex.enroll(pid, [{"consent": ("ACTIVE", dt.datetime(2023, 1, 1, tzinfo=dt.timezone.utc))}])
    ex.s["redis"].hset("user:" + uid, "email", "not-a-token@example.org")  # plaintext where a token belongs
    rid = ex.submit(ex.request_data(pid))
    for attempt in (1, 2, 3):
        ex.run()
        req = ex.get(rid)
        assert (req.status, req.iteration) == (requests.FAILED, attempt)
        assert req.err_message.startswith("Internal Server Error: ") and "PiiError" in req.err_message
        assert "not-a-token" not in req.err_message
    counters = ex.run()  # iteration 3: not picked up any more
    assert rid not in [r["request_id"] for r in counters["results"]]
    assert ex.get(rid).iteration == 3
    assert not any(p.is_file() for p in (ex.root / "output").rglob("*"))
    assert list((tmp_path / "exhaust-tmp").iterdir()) == []


def test_crashed_run_leaves_a_retryable_request_and_leftovers_are_swept(ex, tmp_path):
    pid = ex.pid()
    ex.enroll(pid, [{"pii": False}])
    rid = ex.submit(ex.request_data(pid))
    with requests.connect() as conn:  # a run died after claiming the request...
        requests.mark_processing(conn, ex.get(rid))
    stale = tmp_path / "exhaust-tmp" / "req-dead"
    stale.mkdir(parents=True)
    (stale / "half.zip").write_bytes(b"x" * 100)  # ...and left its temp folder behind
    ex.run()
    assert ex.get(rid).status == requests.SUCCESS
    assert not stale.exists()


def test_s3_output_and_presigned_url_through_the_cli_run(ex, s3, monkeypatch):
    require("s3")
    bucket = "cqube-exhaust-" + uuid.uuid4().hex[:8]
    s3.ensure_bucket(f"s3a://{bucket}/")
    monkeypatch.setenv("CQUBE_OUTPUT_URI", f"s3a://{bucket}/output")
    pid = ex.pid()
    ex.enroll(pid, [{"pii": False}, {"consent": ("active", dt.datetime(2023, 1, 1, tzinfo=dt.timezone.utc))}])
    rid = ex.submit(ex.request_data(pid), key="zip-key-1")
    assert cli.main(["run", JOB]) == 0  # the real command (runner, job_runs row, this job)
    assert "url" not in ex.status(rid) and "url" not in ex.status(rid, "manager-2")  # only the requester
    assert ex.status(rid, "manager-2")["url_withheld"].startswith("the download link is shown only to")
    st = ex.status(rid, "manager-1")
    assert st["status"] == "SUCCESS" and st["url_expires_in_s"] == 1800
    assert st["location"] == f"s3a://{bucket}/output/ml_reports/{JOB}/{rid}_{requests.today():%Y%m%d}.zip"
    body = urllib.request.urlopen(st["url"], timeout=10).read()
    with pyzipper.AESZipFile(io.BytesIO(body)) as zf:
        zf.setpassword(b"zip-key-1")
        assert len(zf.read(zf.namelist()[0]).decode().splitlines()) == 3
    assert "X-Amz-Expires=1800" in st["url"]
    s3.delete(f"s3a://{bucket}/output", recursive=True)


def test_a_hostile_request_id_from_upstream_is_refused_and_nothing_is_written_outside_the_roots(ex, tmp_path):
    pid = ex.pid()
    ex.enroll(pid, [{"pii": False}])  # valid data: only the names can make these fail
    escape = "escape-" + uuid.uuid4().hex[:8]
    hostile = {f"../../../../{escape}": "contains a path separator",
               f"/{tmp_path}/{escape}": "contains a path separator",
               f"%2e%2e%2f%2e%2e%2f{escape}": "contains '%' (percent-encoded names are refused)",
               f"%252e%252e%252f{escape}": "contains '%' (percent-encoded names are refused)",
               f"..\\..\\{escape}": "contains a path separator",
               "..": "is a relative folder reference",
               "": "empty",
               "A" * 129: "longer than 128 characters"}
    with requests.connect() as conn:
        for rid in hostile:
            requests.insert_raw(conn, requests.JobRequest(
                tag=ex.tag, request_id=rid, job_id=JOB, status=requests.SUBMITTED,
                request_data=json.dumps(ex.request_data(pid)), requested_by="upstream", requested_channel="c",
                encryption_key="k"))
    counters = ex.run()
    mine = {r["request_id"]: r for r in counters["results"] if r["request_id"] in hostile}
    assert set(mine) == set(hostile)
    for rid, why in hostile.items():
        req = ex.get(rid)
        assert req.status == requests.FAILED and req.download_urls is None, rid
        assert req.err_message.startswith("Not a Valid Request: request_id ") and why in req.err_message, \
            req.err_message
    written = [p for p in tmp_path.parent.rglob(f"*{escape}*")] + list(Path("/tmp").glob(f"*{escape}*"))
    assert written == []
    assert not any(p.is_file() for p in (ex.root / "output").rglob("*"))
    assert list((tmp_path / "exhaust-tmp").iterdir()) == []


def test_no_secret_reaches_any_byte_the_runs_write(ex, spark, tmp_path, monkeypatch):
    """Real secrets set, runs that echo them in errors; every byte written afterwards is scanned."""
    from cqube_spark.runner import run_job

    h = uuid.uuid4().hex[:10]
    secrets = {"postgres": f"Pg-S3cret-{h}", "pii": os.environ["CQUBE_PII_KEY"], "zip": f"Zip-S3cret-{h}",
               "aws": f"Aws-S3cret-{h}", "smtp": f"Smtp-S3cret-{h}", "var": f"Var-S3cret-{h}"}
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secrets["aws"])
    monkeypatch.setenv("CQUBE_SMTP_PASSWORD", secrets["smtp"])
    monkeypatch.setenv("CQUBE_TEST_VAR", secrets["var"])
    real_dsn = os.environ["CQUBE_POSTGRES_DSN"]
    cfg_dir = tmp_path / "configs"
    cfg_dir.mkdir()
    base = json.loads(resolve_config_path(JOB).read_text())

    # run 1 (exhaust, through the runner): requests echoing every secret in a field the error message names
    ex.capsys.readouterr()
    pid = ex.pid()
    echoes = {name: ex.insert_raw(ex.request_data(pid, [{"name": value, "operator": "=", "value": "x"}]),
                                  key=secrets["zip"]) for name, value in secrets.items() if name in ("pii", "zip", "aws", "smtp")}
    assert run_job(JOB) == 0
    for name, rid in echoes.items():
        req = ex.get(rid)
        assert req.status == requests.FAILED
        assert req.err_message == ("Not a Valid Request: params.filters[0].table_filters[1]: filter '***' is not "
                                   "allowed on program_enrollment"), (name, req.err_message)
    # run 2: a ${VAR} config whose value fails validation: the printed config error
    bad = {**base, "modelParams": {**base["modelParams"], "maxIterations": "${CQUBE_TEST_VAR}"}}
    (cfg_dir / "bad.json").write_text(json.dumps(bad))
    assert run_job(str(cfg_dir / "bad.json")) == 2
    # run 3: a failing run whose error contains a ${VAR} value (job_runs.error, the log, the printed error)
    (cfg_dir / "replay.json").write_text(json.dumps({"model": "replay", "modelParams": {
        "request": "/nonexistent/${CQUBE_TEST_VAR}.json", "recompute": False}}))
    assert run_job(str(cfg_dir / "replay.json"), run_id="secret-replay-" + h) == 2
    # run 4: the exhaust with a PostgreSQL password that the server refuses
    monkeypatch.setenv("CQUBE_POSTGRES_DSN", real_dsn.replace("cqube:cqube@", f"cqube:{secrets['postgres']}@"))
    assert run_job(JOB, run_id="secret-pg-" + h) == 1
    monkeypatch.setenv("CQUBE_POSTGRES_DSN", real_dsn)

    out = ex.capsys.readouterr()  # stdout, and stderr: every JSON log line and printed error of the runs
    runs = {r.run_id: r for r in spark.read.format("delta").load(str(ex.root / "lake" / "meta" / "job_runs"))
            .collect()}
    assert runs["secret-replay-" + h].error == "--request: at /nonexistent/***.json: file not found"
    assert "password authentication failed" in runs["secret-pg-" + h].error
    assert "config error: --request: at /nonexistent/***.json: file not found" in out.err
    assert "config error: " in out.err and "maxIterations: expected integer, got str \"***\"" in out.err
    with requests.connect() as conn, conn, conn.cursor() as cur:
        cur.execute("SELECT tag, status, err_message, download_urls::text, iteration FROM job_request "
                    "WHERE tag = %s", (ex.tag,))
        rows = json.dumps(cur.fetchall(), default=str)
    blobs = {"stdout": out.out, "stderr": out.err, "job_request": rows,
             "job_runs": json.dumps([r.asDict() for r in runs.values()], default=str)}
    for p in tmp_path.rglob("*"):  # every file written: lake (Delta logs, parquet), output, temp, configs
        if p.is_file() and p.parent != cfg_dir:
            blobs[str(p)] = p.read_bytes().decode("latin-1")
    assert len(blobs) > 10
    leaks = [(where, name) for where, text in blobs.items() for name, value in secrets.items() if value in text]
    assert leaks == []


def test_a_second_run_skips_the_requests_while_the_first_holds_the_job(ex):
    pid = ex.pid()
    rid = ex.insert_raw(ex.request_data(pid), key=None)  # refused without Spark work once processed
    with requests.connect() as first:  # the first run: holds the job's lock (its session) while working
        assert requests.try_lock_job(first, JOB)
        counters = ex.run()  # the second run
        assert (counters["skipped"], counters["requests"], counters["results"]) == ("locked", 0, [])
        req = ex.get(rid)
        assert (req.status, req.iteration, req.err_message) == (requests.SUBMITTED, 0, None)
    counters = ex.run()  # the first run's session ended: the lock is free, the request is processed
    assert "skipped" not in counters and ex.get(rid).status == requests.FAILED
    assert ex.get(rid).err_message == "Not a Valid Request: encryption_key is required (the report is an encrypted zip)"
