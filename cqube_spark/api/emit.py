"""``cqube-spark emit <folder-or-zip>``: the state's emission client.

A folder: every ``*.csv`` in it (not recursive) is zipped with a ``manifest.json`` (``{"files": [{"name",
"size_bytes", "records"}]}``, records = lines after the header, blank ones included, as intake counts
them). A zip is sent as it is. Then: ``POST /emission/uploads`` (bearer token from ``--token`` or
``CQUBE_API_TOKEN``) → PUT the bytes to the one-time URL → ``GET /emission/uploads/{id}`` → print the
acknowledgement as JSON. Exit 0 ok, 1 refused or failed, 2 bad arguments.
"""
from __future__ import annotations

import io
import json
import os
import sys
import zipfile
from pathlib import Path

import requests


def manifest_entry(name: str, data: bytes) -> dict:
    """records as intake counts them (``intake.fingerprint.Extracted.records``): physical lines after the header,
    blank lines included."""
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    return {"name": name, "size_bytes": len(data), "records": max(lines - 1, 0)}


def build_zip(folder: Path) -> bytes:
    csvs = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    if not csvs:
        raise ValueError(f"{folder}: no .csv files to emit")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        entries = []
        for p in csvs:
            data = p.read_bytes()
            zf.writestr(p.name, data)
            entries.append(manifest_entry(p.name, data))
        zf.writestr("manifest.json", json.dumps({"files": entries}, indent=1))
    return buf.getvalue()


def emit(path: str, api: str, token: str, name: str | None = None, timeout: float = 60) -> dict:
    p = Path(path)
    if p.is_dir():
        data, name = build_zip(p), name or f"{p.resolve().name}.zip"
    elif p.is_file() and p.suffix.lower() == ".zip":
        data, name = p.read_bytes(), name or p.name
    else:
        raise ValueError(f"{path}: expected a folder of CSVs or a .zip")
    auth = {"Authorization": f"Bearer {token}"}
    r = requests.post(f"{api.rstrip('/')}/emission/uploads", json={"file_name": name, "size_bytes": len(data)},
                      headers=auth, timeout=timeout)
    if r.status_code != 201:
        raise RuntimeError(f"upload URL refused ({r.status_code}): {r.text[:300]}")
    grant = r.json()
    put = requests.put(grant["url"], data=data, headers=grant.get("headers", {}), timeout=timeout)
    if put.status_code not in (200, 201):
        raise RuntimeError(f"upload refused ({put.status_code}): {put.text[:300]}")
    ack = requests.get(f"{api.rstrip('/')}/emission/uploads/{grant['upload_id']}", headers=auth, timeout=timeout)
    ack.raise_for_status()
    return ack.json()


def register(sub) -> None:
    p = sub.add_parser("emit", help="zip CSVs with a manifest and upload them through the emission API")
    p.add_argument("path", help="a folder of CSV files, or a .zip")
    p.add_argument("--api", default=os.environ.get("CQUBE_API_URL", "http://127.0.0.1:8700"))
    p.add_argument("--token", default=None, help="bearer token (default: CQUBE_API_TOKEN)")
    p.add_argument("--name", help="the zip's name (default: the folder's name + .zip)")
    p.set_defaults(func=cmd_emit)


def cmd_emit(args) -> int:
    token = args.token or os.environ.get("CQUBE_API_TOKEN")
    if not token:
        print("emit: no token (--token or CQUBE_API_TOKEN)", file=sys.stderr)
        return 2
    try:
        print(json.dumps(emit(args.path, args.api, token, args.name), indent=2, default=str))
    except ValueError as e:
        print(f"emit: {e}", file=sys.stderr)
        return 2
    except (RuntimeError, requests.RequestException) as e:
        print(f"emit: {e}", file=sys.stderr)
        return 1
    return 0
