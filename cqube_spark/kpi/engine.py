"""The generic rollup engine: one KPI spec × every level × every period, in three aggregations.

Input: a *fact* frame from a prep transform (:mod:`cqube_spark.kpi.prep`) with ``<base>_id`` (``school_id``
for most KPIs), ``date`` (NULL for undated snapshots), the spec's fact breakdown columns, the measure input
columns and ``_file`` (lineage); or the same fact held wide, one row per month with a column per day
(:class:`~cqube_spark.kpi.facts.DayWide`, attendance). Output: the gold frame, all levels and periods in one
table.

1. **bucket** (one pass over the fact, no explode): group by base unit × finest grain bucket × fact breakdown
   columns (× the entity of nested distinct counts, e.g. the student) × source file, with every additive
   partial computed once for the whole bucket and once per window by conditional aggregation
   (``sum(when(in_window, x))``). A day-wide fact whose measures count days is not exploded: each row's
   partials are bit counts of day masks, then rows are grouped the same way.
2. **base** (school × period): explode the few period memberships of each bucket row (its month, its
   academic year, the windows it falls in) and aggregate per breakdown with GROUPING SETS; distinct counts
   are exact here (``count(distinct student)`` per school and period; without fact breakdowns, each
   student's buckets are merged first and flags counted instead, :func:`entity_base`). Densified KPIs get a zero row for
   every unit of the hierarchy without data. School-level flags (e.g. CRC visit buckets) are set here.
   The base is cached: it is the school-level output and the input of step 3. Lineage (``source_files``)
   is a bit set over the run's file names (``bit_or`` of one bit per file, decoded after the aggregation)
   when the caller knows the names: a set per row (``collect_set``) is an object aggregate, which turns
   the whole aggregation sort-based once a task holds more than 128 groups.
3. **rollup**: join the (broadcast) hierarchy, explode every base row into the (breakdown, level) targets it
   feeds and aggregate them all in ONE group-by (one shuffle for every breakdown and level). Every measure is
   pooled: sums of sums, sums of counts, min of mins; nested distinct counts add up (a student belongs to one
   school); ratios are Σnumerator/Σdenominator computed at each level, never averages of lower-level ratios. ``rollup: exact`` distinct counts (e.g.
   CRCs, who visit many schools) are recounted from the fact at every level in one extra pass.

Schools whose parent is missing from a master have a NULL id at that level: they are left out of that
level only. Base units that are not in the hierarchy at all are left out (see the exceptions KPI).
"""
from __future__ import annotations

import datetime as dt
import json
from functools import reduce

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from cqube_spark.kpi import periods as P
from cqube_spark.kpi.facts import FIRST, DayWide
from cqube_spark.kpi.spec import BUILTIN_MEASURES, LEVELS, KpiSpec, Measure

ALL = "all"


# -- filters and row values -------------------------------------------------------------------------------

def compile_filter(f: dict | None, col=F.col) -> Column:
    """A structured filter (``{column: code, in: [1, 2]}``, ``all``/``any``/``not``) → a boolean Column.
    ``col`` resolves a fact column name (a day-wide fact resolves ``code`` to one day's column)."""
    if not f:
        return F.lit(True)
    parts: list[Column] = []
    if "column" in f:
        c = col(f["column"])
        if "in" in f:
            parts.append(c.isin(list(f["in"])))
        if "not_in" in f:
            parts.append(~c.isin(list(f["not_in"])))
        if "eq" in f:
            parts.append(c == F.lit(f["eq"]))
        if "ne" in f:
            parts.append(c != F.lit(f["ne"]))
        for op, fn in (("gt", c.__gt__), ("ge", c.__ge__), ("lt", c.__lt__), ("le", c.__le__)):
            if op in f:
                parts.append(fn(F.lit(f[op])))
        if f.get("not_null"):
            parts.append(c.isNotNull())
    if "all" in f:
        parts.append(reduce(lambda a, b: a & b, [compile_filter(x, col) for x in f["all"]]))
    if "any" in f:
        parts.append(reduce(lambda a, b: a | b, [compile_filter(x, col) for x in f["any"]]))
    if "not" in f:
        parts.append(~compile_filter(f["not"], col))
    if not parts:
        return F.lit(True)
    return F.coalesce(reduce(lambda a, b: a & b, parts), F.lit(False))


def row_value(m: Measure, col=F.col) -> Column:
    """The per-row contribution of a measure (NULL = no contribution); ``col`` as in :func:`compile_filter`."""
    cond = compile_filter(m.filter, col)
    if m.agg == "count" or m.agg == "schools":
        return F.when(cond, F.lit(1))
    if m.agg == "distinct_count":
        return F.when(cond & col(m.column).isNotNull(), F.lit(1))
    if m.weights:
        c = col(m.column)
        v = reduce(lambda acc, kv: acc.when(c == F.lit(_typed(kv[0])), F.lit(float(kv[1]))),
                   list(m.weights.items())[1:],
                   F.when(c == F.lit(_typed(list(m.weights)[0])), F.lit(float(list(m.weights.values())[0]))))
        return F.when(cond, v)
    return F.when(cond, col(m.column))


def _typed(key: str):
    try:
        return int(key)
    except ValueError:
        try:
            return float(key)
        except ValueError:
            return key


# -- as-of ------------------------------------------------------------------------------------------------

