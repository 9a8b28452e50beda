"""Names that come from data and end up in a path: checked here, in one place, before any path is built.

Input: a value from data (a ``job_request.request_id`` or ``tag``, a replay id, a request file's name) and
the name of the field it came from. Output: the same value when it is a safe single path segment, else
:class:`UnsafeName` whose message names the field, shows the value (truncated, ``repr``) and says why.

Refused: non-strings, empty or blank values, values longer than ``max_len``, ``.`` and ``..``, anything with
a ``/`` or ``\\`` (so no ``../``, no absolute path, no Windows path), NUL and other control characters, any
``%`` (percent-encoded ``%2e%2e%2f`` and double-encoded ``%252e`` forms alike), leading/trailing spaces and
any character outside ``A-Z a-z 0-9 . _ - : @ + =``. :func:`within` is the second line of defence: a joined
URI must stay under its root (local paths are resolved, so symlinked parents are followed; S3 keys are
normalised on ``/`` segments).

Pure: no I/O apart from ``Path.resolve`` for local roots.
"""
from __future__ import annotations

import posixpath
import re
from pathlib import Path

MAX_LEN = 128
_ALLOWED = re.compile(r"[A-Za-z0-9._\-:@+=]+")


class UnsafeName(ValueError):
    """A name from data that must not become (part of) a path. ``str()`` names the field and the reason."""

    def __init__(self, field: str, value: object, reason: str):
        self.field, self.value, self.reason = field, value, reason
        shown = repr(value) if not isinstance(value, str) or len(value) <= 60 else repr(value[:60]) + "..."
        super().__init__(f"{field} {shown} is not a safe name: {reason}")


def segment(value: object, field: str, max_len: int = MAX_LEN) -> str:
    """``value`` if it is safe as one path segment (file or folder name), else raise :class:`UnsafeName`."""
    if not isinstance(value, str):
        raise UnsafeName(field, value, f"expected a string, got {type(value).__name__}")
    if not value.strip():
        raise UnsafeName(field, value, "empty")
    if len(value) > max_len:
        raise UnsafeName(field, value, f"longer than {max_len} characters ({len(value)})")
    if "\x00" in value:
        raise UnsafeName(field, value, "contains a NUL character")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise UnsafeName(field, value, "contains a control character")
    if "/" in value or "\\" in value:
        raise UnsafeName(field, value, "contains a path separator ('/' or '\\'): no folders, no absolute paths")
    if "%" in value:
        raise UnsafeName(field, value, "contains '%' (percent-encoded names are refused)")
    if value in (".", "..") or set(value) == {"."}:
        raise UnsafeName(field, value, "is a relative folder reference ('.' or '..')")
    if value != value.strip():
        raise UnsafeName(field, value, "has leading or trailing spaces")
    bad = sorted({c for c in value if not _ALLOWED.fullmatch(c)})
    if bad:
        raise UnsafeName(field, value, f"contains characters outside A-Z a-z 0-9 . _ - : @ + = ({''.join(bad)!r})")
    return value


def within(root: str, uri: str, field: str = "path") -> str:
    """``uri`` if it lies strictly under ``root`` (same scheme and bucket for S3), else :class:`UnsafeName`."""
    from cqube_spark.storage import parse_uri

    r, u = parse_uri(root), parse_uri(uri)
    if r.is_s3 != u.is_s3 or r.bucket != u.bucket:
        raise UnsafeName(field, uri, f"is not under the root {root}")
    if r.is_s3:
        rk, uk = posixpath.normpath("/" + r.key), posixpath.normpath("/" + u.key)
        if ".." in u.key.split("/") or not uk.startswith(rk.rstrip("/") + "/"):
            raise UnsafeName(field, uri, f"is not under the root {root}")
        return uri
    rp, up = Path(r.key).resolve(), Path(u.key).resolve()
    if up == rp or rp not in up.parents:
        raise UnsafeName(field, uri, f"is not under the root {root}")
    return uri
