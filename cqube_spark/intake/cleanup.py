"""Emission retention: files older than ``retentionDays`` are removed only when a copy is known (in input/
or in ``_rejected/``, per the file tracker); anything else is reported, never silently deleted."""
from __future__ import annotations

import datetime as dt
import os

from cqube_spark import storage


def mtime(store: storage.Storage, uri: str) -> dt.datetime:
    loc = storage.parse_uri(uri)
    if not loc.is_s3:
        return dt.datetime.fromtimestamp(os.path.getmtime(loc.key), dt.timezone.utc)
    return store.s3.head_object(Bucket=loc.bucket, Key=loc.key)["LastModified"]


def cleanup(store: storage.Storage, emission_root: str, copies: dict[str, list[str]], retention_days: int,
            now: dt.datetime | None = None, log=None) -> dict:
    """``copies``: emission path → known copies (input or rejected URIs). Returns removed/reported lists."""
    now = now or dt.datetime.now(dt.timezone.utc)
    cutoff = now - dt.timedelta(days=retention_days)
    removed, reported = [], []
    for uri in store.list(emission_root):
        rel = uri[len(emission_root.rstrip("/")) + 1:] if uri.startswith(emission_root.rstrip("/")) else uri
        if rel.startswith("_rejected/") or rel.endswith(".reason.json"):
            continue  # the rejected area is the copy itself: kept for the emitter and the admins
        if mtime(store, uri) > cutoff:
            continue
        known = [c for c in copies.get(uri, []) if c and store.exists(c)]
        if known:
            store.delete(uri)
            removed.append(uri)
        else:
            reported.append(uri)
            if log is not None:
                log.warning("emission file past retention has no known copy: kept", file=uri)
    return {"removed": removed, "reported": reported}
