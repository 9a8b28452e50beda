"""KPI specs (``configs/kpis/<kpi>.yaml``): load, validate (JSON Schema + cross-field rules), model.

A spec says *what* to compute; :mod:`cqube_spark.kpi.engine` computes every spec the same way::

    name: student_attendance
    prep: student_attendance          # fact builder (cqube_spark.kpi.prep.PREPS): silver -> fact rows
    levels: [school, cluster, block, district, state]
    periods: {grains: [month], windows: [last_day, last_7_days, last_30_days, overall]}
    breakdowns:                       # 'total' (no columns) is always there
      - {name: school_management, columns: [school_management]}
    measures:                         # sum | count | distinct_count | min | max | avg | schools, each with a filter
      present: {agg: count, filter: {column: code, eq: 1}}
      working: {agg: count, filter: {column: code, in: [1, 2]}}
      students: {agg: distinct_count, column: student_id, filter: {column: code, in: [1, 2]}}
      schools: {agg: schools}
    ratios:                           # pooled: sum(numerator) / sum(denominator) at every level
      attendance_pct: {numerator: present, denominator: working, scale: 100, round: 1}
    outputs: [attendance_pct, students, schools]

Bad specs raise :class:`ConfigError` naming the file, the JSON path and what was expected.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from cqube_spark.config import ConfigError
from cqube_spark.config.loader import json_path

SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / "kpi.schema.json"
KPI_DIR = Path(__file__).resolve().parent.parent.parent / "configs" / "kpis"
LEVELS = ("school", "cluster", "block", "district", "state")          # finest first
GRAINS = ("day", "week", "month", "academic_year")                      # finest first
WINDOWS = ("last_day", "last_7_days", "last_30_days", "overall")
SCHOOL_ATTRIBUTES = ("school_management", "school_category")            # breakdowns taken from the hierarchy
BUILTIN_MEASURES = ("schools_total",)                                    # densified KPIs: every unit counts 1


@dataclass(frozen=True)
class Measure:
    name: str
    agg: str
    column: str | None = None
    filter: dict | None = None
    weights: dict | None = None
    rollup: str = "sum"


@dataclass(frozen=True)
class Ratio:
    name: str
    numerator: str
    denominator: str
    scale: float = 1.0
    round: int = 1
    subtract_from: float | None = None


@dataclass(frozen=True)
class Flag:
    name: str
    measure: str
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Breakdown:
    name: str
    columns: tuple[str, ...] = ()
    levels: tuple[str, ...] | None = None
    top: dict | None = None

    @property
    def attr_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c in SCHOOL_ATTRIBUTES)

    @property
    def fact_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c not in SCHOOL_ATTRIBUTES)


@dataclass(frozen=True)
class KpiSpec:
    name: str
    prep: str
    levels: tuple[str, ...]
    grains: tuple[str, ...]
    windows: tuple[str, ...]
    breakdowns: tuple[Breakdown, ...]
    measures: tuple[Measure, ...]
    ratios: tuple[Ratio, ...] = ()
    flags: tuple[Flag, ...] = ()
    outputs: tuple[str, ...] = ()
    base_level: str = "school"
    densify: bool = False
    sources: tuple[str, ...] = ()
    prep_options: dict = field(default_factory=dict)
    description: str = ""
    notes: tuple[str, ...] = ()
    path: str = "<inline>"

    # -- derived views used by the engine -------------------------------------------------------------
    @property
    def rollup_levels(self) -> tuple[str, ...]:
        """Levels at or above the base level, finest first."""
        base = LEVELS.index(self.base_level)
        return tuple(lv for lv in LEVELS if LEVELS.index(lv) >= base and lv in self.levels)

    @property
    def fact_breakdown_columns(self) -> tuple[str, ...]:
        out: list[str] = []
        for b in self.breakdowns:
            out += [c for c in b.fact_columns if c not in out]
        return tuple(out)

    @property
    def breakdown_columns(self) -> tuple[str, ...]:
        out: list[str] = []
        for b in self.breakdowns:
            out += [c for c in b.columns if c not in out]
        return tuple(out)

    @property
    def entity(self) -> str | None:
        cols = {m.column for m in self.measures if m.agg == "distinct_count" and m.rollup == "sum"}
        return next(iter(cols)) if cols else None

    def measure(self, name: str) -> Measure:
        for m in self.measures:
            if m.name == name:
                return m
        raise KeyError(name)

    @property
    def value_names(self) -> tuple[str, ...]:
        """Every name a ratio, a flag or the outputs may refer to."""
        names = [m.name for m in self.measures] + [f.name for f in self.flags] + [r.name for r in self.ratios]
        return tuple(names + (list(BUILTIN_MEASURES) if self.densify else []))


def _schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


def parse_spec(doc: Any, source: str = "<inline>") -> KpiSpec:
    """Validate one spec document (already parsed YAML) and build the model."""
    errors = sorted(Draft202012Validator(_schema()).iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        raise ConfigError(source, json_path(e.absolute_path), e.message)
    measures = tuple(Measure(name=k, agg=v["agg"], column=v.get("column"), filter=v.get("filter"),
                             weights=v.get("weights"), rollup=v.get("rollup", "sum"))
                     for k, v in doc["measures"].items())
    for m in measures:
        if m.agg in ("sum", "min", "max", "avg", "distinct_count") and not m.column:
            raise ConfigError(source, f"$.measures.{m.name}", f"agg {m.agg!r} needs a column")
        if m.weights is not None and m.agg != "sum":
            raise ConfigError(source, f"$.measures.{m.name}.weights", "weights are for agg 'sum' only")
    ents = {m.column for m in measures if m.agg == "distinct_count" and m.rollup == "sum"}
    if len(ents) > 1:
        raise ConfigError(source, "$.measures", f"distinct_count with rollup 'sum' must share one column, got {sorted(ents)}")
    ratios = tuple(Ratio(name=k, numerator=v["numerator"], denominator=v["denominator"],
                         scale=float(v.get("scale", 1)), round=int(v.get("round", 1)),
                         subtract_from=v.get("subtract_from")) for k, v in (doc.get("ratios") or {}).items())
    flags = tuple(Flag(name=k, measure=v["measure"], min=v.get("min"), max=v.get("max"))
                  for k, v in (doc.get("flags") or {}).items())
    breakdowns = [Breakdown("total")]
    for i, b in enumerate(doc.get("breakdowns") or []):
        if b["name"] == "total" and b.get("columns"):
            raise ConfigError(source, f"$.breakdowns[{i}].name", "'total' is reserved for the breakdown without columns")
        if b["name"] == "total":
            continue
        breakdowns.append(Breakdown(b["name"], tuple(b["columns"]), tuple(b["levels"]) if b.get("levels") else None,
                                    b.get("top")))
    names = [b.name for b in breakdowns]
    if len(set(names)) != len(names):
        raise ConfigError(source, "$.breakdowns", "breakdown names must be unique")
    periods = doc.get("periods") or {}
    spec = KpiSpec(
        name=doc["name"], prep=doc["prep"], levels=tuple(doc["levels"]),
        grains=tuple(g for g in GRAINS if g in (periods.get("grains") or [])),
        windows=tuple(w for w in WINDOWS if w in (periods.get("windows") or [])),
        breakdowns=tuple(breakdowns), measures=measures, ratios=ratios, flags=flags,
        outputs=tuple(doc["outputs"]), base_level=doc.get("base_level", "school"),
        densify=bool(doc.get("densify", False)), sources=tuple(doc.get("sources") or ()),
        prep_options=dict(doc.get("prep_options") or {}), description=doc.get("description", ""),
        notes=tuple(doc.get("notes") or ()), path=source)
    if not spec.grains and not spec.windows:
        raise ConfigError(source, "$.periods", "at least one grain or window is needed")
    if spec.base_level not in spec.levels:
        raise ConfigError(source, "$.base_level", f"{spec.base_level!r} must be one of the levels")
    known = set(m.name for m in measures) | set(BUILTIN_MEASURES if spec.densify else ())
    for f in flags:
        if f.measure not in known:
            raise ConfigError(source, f"$.flags.{f.name}.measure", f"unknown measure {f.measure!r}")
    known |= {f.name for f in flags}
    for r in ratios:
        for part in ("numerator", "denominator"):
            if getattr(r, part) not in known:
                raise ConfigError(source, f"$.ratios.{r.name}.{part}", f"unknown measure {getattr(r, part)!r}")
    for i, o in enumerate(spec.outputs):
        if o not in spec.value_names:
            raise ConfigError(source, f"$.outputs[{i}]", f"unknown measure or ratio {o!r}")
    for i, b in enumerate(spec.breakdowns):
        if b.top and b.top["by"] not in spec.value_names:
            raise ConfigError(source, f"$.breakdowns[{i - 1}].top.by", f"unknown measure {b.top['by']!r}")
        if spec.base_level != "school" and b.attr_columns:
            raise ConfigError(source, f"$.breakdowns[{i - 1}].columns",
                              f"{list(b.attr_columns)} need base_level school")
    return spec


def load_spec(path: str | Path) -> KpiSpec:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(str(path), "$", f"not valid YAML: {e}") from None
    except OSError as e:
        raise ConfigError(str(path), "$", f"cannot read: {e}") from None
    spec = parse_spec(doc, str(path))
    if spec.name != path.stem:
        raise ConfigError(str(path), "$.name", f"must equal the file stem {path.stem!r}, got {spec.name!r}")
    return spec


def load_specs(directory: str | Path = KPI_DIR, names: list[str] | None = None) -> list[KpiSpec]:
    """Every spec in a folder (sorted by name), or the named ones (unknown names are a ConfigError)."""
    directory = Path(directory)
    files = {p.stem: p for p in sorted(directory.glob("*.yaml"))}
    if names:
        missing = [n for n in names if n not in files]
        if missing:
            raise ConfigError(str(directory), "$.modelParams.kpis", f"no spec for {missing}; known: {sorted(files)}")
        files = {n: files[n] for n in names}
    return [load_spec(p) for _n, p in sorted(files.items())]
