"""The ``report`` job: the published outputs (``current`` view) → ``<output>/report/``, an offline HTML report.

    cqube-spark run report [--param output=s3a://bucket/prefix]

Input: ``<output>/_current.json`` → ``_runs/<run_id>/`` (metadata.json + the published JSON), read with
:class:`cqube_spark.storage.Storage` (local folders or S3; no Spark), and ``configs/report.yaml``.
Output: ``<output>/report/index.html`` + ``assets/`` + ``vendor/echarts.min.js`` + ``data/`` (see
docs/report.md) and ``report/metadata.json`` (the only file with the run id and time). Idempotent: the same
published outputs give byte-identical files; files of an earlier report that this one does not produce are
deleted after the new ones are written. Exit 1 with the reason only when the outputs cannot be read at all;
a missing KPI, a unit without coordinates or an empty period is shown as a message in the page.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

from cqube_spark import storage
from cqube_spark.report import build, reader, settings as report_settings
from cqube_spark.session import PROJECT_ROOT

REPORT_DIR = "report"


def _path(p: str) -> Path:
    path = Path(p)
    return path if path.is_absolute() else PROJECT_ROOT / path


def write(store: storage.Storage, target: str, files: dict[str, bytes], run_id: str, source_run_id: str) -> dict:
    for rel in sorted(files):
        if rel != "index.html":
            store.write_bytes(storage.join(target, rel), files[rel])
    meta = {"generated_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
            "run_id": run_id, "source_run_id": source_run_id,
            "files": [{"path": rel, "bytes": len(files[rel]), "sha256": hashlib.sha256(files[rel]).hexdigest()}
                      for rel in sorted(files)]}
    store.write_bytes(storage.join(target, "metadata.json"),
                      (json.dumps(meta, sort_keys=True, indent=1) + "\n").encode())
    store.write_bytes(storage.join(target, "index.html"), files["index.html"])   # last: the entry point
    keep = {storage.parse_uri(storage.join(target, rel)).key for rel in list(files) + ["metadata.json"]}
    stale = [u for u in store.list(target) if storage.parse_uri(u).key not in keep]
    for u in stale:
        store.delete(u)
    return meta


def run(ctx) -> dict:
    params = ctx.params
    output = params.get("output") or ctx.roots["output"]
    cfg = report_settings.load(_path(params.get("settings", "configs/report.yaml")))
    published = reader.open_current(ctx.store, output)
    files = build.build(published, cfg)
    target = storage.join(output, REPORT_DIR)
    write(ctx.store, target, files, ctx.run_id, published.run_id)
    data_bytes = sum(len(b) for rel, b in files.items() if rel.startswith("data/"))
    index = storage.join(target, "index.html")
    ctx.log.info("report written", path=index, files=len(files), data_bytes=data_bytes)
    return {"rows": len(files), "files": len(files), "data_bytes": data_bytes,
            "bytes": sum(len(b) for b in files.values()), "index": index}
