"""The report's sink: CSV text streamed straight into an AES-256 (WinZip AES) encrypted zip, then uploaded.

The plaintext CSV never touches a disk: chunks go from the executors to the driver and into the zip entry's
encrypting stream. The encrypted zip is built in a private temp folder (mode 0700, ``CQUBE_EXHAUST_TMP``,
default ``<tmp>/cqube-exhaust``), uploaded through ``Storage`` (atomic locally, a single PUT/multipart on S3)
and the temp folder is removed in a ``finally``; ``sweep_tmp`` removes what a killed run left behind.
"""
from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

import pyzipper


def tmp_root() -> Path:
    root = Path(os.environ.get("CQUBE_EXHAUST_TMP", Path(tempfile.gettempdir()) / "cqube-exhaust"))
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(root, 0o700)
    return root


def sweep_tmp() -> int:
    """Remove leftovers of killed runs (callers hold the job lock, so nothing in there is in use)."""
    removed = 0
    for p in tmp_root().iterdir():
        _remove(p)
        removed += 1
    return removed


def _remove(p: Path) -> None:
    """Overwrite files with zeros before unlinking (cheap defence in depth; the zip is already encrypted)."""
    paths = [p] if p.is_file() else [q for q in p.rglob("*") if q.is_file()]
    for f in paths:
        try:
            size = f.stat().st_size
            with open(f, "r+b") as fh:
                remaining = size
                while remaining > 0:
                    n = min(remaining, 1 << 20)
                    fh.write(b"\0" * n)
                    remaining -= n
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            pass
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def member_path(folder: Path, name: str) -> Path:
    """``folder / name`` for a name from data, refused (``UnsafeName``) unless it stays inside ``folder``."""
    from cqube_spark import safenames

    path = folder / safenames.segment(name, "zip name")
    safenames.within(str(folder), str(path), "zip name")
    return path


def header_line(labels: Iterable[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(list(labels))
    return buf.getvalue()


def write_encrypted_zip(zip_path: Path, entry_name: str, password: str, header: str,
                        chunks: Iterable[str]) -> int:
    """Write header + chunks into one AES-256 encrypted, deflated entry; returns the plaintext bytes written."""
    written = 0
    with pyzipper.AESZipFile(zip_path, "w", compression=pyzipper.ZIP_DEFLATED,
                             encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(password.encode("utf-8"))
        zf.setencryption(pyzipper.WZ_AES, nbits=256)
        with zf.open(entry_name, "w", force_zip64=True) as fh:
            for text in [header]:
                data = text.encode("utf-8")
                fh.write(data)
                written += len(data)
            for text in chunks:
                data = text.encode("utf-8")
                fh.write(data)
                written += len(data)
    return written


class TempDir:
    """A private per-request folder under tmp_root(), removed (files zeroed) on exit whatever happens."""

    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix="req-", dir=tmp_root()))
        return self.path

    def __exit__(self, *exc) -> None:
        _remove(self.path)