def latest_frame(fact: DataFrame | DayWide) -> DataFrame:
    """One row, ``d``: the fact's latest date (a plan: :func:`facts_summary` fetches it with the lineage)."""
    if isinstance(fact, DayWide):
        return fact.latest()
    return fact.agg(F.max("date").alias("d"))


def latest_date(fact: DataFrame | DayWide) -> dt.date | None:
    return latest_frame(fact).collect()[0]["d"]


# -- step 1 + 2: the base ---------------------------------------------------------------------------------

def _slots(spec: KpiSpec) -> list[str]:
    return ([ALL] if spec.grains else []) + list(spec.windows)


def _partials(m: Measure) -> list[tuple[str, str]]:
    """(suffix, combine) pairs of a measure's additive partials: combine ∈ sum | min | max | any."""
    if m.agg in ("sum", "count"):
        return [("", "sum")]
    if m.agg in ("min", "max"):
        return [("", m.agg)]
    if m.agg == "avg":
        return [("__s", "sum"), ("__c", "sum")]
    if m.agg in ("distinct_count", "schools"):
        return [("", "any")]
    raise ValueError(m.agg)


def bucket_aggregate(spec: KpiSpec, fact: DataFrame | DayWide, as_of: dt.date | None,
                     start_month: int = 6) -> DataFrame:
    """Step 1: base unit × finest-grain bucket × fact breakdowns (× nested entity), partials per slot."""
    if isinstance(fact, DayWide):
        if day_maskable(spec) and not (spec.grains and spec.grains[0] in ("day", "week")):
            return day_wide_buckets(spec, fact, as_of, start_month)
        fact = fact.long()     # other measures, or a grain finer than the month: one row per day
    base_id = f"{spec.base_level}_id"
    finest = spec.grains[0] if spec.grains else None
    date = F.col("date")
    keys = [base_id, "_bucket", *spec.fact_breakdown_columns]
    if spec.entity:
        keys.append(spec.entity)
    measures = [m for m in spec.measures if not (m.agg == "distinct_count" and m.rollup == "exact")]
    vals = {m.name: row_value(m) for m in measures}
    f = fact.withColumn("_bucket", P.bucket(date, finest, start_month))
    if as_of is not None:
        f = f.where(date.isNull() | (date <= F.lit(as_of)))
    aggs: list[Column] = []
    for s in _slots(spec):
        in_s = F.lit(True) if s == ALL else P.in_window(date, s, as_of)
        aggs.append(F.count(F.when(in_s, 1)).alias(f"_n__{s}"))
        for m in measures:
            v = F.when(in_s, vals[m.name])
            if m.agg in ("sum",):
                aggs.append(F.sum(v).alias(f"{m.name}__{s}"))
            elif m.agg == "count":
                aggs.append(F.count(v).alias(f"{m.name}__{s}"))
            elif m.agg == "min":
                aggs.append(F.min(v).alias(f"{m.name}__{s}"))
            elif m.agg == "max":
                aggs.append(F.max(v).alias(f"{m.name}__{s}"))
            elif m.agg == "avg":
                aggs += [F.sum(v).alias(f"{m.name}__s__{s}"), F.count(v).alias(f"{m.name}__c__{s}")]
            else:      # distinct_count (nested) / schools: "has a contributing row in the slot"
                aggs.append(F.max(v).alias(f"{m.name}__{s}"))
    if "_file" in fact.columns and "_files" not in fact.columns:
        # lineage as a grouping key: a bucket fed by two files becomes two rows that step 2 adds up. A set
        # per bucket (collect_set) is an object aggregate, which Spark sorts once it holds more than 128
        # groups: student attendance buckets took 28.3 s with it, 11.6 s without (1.16M buckets).
        keys.append("_file")
    elif "_files" in fact.columns:     # a prep that already aggregated its lineage
        aggs.append(F.array_distinct(F.flatten(F.collect_list("_files"))).alias("_files"))
    else:
        aggs.append(F.array().cast("array<string>").alias("_files"))
    return f.groupBy(*keys).agg(*aggs)


def day_maskable(spec: KpiSpec) -> bool:
    """Whether every measure counts days (count, nested distinct count, schools, weighted sum): then a
    day-wide row's partials are bit counts of day masks (:func:`day_wide_buckets`)."""
    return all(m.agg in ("count", "schools") or (m.agg == "distinct_count" and m.rollup != "exact")
               or (m.agg == "sum" and m.weights) for m in spec.measures
               if not (m.agg == "distinct_count" and m.rollup == "exact"))


def _day_mask(fact: DayWide, cond) -> Column:
    """The row's days where ``cond(d)`` (never NULL) holds, as bits of a long (bit d-1 = day d)."""
    return reduce(lambda a, b: a.bitwiseOR(b), [F.shiftleft((fact.exists(d) & cond(d)).cast("long"), d - 1)
                                                for d in range(1, fact.days + 1)])


def _all_of(*filters: dict | None) -> dict | None:
    fs = [f for f in filters if f]
    return None if not fs else fs[0] if len(fs) == 1 else {"all": fs}


