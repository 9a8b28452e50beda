"""The ``intake`` job: every emission zip → safety → manifest → fingerprint → input/ → validated Delta tables.

    cqube-spark run intake [--param retentionDays=7] [--param validate=false]

1. list ``<emission>/**.zip`` (``_rejected/`` excluded); refuse hostile zips, manifest mismatches, unknown
   sources, header mismatches and empty files: the zip is copied to ``<emission>/_rejected/<folder>/`` with a
   ``.reason.json``, the original removed, the emitter e-mailed (SMTP from the config);
2. content already loaded (same sha256) → ``duplicate`` (moved aside like a rejection, no e-mail);
3. accepted: the zip and its line-numbered parts are copied to
   ``<input>/<source>/<YYYY>/<YYYY-MM>/<YYYY-MM-DD>_<source>/``, verified, then removed from emission;
4. sources are loaded in dependency order (masters first), file by file (``load.load_file``);
5. file_tracker, log_summary and validation_results are written; the emission cleanup runs last.

A bad file never fails the run; only infrastructure errors do (exit 1).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import tempfile
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cqube_spark import academic_year, faults, progress, runlock, storage
from cqube_spark.config import ConfigError
from cqube_spark.intake import ONE_TIME
from cqube_spark.intake import cleanup as cleanup_mod
from cqube_spark.intake import fingerprint, manifest, notify, resume, schedule, zipsafe
from cqube_spark.intake.load import load_file, loading_conf
from cqube_spark.intake.tracker import FileTracker, new_row
from cqube_spark.quality import summary as summary_mod
from cqube_spark.quality.spec import SourceSpec, load_order, load_specs, load_state
from cqube_spark.session import PROJECT_ROOT

REJECTED = "_rejected"


class Rejection(Exception):
    def __init__(self, kind: str, message: str, notify_emitter: bool = True):
        self.kind, self.notify_emitter = kind, notify_emitter
        super().__init__(message)


def _project_path(p: str) -> Path:
    path = Path(p)
    return path if path.is_absolute() or path.exists() else PROJECT_ROOT / path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def period_date(spec: SourceSpec, header: str | None, first_row: str | None, today: dt.date,
                start_month: int = academic_year.DEFAULT_START_MONTH) -> dt.date:
    """The file's date from its first data row (academic year/month, a date column, the exam code); an
    academic year/month is placed in the calendar by the state's ``academic_year_start_month``."""
    kind = spec.period.get("kind", "none")
    if kind == "none" or not first_row or not header:
        return today
    names = [h.strip().strip('"').lower() for h in header.split(spec.delimiter)]
    values = [v.strip().strip('"') for v in first_row.split(spec.delimiter)]

    def value(col: str) -> str | None:
        try:
            return values[names.index(col.lower())]
        except (ValueError, IndexError):
            return None
    try:
        if kind == "academic_year_month":
            ay, m = value(spec.period["academic_year"]), int(value(spec.period["month"]))
            return dt.date(academic_year.calendar_year(int(ay[:4]), m, start_month), m, 1)
        if kind == "exam_code":
            code = value(spec.period["column"]) or ""
            off = spec.period.get("date_offset", 7)
            return dt.datetime.strptime(code[off:off + 8], "%d%m%Y").date()
        if kind == "date_column":
            text = value(spec.period["column"]) or ""
            fmt = spec.column(spec.period["column"]).format or spec.period.get("format") or "yyyy-MM-dd"
            py = fmt.replace("yyyy", "%Y").replace("MM", "%m").replace("dd", "%d").replace("HH", "%H") \
                .replace("mm", "%M").replace("ss", "%S")
            return dt.datetime.strptime(text, py).date()
    except (TypeError, ValueError, KeyError, IndexError):
        return today
    return today


def check_header(spec: SourceSpec, header: str | None) -> SourceSpec:
    """The spec to load the file with: the spec itself when the header lists every declared column, or the
    spec without its state-deactivated columns when the file leaves exactly those out (``state.yaml``);
    anything else is a ``header_mismatch`` rejection."""
    if header is None:
        raise Rejection("empty_file", "empty file: no header and no rows")
    got = [h.strip().strip('"').strip().lower() for h in header.split(spec.delimiter)]
    want = [c.name.lower() for c in spec.columns]
    if got == want:
        return spec
    if spec.inactive_columns and got == [c.name.lower() for c in spec.active_columns]:
        return dataclasses.replace(spec, columns=tuple(spec.active_columns))
    missing = [c for c in want if c not in got]
    extra = [c for c in got if c not in want]
    raise Rejection("header_mismatch", f"header does not match spec {spec.name}: "
                    f"{len(got)} columns (expected {len(want)}); missing {missing[:5]}, unexpected {extra[:5]}")


