"""Tiny hand-made silver frames for tests and notebooks (like ``pyspark.testing``): masters from tuples.

``tiny_masters(spark)`` returns silver-shaped frames of a 2-district state:

    D1 (7501) ─ B1 (750101) ─ C1 (7501010001) ─ S1 75010100101 (Govt, cat 2), S2 75010100102 (Private, cat 2)
                            └ C2 (7501010002) ─ S3 75010100201 (Govt, cat 1)
    D2 (7502) ─ B2 (750201) ─ (cluster 7502010009 missing from the cluster master) ─ S4 75020100101 (Govt, cat 1)
"""
from __future__ import annotations

SCHOOLS = [  # code, name, district, block, cluster, mgmt, category, lat, lng
    (75010100101, "S1", 7501, 750101, 7501010001, 1, 2, 19.1, 73.1),
    (75010100102, "S2", 7501, 750101, 7501010001, 2, 2, 19.3, 73.3),
    (75010100201, "S3", 7501, 750101, 7501010002, 1, 1, 19.5, 73.5),
    (75020100101, "S4", 7502, 750201, 7502010009, 1, 1, 20.0, 74.0),
]
CLUSTERS = [("C1", 750101, 7501010001), ("C2", 750101, 7501010002)]
BLOCKS = [("B1", 750101, 7501, 75), ("B2", 750201, 7502, 75)]
DISTRICTS = [("D1", 7501), ("D2", 7502)]
MANAGEMENT = [(1, "Govt"), (2, "Private")]


def tiny_masters(spark, schools=SCHOOLS, clusters=CLUSTERS, blocks=BLOCKS, districts=DISTRICTS,
                 management=MANAGEMENT) -> dict:
    sm = spark.createDataFrame(
        [(c, n, 75, d, b, cl, m, cat, la, lo, "school_mst.csv") for c, n, d, b, cl, m, cat, la, lo in schools],
        "udise_sch_code long, school_name string, state_cd int, district_cd int, block_cd_1 int, cluster_cd long, "
        "sch_mgmt_id int, sch_category_id int, latitude double, longitude double, _file string")
    return {
        "school_master": sm,
        "cluster_master": spark.createDataFrame(clusters, "cluster_name string, udise_block_code int, "
                                                          "udise_cluster_code long"),
        "block_master": spark.createDataFrame(blocks, "block_name string, udise_block_code int, udise_dist_code int, "
                                                      "udise_state_code int"),
        "district_master": spark.createDataFrame(districts, "district_name string, udise_district_code int"),
        "school_management": spark.createDataFrame(management, "ManagementId int, Management string"),
    }


def hierarchy_of(spark, masters: dict | None = None):
    from cqube_spark.kpi import hierarchy as H

    m = masters or tiny_masters(spark)
    h = H.build(m["school_master"], m["cluster_master"], m["block_master"], m["district_master"],
                m["school_management"], "75", "Test State")
    # materialised like the kpis job does (it persists them): small, and read by every step of a KPI
    h = h.localCheckpoint()
    return h, {k: v.localCheckpoint() for k, v in H.level_dims(h).items()}


def attendance_frame(spark, rows, school="SchoolId", person="StudentId", ay="AcademicYear"):
    """Silver-shaped attendance: rows of (person, school, year, month, [day codes from day 1], file)."""
    days = [str(d) for d in range(1, 32)]
    data = []
    for person_id, school_id, year, month, codes, f in rows:
        first = year if month >= 6 else year - 1
        vals = (list(codes) + [None] * 31)[:31]
        data.append([person_id, school_id, f"{first}-{(first + 1) % 100:02d}", month, year, *vals, f])
    schema = (f"{person} long, {school} long, {ay} string, month int, year int, "
              + ", ".join(f"`{d}` int" for d in days) + ", _file string")
    return spark.createDataFrame(data, schema)