def day_wide_buckets(spec: KpiSpec, fact: DayWide, as_of: dt.date | None, start_month: int = 6) -> DataFrame:
    """Step 1 for a :class:`DayWide` fact whose measures count days (:func:`day_maskable`): the same buckets
    and partials as over its long form, with no explode. Per row, each measure's contributing days are one
    bit mask (a weighted sum has one mask per weight), each slot's days are a range mask (``lo .. hi`` from
    :func:`periods.day_range`; every slot ends at ``as_of``, so later days count nowhere), and a partial is
    ``bit_count(measure & slot)``. A row's days all lie in the bucket of ``_first`` (a month or coarser).
    Rows are then grouped by the bucket keys as in the long path."""
    base_id = f"{spec.base_level}_id"
    finest = spec.grains[0] if spec.grains else None
    keys = [base_id, "_bucket", *spec.fact_breakdown_columns, *([spec.entity] if spec.entity else [])]
    if "_file" in fact.row_columns:
        keys.append("_file")
    measures = [m for m in spec.measures if not (m.agg == "distinct_count" and m.rollup == "exact")]
    first = F.col(FIRST)

    def on_day(d: int):
        return lambda name: F.col(fact.day(name, d)) if name in fact.day_columns else F.col(name)

    masks: dict[str, tuple[str, Column]] = {}       # one mask column per distinct day filter

    def mask(f: dict | None) -> Column:
        """The days where filter ``f`` holds (a compiled filter is never NULL); built once per filter."""
        key = json.dumps(f, sort_keys=True, default=str)
        if key not in masks:
            masks[key] = (f"_mask{len(masks)}", _day_mask(fact, lambda d: compile_filter(f, on_day(d))))
        return F.col(masks[key][0])

    n_mask = mask(None)
    counted: dict[str, list[tuple[float, Column]]] = {}     # measure -> [(weight, mask)]
    for m in measures:
        if m.agg == "sum":      # weighted: Σ weight × days with that value (the first weight of a value wins)
            weights: dict = {}
            for k, w in m.weights.items():
                weights.setdefault(_typed(k), float(w))
            counted[m.name] = [(w, mask(_all_of(m.filter, {"column": m.column, "eq": v})))
                               for v, w in weights.items()]
        elif m.agg == "distinct_count":     # as row_value: the filter holds and the entity is known
            counted[m.name] = [(1.0, mask(_all_of(m.filter, {"column": m.column, "not_null": True})))]
        else:
            counted[m.name] = [(1.0, mask(m.filter))]
    rows = fact.frame.select(*keys[:1], P.bucket(first, finest, start_month).alias("_bucket"), *keys[2:], FIRST,
                             *[e.alias(n) for n, e in masks.values()])
    one = F.lit(1).cast("long")
    parts: list[tuple[str, Column, object]] = []      # (name, the row's partial, the bucket's aggregate)
    for s in _slots(spec):
        lo, hi = P.day_range("overall" if s == ALL else s, as_of, first)
        lo, hi = F.greatest(lo, F.lit(1)), F.least(hi, F.lit(fact.days))
        in_s = F.when(lo <= hi, F.call_function("shiftleft", one, hi) - F.call_function("shiftleft", one, lo - 1)) \
            .otherwise(F.lit(0).cast("long"))

        def days(mk: Column, in_s=in_s) -> Column:
            return F.bit_count(mk.bitwiseAND(in_s))

        parts.append((f"_n__{s}", days(n_mask), F.sum))
        for m in measures:
            name, (_w, mk) = f"{m.name}__{s}", counted[m.name][0]
            if m.agg == "count":
                parts.append((name, days(mk), F.sum))
            elif m.agg == "sum":
                total = reduce(lambda a, b: a + b, [F.lit(w) * days(k) for w, k in counted[m.name]])
                any_day = reduce(lambda a, b: a + b, [days(k) for _w, k in counted[m.name]])
                parts.append((name, F.when(any_day > 0, total), F.sum))
            else:      # distinct_count (nested) / schools: "has a contributing day in the slot"
                parts.append((name, F.when(days(mk) > 0, F.lit(1)), F.max))
    partials = rows.select(*keys, *[row.alias(name) for name, row, _a in parts])
    return partials.groupBy(*keys).agg(*[agg(name).alias(name) for name, _r, agg in parts])


def _period_structs(spec: KpiSpec, start_month: int) -> Column:
    items = []
    for g in spec.grains:
        items.append(F.when(F.col("_bucket").isNotNull() & (F.col(f"_n__{ALL}") > 0),
                            F.struct(F.lit(g).alias("period_type"), P.period_key(F.col("_bucket"), g, start_month)
                                     .alias("period"), F.lit(ALL).alias("_slot"))))
    for w in spec.windows:
        items.append(F.when(F.col(f"_n__{w}") > 0, F.struct(F.lit("window").alias("period_type"),
                                                            F.lit(w).alias("period"), F.lit(w).alias("_slot"))))
    return F.filter(F.array(*items), lambda x: x.isNotNull())


def _pick(name: str, slots: list[str]) -> Column:
    expr = F.when(F.col("_slot") == slots[0], F.col(f"{name}__{slots[0]}"))
    for s in slots[1:]:
        expr = expr.when(F.col("_slot") == s, F.col(f"{name}__{s}"))
    return expr


def fact_parts(spec: KpiSpec) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for b in spec.breakdowns:
        if b.fact_columns not in out:
            out.append(b.fact_columns)
    return out


def gid_of(spec: KpiSpec, part: tuple[str, ...]) -> int:
    """grouping_id() of a fact part in the base GROUPING SETS (bit set = column not grouped)."""
    cols = list(spec.fact_breakdown_columns)
    gid = 0
    for i, c in enumerate(cols):
        if c not in part:
            gid |= 1 << (len(cols) - 1 - i)
    return gid


# a bit set of file names fits in this many longs; beyond it lineage falls back to a set per row
MAX_FILE_WORDS = 64


