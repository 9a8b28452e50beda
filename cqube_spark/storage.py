"""Locations and file operations: the one module that knows where data lives.

Roots come from ``CQUBE_DATA_ROOT`` (default ``./data``) holding ``emission/``, ``input/``, ``output/`` and
``lake/``; each root is overridable by ``CQUBE_EMISSION_URI``, ``CQUBE_INPUT_URI``, ``CQUBE_OUTPUT_URI``,
``CQUBE_LAKE_URI`` with a local path or ``s3a://bucket/prefix`` (``s3://`` is accepted too).

``Storage`` offers list / read / write (atomic) / copy / move / delete / exists / presigned GET over both
kinds of location: the filesystem for local paths, boto3 for S3. ``spark_path`` gives the URI Spark uses
for the same location (``s3a://...`` or an absolute local path).
"""
from __future__ import annotations

import mimetypes
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

ROOTS = ("emission", "input", "output", "lake")


@dataclass(frozen=True)
class Location:
    """A parsed URI: either a local absolute path or an S3 bucket + key."""

    scheme: str  # "file" or "s3"
    bucket: str
    key: str  # for file: absolute path; for s3: key without leading slash

    @property
    def is_s3(self) -> bool:
        return self.scheme == "s3"

    def __str__(self) -> str:
        return f"s3a://{self.bucket}/{self.key}" if self.is_s3 else self.key


def parse_uri(uri: str | os.PathLike) -> Location:
    text = str(uri)
    for prefix in ("s3a://", "s3n://", "s3://"):
        if text.startswith(prefix):
            bucket, _, key = text[len(prefix):].partition("/")
            if not bucket:
                raise ValueError(f"S3 URI without a bucket: {text}")
            return Location("s3", bucket, key.strip("/"))
    if text.startswith("file://"):
        text = text[len("file://"):]
    return Location("file", "", str(Path(text).expanduser().resolve()))


def join(uri: str, *parts: str) -> str:
    """Join path segments onto a URI (local or S3) with '/'."""
    base = str(uri).rstrip("/")
    rest = "/".join(p.strip("/") for p in parts if p)
    return f"{base}/{rest}" if rest else base


