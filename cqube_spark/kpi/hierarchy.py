"""The school → cluster → block → district → state hierarchy, built from the silver masters.

* one row per school (``school_master``) with its own code, name, lat/long, management and category, and
  the codes and names of its cluster, block and district (``*_master``) and of the state (``state.yaml``);
* the school master's codes are authoritative (``cluster_cd``, ``block_cd_1``, ``district_cd``); a code that
  the corresponding master does not list leaves that level empty (``NULL``) for the school: the school still
  counts at every level that exists, and is listed by :func:`exceptions`;
* :func:`level_dims` gives one row per unit of a level (id, name, lat, lng and its parents); a unit without
  coordinates (every non-school unit: the masters carry none) takes the median of its direct children's;
  a school whose direct parent is missing counts as a direct child of its nearest existing ancestor.

All ids are strings (the codes from the masters, e.g. UDISE school code ``75010100101``).
"""
from __future__ import annotations

from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cqube_spark.kpi.spec import LEVELS

HIERARCHY_COLUMNS = ["school_id", "school_name", "cluster_id", "cluster_name", "block_id", "block_name",
                     "district_id", "district_name", "state_id", "state_name", "school_management",
                     "school_category", "lat", "lng"]


def _col(df: DataFrame, name: str):
    """Column by case-insensitive name (silver keeps the spec's spelling)."""
    for c in df.columns:
        if c.lower() == name.lower():
            return F.col(f"`{c}`")
    raise KeyError(f"column {name!r} not in {df.columns}")


def _code(df: DataFrame, name: str):
    return _col(df, name).cast("long").cast("string")


def build(school_master: DataFrame, cluster_master: DataFrame | None, block_master: DataFrame | None,
          district_master: DataFrame | None, school_management: DataFrame | None,
          state_code: str, state_name: str) -> DataFrame:
    """The school-grain hierarchy (columns :data:`HIERARCHY_COLUMNS` + the raw parent codes)."""
    spark = school_master.sparkSession
    s = school_master.select(
        _code(school_master, "udise_sch_code").alias("school_id"),
        _col(school_master, "school_name").alias("school_name"),
        _code(school_master, "cluster_cd").alias("cluster_code"),
        _code(school_master, "block_cd_1").alias("block_code"),
        _code(school_master, "district_cd").alias("district_code"),
        _col(school_master, "sch_mgmt_id").cast("int").alias("mgmt_id"),
        _col(school_master, "sch_category_id").cast("string").alias("school_category"),
        _col(school_master, "latitude").cast("double").alias("lat"),
        _col(school_master, "longitude").cast("double").alias("lng"))

    def master(df, code, name, cols):
        if df is None:
            return spark.createDataFrame([], f"{cols[0]} string, {cols[1]} string")
        return (df.select(_code(df, code).alias(cols[0]), _col(df, name).alias(cols[1]))
                  .groupBy(cols[0]).agg(F.min(cols[1]).alias(cols[1])))

    clusters = master(cluster_master, "udise_cluster_code", "cluster_name", ["cluster_id", "cluster_name"])
    blocks = master(block_master, "udise_block_code", "block_name", ["block_id", "block_name"])
    districts = master(district_master, "udise_district_code", "district_name", ["district_id", "district_name"])
    if school_management is not None:
        mg = (school_management.select(_col(school_management, "ManagementId").cast("int").alias("mgmt_id"),
                                       F.trim(_col(school_management, "Management")).alias("mgmt_name"))
              .groupBy("mgmt_id").agg(F.min("mgmt_name").alias("mgmt_name")))
    else:
        mg = spark.createDataFrame([], "mgmt_id int, mgmt_name string")
    h = (s.join(F.broadcast(clusters), s.cluster_code == clusters.cluster_id, "left")
          .join(F.broadcast(blocks), s.block_code == blocks.block_id, "left")
          .join(F.broadcast(districts), s.district_code == districts.district_id, "left")
          .join(F.broadcast(mg), "mgmt_id", "left"))
    return h.select(
        "school_id", "school_name", "cluster_id", "cluster_name", "block_id", "block_name",
        "district_id", "district_name", F.lit(str(state_code)).alias("state_id"),
        F.lit(state_name).alias("state_name"),
        F.coalesce("mgmt_name", F.col("mgmt_id").cast("string")).alias("school_management"),
        "school_category", "lat", "lng", "cluster_code", "block_code", "district_code")


def exceptions(hierarchy: DataFrame) -> DataFrame:
    """Schools whose cluster, block or district is not in its master: still counted where a level exists."""
    missing = F.filter(F.array(*[F.when(F.col(f"{lv}_id").isNull(), F.lit(lv))
                                 for lv in ("cluster", "block", "district")]), lambda x: x.isNotNull())
    return (hierarchy.withColumn("missing_levels", missing)
            .where(F.size("missing_levels") > 0)
            .select("school_id", "school_name", "missing_levels", "cluster_code", "block_code", "district_code",
                    "cluster_id", "block_id", "district_id", "state_id"))


def _parents(level: str) -> list[str]:
    return list(LEVELS[LEVELS.index(level) + 1:])


def level_dims(hierarchy: DataFrame) -> dict[str, DataFrame]:
    """Per level: ``id, name, lat, lng`` + ``<parent>_id``/``<parent>_name`` of every level above."""
    dims: dict[str, DataFrame] = {}
    school_cols = ["school_id", "school_name", "lat", "lng"] + \
        [c for p in _parents("school") for c in (f"{p}_id", f"{p}_name")]
    dims["school"] = hierarchy.select(*school_cols).withColumnRenamed("school_id", "id") \
        .withColumnRenamed("school_name", "name")
    # children of a level-L unit: the units one level down, plus schools whose intermediate levels are missing
    for i, level in enumerate(LEVELS[1:], start=1):
        below = LEVELS[i - 1]
        parents = _parents(level)
        child = dims[below].select(F.col(f"{level}_id").alias("_uid"), "lat", "lng",
                                   *[F.col(f"{p}_{k}") for p in [level] + parents for k in ("id", "name")])
        orphans = []
        for j in range(1, i):       # schools whose levels between school and `level` are all missing
            gap = LEVELS[j:i]
            cond = reduce(lambda a, b: a & b, [F.col(f"{g}_id").isNull() for g in gap])
            orphans.append(hierarchy.where(cond & F.col(f"{level}_id").isNotNull())
                           .select(F.col(f"{level}_id").alias("_uid"), "lat", "lng",
                                   *[F.col(f"{p}_{k}") for p in [level] + parents for k in ("id", "name")]))
        allc = reduce(lambda a, b: a.unionByName(b), [child] + orphans).where(F.col("_uid").isNotNull())
        aggs = [F.min(f"{level}_name").alias("name"), F.median("lat").alias("lat"), F.median("lng").alias("lng")]
        aggs += [F.min(f"{p}_{k}").alias(f"{p}_{k}") for p in parents for k in ("id", "name")]
        dims[level] = allc.groupBy(F.col("_uid").alias("id")).agg(*aggs)
    return dims