def lineage_frame(frames: list[DataFrame]) -> DataFrame | None:
    """The distinct ``_file`` values of the frames a prep read (one narrow column scan each); None: no lineage."""
    parts = [f.select(F.col("_file").cast("string").alias("_file")) for f in frames if "_file" in f.columns]
    if not parts:
        return None
    return reduce(lambda a, b: a.unionByName(b), parts).where(F.col("_file").isNotNull()).distinct()


def lineage_files(frames: list[DataFrame]) -> list[str]:
    """The sorted distinct ``_file`` values of the frames a prep read."""
    u = lineage_frame(frames)
    return [] if u is None else sorted(r[0] for r in u.collect())


def facts_summary(facts: dict[str, tuple[DataFrame | DayWide, list[DataFrame] | None]],
                  latest: bool = True) -> dict[str, tuple[dt.date | None, list[str] | None]]:
    """What each KPI's compute needs to know before it plans, for every KPI in ONE Spark job instead of two
    collects per KPI: ``{kpi: (fact, frames)}`` → ``{kpi: (latest date or None, lineage files)}``. ``frames``:
    the silver frames whose ``_file`` names are the lineage (None: no lineage, files None). ``latest``:
    whether to find the latest dates (no ``--as-of``). A frame several KPIs read (the job opens each silver
    table once; the coverage KPI reads every school-level source) has its ``_file`` names found once."""
    parts, tag_of = [], {}       # id(frame) → its tag in the union (each frame once)
    for name, (fact, frames) in facts.items():
        if latest:
            parts.append(latest_frame(fact).select(F.lit(name).alias("kpi"), F.lit("d").alias("kind"),
                                                   F.col("d").cast("string").alias("value")))
        for f in frames or []:
            if "_file" in f.columns and id(f) not in tag_of:
                tag_of[id(f)] = tag = f"#{len(tag_of)}"
                parts.append(lineage_frame([f]).select(F.lit(tag).alias("kpi"), F.lit("f").alias("kind"),
                                                       F.col("_file").alias("value")))
    rows = reduce(lambda a, b: a.unionByName(b), parts).collect() if parts else []
    dates, files_of = {}, {}     # kpi → its latest date; tag → the frame's file names
    for r in rows:
        if r["kind"] == "d":
            dates[r["kpi"]] = r["value"]
        else:
            files_of.setdefault(r["kpi"], set()).add(r["value"])
    out: dict[str, tuple[dt.date | None, list[str] | None]] = {}
    for name, (_fact, frames) in facts.items():
        d = dates.get(name)
        files = None if frames is None else sorted({v for f in frames for v in files_of.get(tag_of.get(id(f)), ())})
        out[name] = (dt.date.fromisoformat(d) if d else None, files)
    return out


