"""Published outputs, filtered on read by the caller's hierarchy scope.

Why filter on read (not split at publish): publish stays one atomic run of one set of files (no copy per
unit: 4 levels x every unit would multiply the files and the switch), the published ``metadata.json`` is the
whitelist of downloadable paths, and the filter is one small pure function with its own tests. The cost:
scoped users download through the API (a signed link to ``/download/file``), never a raw presigned object
URL, since the object holds every unit's rows. State-scoped users get a presigned S3 GET (or a signed local
link) to the whole file.

Inputs: the output root (local or S3, via ``cqube_spark.storage``), the run pointer ``_current.json``.
Outputs: metadata filtered to a scope, file bytes filtered to a scope (JSON ``data`` rows, CSV rows).
"""
from __future__ import annotations

import csv
import io
import json

from cqube_spark import storage
from cqube_spark.api.errors import ApiError
from cqube_spark.api.scope import Scope, safe_relpath


class Outputs:
    def __init__(self, store: storage.Storage, output_root: str):
        self.store, self.root = store, output_root.rstrip("/")

    def run_prefix(self) -> str:
        """The prefix of the current published run (one consistent set of files)."""
        ptr = storage.join(self.root, "_current.json")
        if not self.store.exists(ptr):
            raise ApiError(404, "not_published", "nothing is published yet (no _current.json in the output root)")
        return storage.join(self.root, json.loads(self.store.read_bytes(ptr))["prefix"])

    def metadata(self) -> tuple[str, dict]:
        prefix = self.run_prefix()
        return prefix, json.loads(self.store.read_bytes(storage.join(prefix, "metadata.json")))

    def visible(self, scope: Scope, prefix: str = "") -> tuple[str, dict, list[dict]]:
        run, meta = self.metadata()
        files = [f for f in meta.get("files", [])
                 if f["path"].startswith(prefix) and scope.sees_level(f.get("level"))]
        return run, meta, files

    def entry(self, scope: Scope, path: str) -> tuple[str, dict]:
        """The metadata entry of a visible file; 400 for a hostile path, 404 for anything not visible (a
        scoped user cannot tell a hidden file from a missing one)."""
        try:
            safe_relpath(path)
        except ValueError as e:
            raise ApiError(400, "bad_path", f"path {path!r} refused: {e}", field="path") from None
        run, _, files = self.visible(scope)
        for f in files:
            if f["path"] == path:
                return run, f
        raise ApiError(404, "not_found", f"no published file {path!r} visible to scope {scope}", field="path")

    def read_filtered(self, scope: Scope, path: str) -> tuple[bytes, str]:
        run, f = self.entry(scope, path)
        data = self.store.read_bytes(storage.join(run, f["path"]))
        if scope.is_state:
            return data, media_type(path)
        if path.endswith(".json"):
            return filter_json(data, scope), "application/json"
        if path.endswith(".csv"):
            return filter_csv(data, scope), "text/csv"
        raise ApiError(404, "not_found", f"{path!r} cannot be filtered to scope {scope}", field="path")


def media_type(path: str) -> str:
    return "application/json" if path.endswith(".json") else "text/csv" if path.endswith(".csv") \
        else "application/octet-stream"


def filter_metadata(meta: dict, files: list[dict], scope: Scope) -> dict:
    out = {k: v for k, v in meta.items() if k != "files"}
    # a file's size, digest and row count describe every unit's rows: a scoped user sees none of them
    out["files"] = [{k: v for k, v in f.items() if not (k in ("bytes", "sha256", "rows") and not scope.is_state)}
                    for f in files]
    out["scope"] = str(scope)
    return out


def filter_json(data: bytes, scope: Scope) -> bytes:
    doc = json.loads(data)
    rows = doc.get("data") if isinstance(doc, dict) else None
    kept = [r for r in rows if isinstance(r, dict) and scope.sees_row(r)] if isinstance(rows, list) else []
    return json.dumps({**doc, "data": kept, "scope": str(scope)}, separators=(",", ":"), sort_keys=True).encode()


def filter_csv(data: bytes, scope: Scope) -> bytes:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=reader.fieldnames or [], lineterminator="\n")
    writer.writeheader()
    for row in reader:
        if scope.sees_row(row):
            writer.writerow(row)
    return out.getvalue().encode()