def roots(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The four storage roots, resolved from the environment."""
    data_root = env.get("CQUBE_DATA_ROOT", "./data")
    out = {}
    for name in ROOTS:
        override = env.get(f"CQUBE_{name.upper()}_URI")
        out[name] = str(parse_uri(override)) if override else str(parse_uri(join(data_root, name)))
    return out


def content_type(key: str) -> dict:
    """S3 object headers for a key by its extension (``{}`` when unknown): a browser applies a stylesheet or
    runs a script read from a bucket only with its real type (a report opened from S3)."""
    kind, encoding = mimetypes.guess_type(key)
    return {"ContentType": kind} if kind and not encoding else {}


def spark_path(uri: str) -> str:
    """The URI Spark should read/write for a location."""
    return str(parse_uri(uri))


class Storage:
    """File operations over local paths and S3 (boto3). Endpoint/credentials come from the environment."""

    def __init__(self, env: Mapping[str, str] = os.environ):
        self._env = env
        self._s3 = None

    # -- S3 client ---------------------------------------------------------------------------------
    @property
    def s3(self):
        if self._s3 is None:
            import boto3
            from botocore.config import Config

            endpoint = (
                self._env.get("CQUBE_S3_ENDPOINT")
                or self._env.get("AWS_ENDPOINT_URL_S3")
                or self._env.get("AWS_ENDPOINT_URL")
            )
            self._s3 = boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name=self._env.get("AWS_REGION", self._env.get("AWS_DEFAULT_REGION", "us-east-1")),
                config=Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                              retries={"max_attempts": 3, "mode": "standard"}),
            )
        return self._s3

    # -- queries -----------------------------------------------------------------------------------
    def exists(self, uri: str) -> bool:
        loc = parse_uri(uri)
        if not loc.is_s3:
            return os.path.exists(loc.key)
        from botocore.exceptions import ClientError

        try:
            self.s3.head_object(Bucket=loc.bucket, Key=loc.key)
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return any(True for _ in self.list(uri))
            raise

    def list(self, uri: str, recursive: bool = True) -> Iterator[str]:
        """Files under a prefix (sorted for local; S3 returns keys in lexical order)."""
        loc = parse_uri(uri)
        if not loc.is_s3:
            root = Path(loc.key)
            if root.is_file():
                yield str(root)
                return
            if not root.exists():
                return
            paths = root.rglob("*") if recursive else root.iterdir()
            for p in sorted(paths):
                if p.is_file() and not p.name.startswith(".tmp-"):
                    yield str(p)
            return
        prefix = loc.key.rstrip("/") + "/" if loc.key else ""
        kwargs = {"Bucket": loc.bucket, "Prefix": prefix}
        if not recursive:
            kwargs["Delimiter"] = "/"
        for page in self.s3.get_paginator("list_objects_v2").paginate(**kwargs):
            for obj in page.get("Contents", []):
                yield f"s3a://{loc.bucket}/{obj['Key']}"

    def size(self, uri: str) -> int:
        loc = parse_uri(uri)
        if not loc.is_s3:
            return os.path.getsize(loc.key)
        return self.s3.head_object(Bucket=loc.bucket, Key=loc.key)["ContentLength"]

    # -- reads and writes --------------------------------------------------------------------------
    def read_bytes(self, uri: str) -> bytes:
        loc = parse_uri(uri)
        if not loc.is_s3:
            return Path(loc.key).read_bytes()
        return self.s3.get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read()

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Atomic write: readers see the old content or the new one, never a partial file."""
        loc = parse_uri(uri)
        if loc.is_s3:
            self.s3.put_object(Bucket=loc.bucket, Key=loc.key, Body=data, **content_type(loc.key))  # atomic in S3
            return
        target = Path(loc.key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def upload_file(self, local_path: str, uri: str) -> None:
        """Copy a local file to a location (multipart for large S3 objects; atomic locally)."""
        loc = parse_uri(uri)
        if loc.is_s3:
            self.s3.upload_file(local_path, loc.bucket, loc.key, ExtraArgs=content_type(loc.key))
            return
        target = Path(loc.key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".tmp-{uuid.uuid4().hex}"
        shutil.copyfile(local_path, tmp)
        os.replace(tmp, target)

    def download_file(self, uri: str, local_path: str) -> None:
        loc = parse_uri(uri)
        Path(local_path).parent.mkdir(parents=True, exist_ok=True)
        if loc.is_s3:
            self.s3.download_file(loc.bucket, loc.key, local_path)
        else:
            shutil.copyfile(loc.key, local_path)

    def copy(self, src: str, dst: str) -> None:
        s, d = parse_uri(src), parse_uri(dst)
        if s.is_s3 and d.is_s3:
            self.s3.copy({"Bucket": s.bucket, "Key": s.key}, d.bucket, d.key)
        elif not s.is_s3:
            self.upload_file(s.key, dst)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                local = os.path.join(tmp, "obj")
                self.download_file(src, local)
                self.upload_file(local, dst)

    def move(self, src: str, dst: str) -> None:
        """Copy, verify the size, then delete the source: nothing is deleted that was not copied first."""
        s, d = parse_uri(src), parse_uri(dst)
        if not s.is_s3 and not d.is_s3:
            Path(d.key).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(s.key, d.key)  # a rename on the same filesystem, copy + delete across
            return
        self.copy(src, dst)
        if self.size(src) != self.size(dst):
            raise IOError(f"copy of {src} to {dst} did not verify (size differs); source kept")
        self.delete(src)

    def delete(self, uri: str, recursive: bool = False) -> None:
        loc = parse_uri(uri)
        if not loc.is_s3:
            p = Path(loc.key)
            if p.is_dir():
                if not recursive:
                    raise IsADirectoryError(f"{uri} is a folder; pass recursive=True")
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
            return
        if recursive:
            keys = [parse_uri(u).key for u in self.list(uri)]
            for i in range(0, len(keys), 1000):
                self.s3.delete_objects(Bucket=loc.bucket,
                                       Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]]})
        self.s3.delete_object(Bucket=loc.bucket, Key=loc.key)

    def presigned_url(self, uri: str, expires_seconds: int = 1800) -> str:
        """A GET URL that expires (S3 only; a local file has no URL to hand out)."""
        loc = parse_uri(uri)
        if not loc.is_s3:
            raise ValueError(f"presigned URLs need an S3 location, got local path {uri}")
        return self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": loc.bucket, "Key": loc.key}, ExpiresIn=int(expires_seconds)
        )

    def ensure_bucket(self, uri: str) -> None:
        """Create the bucket of an S3 URI if it does not exist (used by setup and tests)."""
        loc = parse_uri(uri)
        if not loc.is_s3:
            Path(loc.key).mkdir(parents=True, exist_ok=True)
            return
        from botocore.exceptions import ClientError

        try:
            self.s3.head_bucket(Bucket=loc.bucket)
        except ClientError:
            self.s3.create_bucket(Bucket=loc.bucket)