def file_words(files: list[str]) -> range:
    """The indexes ``j`` of the longs (``_fm<j>``) that hold the bit set of ``files``, 64 files each."""
    return range((len(files) + 63) // 64)


def file_bit(j: int, cond: Column | None = None) -> Column:
    """The row's file bit within long ``j`` (NULL when its file is in another long, or ``cond`` is false)."""
    i, one = F.col("_fidx"), F.lit(1).cast("long")
    in_word = (i >= 64 * j) & (i < 64 * (j + 1))
    return F.when(in_word if cond is None else cond & in_word, F.call_function("shiftleft", one, i - 64 * j))


def file_bits(df: DataFrame, files: list[str]) -> tuple[DataFrame, list[Column]]:
    """``df`` with ``_fidx`` (the index of its ``_file`` in ``files``) and the ``bit_or`` aggregates of the
    file bit set, one long per 64 files (``_fm<j>``)."""
    idx = df.sparkSession.createDataFrame([(f, i) for i, f in enumerate(files)], "_file string, _fidx int")
    out = df.join(F.broadcast(idx), "_file", "left")
    return out, [F.bit_or(file_bit(j)).alias(f"_fm{j}") for j in file_words(files)]


def _bit_set(mask: Column):
    """``(name, k) -> bit k of mask is set``, for ``filter`` over the names of one 64-file word."""
    return lambda _name, k: F.call_function("shiftright", mask, k).bitwiseAND(1) == 1


def decode_files(files: list[str]) -> Column:
    """The sorted file names whose bits are set in ``_fm<j>`` (an empty array when none)."""
    words = []
    for j in file_words(files):
        mask = F.coalesce(F.col(f"_fm{j}"), F.lit(0).cast("long"))
        names = F.array(*[F.lit(n) for n in files[64 * j:64 * (j + 1)]])
        words.append(F.filter(names, _bit_set(mask)))
    if not words:
        return F.array().cast("array<string>")
    return words[0] if len(words) == 1 else F.concat(*words)


def base_aggregate(spec: KpiSpec, buckets: DataFrame, start_month: int = 6,
                   files: list[str] | None = None) -> DataFrame:
    """Step 2: base unit × period × breakdown values, with exact nested distinct counts. ``files``: every
    ``_file`` the buckets can hold (sorted), for lineage as a bit set; None = a set per row."""
    base_id = f"{spec.base_level}_id"
    slots = _slots(spec)
    measures = [m for m in spec.measures if not (m.agg == "distinct_count" and m.rollup == "exact")]
    lineage = "_file" if "_file" in buckets.columns else "_files"
    bits = lineage == "_file" and files is not None and len(files) <= 64 * MAX_FILE_WORDS
    if bits and spec.entity and not spec.fact_breakdown_columns and _slots(spec):
        return entity_base(spec, buckets, start_month, files)
    bit_aggs: list[Column] = []
    if bits:
        buckets, bit_aggs = file_bits(buckets, files)
    exploded = (buckets.withColumn("_p", F.explode(_period_structs(spec, start_month)))
                .withColumn("period_type", F.col("_p.period_type")).withColumn("period", F.col("_p.period"))
                .withColumn("_slot", F.col("_p._slot")))
    exploded = exploded.select(base_id, "period_type", "period", "_fidx" if bits else lineage,
                               *spec.fact_breakdown_columns,
                               *([spec.entity] if spec.entity else []),
                               *[_pick(f"{m.name}{sfx}", slots).alias(f"{m.name}{sfx}")
                                 for m in measures for sfx, _c in _partials(m)])
    aggs: list[Column] = []
    for m in measures:
        for sfx, comb in _partials(m):
            c = F.col(f"{m.name}{sfx}")
            if m.agg == "distinct_count":
                aggs.append(F.count_distinct(F.when(c == 1, F.col(m.column))).alias(m.name))
            elif comb == "any":
                aggs.append(F.coalesce(F.max(c), F.lit(0)).cast("long").alias(m.name))
            elif comb == "sum":
                aggs.append(F.sum(c).alias(f"{m.name}{sfx}"))
            else:
                aggs.append(getattr(F, comb)(c).alias(f"{m.name}{sfx}"))
    if bits:
        aggs += bit_aggs
    else:
        sets = F.collect_set("_file") if lineage == "_file" else F.array_distinct(F.flatten(F.collect_list("_files")))
        aggs.append(F.array_sort(sets).alias("source_files"))
    keys = [base_id, "period_type", "period"]
    parts = fact_parts(spec)
    if spec.fact_breakdown_columns:
        sets = [[*keys, *p] for p in parts]
        base = (exploded.groupingSets(sets, *keys, *spec.fact_breakdown_columns)
                .agg(*aggs, F.grouping_id().alias("_gid")))
    else:
        base = exploded.groupBy(*keys).agg(*aggs).withColumn("_gid", F.lit(0).cast("long"))
    if bits:
        base = base.withColumn("source_files", decode_files(files)).drop(*[c for c in base.columns
                                                                         if c.startswith("_fm")])
    return base


def entity_base(spec: KpiSpec, buckets: DataFrame, start_month: int, files: list[str]) -> DataFrame:
    """Step 2 for a spec with a nested distinct count (students of a school) and no fact breakdowns: the same
    rows as :func:`base_aggregate`, without exploding every bucket into its periods and without a distinct
    aggregate. An entity's buckets are merged first (its files, and its months for a window), so each
    entity is one row per period and a distinct count is a count of flags:

    * grain periods: buckets → (unit, grain period, entity) → (unit, grain period);
    * windows: buckets → (unit, entity) with one column set per window → (unit) → one row per window with
      data (the explode happens on the few unit rows).

    Lineage is the file bit set (``bit_or``), per window of the files whose buckets have days in it."""
    base_id, ent = f"{spec.base_level}_id", spec.entity
    measures = [m for m in spec.measures if not (m.agg == "distinct_count" and m.rollup == "exact")]
    words = file_words(files)
    b, _aggs = file_bits(buckets, files)
    types = {f.name: f.dataType for f in b.schema.fields}

    def merged(m: Measure, sfx: str, comb: str, slot: str) -> Column:
        """The entity's buckets → one partial (sums keep the bucket type, as base_aggregate's input has)."""
        name = f"{m.name}{sfx}__{slot}"
        c = F.col(name)
        if comb in ("any", "max"):
            return F.max(c)
        if comb == "min":
            return F.min(c)
        return F.sum(c).cast(types[name])

    def final(m: Measure, sfx: str, comb: str, c: Column) -> Column:
        """The unit's entity rows → the base column, as base_aggregate computes it from the buckets."""
        if m.agg == "distinct_count":
            return F.count(F.when((c == 1) & F.col(ent).isNotNull(), F.lit(1)))
        if comb == "any":
            return F.coalesce(F.max(c), F.lit(0)).cast("long")
        return F.sum(c) if comb == "sum" else getattr(F, comb)(c)

    parts = [(m, sfx, comb) for m in measures for sfx, comb in _partials(m)]
    frames = []
    if spec.grains:
        periods = F.array(*[F.struct(F.lit(g).alias("period_type"),
                                     P.period_key(F.col("_bucket"), g, start_month).alias("period")) for g in spec.grains])
        g = (b.where(F.col("_bucket").isNotNull() & (F.col(f"_n__{ALL}") > 0))
              .withColumn("_p", F.explode(periods))
              .select("*", F.col("_p.period_type").alias("period_type"), F.col("_p.period").alias("period"))
              .groupBy(base_id, "period_type", "period", ent)
              .agg(*[merged(m, sfx, comb, ALL).alias(f"{m.name}{sfx}") for m, sfx, comb in parts],
                   *[F.bit_or(file_bit(j)).alias(f"_fm{j}") for j in words]))
        frames.append(g.groupBy(base_id, "period_type", "period")
                      .agg(*[final(m, sfx, comb, F.col(f"{m.name}{sfx}")).alias(f"{m.name}{sfx}")
                             for m, sfx, comb in parts],
                           *[F.bit_or(f"_fm{j}").alias(f"_fm{j}") for j in words]))
    if spec.windows:
        e = b.groupBy(base_id, ent).agg(*[
            a for w in spec.windows for a in (
                F.sum(f"_n__{w}").alias(f"_n__{w}"),
                *[merged(m, sfx, comb, w).alias(f"{m.name}{sfx}__{w}") for m, sfx, comb in parts],
                *[F.bit_or(file_bit(j, F.col(f"_n__{w}") > 0)).alias(f"_fm{j}__{w}") for j in words])])
        u = e.groupBy(base_id).agg(*[
            a for w in spec.windows for a in (
                F.sum(f"_n__{w}").alias(f"_n__{w}"),
                *[final(m, sfx, comb, F.col(f"{m.name}{sfx}__{w}")).alias(f"{m.name}{sfx}__{w}")
                  for m, sfx, comb in parts],
                *[F.bit_or(f"_fm{j}__{w}").alias(f"_fm{j}__{w}") for j in words])])
        rows = F.array(*[F.when(F.col(f"_n__{w}") > 0, F.struct(
            F.lit("window").alias("period_type"), F.lit(w).alias("period"),
            *[F.col(f"{m.name}{sfx}__{w}").alias(f"{m.name}{sfx}") for m, sfx, _c in parts],
            *[F.col(f"_fm{j}__{w}").alias(f"_fm{j}") for j in words])) for w in spec.windows])
        frames.append(u.select(base_id, F.explode(F.filter(rows, lambda x: x.isNotNull())).alias("_r"))
                      .select(base_id, "_r.*"))
    base = reduce(lambda a, c: a.unionByName(c), frames).withColumn("_gid", F.lit(0).cast("long"))
    return base.withColumn("source_files", decode_files(files)).drop(*[f"_fm{j}" for j in words])


def densify(spec: KpiSpec, base: DataFrame, units: DataFrame) -> DataFrame:
    """Every unit of the base level gets a row for every (period, breakdown values) seen: zeros where no data."""
    base_id = f"{spec.base_level}_id"
    combo_cols = ["_gid", "period_type", "period", *spec.fact_breakdown_columns]
    combos = base.select(*combo_cols).distinct()
    grid = units.select(base_id).distinct().crossJoin(combos)
    b = base.select(*[F.col(c).alias(f"_b_{c}") for c in base.columns])     # no self-join ambiguity
    cond = [grid[base_id] == b[f"_b_{base_id}"]] + [grid[c].eqNullSafe(b[f"_b_{c}"]) for c in combo_cols]
    j = grid.join(b, cond, "left")
    out = [grid[c] for c in [base_id, *combo_cols]]
    for c in base.columns:
        if c in [base_id, *combo_cols]:
            continue
        if c == "source_files":
            out.append(F.coalesce(b[f"_b_{c}"], F.array().cast("array<string>")).alias(c))
        else:
            out.append(F.coalesce(b[f"_b_{c}"], F.lit(0)).alias(c))
    return j.select(*out).withColumn("schools_total", F.lit(1).cast("long"))


def add_flags(spec: KpiSpec, base: DataFrame) -> DataFrame:
    for f in spec.flags:
        v = F.coalesce(F.col(f.measure), F.lit(0))
        cond = F.lit(True)
        if f.min is not None:
            cond = cond & (v >= F.lit(f.min))
        if f.max is not None:
            cond = cond & (v <= F.lit(f.max))
        base = base.withColumn(f.name, F.when(cond, F.lit(1)).otherwise(F.lit(0)).cast("long"))
    return base


# -- step 3: rollup ---------------------------------------------------------------------------------------

def _additive_columns(spec: KpiSpec) -> list[tuple[str, str]]:
    """(column, combine) of every base column that rolls up."""
    out: list[tuple[str, str]] = []
    for m in spec.measures:
        if m.agg == "distinct_count" and m.rollup == "exact":
            continue
        if m.agg in ("distinct_count", "schools"):
            out.append((m.name, "sum"))
        else:
            out += [(f"{m.name}{sfx}", "sum" if comb in ("sum", "any") else comb) for sfx, comb in _partials(m)]
    out += [(f.name, "sum") for f in spec.flags]
    if spec.densify:
        out.append(("schools_total", "sum"))
    return out


def _targets(spec: KpiSpec, types: dict[str, str], rows_gid: Column | None, levels_of) -> Column:
    """The (breakdown, level) targets of a row, as an array of structs to explode: every breakdown the row
    feeds (all of them when ``rows_gid`` is None) times that breakdown's levels from ``levels_of(bd)``.
    Each struct carries the breakdown name, the level, that level's id and the breakdown's column values
    (NULL for the columns the breakdown does not group by), so ONE group-by covers every breakdown and level."""
    cols = spec.breakdown_columns
    items = []
    for bd in spec.breakdowns:
        for lv in levels_of(bd):
            fields = [F.lit(bd.name).alias("breakdown"), F.lit(lv).alias("level"),
                      F.col(f"{lv}_id").cast("string").alias("id"),
                      *[(F.col(c) if c in bd.columns else F.lit(None)).cast(types[c]).alias(c) for c in cols]]
            s = F.struct(*fields)
            items.append(s if rows_gid is None else F.when(rows_gid == gid_of(spec, bd.fact_columns), s))
    arr = F.array(*items)
    return arr if rows_gid is None else F.filter(arr, lambda x: x.isNotNull())


def _types(df: DataFrame, cols) -> dict[str, str]:
    return {f.name: f.dataType.simpleString() for f in df.schema.fields if f.name in cols}


def _explode_targets(df: DataFrame, spec: KpiSpec, targets: Column) -> DataFrame:
    """One row per target of each row; the breakdown columns are replaced by the target's values."""
    cols = list(spec.breakdown_columns)
    keep = [c for c in df.columns if c not in cols]
    return (df.withColumn("_t", F.explode(targets))
            .select(*keep, *[F.col(f"_t.{c}").alias(c) for c in ("breakdown", "level", "id", *cols)]))


def rollup(spec: KpiSpec, base: DataFrame, hierarchy: DataFrame) -> DataFrame:
    """Step 3: every level (school included) × period × breakdown, pooled, in one shuffle: each base row is
    exploded into the (breakdown, higher level) targets it feeds and a single group-by aggregates them all."""
    base_id = f"{spec.base_level}_id"
    levels = list(spec.rollup_levels)
    higher = [lv for lv in levels if lv != spec.base_level]
    hier_cols = [f"{lv}_id" for lv in LEVELS[LEVELS.index(spec.base_level):]]
    attrs = [c for c in ("school_management", "school_category") if c in spec.breakdown_columns]
    h = hierarchy.select(*hier_cols, *attrs).dropDuplicates([base_id])
    b = base.join(F.broadcast(h), base_id, "inner")
    types = _types(b, spec.breakdown_columns)
    addl = _additive_columns(spec)
    frames = []
    # base level: the base rows themselves (only for breakdowns without hierarchy attributes), no shuffle
    own = [bd for bd in spec.breakdowns
           if spec.base_level in levels and (bd.levels is None or spec.base_level in bd.levels) and not bd.attr_columns]
    if own:
        tgt = _targets(spec, types, F.col("_gid"), lambda bd: [spec.base_level] if bd in own else [])
        frames.append(_explode_targets(b, spec, tgt)
                      .select("level", "id", "period_type", "period", "breakdown", *spec.breakdown_columns,
                              *[c for c, _ in addl], "source_files"))

    def up_levels(bd):
        return [lv for lv in higher if bd.levels is None or lv in bd.levels]

    if any(up_levels(bd) for bd in spec.breakdowns):
        x = _explode_targets(b, spec, _targets(spec, types, F.col("_gid"), up_levels))
        g = (x.where(F.col("id").isNotNull())     # a unit missing from its master has a NULL id: not a unit
             .groupBy("level", "id", "period_type", "period", "breakdown", *spec.breakdown_columns)
             .agg(*[getattr(F, comb)(c).alias(c) for c, comb in addl]))
        frames.append(g.withColumn("source_files", F.lit(None).cast("array<string>")))
    return reduce(lambda a, c: a.unionByName(c, allowMissingColumns=True), frames)


def exact_distincts(spec: KpiSpec, fact: DataFrame, hierarchy: DataFrame, as_of: dt.date | None,
                    start_month: int = 6) -> DataFrame | None:
    """``rollup: exact`` distinct counts recounted from the fact at every level, every breakdown in one pass."""
    exact = [m for m in spec.measures if m.agg == "distinct_count" and m.rollup == "exact"]
    if not exact:
        return None
    if isinstance(fact, DayWide):
        fact = fact.long()
    base_id = f"{spec.base_level}_id"
    levels = list(spec.rollup_levels)
    hier_cols = [f"{lv}_id" for lv in LEVELS[LEVELS.index(spec.base_level):]]
    attrs = [c for c in ("school_management", "school_category") if c in spec.breakdown_columns]
    h = hierarchy.select(*hier_cols, *attrs).dropDuplicates([base_id])
    date = F.col("date")
    f = fact.where(date.isNull() | (date <= F.lit(as_of))) if as_of is not None else fact
    finest = spec.grains[0] if spec.grains else None
    items = [F.when(date.isNotNull(), F.struct(F.lit(g).alias("period_type"),
                                               P.period_key(P.bucket(date, finest, start_month), g, start_month)
                                               .alias("period"))) for g in spec.grains]
    items += [F.when(P.in_window(date, w, as_of), F.struct(F.lit("window").alias("period_type"),
                                                          F.lit(w).alias("period"))) for w in spec.windows]
    f = (f.join(F.broadcast(h), base_id, "inner")
          .withColumn("_p", F.explode(F.filter(F.array(*items), lambda x: x.isNotNull())))
          .withColumn("period_type", F.col("_p.period_type")).withColumn("period", F.col("_p.period")))
    f = f.select("period_type", "period", *hier_cols, *spec.breakdown_columns,
                 *[F.when(compile_filter(m.filter), F.col(m.column)).alias(f"_x_{m.name}") for m in exact])
    types = _types(f, spec.breakdown_columns)

    def lv_of(bd):
        lv_b = [lv for lv in levels if bd.levels is None or lv in bd.levels]
        if bd.attr_columns and spec.base_level in lv_b:
            lv_b.remove(spec.base_level)
        return lv_b

    x = _explode_targets(f, spec, _targets(spec, types, None, lv_of))
    return (x.where(F.col("id").isNotNull())
            .groupBy("level", "id", "period_type", "period", "breakdown", *spec.breakdown_columns)
            .agg(*[F.count_distinct(f"_x_{m.name}").alias(m.name) for m in exact]))


def finalize(spec: KpiSpec, rolled: DataFrame) -> DataFrame:
    """avg values, ratios (pooled, rounded), top-N breakdowns."""
    out = rolled
    for m in spec.measures:
        if m.agg == "avg":
            out = out.withColumn(m.name, F.col(f"{m.name}__s") / F.col(f"{m.name}__c")).drop(f"{m.name}__s",
                                                                                              f"{m.name}__c")
    for r in spec.ratios:
        den = F.col(r.denominator).cast("double")
        v = F.when(den != 0, F.col(r.numerator).cast("double") / den * F.lit(r.scale))
        if r.subtract_from is not None:
            v = F.lit(float(r.subtract_from)) - v
        out = out.withColumn(r.name, F.round(v, r.round))
    for bd in spec.breakdowns:
        if not bd.top:
            continue
        w = Window.partitionBy("level", "id", "period_type", "period", "breakdown", *bd.attr_columns) \
            .orderBy(F.col(bd.top["by"]).desc_nulls_last(), *[F.col(c).asc_nulls_last() for c in bd.fact_columns])
        ranked = out.withColumn("_rank", F.when(F.col("breakdown") == bd.name, F.row_number().over(w)))
        out = ranked.where(F.col("_rank").isNull() | (F.col("_rank") <= bd.top["n"])).drop("_rank")
    return out


def with_dims(rolled: DataFrame, dims: dict[str, DataFrame], levels: list[str]) -> DataFrame:
    """Names, lat/lng and parents of every (level, id)."""
    parent_cols = [f"{lv}_{k}" for lv in LEVELS[1:] for k in ("id", "name")]
    frames = []
    for lv in levels:
        d = dims[lv]
        frames.append(d.select("id", "name", F.round("lat", 7).alias("lat"), F.round("lng", 7).alias("lng"),
                               *[F.col(c) if c in d.columns else F.lit(None).cast("string").alias(c)
                                 for c in parent_cols]).withColumn("level", F.lit(lv)))
    all_dims = reduce(lambda a, c: a.unionByName(c), frames)
    return rolled.join(F.broadcast(all_dims), ["level", "id"], "left")


def compute(spec: KpiSpec, fact: DataFrame | DayWide, hierarchy: DataFrame, dims: dict[str, DataFrame],
            as_of: dt.date | None, run_id: str, start_month: int = 6,
            units: DataFrame | None = None, cached: list | None = None,
            files: list[str] | None = None) -> tuple[DataFrame, dt.date | None]:
    """The gold frame of one KPI (a plan; the job writes it) and the as-of used. The cached base is
    appended to ``cached`` so the caller can unpersist it after the write. ``files``: the sorted ``_file``
    names the fact can hold (:func:`lineage_files`), for lineage as a bit set."""
    if as_of is None:
        as_of = latest_date(fact)
    base_id = f"{spec.base_level}_id"
    buckets = bucket_aggregate(spec, fact, as_of, start_month)
    base = base_aggregate(spec, buckets, start_month, files)
    if spec.densify:
        units = units if units is not None else (hierarchy if spec.base_level == "school"
                                                 else dims[spec.base_level].withColumnRenamed("id", base_id))
        base = densify(spec, base, units)
    base = add_flags(spec, base).persist(StorageLevel.MEMORY_AND_DISK)
    if cached is not None:
        cached.append(base)
    rolled = rollup(spec, base, hierarchy if spec.base_level == "school"
                    else dims[spec.base_level].withColumnRenamed("id", base_id))
    exact = exact_distincts(spec, fact, hierarchy if spec.base_level == "school"
                            else dims[spec.base_level].withColumnRenamed("id", base_id), as_of, start_month)
    if exact is not None:
        keys = ["level", "id", "period_type", "period", "breakdown", *spec.breakdown_columns]
        for c in spec.breakdown_columns:
            if c not in rolled.columns:
                rolled = rolled.withColumn(c, F.lit(None))
            if c not in exact.columns:
                exact = exact.withColumn(c, F.lit(None))
        cond = [rolled[k].eqNullSafe(exact[k]) for k in keys]
        names = [m.name for m in spec.measures if m.agg == "distinct_count" and m.rollup == "exact"]
        rolled = rolled.join(exact, cond, "left").select(
            *[rolled[c] for c in rolled.columns], *[F.coalesce(exact[n], F.lit(0)).alias(n) for n in names])
    out = finalize(spec, rolled)
    out = with_dims(out, dims, list(spec.rollup_levels))
    for c in spec.breakdown_columns:
        if c not in out.columns:
            out = out.withColumn(c, F.lit(None).cast("string"))
    out = out.withColumn("as_of", F.lit(as_of).cast("date")).withColumn("_run_id", F.lit(run_id))
    return order_columns(spec, out), as_of


def value_columns(spec: KpiSpec) -> list[str]:
    names = []
    for m in spec.measures:
        names.append(m.name)
    names += [f.name for f in spec.flags] + [r.name for r in spec.ratios]
    if spec.densify:
        names += list(BUILTIN_MEASURES)
    return names


def order_columns(spec: KpiSpec, df: DataFrame) -> DataFrame:
    parent_cols = [f"{lv}_{k}" for lv in LEVELS[1:] for k in ("id", "name")]
    first = ["level", "id", "name", *parent_cols, "lat", "lng", "period_type", "period", "breakdown",
             *spec.breakdown_columns, *value_columns(spec), "source_files", "as_of", "_run_id"]
    return df.select(*[c for c in first if c in df.columns])