class Intake:
    def __init__(self, ctx):
        self.ctx = ctx
        p = ctx.params
        state = load_state(_project_path(p.get("stateConfig", "configs/state.yaml")))
        self.start_month = state.academic_year_start_month
        self.specs = load_specs(_project_path(p.get("sources", "configs/sources")), state)
        self.limits = zipsafe.Limits(int(p.get("maxUncompressedBytes", 2 * 1024 ** 3)),
                                     float(p.get("maxCompressionRatio", 100)))
        self.part_bytes = int(p.get("partBytes", 32 * 1024 * 1024))
        # SMTP: the config's block, each value overridable from the environment (no password in files)
        smtp = dict(p.get("smtp") or {})
        for key, env in (("host", "CQUBE_SMTP_HOST"), ("port", "CQUBE_SMTP_PORT"), ("from", "CQUBE_SMTP_FROM")):
            if os.environ.get(env):
                smtp[key] = os.environ[env]
        smtp.setdefault("host", "127.0.0.1")
        self.smtp = smtp
        extra = [a.strip() for a in os.environ.get("CQUBE_EMITTER_EMAIL", "").split(",") if a.strip()]
        self.notify_to = list(p.get("notify") or []) + extra
        self.store = ctx.store
        self.emission = ctx.roots["emission"].rstrip("/")
        self.today = ctx.as_of or dt.date.today()
        self.tracker = FileTracker(ctx.spark, ctx.lake("meta", "file_tracker"))
        self.rows: list[dict] = []
        self.seen: dict[str, str] = {}
        self.emails = 0
        self.copied: list[str] = []
        self.lock = threading.Lock()
        self.references: dict = {}      # the run's referenced silver tables (load.reference_frames)

    # -- emission side -------------------------------------------------------------------------------
    def rel(self, uri: str) -> str:
        return uri[len(self.emission) + 1:] if uri.startswith(self.emission + "/") else uri.rsplit("/", 1)[-1]

    def reject(self, uri: str, kind: str, message: str, email: bool, rows: list[dict]) -> None:
        rel = self.rel(uri)
        folder, _, name = rel.rpartition("/")
        dest = storage.join(self.emission, REJECTED, folder, f"{self.ctx.run_id}_{name}")
        reason = {"file": rel, "kind": kind, "reason": message, "run_id": self.ctx.run_id,
                  "rejected_at": dt.datetime.now().isoformat(timespec="seconds")}
        self.store.copy(uri, dest)
        if self.store.size(dest) != self.store.size(uri):
            raise IOError(f"copy of {uri} to {dest} did not verify; source kept")
        self.store.write_bytes(dest + ".reason.json", json.dumps(reason, indent=2).encode())
        self.store.delete(uri)
        status = "duplicate" if kind == "duplicate" else "rejected"
        if not rows:
            rows = [new_row(self.ctx.run_id, uri, None)]
        for r in rows:
            r.update(status=status, rejected_path=dest, error=f"{kind}: {message}")
            self.rows.append(r)
        self.ctx.log.warning("file rejected" if status == "rejected" else "duplicate file", file=rel, kind=kind,
                             reason=message)
        if email:
            sent = notify.send_rejection(
                self.smtp, self.notify_to, f"[cqube] emission file rejected: {rel} ({kind})",
                f"The file {rel} was rejected by cQube intake (run {self.ctx.run_id}).\n\n"
                f"Reason ({kind}): {message}\n\nIt was moved to {dest}; please correct and emit it again.\n",
                self.ctx.log)
            self.emails += int(sent)

    def intake_zip(self, uri: str, work: str) -> list[tuple[SourceSpec, dict, str]]:
        """Returns the accepted files [(spec, tracker row, parts URI)] of one zip (or rejects it)."""
        local = uri
        if storage.parse_uri(uri).is_s3:
            local = os.path.join(work, "zip", _safe(self.rel(uri)))
            self.store.download_file(uri, local)
        zip_sha = _sha256_file(local)
        zip_size = os.path.getsize(local)
        rows: list[dict] = []
        try:
            try:
                zf = zipfile.ZipFile(local)
            except (zipfile.BadZipFile, OSError) as e:
                raise Rejection("not_a_zip", f"not a readable zip: {e}") from None
            with zf:
                try:
                    members, man_info = zipsafe.check(zf, self.limits)
                except zipsafe.UnsafeZip as e:
                    raise Rejection(e.kind, str(e)) from None
                entries = None
                if man_info is not None:
                    try:
                        entries = manifest.parse(zf.read(man_info))
                    except manifest.ManifestError as e:
                        raise Rejection("manifest_invalid", str(e)) from None
                    absent = manifest.missing(entries, [m.filename for m in members])
                    if absent:
                        raise Rejection("manifest_mismatch", "; ".join(absent))
                accepted = []
                for info in members:
                    matches = [s for s in self.specs.values() if s.matches(info.filename)]
                    row = new_row(self.ctx.run_id, uri, info.filename, zip_sha256=zip_sha, zip_size_bytes=zip_size)
                    rows.append(row)
                    if len(matches) != 1:
                        raise Rejection("unknown_source", f"{info.filename}: matches "
                                        f"{'no' if not matches else [s.name for s in matches]} source spec")
                    spec = matches[0]
                    row["source"] = spec.name
                    out = os.path.join(work, "parts", row["file_id"])
                    try:
                        ex = fingerprint.extract(zf, info, out, self.part_bytes,
                                                 max_bytes=min(info.file_size, self.limits.max_uncompressed_bytes))
                    except fingerprint.BadMember as e:     # a bomb, corrupt data, headers that lie
                        raise Rejection(e.kind, str(e)) from None
                    row.update(sha256=ex.sha256, size_bytes=ex.size_bytes, records=ex.records)
                    if entries is not None:
                        problems = manifest.compare(entries.get(info.filename), info.filename, ex.size_bytes,
                                                    ex.records)
                        if problems:
                            raise Rejection("manifest_mismatch", "; ".join(problems))
                    spec = check_header(spec, ex.header)
                    if ex.records == 0:
                        raise Rejection("empty_file", f"{info.filename}: no data rows (empty_file)")
                    accepted.append((spec, row, ex))
        except Rejection as e:
            self.reject(uri, e.kind, str(e), e.notify_emitter and e.kind != "duplicate", rows)
            return []
        # duplicates: every member already loaded (or seen earlier in this run) → the zip is set aside
        def known(spec, sha):
            return self.loaded.get((spec.name, sha)) or self.seen.get((spec.name, sha))

        dups = [a for a in accepted if known(a[0], a[2].sha256)]
        if dups and len(dups) == len(accepted):
            first = known(accepted[0][0], accepted[0][2].sha256)
            for spec, row, _ in accepted:
                row["input_path"] = known(spec, row["sha256"])
            self.reject(uri, "duplicate", f"same content as {first} (already loaded)", False, rows)
            return []
        return self.copy_to_input(uri, local, accepted)

    def copy_to_input(self, uri, local, accepted) -> list[tuple[SourceSpec, dict, str]]:
        out = []
        zip_name = _safe(uri.rsplit("/", 1)[-1])
        copies = []
        for spec, row, ex in accepted:
            faults.point("intake.copy")
            day = period_date(spec, ex.header, ex.first_row, self.today, self.start_month)
            base = storage.join(self.ctx.roots["input"], spec.name, f"{day:%Y}", f"{day:%Y-%m}",
                                f"{day:%Y-%m-%d}_{spec.name}", ex.sha256[:12])
            zip_dst = storage.join(base, zip_name)
            parts_dst = storage.join(base, _safe(Path(ex.member).stem) + ".parts")
            if (zip_dst, local) not in copies:
                self.store.upload_file(local, zip_dst)
                copies.append((zip_dst, local))
                if self.store.size(zip_dst) != os.path.getsize(local):
                    raise IOError(f"copy of {uri} to {zip_dst} did not verify")
            total = 0
            for first, path in ex.parts:
                dst = storage.join(parts_dst, fingerprint.part_name(first))
                self.store.upload_file(path, dst)
                total += self.store.size(dst)
            if total != ex.size_bytes:
                raise IOError(f"parts of {ex.member} under {parts_dst} hold {total} bytes, expected {ex.size_bytes}")
            row.update(status="received", input_path=parts_dst, error=None)
            self.rows.append(row)
            self.seen[(spec.name, ex.sha256)] = parts_dst
            out.append((spec, row, parts_dst))
        # verified copies exist: the emission file goes once the tracker knows them (run(), after the upsert);
        # a crash before that leaves the zip in emission/ and the next run starts over
        self.copied.append(uri)
        return out

    def refuse_reused(self, zips: list[str]) -> list[str]:
        """A one-time key (``emission/api/``) the tracker already knows is a reused upload URL: rejected."""
        one_time = [u for u in zips if self.rel(u).startswith(ONE_TIME + "/")]
        taken = self.tracker.known_emissions(storage.join(self.emission, ONE_TIME) + "/") if one_time else set()
        for uri in (u for u in one_time if u in taken):
            self.reject(uri, "upload_reused", f"{self.rel(uri)}: this one-time upload key was already taken in by "
                        "an earlier run; a new file needs a new upload URL", True, [])
        return [u for u in zips if u not in taken]

    def unfinished(self) -> list[tuple[SourceSpec, dict, str]]:
        """Files an earlier run copied to input/ but did not finish loading (it failed or was killed), unless
        the same content was loaded since or arrived again in this run: they load in this run, once."""
        out = []
        for row in self.tracker.unfinished():
            key = (row["source"], row["sha256"])
            if key in self.loaded:
                continue
            if key in self.seen:    # the same content arrived again in this run: that copy is loaded instead
                row.update(status="duplicate", error=f"duplicate: resumed as {self.seen[key]}")
                self.rows.append(row)
                continue
            spec, parts = self.specs.get(row["source"]), row["input_path"]
            part_files = sorted(u for u in self.store.list(parts) if u.endswith(".csv")) if spec else []
            if not part_files:
                self.ctx.log.warning("unfinished file cannot be resumed", file=parts, source=row["source"],
                                     reason="no source spec" if spec is None else "input copy missing")
                continue
            header = self.store.read_bytes(part_files[0]).split(b"\n", 1)[0].decode("utf-8", "replace")
            try:
                spec = check_header(spec, header.rstrip("\r"))
            except Rejection as e:     # the spec changed since the copy: the file no longer fits it
                row.update(status="rejected", error=f"{e.kind}: {e}")
                self.rows.append(row)
                continue
            row.update(status="received", error=None)
            self.rows.append(row)
            self.seen[key] = parts
            self.ctx.log.info("unfinished file resumed", file=parts, source=spec.name, since_run=row["run_id"])
            out.append((spec, row, parts))
        return out

    # -- the run ----------------------------------------------------------------------------------------
    def load_source(self, name: str, items: list, run_ge: bool) -> list[tuple[dict, object]]:
        """Load one source's accepted files in order; returns [(tracker row, FileResult)]. A failure marks the
        file ``failed`` in the tracker and raises (an infrastructure error fails the run)."""
        ctx = self.ctx
        done = []
        for spec, row, parts in items:
            meta = {"sha256": row["sha256"], "member": row["member"], "emission_path": row["emission_path"],
                    "file_id": row["file_id"]}
            try:
                faults.point("intake.load")
                if row["run_id"] != ctx.run_id:     # resumed: drop what a killed load appended for it
                    resume.forget_partial_load(ctx, spec, parts)
                res = load_file(ctx, spec, parts, parts, meta, run_ge=run_ge, start_month=self.start_month,
                                references=self.references)
            except Exception as e:  # noqa: BLE001 - recorded per file, then the run fails (infrastructure)
                row.update(status="failed", error=f"{type(e).__name__}: {e}")
                with self.lock:
                    self.tracker.upsert([row])
                raise
            s = res.summary
            with self.lock:
                self.files_done += 1
                progress.step(f"file {self.files_done} of {self.files_total} loaded", name)
            ctx.log.info("file loaded", source=name, file=parts, rows=s["total_rows"], loaded=s["processed_rows"],
                         quarantined=s["quarantined_rows"], seconds=s["duration_s"], steps=res.steps)
            done.append((row, res))
        return done

    def run(self) -> dict:
        ctx = self.ctx
        self.loaded = self.tracker.loaded()
        work = tempfile.mkdtemp(prefix="cqube-intake-")
        accepted: dict[str, list] = {}
        try:
            zips = [u for u in self.store.list(self.emission)
                    if not self.rel(u).startswith(REJECTED + "/") and u.lower().endswith(".zip")]
            zips = self.refuse_reused(zips)
            for uri in zips:
                for spec, row, parts in self.intake_zip(uri, work):
                    accepted.setdefault(spec.name, []).append((spec, row, parts))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for spec, row, parts in self.unfinished():
            accepted.setdefault(spec.name, []).append((spec, row, parts))
        faults.point("intake.after_copy")
        self.tracker.upsert(self.rows)
        for uri in self.copied:
            self.store.delete(uri)

        summaries, validations = [], []
        for r in self.rows:
            if r["status"] in ("rejected",):
                summaries.append(summary_mod.rejected_summary(r))
        counters = {"files": 0, "rows": 0, "quarantined": 0, "duplicates": 0, "overlap_ignored": 0}
        run_ge = bool(ctx.params.get("greatExpectations", True))
        threads = max(1, int(ctx.params.get("sourceThreads", 2)))
        self.files_done, self.files_total = 0, sum(len(v) for v in accepted.values())
        progress.step(f"0 of {self.files_total} files loaded")
        order = load_order(self.specs)      # also refuses a reference cycle
        with loading_conf(ctx.spark), ThreadPoolExecutor(threads, thread_name_prefix="intake") as pool:
            # sources load side by side (each source's files in order), each once the sources it references
            # are in, the longest chain first (schedule.py): one source's Spark jobs run while another's are
            # being planned
            loaded = schedule.run(
                pool, threads, {n: s.references for n, s in self.specs.items()},
                {n: schedule.cost([row.get("size_bytes") or 0 for _s, row, _p in items])
                 for n, items in accepted.items() if items},
                lambda name: self.load_source(name, accepted[name], run_ge))
        for name in order:      # the results in load order, as the run reports and records them
            for row, res in loaded.get(name, []):
                s = res.summary
                row.update(status="loaded", loaded_rows=s["processed_rows"],
                           quarantined_rows=s["quarantined_rows"], duplicate_rows=s["duplicates_identical"],
                           overlap_ignored=s["overlap_ignored"], error=None)
                summaries.append(s)
                if res.validation:
                    validations.append(res.validation)
                counters["files"] += 1
                counters["rows"] += s["processed_rows"]
                counters["quarantined"] += s["quarantined_rows"]
                counters["duplicates"] += s["duplicates_identical"]
                counters["overlap_ignored"] += s["overlap_ignored"]
        faults.point("intake.before_bookkeeping")
        self.tracker.upsert([r for r in self.rows if r["status"] == "loaded"])
        summary_mod.write(ctx, summaries, validations)

        copies = {}
        for r in self.rows:
            copies.setdefault(r["emission_path"], []).extend([r.get("input_path"), r.get("rejected_path")])
        cleaned = cleanup_mod.cleanup(self.store, self.emission, copies,
                                      int(ctx.params.get("retentionDays", 7)), log=ctx.log)
        counters.update({
            "accepted": sum(1 for r in self.rows if r["status"] == "loaded"),
            "rejected": sum(1 for r in self.rows if r["status"] == "rejected"),
            "duplicate_files": sum(1 for r in self.rows if r["status"] == "duplicate"),
            "emails": self.emails, "cleanup_removed": len(cleaned["removed"]),
            "cleanup_reported": len(cleaned["reported"]),
        })
        return counters


def _sha256_file(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(4 * 1024 * 1024), b""):
            h.update(block)
    return h.hexdigest()


def warm_up(ctx) -> None:
    """Before the session is up (runner): Great Expectations imported, unless the run skips it."""
    if ctx.params.get("greatExpectations", True):
        from cqube_spark.quality import expectations

        expectations.warm_up()


def run(ctx) -> dict:
    try:
        intake = Intake(ctx)
    except ConfigError:
        raise
    with runlock.hold(ctx, "intake", reentrant=True):   # one intake per data root (a second waits or exits 3)
        faults.point("intake.locked")
        return intake.run()
