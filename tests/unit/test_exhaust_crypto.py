"""PII encryption (AES-256-GCM tokens), key handling, and the small pure helpers of the exhaust."""
import base64

import pytest

from cqube_spark.exhaust import crypto
from cqube_spark.exhaust.cli import cql_statements
from cqube_spark.exhaust.settings import parse_cassandra_hosts
from cqube_spark.exhaust.sources import clustering_slices, token_ranges, MIN_TOKEN, MAX_TOKEN


@pytest.fixture
def cipher():
    return crypto.PiiCipher(crypto.derive_key(crypto.generate_key()))


def test_round_trip_with_version_prefix_and_fresh_nonce(cipher):
    a, b = cipher.encrypt("priya@example.org"), cipher.encrypt("priya@example.org")
    assert a.startswith("v1:") and a != b
    assert cipher.decrypt(a) == cipher.decrypt(b) == "priya@example.org"
    assert cipher.decrypt(cipher.encrypt("ಕನ್ನಡ ☎ 98765")) == "ಕನ್ನಡ ☎ 98765"


def test_wrong_key_and_tampering_are_refused(cipher):
    token = cipher.encrypt("9876543210")
    other = crypto.PiiCipher(crypto.derive_key(crypto.generate_key()))
    with pytest.raises(crypto.PiiError, match="wrong key or tampered"):
        other.decrypt(token)
    blob = bytearray(base64.urlsafe_b64decode(token[3:] + "=" * (-len(token[3:]) % 4)))
    blob[15] ^= 1
    tampered = "v1:" + base64.urlsafe_b64encode(bytes(blob)).decode().rstrip("=")
    with pytest.raises(crypto.PiiError):
        cipher.decrypt(tampered)
    for bad in ("9876543210", "v1:!!!", "v1:AAAA", None):
        with pytest.raises(crypto.PiiError):
            cipher.decrypt(bad)


def test_key_forms():
    raw = bytes(range(32))
    assert crypto.derive_key(base64.b64encode(raw).decode()) == raw
    assert crypto.derive_key(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw
    derived = crypto.derive_key("a long passphrase, not base64")
    assert len(derived) == 32 and derived == crypto.derive_key("a long passphrase, not base64")
    with pytest.raises(crypto.PiiError, match="not set"):
        crypto.key_from_env({})
    with pytest.raises(crypto.PiiError):
        crypto.PiiCipher(b"short")


def test_cql_statements_drop_comments():
    text = "-- a comment; with a semicolon\nCREATE KEYSPACE k WITH x = {'a': '1'};\n\nCREATE TABLE k.t (a int);\n"
    assert cql_statements(text) == ["CREATE KEYSPACE k WITH x = {'a': '1'}", "CREATE TABLE k.t (a int)"]


def test_cassandra_hosts():
    assert parse_cassandra_hosts("127.0.0.1:19042") == (("127.0.0.1",), 19042)
    assert parse_cassandra_hosts("a,b") == (("a", "b"), 9042)


def test_clustering_slices_cover_every_key_once():
    for n in (1, 2, 3, 16, 40):
        slices = clustering_slices(n)
        assert slices[0][0] is None and slices[-1][1] is None
        for (_, hi), (lo, _) in zip(slices, slices[1:]):
            assert hi == lo
        for key in ("", "0", "00ab", "7fff", "8", "ffff", "zzz", "user-1"):
            assert sum(1 for lo, hi in slices if (lo is None or key >= lo) and (hi is None or key < hi)) == 1


def test_token_ranges_cover_the_ring():
    ranges = token_ranges(16)
    assert ranges[0][0] == MIN_TOKEN and ranges[-1][1] == MAX_TOKEN and len(ranges) == 16
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))


def test_pii_lines_without_consented_rows_never_touch_redis():
    from cqube_spark.exhaust.sources import csv_escape, pii_lines

    template = [("seg", 0), ("pii", "username"), ("pii", "phone"), ("seg", 1)]
    fn = pii_lines("redis://127.0.0.1:1/0", None, template, ["username"], ["phone"], batch_size=2)
    rows = [("u1", "No,,x", "u1", False), ("u2", '"q"', "u2", False), ("u3", "z", "u3", False)]
    assert "".join(fn(iter(rows))) == 'u1,,,No,,x\nu2,,,"q"\nu3,,,z\n'
    assert list(fn(iter([]))) == []
    assert csv_escape('a "b", c') == '"a ""b"", c"' and csv_escape("plain") == "plain"
