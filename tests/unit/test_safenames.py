"""Names from data that reach a path: every hostile form is refused with the field named; good names pass."""
import datetime as dt

import pytest

from cqube_spark import safenames
from cqube_spark.safenames import UnsafeName

HOSTILE = [
    ("", "empty"),
    ("   ", "empty"),
    ("../etc", "path separator"),
    ("..", "relative folder reference"),
    (".", "relative folder reference"),
    ("...", "relative folder reference"),
    ("/etc/passwd", "path separator"),
    ("a/b", "path separator"),
    ("..\\..\\win", "path separator"),
    ("C:\\Windows", "path separator"),
    ("%2e%2e%2f", "percent-encoded"),
    ("%2E%2E%2Fetc", "percent-encoded"),
    ("%252e%252e%252f", "percent-encoded"),
    ("..%2f", "percent-encoded"),
    ("abc\x00.zip", "NUL"),
    ("abc\ndef", "control character"),
    ("x" * 129, "longer than 128 characters (129)"),
    (" lead", "leading or trailing spaces"),
    ("id$(rm)", "characters outside"),
    ("id*?", "characters outside"),
    ("ＡＢ", "characters outside"),  # full-width letters: not ASCII
    ("\u2024\u2024", "characters outside"),  # one-dot leaders, look like ".."
    (None, "expected a string, got NoneType"),
    (12, "expected a string, got int"),
]


@pytest.mark.parametrize("value,reason", HOSTILE, ids=[repr(v)[:30] for v, _ in HOSTILE])
def test_hostile_names_are_refused_naming_the_field_and_why(value, reason):
    with pytest.raises(UnsafeName) as e:
        safenames.segment(value, "request_id")
    assert str(e.value).startswith("request_id ") and reason in str(e.value)
    assert e.value.field == "request_id"


@pytest.mark.parametrize("value", ["0A1B2C3D4E5F", "t-abc123", "do_123:channel@x", "a.b-c_d", "x" * 128,
                                   "rp-20240101T000000Z-1a2b3c4d-0"])
def test_good_names_pass_unchanged(value):
    assert safenames.segment(value, "f") == value


def test_max_len_is_per_call():
    assert safenames.segment("x" * 200, "f", 200)
    with pytest.raises(UnsafeName, match="longer than 10 characters"):
        safenames.segment("x" * 11, "f", 10)


def test_a_long_value_is_shown_truncated():
    with pytest.raises(UnsafeName) as e:
        safenames.segment("/" + "x" * 500, "tag")
    assert len(str(e.value)) < 200 and "..." in str(e.value)


def test_within_local_and_s3(tmp_path):
    root = str(tmp_path / "output")
    assert safenames.within(root, f"{root}/a/b.zip") == f"{root}/a/b.zip"
    for bad in (f"{root}/../x.zip", root, str(tmp_path / "outputx" / "a"), "/etc/passwd", "s3a://b/output/x"):
        with pytest.raises(UnsafeName, match="is not under the root"):
            safenames.within(root, bad, "request_id")
    assert safenames.within("s3a://b/output", "s3a://b/output/k/x.zip")
    for bad in ("s3a://b/output/../x", "s3a://b/outputx/y", "s3a://c/output/x", "s3a://b/output", root):
        with pytest.raises(UnsafeName, match="is not under the root"):
            safenames.within("s3a://b/output", bad)


def test_within_follows_symlinks_out_of_the_root(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafeName, match="is not under the root"):
        safenames.within(str(tmp_path / "root"), str(tmp_path / "root" / "link" / "x"))


def test_exhaust_report_and_zip_paths_refuse_hostile_request_ids(tmp_path):
    from cqube_spark.exhaust import job, requests, sink

    day = dt.date(2024, 1, 2)
    ok = job.report_uri(str(tmp_path), "ml_reports/", "ABC", day)
    assert ok == f"{tmp_path}/ml_reports/program-user-exhaust/ABC_20240102.zip"
    for rid in ("../../../escape", "/abs", "%2e%2e%2fx", "..\\x", "a\x00b", "", "x" * 200):
        with pytest.raises(UnsafeName, match="^request_id "):
            job.report_uri(str(tmp_path), "ml_reports/", rid, day)
        with pytest.raises(UnsafeName, match="^request_id "):
            job.check_names(requests.JobRequest("tag", rid, "j", "SUBMITTED", {}, "u", "c"))
    with pytest.raises(UnsafeName, match="^tag "):
        job.check_names(requests.JobRequest("../t", "ABC", "j", "SUBMITTED", {}, "u", "c"))
    assert sink.member_path(tmp_path, "ABC.zip") == tmp_path / "ABC.zip"
    with pytest.raises(UnsafeName, match="^zip name "):
        sink.member_path(tmp_path, "../ABC.zip")


def test_replay_ids_and_request_file_names_are_checked():
    from cqube_spark.replay import job

    assert job.replay_id_for("20240101T000000Z-1a2b", 3) == "rp-20240101T000000Z-1a2b-3"
    with pytest.raises(UnsafeName, match="^run_id '../x'"):
        job.replay_id_for("../x", 0)
