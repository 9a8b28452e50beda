"""``manifest.json`` inside an emission zip: ``{"files": [{"name", "size_bytes", "records"}]}``.

``records`` counts data rows (the header excluded); ``size_bytes`` the uncompressed bytes of the member.
"""
from __future__ import annotations

import json
from dataclasses import dataclass


class ManifestError(Exception):
    pass


@dataclass(frozen=True)
class Entry:
    name: str
    size_bytes: int | None
    records: int | None


def parse(data: bytes) -> dict[str, Entry]:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"manifest.json is not valid JSON: {e}") from None
    files = doc.get("files") if isinstance(doc, dict) else doc
    if not isinstance(files, list):
        raise ManifestError("manifest.json: expected {'files': [...]}")
    out = {}
    for i, f in enumerate(files):
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            raise ManifestError(f"manifest.json: files[{i}] needs a name")
        for k in ("size_bytes", "records"):
            if f.get(k) is not None and (not isinstance(f[k], int) or isinstance(f[k], bool) or f[k] < 0):
                raise ManifestError(f"manifest.json: files[{i}].{k} must be a non-negative integer")
        out[f["name"]] = Entry(f["name"], f.get("size_bytes"), f.get("records"))
    return out


def compare(entry: Entry | None, name: str, size_bytes: int, records: int) -> list[str]:
    """Disagreements between the manifest and what was read (empty list = agrees)."""
    if entry is None:
        return [f"{name}: not listed in manifest.json"]
    problems = []
    if entry.size_bytes is not None and entry.size_bytes != size_bytes:
        problems.append(f"{name}: size_bytes {entry.size_bytes} in manifest, {size_bytes} in the zip")
    if entry.records is not None and entry.records != records:
        problems.append(f"{name}: records {entry.records} in manifest, {records} in the file")
    return problems


def missing(entries: dict[str, Entry], members: list[str]) -> list[str]:
    """Files the manifest lists that the zip does not hold (a zip missing any of them is rejected whole)."""
    present = set(members)
    return [f"{name}: listed in manifest.json but not in the zip" for name in sorted(entries) if name not in present]
