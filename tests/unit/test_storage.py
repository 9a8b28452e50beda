"""Storage on the local filesystem: URIs, roots, atomic writes, copy/move/delete."""
import os

import pytest

from cqube_spark import storage
from cqube_spark.storage import Storage, parse_uri


def test_parse_uri_kinds(tmp_path):
    assert parse_uri("s3a://bucket/a/b/").key == "a/b"
    assert parse_uri("s3://bucket/x").is_s3 and str(parse_uri("s3://bucket/x")) == "s3a://bucket/x"
    assert parse_uri(f"file://{tmp_path}/x").key == f"{tmp_path}/x"
    assert parse_uri("rel/p").key == os.path.abspath("rel/p")
    with pytest.raises(ValueError):
        parse_uri("s3a:///nobucket")


def test_roots_default_and_overrides(tmp_path):
    r = storage.roots({"CQUBE_DATA_ROOT": str(tmp_path)})
    assert r == {n: f"{tmp_path}/{n}" for n in storage.ROOTS}
    r = storage.roots({"CQUBE_DATA_ROOT": str(tmp_path), "CQUBE_OUTPUT_URI": "s3a://out/prefix/",
                       "CQUBE_LAKE_URI": "s3://lake"})
    assert r["output"] == "s3a://out/prefix" and r["lake"] == "s3a://lake/"
    assert r["emission"] == f"{tmp_path}/emission"


def test_join():
    assert storage.join("s3a://b/p/", "x", "/y/") == "s3a://b/p/x/y"
    assert storage.join("/a", "") == "/a"


def test_local_file_operations(tmp_path):
    st = Storage()
    root = str(tmp_path)
    f = storage.join(root, "a", "one.txt")
    st.write_bytes(f, b"hello")
    assert st.read_bytes(f) == b"hello" and st.exists(f) and st.size(f) == 5
    assert not [p for p in os.listdir(tmp_path / "a") if p.startswith(".tmp-")]  # no temp left behind
    st.write_bytes(f, b"hello again")  # replace atomically
    assert st.read_bytes(f) == b"hello again"
    st.copy(f, storage.join(root, "b", "two.txt"))
    st.move(storage.join(root, "b", "two.txt"), storage.join(root, "c", "three.txt"))
    assert sorted(st.list(root)) == [f"{root}/a/one.txt", f"{root}/c/three.txt"]
    st.delete(storage.join(root, "c", "three.txt"))
    assert not st.exists(storage.join(root, "c", "three.txt"))
    with pytest.raises(IsADirectoryError):
        st.delete(storage.join(root, "a"))
    st.delete(storage.join(root, "a"), recursive=True)
    assert list(st.list(root)) == []


def test_presigned_url_needs_s3(tmp_path):
    with pytest.raises(ValueError):
        Storage().presigned_url(str(tmp_path / "x"))
