"""Real S3-compatible server (scripts/services.sh start s3): boto3 + Spark over s3a:// + Delta on S3."""
import urllib.request
import uuid

from chispa import assert_df_equality
from pyspark.sql import types as T

from cqube_spark.storage import join


def bucket_uri(s3):
    uri = f"s3a://cqube-test-{uuid.uuid4().hex[:8]}"
    s3.ensure_bucket(uri)
    return uri


def test_storage_operations_on_s3(s3):
    root = bucket_uri(s3)
    a = join(root, "in", "a.txt")
    s3.write_bytes(a, b"abc")
    assert s3.exists(a) and s3.read_bytes(a) == b"abc" and s3.size(a) == 3
    s3.copy(a, join(root, "copy", "b.txt"))
    s3.move(join(root, "copy", "b.txt"), join(root, "moved", "c.txt"))
    assert sorted(s3.list(root)) == [join(root, "in", "a.txt"), join(root, "moved", "c.txt")]
    with urllib.request.urlopen(s3.presigned_url(a, expires_seconds=60), timeout=10) as resp:
        assert resp.read() == b"abc"
    s3.delete(join(root, "moved", "c.txt"))
    assert not s3.exists(join(root, "moved", "c.txt"))
    s3.delete(join(root, "in"), recursive=True)
    assert list(s3.list(root)) == []


def test_local_file_upload_and_download(s3, tmp_path):
    root = bucket_uri(s3)
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (12 * 1024 * 1024))  # multipart upload
    s3.upload_file(str(big), join(root, "big.bin"))
    s3.download_file(join(root, "big.bin"), str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()


def test_spark_reads_csv_and_round_trips_delta_on_s3(spark, s3):
    root = bucket_uri(s3)
    s3.write_bytes(join(root, "emission", "schools.csv"),
                   b"school_id|name|students\n75010100101|S1|84\n75010100102|S2|168\n")
    schema = T.StructType([T.StructField("school_id", T.StringType()), T.StructField("name", T.StringType()),
                           T.StructField("students", T.IntegerType())])
    df = spark.read.options(header=True, sep="|").schema(schema).csv(join(root, "emission", "schools.csv"))
    df.write.format("delta").save(join(root, "lake", "schools"))

    back = spark.read.format("delta").load(join(root, "lake", "schools"))
    expected = spark.createDataFrame([("75010100101", "S1", 84), ("75010100102", "S2", 168)], schema)
    assert_df_equality(back, expected, ignore_row_order=True, ignore_nullable=True)
    assert any(u.endswith("_delta_log/00000000000000000000.json") for u in s3.list(join(root, "lake")))


def test_a_presigned_link_is_refused_after_its_lifetime(s3):
    import time
    import urllib.error

    import pytest

    uri = join(bucket_uri(s3), "ml_reports", "r.zip")
    s3.write_bytes(uri, b"zip bytes")
    url = s3.presigned_url(uri, expires_seconds=2)
    assert "X-Amz-Expires=2&" in url or url.endswith("X-Amz-Expires=2")
    signed_at = time.monotonic()
    assert urllib.request.urlopen(url, timeout=10).read() == b"zip bytes"  # valid within its lifetime
    time.sleep(max(0.0, 3.5 - (time.monotonic() - signed_at)))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 403
    body = refused.value.read().decode()
    assert "AccessDenied" in body and "expired" in body.lower(), body
    s3.delete(uri)
