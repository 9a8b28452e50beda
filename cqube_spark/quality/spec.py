"""Source specs (``configs/sources/<source>.yaml``) and the state configuration (``configs/state.yaml``).

``load_specs(dir, state)`` reads every spec, validates it with JSON Schema (``schemas/source.schema.json``)
plus the cross-field rules a schema cannot say (keys/checks/foreign keys name declared columns, regexes
compile, key columns are never optional), then applies the state configuration: optional attributes that
the state deactivates are dropped from the spec (they are still parsed for the column count, but never
validated nor written to silver). Any problem is a :class:`ConfigError` naming the file, the path and what
was expected.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from cqube_spark.config import ConfigError
from cqube_spark.config.loader import json_path

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
DAY_COLUMN = re.compile(r"^(?:[1-9]|[12][0-9]|3[01])$")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    max_length: int | None = None
    mandatory: bool = False
    domain: tuple | None = None
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    format: str | None = None
    optional_attribute: str | None = None
    active: bool = True


@dataclass(frozen=True)
class SourceSpec:
    name: str
    file_pattern: str
    delimiter: str
    columns: tuple[Column, ...]
    keys: tuple[str, ...]
    header: bool = True
    quote: bool = False
    null_values: tuple[str, ...] = ("NULL", "")
    period: dict = field(default_factory=lambda: {"kind": "none"})
    foreign_keys: tuple[dict, ...] = ()
    checks: tuple[dict, ...] = ()
    overlap: dict | None = None
    group: str | None = None
    path: str = "<inline>"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def active_columns(self) -> list[Column]:
        return [c for c in self.columns if c.active]

    @property
    def inactive_columns(self) -> list[str]:
        return [c.name for c in self.columns if not c.active]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def day_columns(self) -> list[str]:
        return [c.name for c in self.active_columns if DAY_COLUMN.match(c.name)]

    def matches(self, member_name: str) -> bool:
        return re.search(self.file_pattern, member_name.rsplit("/", 1)[-1], re.I) is not None

    @property
    def references(self) -> set[str]:
        """Sources this one needs loaded first (foreign keys and max_from lookups)."""
        refs = {fk["references"]["source"] for fk in self.foreign_keys}
        refs |= {c["max_from"]["source"] for c in self.checks if c.get("max_from")}
        return refs - {self.name}


def _schema(name: str) -> dict:
    return json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())


def _validate(instance: Any, schema: dict, source: str) -> None:
    errors = sorted(Draft202012Validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(source, json_path(tuple(e.absolute_path)), e.message + more)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), "$", "file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(str(path), "$", f"invalid YAML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(str(path), "$", f"not UTF-8 text (byte {e.start}: {e.reason})") from None
    except RecursionError:
        raise ConfigError(str(path), "$", "invalid YAML: nested too deeply") from None
    except OSError as e:
        raise ConfigError(str(path), "$", f"cannot read the file: {e.strerror or e}") from None


def parse_spec(raw: Any, source: str = "<inline>") -> SourceSpec:
    """Validate one spec document and build a :class:`SourceSpec` (all optional attributes active)."""
    _validate(raw, _schema("source"), source)
    names = [c["name"] for c in raw["columns"]]
    if len(set(n.lower() for n in names)) != len(names):
        raise ConfigError(source, "$.columns", "column names must be unique (case-insensitive)")
    known = set(names)

    def need(name: str, where: str) -> None:
        if name not in known:
            raise ConfigError(source, where, f"expected a declared column, got {name!r}")

    for i, k in enumerate(raw["keys"]):
        need(k, f"$.keys[{i}]")
    for i, c in enumerate(raw["columns"]):
        for key in ("pattern",):
            if key in c:
                try:
                    re.compile(c[key])
                except re.error as e:
                    raise ConfigError(source, f"$.columns[{i}].{key}", f"invalid regex: {e}") from None
        if c.get("optional_attribute") and c["name"] in raw["keys"]:
            raise ConfigError(source, f"$.columns[{i}].optional_attribute",
                              "a key column cannot be an optional attribute")
    for i, fk in enumerate(raw.get("foreign_keys") or []):
        need(fk["column"], f"$.foreign_keys[{i}].column")
    for i, chk in enumerate(raw.get("checks") or []):
        for j, col in enumerate(chk.get("columns") or []):
            need(col, f"$.checks[{i}].columns[{j}]")
        for key in ("column", "max_column"):
            if key in chk:
                need(chk[key], f"$.checks[{i}].{key}")
        if chk["rule"] == "marks_not_above_max" and not (chk.get("max_column") or chk.get("max_from")):
            raise ConfigError(source, f"$.checks[{i}]", "marks_not_above_max needs max_column or max_from")
    overlap = raw.get("overlap")
    if overlap:
        for j, k in enumerate(overlap["key"]):
            need(k, f"$.overlap.key[{j}]")
    period = raw.get("period") or {"kind": "none"}
    for key in ("academic_year", "month", "column"):
        if key in period:
            need(period[key], f"$.period.{key}")
    try:
        re.compile(raw["file_pattern"])
    except re.error as e:
        raise ConfigError(source, "$.file_pattern", f"invalid regex: {e}") from None

    cols = tuple(Column(
        name=c["name"], type=c["type"].replace(" ", ""), max_length=c.get("max_length"),
        mandatory=bool(c.get("mandatory", False)),
        domain=tuple(c["domain"]) if c.get("domain") is not None else None,
        min=c.get("min"), max=c.get("max"), pattern=c.get("pattern"), format=c.get("format"),
        optional_attribute=c.get("optional_attribute"),
    ) for c in raw["columns"])
    return SourceSpec(
        name=raw["name"], file_pattern=raw["file_pattern"], delimiter=raw["delimiter"], columns=cols,
        keys=tuple(raw["keys"]), header=raw.get("header", True),
        quote=raw.get("quote", raw["delimiter"] == ","),
        null_values=tuple(raw.get("null_values", ["NULL", ""])), period=period,
        foreign_keys=tuple(raw.get("foreign_keys") or ()), checks=tuple(raw.get("checks") or ()),
        overlap=overlap, group=raw.get("group"), path=source,
    )


# -- state configuration --------------------------------------------------------------------------------

@dataclass(frozen=True)
class StateConfig:
    """Which optional attributes are active: ``inactive`` names attributes switched off (global or per source)."""

    inactive: frozenset[str] = frozenset()
    inactive_by_source: dict = field(default_factory=dict)
    path: str = "<none>"
    raw: dict = field(default_factory=dict)

    @property
    def academic_year_start_month(self) -> int:
        """``state.academic_year_start_month`` (default 6, June)."""
        return int(((self.raw or {}).get("state") or {}).get("academic_year_start_month", 6))

    def is_active(self, source: str, attribute: str) -> bool:
        return attribute not in self.inactive and attribute not in self.inactive_by_source.get(source, frozenset())


def _flags(node: Any, source: str, where: str) -> set[str]:
    """Inactive names from ``{name: bool}`` or ``{name: {active: bool}}`` or ``{inactive: [..]}``."""
    out: set[str] = set()
    if node is None:
        return out
    if isinstance(node, list):
        return set(map(str, node))
    if not isinstance(node, dict):
        raise ConfigError(source, where, f"expected a mapping of attribute -> true/false, got {type(node).__name__}")
    for k, v in node.items():
        if k == "inactive":
            out |= set(map(str, v or []))
        elif k == "active":
            continue
        elif isinstance(v, bool):
            if not v:
                out.add(str(k))
        elif isinstance(v, dict) and isinstance(v.get("active", True), bool):
            if not v.get("active", True):
                out.add(str(k))
        else:
            raise ConfigError(source, f"{where}.{k}", f"expected true/false, got {json.dumps(v, default=str)[:40]}")
    return out


def parse_state(raw: Any, source: str = "<inline>") -> StateConfig:
    """Accepts ``optional_attributes: {attr: true|false}`` and ``sources: {src: {optional_attributes: ...}}``
    (also ``{attr: {active: bool}}`` values and ``inactive: [attr, ...]`` lists)."""
    if raw is None:
        return StateConfig(path=source)
    _validate(raw, _schema("state"), source)
    top = dict(raw.get("optional_attributes") or {}) if isinstance(raw.get("optional_attributes"), dict) else \
        raw.get("optional_attributes")
    by_source = {}
    if isinstance(top, dict):   # nested form: optional_attributes: {<source>: {<attr>: bool}}
        for name in [k for k, v in top.items() if isinstance(v, dict) and "active" not in v]:
            by_source[name] = frozenset(_flags(top.pop(name), source, f"$.optional_attributes.{name}"))
    inactive = _flags(top, source, "$.optional_attributes")
    for name, node in (raw.get("sources") or {}).items():
        node = node or {}
        flags = _flags(node.get("optional_attributes"), source, f"$.sources.{name}.optional_attributes")
        flags |= set(node.get("inactive") or [])
        by_source[name] = frozenset(flags | by_source.get(name, frozenset()))
    return StateConfig(frozenset(inactive), by_source, source, raw)


def load_state(path: str | Path | None) -> StateConfig:
    if not path:
        return StateConfig()
    p = Path(path)
    if not p.exists():
        return StateConfig(path=str(p))
    return parse_state(_read_yaml(p), str(p))


def apply_state(spec: SourceSpec, state: StateConfig) -> SourceSpec:
    """Mark deactivated optional attributes inactive; a key column can never be deactivated."""
    cols = []
    by_name = state.inactive_by_source.get(spec.name, frozenset())
    for c in spec.columns:
        off = bool(c.optional_attribute and (not state.is_active(spec.name, c.optional_attribute)
                                             or c.optional_attribute in by_name)) or c.name in by_name
        if off and (c.name in spec.keys or any(fk["column"] == c.name for fk in spec.foreign_keys)):
            raise ConfigError(state.path, f"$.sources.{spec.name}" if c.name in by_name else "$.optional_attributes",
                              f"cannot deactivate {c.name!r}: it is a key of source {spec.name}")
        if off and not c.optional_attribute:
            raise ConfigError(state.path, f"$.sources.{spec.name}",
                              f"{c.name!r} is not an optional attribute of {spec.name} (no optional_attribute in its spec)")
        cols.append(replace(c, active=not off))
    return replace(spec, columns=tuple(cols))


def load_spec(path: str | Path, state: StateConfig | None = None) -> SourceSpec:
    p = Path(path)
    spec = parse_spec(_read_yaml(p), str(p))
    if spec.name != p.stem:
        raise ConfigError(str(p), "$.name", f"expected the file stem {p.stem!r}, got {spec.name!r}")
    return apply_state(spec, state) if state else spec


def load_specs(directory: str | Path, state: StateConfig | None = None) -> dict[str, SourceSpec]:
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError(str(d), "$", "sources folder not found")
    specs = {p.stem: load_spec(p, state) for p in sorted(d.glob("*.yaml"))}
    if not specs:
        raise ConfigError(str(d), "$", "no source specs (*.yaml) found")
    for spec in specs.values():
        for i, fk in enumerate(spec.foreign_keys):
            ref = fk["references"]
            if ref["source"] not in specs:
                raise ConfigError(spec.path, f"$.foreign_keys[{i}].references.source",
                                  f"unknown source {ref['source']!r}")
            if ref["column"] not in specs[ref["source"]].column_names:
                raise ConfigError(spec.path, f"$.foreign_keys[{i}].references.column",
                                  f"{ref['column']!r} is not a column of {ref['source']}")
    if state:
        known_attrs = {c.optional_attribute for s in specs.values() for c in s.columns if c.optional_attribute}
        unknown = sorted(state.inactive - known_attrs)
        if unknown:
            raise ConfigError(state.path, "$.optional_attributes",
                              f"unknown optional attribute(s) {unknown}; expected one of the specs' optional_attribute values")
        for src in state.inactive_by_source:
            if src not in specs:
                raise ConfigError(state.path, f"$.sources.{src}", f"unknown source {src!r}")
    return specs


def load_generations(specs: dict[str, SourceSpec]) -> list[list[str]]:
    """Sources in dependency generations: every source of a generation references only sources of earlier
    generations (or none), so the sources of one generation can load side by side. Names sorted within a
    generation. A reference cycle is a :class:`ConfigError` naming the sources on it."""
    from graphlib import CycleError, TopologicalSorter

    graph = TopologicalSorter({n: sorted(s.references & set(specs)) for n, s in specs.items()})
    try:
        graph.prepare()
    except CycleError as e:
        loop = " -> ".join(e.args[1])
        raise ConfigError("configs/sources", "$.foreign_keys", f"sources reference each other in a cycle: {loop}") from None
    out = []
    while graph.is_active():
        ready = sorted(graph.get_ready())
        out.append(ready)
        graph.done(*ready)
    return out


def load_order(specs: dict[str, SourceSpec]) -> list[str]:
    """Sources in dependency order (referenced masters first), by generation, ties by name."""
    return [n for gen in load_generations(specs) for n in gen]
