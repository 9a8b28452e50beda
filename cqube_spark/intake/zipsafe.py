"""Refuse hostile zips before anything is extracted.

Checked from the central directory (and again while streaming, since headers can lie): absolute member
names, path traversal, links and other non-regular members (directories, devices, FIFOs), encrypted or
duplicated members, nested paths, unexpected extensions, total uncompressed size above a limit and a
compression ratio typical of zip bombs.
"""
from __future__ import annotations

import re
import stat
import zipfile
from dataclasses import dataclass

MANIFEST = "manifest.json"


class UnsafeZip(Exception):
    """A zip that must not be extracted; ``kind`` is a short machine name, the message says why."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)


@dataclass(frozen=True)
class Limits:
    max_uncompressed_bytes: int = 2 * 1024 ** 3
    max_compression_ratio: float = 100.0
    max_members: int = 16
    allowed_extensions: tuple[str, ...] = (".csv",)


def member_kind(info: zipfile.ZipInfo) -> str:
    mode = (info.external_attr >> 16) & 0xFFFF
    fmt = stat.S_IFMT(mode)
    if info.is_dir() or fmt == stat.S_IFDIR:
        return "directory"
    if fmt == stat.S_IFLNK:
        return "symlink"
    if fmt not in (0, stat.S_IFREG):
        return "special"
    return "file"


def check(zf: zipfile.ZipFile, limits: Limits = Limits()) -> tuple[list[zipfile.ZipInfo], zipfile.ZipInfo | None]:
    """Return (data members, manifest member or None) or raise :class:`UnsafeZip`."""
    infos = zf.infolist()
    if not infos:
        raise UnsafeZip("empty_zip", "the zip has no members")
    if len(infos) > limits.max_members:
        raise UnsafeZip("unexpected_member", f"{len(infos)} members (at most {limits.max_members} expected)")
    seen: set[str] = set()
    data, manifest = [], None
    total = 0
    for info in infos:
        name = info.filename
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
            raise UnsafeZip("absolute_path", f"member {name!r} has an absolute path")
        parts = re.split(r"[\\/]", name)
        if ".." in parts:
            raise UnsafeZip("path_traversal", f"member {name!r} escapes the extraction folder (..)")
        kind = member_kind(info)
        if kind == "symlink":
            raise UnsafeZip("link", f"member {name!r} is a symbolic link")
        if kind != "file":
            raise UnsafeZip("unexpected_member_type", f"member {name!r} is a {kind}, not a regular file")
        if len([p for p in parts if p]) != 1:
            raise UnsafeZip("unexpected_member", f"member {name!r} is inside a folder; files must be at the top")
        if info.flag_bits & 0x1:
            raise UnsafeZip("unexpected_member", f"member {name!r} is encrypted")
        if name.lower() in seen:
            raise UnsafeZip("unexpected_member", f"member {name!r} appears twice")
        seen.add(name.lower())
        if name == MANIFEST:
            if info.file_size > 1024 * 1024:
                raise UnsafeZip("too_large", f"{MANIFEST} is {info.file_size} bytes")
            manifest = info
            continue
        if not name.lower().endswith(limits.allowed_extensions):
            raise UnsafeZip("unexpected_member", f"member {name!r} is not one of {list(limits.allowed_extensions)}")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > 1024 * 1024 and ratio > limits.max_compression_ratio:
            raise UnsafeZip("zip_bomb", f"member {name!r} expands {ratio:.0f}x "
                                        f"(limit {limits.max_compression_ratio:.0f}x): a zip bomb")
        total += info.file_size
        data.append(info)
    if total > limits.max_uncompressed_bytes:
        raise UnsafeZip("too_large", f"uncompressed size {total} bytes exceeds the limit "
                                     f"{limits.max_uncompressed_bytes}")
    if not data:
        raise UnsafeZip("unexpected_member", "no data file (.csv) in the zip")
    return data, manifest
