"""The ``report`` job: the published outputs (``current`` view) → ``<output>/report/``, an offline HTML report.

    cqube-spark run report [--param output=s3a://bucket/prefix] [--param scope=district]

Input: ``<output>/_current.json`` → ``_runs/<run_id>/`` (metadata.json + the published JSON), read with
:class:`cqube_spark.storage.Storage` (local folders or S3; no Spark), and ``configs/report.yaml``.
Output: ``<output>/report/index.html`` + ``assets/`` + ``vendor/echarts.min.js`` + ``data/`` (see
docs/report.md) and ``report/metadata.json`` (the only file with the run id and time). With ``scope=district``
also ``report/district/<district_id>/``, one per district of the published hierarchy: the same page and
assets with only that district's data (:mod:`cqube_spark.report.scope`). Idempotent: the same published
outputs give byte-identical files, scoped copies too; files of an earlier report that this one does not
produce (district copies included, when this run's scope is ``state``) are deleted after the new ones are
written. Exit 1 with the reason only when the outputs cannot be read at all; a missing KPI, a unit without
coordinates or an empty period is shown as a message in the page.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

from cqube_spark import safenames, storage
from cqube_spark.report import build, reader, scope, settings as report_settings
from cqube_spark.session import PROJECT_ROOT

REPORT_DIR = "report"
DISTRICT_DIR = "district"


def _path(p: str) -> Path:
    path = Path(p)
    return path if path.is_absolute() else PROJECT_ROOT / path


def write(store: storage.Storage, target: str, files: dict[str, bytes], run_id: str, source_run_id: str,
          keep_also: frozenset = frozenset()) -> dict:
    """Write one report folder (index.html last), then delete what else is under it, except ``keep_also`` (keys)."""
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
    keep = {storage.parse_uri(storage.join(target, rel)).key for rel in list(files) + ["metadata.json"]} | keep_also
    stale = [u for u in store.list(target) if storage.parse_uri(u).key not in keep]
    for u in stale:
        store.delete(u)
    return meta


def scoped_copies(sh: dict, cfg: dict, static: dict[str, bytes]) -> dict[str, dict[str, bytes]]:
    """``{district folder (relative to report/): its files}``, one per district of the hierarchy. Pure."""
    return {f"{DISTRICT_DIR}/{safenames.segment(d, 'district_id')}":
            {**static, **build.data_files(scope.for_district(sh, d), cfg)} for d in scope.district_ids(sh)}


def run(ctx) -> dict:
    params = ctx.params
    output = params.get("output") or ctx.roots["output"]
    cfg = report_settings.load(_path(params.get("settings", "configs/report.yaml")))
    published = reader.open_current(ctx.store, output)
    static = build.static_files()
    sh = build.shaped(published, cfg)
    files = {**static, **build.data_files(sh, cfg)}
    target = storage.join(output, REPORT_DIR)
    copies = scoped_copies(sh, cfg, static) if params.get("scope", "state") == "district" else {}
    kept = set()
    for folder, cfiles in copies.items():          # first: the state report's clean-up keeps what they wrote
        dest = storage.join(target, folder)
        write(ctx.store, dest, cfiles, ctx.run_id, published.run_id)
        kept |= {storage.parse_uri(storage.join(dest, rel)).key for rel in list(cfiles) + ["metadata.json"]}
    write(ctx.store, target, files, ctx.run_id, published.run_id, frozenset(kept))
    data_bytes = sum(len(b) for rel, b in files.items() if rel.startswith("data/"))
    index = storage.join(target, "index.html")
    ctx.log.info("report written", path=index, files=len(files), data_bytes=data_bytes, districts=len(copies))
    return {"rows": len(files), "files": len(files), "data_bytes": data_bytes,
            "bytes": sum(len(b) for b in files.values()), "index": index, "districts": len(copies),
            "district_files": sum(len(c) for c in copies.values())}
