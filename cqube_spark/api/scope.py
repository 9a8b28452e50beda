"""Hierarchy scope (``state`` or ``<level>:<id>``), row filters and safe relative paths. Pure functions.

A unit sees its own rows and the rows below it: a row is visible to ``district:2101`` iff its ``district_id``
is ``2101``. A file is visible when its level is the scope's level or finer (a district user sees district,
block, cluster and school files, each filtered; never the state file, whose rows aggregate other districts).
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

LEVELS = ("school", "cluster", "block", "district", "state")  # finest first (as cqube_spark.kpi.spec)
_ID = re.compile(r"^[0-9A-Za-z_-]{1,32}$")


@dataclass(frozen=True)
class Scope:
    level: str  # one of LEVELS
    unit: str | None  # None for state

    @property
    def is_state(self) -> bool:
        return self.level == "state"

    def __str__(self) -> str:
        return "state" if self.is_state else f"{self.level}:{self.unit}"

    def sees_level(self, level: str | None) -> bool:
        if self.is_state:
            return True
        if level not in LEVELS:
            return False
        return LEVELS.index(level) <= LEVELS.index(self.level)

    def sees_row(self, row: dict) -> bool:
        return self.is_state or str(row.get(f"{self.level}_id")) == self.unit


def parse_scope(text: str) -> Scope:
    t = text.strip()
    if t == "state":
        return Scope("state", None)
    level, sep, unit = t.partition(":")
    if not sep or level not in LEVELS[:-1] or not _ID.match(unit):
        raise ValueError(f"scope {text!r}: expected state or <school|cluster|block|district>:<id>")
    return Scope(level, unit)


def safe_relpath(path: str) -> str:
    """A published-file path as given by a client, refused unless it is plain: no ``..``, no absolute path,
    no backslash, no control characters, no (double) percent-encoding, no empty segment, NFC-normal."""
    if not isinstance(path, str) or not path or len(path) > 512:
        raise ValueError("path must be 1..512 characters")
    if unicodedata.normalize("NFC", path) != path or any(ord(c) < 32 or c == "\x7f" for c in path):
        raise ValueError("path has control or non-normalised characters")
    if "%" in path or "\\" in path or path.startswith("/") or ":" in path:
        raise ValueError("path must be relative, without '%', '\\' or ':'")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError("path segments must not be empty, '.' or '..'")
    return path
