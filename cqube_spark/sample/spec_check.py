"""A small pure-Python reader of a source spec + one CSV that returns rule violations.

TEST AID ONLY. The production validator is the Spark + Great Expectations pipeline compiled
from the same specs (configs/sources/*.yaml); this module exists so that unit tests (and the
sample-data generator's own tests) can check, without Spark, that a file conforms to its spec:
header/column count, types, max_length, mandatory, domain, min/max, pattern, date formats, and
the in-file named checks (``latlong_valid``, ``marks_not_above_max`` with ``max_column``,
``unique_value_per_key``, ``weights_sum``) plus business-key duplicates. Cross-file rules
(foreign keys, ``max_from``) are checked only when the caller passes the referenced values.

Usage::

    spec = load_spec("configs/sources/student_attendance.yaml")
    result = check_zip(spec, "emission/student_attendance/student_attendance.zip")
    assert result.ok, result.summary()
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, Mapping

INDIA_LAT = (6.0, 38.0)
INDIA_LON = (68.0, 98.0)

_INT_RE = re.compile(r"^[+-]?[0-9]+$")
_DEC_RE = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}
_INT_BOUNDS = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
# Java/Spark date pattern letters -> strptime directives (the subset the specs use).
_FMT = [("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S")]


def java_to_strptime(fmt: str) -> str:
    for j, p in _FMT:
        fmt = fmt.replace(j, p)
    return fmt


@dataclass(frozen=True)
class Violation:
    line: int          # 1-based physical record number in the CSV (header = 1); 0 = file level
    column: str | None
    rule: str
    value: str | None
    message: str


@dataclass
class CheckResult:
    source: str
    member: str | None = None
    rows: int = 0
    duplicates_identical: int = 0
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self, limit: int = 10) -> str:
        head = f"{self.source} ({self.member}): {self.rows} rows, {len(self.violations)} violations"
        lines = [head] + [f"  line {v.line} {v.column}: {v.rule}: {v.message}" for v in self.violations[:limit]]
        return "\n".join(lines)


def load_spec(path: str | Path) -> dict:
    import yaml  # the test environment has pyyaml; the generator itself never imports this module
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_specs(directory: str | Path) -> dict[str, dict]:
    return {p.stem: load_spec(p) for p in sorted(Path(directory).glob("*.yaml"))}


def spec_for_member(specs: Mapping[str, dict], member: str) -> dict | None:
    """The spec whose file_pattern matches a CSV member name (None if none or ambiguous)."""
    hits = [s for s in specs.values() if re.search(s["file_pattern"], member)]
    return hits[0] if len(hits) == 1 else None


def _typed(value: str, typ: str, col: dict):
    """Parse ``value`` per ``typ``; return (ok, typed_value)."""
    if typ == "string":
        return True, value
    if typ in ("int", "long"):
        if not _INT_RE.match(value):
            return False, None
        v = int(value)
        lo, hi = _INT_BOUNDS[typ]
        return lo <= v <= hi, v
    if typ == "double" or _DEC_RE.match(typ):
        try:
            v = float(value)
        except ValueError:
            return False, None
        if not math.isfinite(v):
            return False, None
        m = _DEC_RE.match(typ)
        if m:
            p, s = int(m.group(1)), int(m.group(2))
            digits = value.lstrip("+-").split(".")
            if len(digits[0].lstrip("0")) > p - s or (len(digits) > 1 and len(digits[1]) > s):
                return False, None
        return True, v
    if typ in ("date", "timestamp"):
        fmt = col.get("format") or ("yyyy-MM-dd" if typ == "date" else "yyyy-MM-dd HH:mm:ss")
        try:
            return True, datetime.strptime(value, java_to_strptime(fmt))
        except ValueError:
            return False, None
    if typ == "boolean":
        low = value.lower()
        if low in _TRUE:
            return True, True
        if low in _FALSE:
            return True, False
        return False, None
    raise ValueError(f"unknown type {typ!r}")


def _norm_header(h: str) -> str:
    return h.strip().strip('"').strip().lower()


def check_rows(spec: dict, rows: Iterable[list[str]], *, references: Mapping | None = None,
               max_values: Mapping | None = None, inactive: Iterable[str] = ()) -> CheckResult:
    """Check already-split CSV records (first one = header) against ``spec``.

    references: ``{(source, column): set_of_raw_strings}`` for foreign keys to check.
    max_values: ``{(source, column): {key_tuple_of_raw_strings: float}}`` for ``max_from`` checks.
    inactive: optional_attribute names switched off in state.yaml (their columns may be absent).
    """
    res = CheckResult(source=spec["name"])
    cols = [c for c in spec["columns"]]
    inactive = set(inactive)
    nulls = set(spec.get("null_values", ["NULL", ""]))
    it = iter(rows)
    try:
        header = next(it)
    except StopIteration:
        res.violations.append(Violation(0, None, "empty_file", None, "no header"))
        return res
    # Columns of deactivated optional attributes may be missing from the file.
    expected = [c for c in cols if not (c.get("optional_attribute") in inactive
                                        and _norm_header(c["name"]) not in {_norm_header(h) for h in header})]
    got = [_norm_header(h) for h in header]
    want = [_norm_header(c["name"]) for c in expected]
    if got != want:
        res.violations.append(Violation(1, None, "column_count" if len(got) != len(want) else "header_mismatch",
                                        "|".join(header), f"header {got} != spec {want}"))
        return res
    n = len(expected)
    idx = {c["name"]: i for i, c in enumerate(expected)}
    keys = spec.get("keys") or []
    key_idx = [idx[k] for k in keys if k in idx]
    seen_keys: dict[tuple, tuple] = {}
    checks = spec.get("checks") or []
    uniq_checks = [(c, [idx[x] for x in c["columns"]]) for c in checks if c["rule"] == "unique_value_per_key"]
    uniq_seen: list[dict] = [dict() for _ in uniq_checks]
    weights = [c for c in checks if c["rule"] == "weights_sum"]
    weight_total = [0.0 for _ in weights]
    fks = [(f, idx[f["column"]]) for f in spec.get("foreign_keys") or []
           if references and (f["references"]["source"], f["references"]["column"]) in references]
    compiled = [(c, c.get("type", "string"), re.compile(c["pattern"]) if c.get("pattern") else None,
                 set(c["domain"]) if "domain" in c else None) for c in expected]
    line = 1
    for rec in it:
        line += 1
        if not rec or (len(rec) == 1 and rec[0] == ""):
            res.violations.append(Violation(line, None, "blank_line", None, "blank line"))
            continue
        res.rows += 1
        if len(rec) != n:
            res.violations.append(Violation(line, None, "column_count", None, f"{len(rec)} fields, expected {n}"))
            continue
        typed_row = []
        for (c, typ, pat, dom), raw in zip(compiled, rec):
            name = c["name"]
            if any(ch < " " and ch not in "\t" for ch in raw):
                res.violations.append(Violation(line, name, "control_characters", raw, "control character"))
            if raw in nulls:
                typed_row.append(None)
                if c.get("mandatory"):
                    res.violations.append(Violation(line, name, "mandatory_missing", raw, "mandatory value missing"))
                continue
            if "max_length" in c and len(raw) > c["max_length"]:
                res.violations.append(Violation(line, name, "max_length", raw, f"longer than {c['max_length']}"))
            ok, v = _typed(raw, typ, c)
            if not ok:
                res.violations.append(Violation(line, name, "type_mismatch", raw, f"not a {typ}"))
                typed_row.append(None)
                continue
            typed_row.append(v)
            if pat is not None and not pat.search(raw):
                res.violations.append(Violation(line, name, "type_mismatch", raw, f"does not match {pat.pattern}"))
            if dom is not None and v not in dom:
                res.violations.append(Violation(line, name, "out_of_domain", raw, f"not in {sorted(dom, key=str)}"))
            if ("min" in c and v < c["min"]) or ("max" in c and v > c["max"]):
                res.violations.append(Violation(line, name, "out_of_domain", raw,
                                                f"outside [{c.get('min')}, {c.get('max')}]"))
        # named checks
        for chk in checks:
            rule = chk["rule"]
            if rule == "latlong_valid":
                la, lo = (typed_row[idx[x]] for x in chk["columns"])
                if la is None or lo is None or not (INDIA_LAT[0] <= la <= INDIA_LAT[1]
                                                    and INDIA_LON[0] <= lo <= INDIA_LON[1]):
                    res.violations.append(Violation(line, chk["columns"][0], "invalid_latlong",
                                                    f"{la},{lo}", "lat/long outside India"))
            elif rule == "marks_not_above_max":
                got_v = typed_row[idx[chk["column"]]]
                if got_v is None:
                    continue
                mx = None
                if "max_column" in chk:
                    mx = typed_row[idx[chk["max_column"]]]
                elif max_values is not None and "max_from" in chk:
                    mf = chk["max_from"]
                    table = max_values.get((mf["source"], mf["column"]))
                    if table is not None:
                        mx = table.get(tuple(rec[idx[k]] for k in mf["key"]))
                if mx is not None and got_v > mx:
                    res.violations.append(Violation(line, chk["column"], "marks_above_max", str(got_v),
                                                    f"{got_v} > {mx}"))
        for i, (chk, cidx) in enumerate(uniq_checks):
            val = tuple(rec[j] for j in cidx)
            if any(x in nulls for x in val):
                continue
            k = tuple(rec[j] for j in key_idx)
            other = uniq_seen[i].setdefault(val, k)
            if other != k:
                res.violations.append(Violation(line, chk["columns"][0], "duplicate_conflict", "|".join(val),
                                                f"same {chk['columns']} as key {other}"))
        for i, chk in enumerate(weights):
            where = chk.get("where") or {}
            if all(typed_row[idx[wc]] == wv for wc, wv in where.items()):
                weight_total[i] += typed_row[idx[chk["column"]]] or 0
        for f, j in fks:
            raw = rec[j]
            if raw in nulls:
                continue
            if raw not in references[(f["references"]["source"], f["references"]["column"])]:
                res.violations.append(Violation(line, f["column"], "unknown_foreign_key", raw,
                                                f"not in {f['references']['source']}.{f['references']['column']}"))
        if key_idx:
            k = tuple(rec[j] for j in key_idx)
            prev = seen_keys.get(k)
            if prev is None:
                seen_keys[k] = tuple(rec)
            elif prev == tuple(rec):
                res.duplicates_identical += 1
            else:
                res.violations.append(Violation(line, ",".join(keys), "duplicate_conflict", "|".join(k),
                                                "same key, different values"))
    for i, chk in enumerate(weights):
        if abs(weight_total[i] - chk.get("total", 100)) > 1e-9:
            res.violations.append(Violation(0, chk["column"], "weights_sum", str(weight_total[i]),
                                            f"active weights sum to {weight_total[i]}, expected {chk.get('total', 100)}"))
    if res.rows == 0:
        res.violations.append(Violation(0, None, "empty_file", None, "no data rows"))
    return res


def check_text(spec: dict, text: str, **kw) -> CheckResult:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=spec.get("delimiter", "|"))
    return check_rows(spec, reader, **kw)


def check_zip(spec: dict, zip_path: str | Path, **kw) -> CheckResult:
    """Check the one CSV member of an emission zip (and its manifest.json when present)."""
    with zipfile.ZipFile(zip_path) as zf:
        members = [n for n in zf.namelist() if n.lower().endswith(".csv")]
        if len(members) != 1:
            r = CheckResult(source=spec["name"])
            r.violations.append(Violation(0, None, "member_count", str(members), "expected exactly one CSV"))
            return r
        member = members[0]
        with zf.open(member) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            res = check_rows(spec, csv.reader(text, delimiter=spec.get("delimiter", "|")), **kw)
        res.member = member
        if not re.search(spec["file_pattern"], member):
            res.violations.append(Violation(0, None, "file_pattern", member, f"does not match {spec['file_pattern']}"))
        if "manifest.json" in zf.namelist():
            man = json.loads(zf.read("manifest.json"))
            entry = next((f for f in man.get("files", []) if f.get("name") == member), None)
            size = zf.getinfo(member).file_size
            if entry is None:
                res.violations.append(Violation(0, None, "manifest", member, "CSV not listed in manifest"))
            else:
                if entry.get("size_bytes") != size:
                    res.violations.append(Violation(0, None, "manifest_size", str(entry.get("size_bytes")),
                                                    f"manifest size {entry.get('size_bytes')} != {size}"))
                if entry.get("records") != res.rows:
                    res.violations.append(Violation(0, None, "manifest_records", str(entry.get("records")),
                                                    f"manifest records {entry.get('records')} != {res.rows}"))
        return res


def column_values(zip_path: str | Path, column: str, delimiter: str = "|") -> set[str]:
    """Raw values of one column of an emission zip (for foreign-key reference sets)."""
    with zipfile.ZipFile(zip_path) as zf:
        member = next(n for n in zf.namelist() if n.lower().endswith(".csv"))
        with zf.open(member) as raw:
            r = csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline=""), delimiter=delimiter)
            header = [_norm_header(h) for h in next(r)]
            j = header.index(_norm_header(column))
            return {rec[j] for rec in r if len(rec) > j}


def check_emission(root: str | Path, specs: Mapping[str, dict], *, foreign_keys: bool = True) -> dict[str, CheckResult]:
    """Check every ``<folder>/<file>.zip`` under an emission root against the matching spec.

    With ``foreign_keys`` the referenced columns (and ``max_from`` maxima) are read from the
    zips found under the same root, so cross-file rules are checked too when the referenced
    source is present. Returns ``{relative zip path: CheckResult}``; a zip whose CSV matches no
    spec (or several) gets a ``no_spec`` violation.
    """
    root = Path(root)
    zips = sorted(p for p in root.rglob("*.zip"))
    by_source: dict[str, list[Path]] = {}
    members: dict[Path, str] = {}
    for z in zips:
        with zipfile.ZipFile(z) as zf:
            csvs = [n for n in zf.namelist() if n.lower().endswith(".csv")]
        members[z] = csvs[0] if csvs else ""
        spec = spec_for_member(specs, members[z]) if csvs else None
        if spec is not None:
            by_source.setdefault(spec["name"], []).append(z)

    cache: dict[tuple[str, str], set[str]] = {}

    def ref_values(source: str, column: str) -> set[str] | None:
        if (source, column) not in cache:
            if source not in by_source:
                return None
            vals: set[str] = set()
            for z in by_source[source]:
                vals |= column_values(z, column, specs[source].get("delimiter", "|"))
            cache[(source, column)] = vals
        return cache[(source, column)]

    out: dict[str, CheckResult] = {}
    for z in zips:
        rel = str(z.relative_to(root))
        spec = spec_for_member(specs, members[z]) if members[z] else None
        if spec is None:
            r = CheckResult(source="?", member=members[z])
            r.violations.append(Violation(0, None, "no_spec", members[z], "no (unique) spec matches this file"))
            out[rel] = r
            continue
        refs, maxes = {}, {}
        if foreign_keys:
            for f in spec.get("foreign_keys") or []:
                s, c = f["references"]["source"], f["references"]["column"]
                vals = ref_values(s, c)
                if vals is not None:
                    refs[(s, c)] = vals
            for chk in spec.get("checks") or []:
                mf = chk.get("max_from")
                if mf and mf["source"] in by_source:
                    table: dict[tuple, float] = {}
                    for mz in by_source[mf["source"]]:
                        with zipfile.ZipFile(mz) as zf:
                            name = next(n for n in zf.namelist() if n.lower().endswith(".csv"))
                            rdr = csv.reader(io.TextIOWrapper(zf.open(name), encoding="utf-8", newline=""),
                                             delimiter=specs[mf["source"]].get("delimiter", "|"))
                            hdr = [_norm_header(h) for h in next(rdr)]
                            kj = [hdr.index(_norm_header(k)) for k in mf["key"]]
                            vj = hdr.index(_norm_header(mf["column"]))
                            for rec in rdr:
                                table[tuple(rec[j] for j in kj)] = float(rec[vj])
                    maxes[(mf["source"], mf["column"])] = table
        out[rel] = check_zip(spec, z, references=refs or None, max_values=maxes or None)
    return out
