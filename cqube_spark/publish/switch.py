"""Atomic publication: write a whole run under a versioned prefix, then switch readers to it.

Local folders (the embedded default)::

    <output>/_runs/<run_id>/<kpi>/...            every file of the run, written first (staging)
    <output>/_runs/<run_id>/metadata.json
    <output>/current -> _runs/<run_id>           THE switch: one atomic rename of a new symlink
    <output>/<kpi> -> current/<kpi>              stable symlinks: the documented paths
    <output>/metadata.json -> current/metadata.json
    <output>/_current.json                       {"run_id", "prefix"}: pointer for readers that pin a run

A reader opening a documented path resolves the symlinks at open time and reads one run's whole file; a
reader that reads several files and needs them from one run resolves ``current`` (or ``_current.json``)
once and reads under that prefix. Old runs are pruned after the switch (the last ``keep`` stay, so a reader
holding a previous prefix is not cut off mid-read).

S3 (no symlinks, no rename)::

    <output>/_runs/<run_id>/...                  every file of the run (each PUT is atomic)
    <output>/<kpi>/...                           then copied to the documented paths (server-side copies:
                                                 each path always holds one whole file of one run)
    <output>/metadata.json, <output>/_current.json   written LAST: the pointer to the complete run
    stale documented files of the previous run that this run did not produce are deleted after the pointer.

Readers that need a consistent multi-file view on S3 read ``_current.json`` and then ``_runs/<run_id>/``.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from cqube_spark import storage

RUNS = "_runs"
POINTER = "_current.json"


def run_prefix(output: str, run_id: str) -> str:
    return storage.join(output, RUNS, run_id)


def _pointer_doc(run_id: str) -> bytes:
    return (json.dumps({"prefix": f"{RUNS}/{run_id}", "run_id": run_id}, sort_keys=True) + "\n").encode()


def switch_local(output: str, run_id: str, top_names: list[str], keep: int = 3) -> None:
    out = Path(storage.parse_uri(output).key)
    target = Path(RUNS) / run_id
    if not (out / target).is_dir():
        raise FileNotFoundError(f"staged run {out / target} does not exist")
    tmp = out / f".current.tmp-{run_id}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, out / "current")                       # the atomic switch
    for name in top_names:                                  # stable documented paths
        link = out / name
        want = Path("current") / name
        if link.is_symlink():
            if Path(os.readlink(link)) == want:
                continue
            link.unlink()
        elif link.is_dir():
            shutil.rmtree(link)                             # a pre-symlink layout (first publish only)
        elif link.exists():
            link.unlink()
        t = out / f".link.tmp-{name}"
        if t.is_symlink():
            t.unlink()
        os.symlink(want, t)
        os.replace(t, link)
    ptr = out / f".pointer.tmp-{run_id}"
    ptr.write_bytes(_pointer_doc(run_id))
    os.chmod(ptr, 0o644)
    os.replace(ptr, out / POINTER)
    # documented names whose target no longer exists in the current run: remove the dangling links
    for p in out.iterdir():
        if p.is_symlink() and p.name not in top_names and p.name != "current" \
                and str(os.readlink(p)).startswith("current/") and not p.exists():
            p.unlink()
    prune_local(out, run_id, keep)


def prune_local(out: Path, current: str, keep: int) -> None:
    runs = out / RUNS
    if not runs.is_dir():
        return
    names = sorted(p.name for p in runs.iterdir() if p.is_dir())
    old = [n for n in names if n != current]
    for n in old[:max(0, len(old) - (keep - 1))]:
        shutil.rmtree(runs / n, ignore_errors=True)


def switch_s3(store: storage.Storage, output: str, run_id: str, files: list[str], keep: int = 3) -> None:
    """``files``: paths relative to the run prefix (metadata.json included)."""
    prefix = run_prefix(output, run_id)
    previous = None
    if store.exists(storage.join(output, POINTER)):
        previous = json.loads(store.read_bytes(storage.join(output, POINTER))).get("run_id")
    for rel in sorted(files):
        if rel == "metadata.json":
            continue
        store.copy(storage.join(prefix, rel), storage.join(output, rel))
    store.copy(storage.join(prefix, "metadata.json"), storage.join(output, "metadata.json"))
    store.write_bytes(storage.join(output, POINTER), _pointer_doc(run_id))
    if previous and previous != run_id:
        try:
            prev_meta = json.loads(store.read_bytes(storage.join(run_prefix(output, previous), "metadata.json")))
            stale = {f["path"] for f in prev_meta.get("files", [])} - set(files)
            for rel in sorted(stale):
                store.delete(storage.join(output, rel))
        except Exception:  # noqa: BLE001 - the previous run may already be pruned
            pass
    runs = sorted({parse.split("/")[0] for parse in
                   (storage.parse_uri(u).key[len(storage.parse_uri(storage.join(output, RUNS)).key) + 1:]
                    for u in store.list(storage.join(output, RUNS)))})
    old = [r for r in runs if r and r != run_id]
    for r in old[:max(0, len(old) - (keep - 1))]:
        store.delete(run_prefix(output, r), recursive=True)
