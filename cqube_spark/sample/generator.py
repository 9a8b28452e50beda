"""Deterministic sample-state generator: writes cQube emission zips for every source.

Pure standard library (csv, zipfile, random, json) -- no Spark. Output layout, under the
emission root, uses the upstream folder and file names (the same as the upstream Mock_Data
samples in ../shared/data/cqube-mock, and the cQube_Workflow README for sources that have no
sample there)::

    district_master/district_mst.zip        block_master/block_mst.zip
    cluster_master/cluster_mst.zip          school_master/school_mst.zip
    school_management/school_management_master.zip
    student_attendance/student_attendance.zip     (one zip per month when several months:
    teacher_attendance/teacher_attendance.zip      student_attendance_2020_07.zip, ...)
    inspection_master/inspection_master.zip  user_location_master/user_location_master.zip   (CRC)
    pat/periodic_exam_{mst,qst_mst,result_trans,grade_details,subject_details}.zip
    sat/semester_exam_{mst,qst_mst,result_trans,grade_details,subject_details}.zip
    infra_trans/infra_trans.zip              infra_trans/infrastructure_master.zip (weights)
    udise/udise_{sch_profile,sch_facility,sch_enr_fresh,tch_profile}.zip
    diksha/diksha_data_summary.zip  diksha/diksha_tpd.zip  diksha/diksha_tpd_mapping.zip

Each zip holds one CSV (header + rows, as configs/sources/<source>.yaml describes) and, unless
``manifest=False``, a ``manifest.json`` written after the CSV: ``{"files": [{"name", "size_bytes",
"records"}]}`` where size_bytes counts the bytes written for the CSV member and records the data
rows. Same arguments -> byte-identical zips: every random stream is seeded from
``(seed, source, month)``, rows are emitted in sorted key order and zip member timestamps are
fixed.

By default the output is clean: it validates against the specs with zero quarantined rows
(schools without attendance in a month are "exceptions", not errors). ``inject_exceptions=True``
adds a few schools that are not in the school master to the transactional files, so that the
unknown-foreign-key path can be exercised.
"""

from __future__ import annotations

import calendar
import csv
import io
import json
import os
import random
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import date, timedelta

from cqube_spark.sample.udise_columns import UDISE_TABLES, udise_columns

STATE_CODE = "75"
STATE_NAME = "Test State"
FIXED_ZIP_TIME = (2020, 1, 1, 0, 0, 0)
MANAGEMENT = ["Govt", "Tribal", "Granted", "Model", "Social", "Private", "Central"]
SCHOOL_CATEGORIES = [1, 2, 3, 6, 7, 8, 10, 11]  # UDISE+ codes; class range follows the category
CATEGORY_CLASSES = {1: (1, 5), 2: (1, 8), 3: (1, 12), 6: (1, 10), 7: (6, 12), 8: (9, 10), 10: (9, 12), 11: (11, 12)}
EXAM_GRADES = list(range(3, 9))
SUBJECTS = [(1, "Subject1"), (2, "Subject2"), (3, "Subject3"), (4, "Subject4"), (5, "Subject5"), (6, "Subject6")]
EXAM_SUBJECTS = [1, 2]            # subjects examined each month (as in the upstream sample)
RESULT_STUDENTS_PER_GRADE = 10   # cap on students per school and grade writing PAT/SAT (keeps big runs fast)
INFRA_ITEMS = [  # infra_trans column, category, weight (active weights sum to 100)
    ("NoOfToilet", "toilet", 10), ("handwash_yn", "toilet", 5), ("HaveCCTV", "monitoring", 5),
    ("HaveLibrary", "study", 15), ("HaveDrinkingWater", "water", 15), ("tap_water_functional", "water", 5),
    ("HaveElectricity", "energy resource", 15), ("playground_yn", "play ground", 10),
    ("boys_functional_toilet", "toilet", 5), ("girls_functional_toilet", "toilet", 10),
    ("HaveCWSNToilet", "toilet", 5),
]
DIKSHA_SUBJECTS = ["Science", "Social Science", "Maths", "Hindi", "English"]

ATT_DAYS = [str(d) for d in range(1, 32)]
STUDENT_ATTENDANCE_HEADER = ["StudentAttendanceId", "StudentId", "SchoolId", "AadhaarUID", "AcademicYear", "Month"] + ATT_DAYS
TEACHER_ATTENDANCE_HEADER = ["TCHCD", "SCHCD", "AC_YEAR", "MONTH"] + ATT_DAYS
SCHOOL_MST_HEADER = [
    "udise_sch_code", "school_name", "state_cd", "district_cd", "block_cd_1", "vill_ward_cd", "cluster_cd",
    "habitation_cd", "pincode", "panchayet_cd", "block_cd_2", "assembly_cons_cd", "parl_cons_cd", "municipality_cd",
    "city_cd", "sch_loc_r_u", "sch_category_id", "sch_type", "sch_mgmt_id", "class_frm", "class_to",
    "school_status", "sch_id_merged", "sch_merged_year", "inityear", "latitude", "longitude", "ppsec_yn"]
INSPECTION_HEADER = [
    "InspectionId", "ObserverId", "ObserverName", "SchoolId", "BeginningStandard", "EndStandard", "TotalClassRooms",
    "VisitDate", "VisitStartTime", "VisitEndTime", "ActualClassRooms", "TotalSuggestionLastMonth",
    "ResolvedFromThat", "IsInspection", "ReasonType", "ReasonDesc", "TotalScore", "Score", "IsOffline"]
USER_LOCATION_HEADER = ["UserLocationMasterId", "UserMasterId", "SchoolId", "InspectionId", "Latitude", "Longitude",
                        "InSchoolLocation", "CreatedOn"]
EXAM_MST_HEADER = ["exam_id", "medium", "standard", "division", "subject_id", "exam_type_id", "exam_code", "exam_date",
                   "total_questions", "total_marks", "assessment_year", "exam_type", "subject_name"]
QST_MST_HEADER = ["question_id", "exam_id", "indicator_id", "indicator_title", "indicator", "question_title",
                  "question", "question_marks"]
RESULT_HEADER = ["id", "exam_id", "exam_code", "student_id", "student_uid", "school_id", "studying_class", "section",
                 "question_id", "obtained_marks"]
INFRA_HEADER = ["DistrictId", "DistrictName", "BlockId", "BlockName", "ClusterId", "ClusterName", "school_id"] + \
               [i[0] for i in INFRA_ITEMS]
DIKSHA_SUMMARY_HEADER = [
    "Date", "dimensions_pdata_id", "dimensions_pdata_pid", "dimensions_mode", "dimensions_type", "content_name",
    "content_board", "content_mimetype", "content_medium", "content_subject", "content_created_for", "object_id",
    "object_type", "object_rollup_l1", "derived_loc_state", "derived_loc_district", "user_signin_type",
    "user_login_type", "collection_name", "collection_board", "collection_type", "collection_medium",
    "collection_subject", "collection_created_for", "total_count", "total_timespent"]
DIKSHA_TPD_HEADER = ["Collection Id", "Collection Name", "state", "Enrolment Date", "Batch Id", "Batch Name",
                     "completion Date", "certificate status", "Org Name", "progress", "total score", "user uuid"]
DIKSHA_MAPPING_HEADER = ["Diksha UUID", "state", "District", "School Name", "School UDISE ID", "status"]

# source -> (emission folder, file stem, per-month?)
SOURCES: dict[str, tuple[str, str, bool]] = {
    "district_master": ("district_master", "district_mst", False),
    "block_master": ("block_master", "block_mst", False),
    "cluster_master": ("cluster_master", "cluster_mst", False),
    "school_master": ("school_master", "school_mst", False),
    "school_management": ("school_management", "school_management_master", False),
    "student_attendance": ("student_attendance", "student_attendance", True),
    "teacher_attendance": ("teacher_attendance", "teacher_attendance", True),
    "inspection_master": ("inspection_master", "inspection_master", True),
    "user_location_master": ("user_location_master", "user_location_master", True),
    "periodic_exam_mst": ("pat", "periodic_exam_mst", False),
    "periodic_exam_qst_mst": ("pat", "periodic_exam_qst_mst", False),
    "periodic_exam_result_trans": ("pat", "periodic_exam_result_trans", True),
    "periodic_exam_grade_details": ("pat", "periodic_exam_grade_details", False),
    "periodic_exam_subject_details": ("pat", "periodic_exam_subject_details", False),
    "semester_exam_mst": ("sat", "semester_exam_mst", False),
    "semester_exam_qst_mst": ("sat", "semester_exam_qst_mst", False),
    "semester_exam_result_trans": ("sat", "semester_exam_result_trans", True),
    "semester_exam_grade_details": ("sat", "semester_exam_grade_details", False),
    "semester_exam_subject_details": ("sat", "semester_exam_subject_details", False),
    "infra_trans": ("infra_trans", "infra_trans", False),
    "infrastructure_master": ("infra_trans", "infrastructure_master", False),
    "udise_sch_profile": ("udise", "udise_sch_profile", False),
    "udise_sch_facility": ("udise", "udise_sch_facility", False),
    "udise_sch_enr_fresh": ("udise", "udise_sch_enr_fresh", False),
    "udise_tch_profile": ("udise", "udise_tch_profile", False),
    "diksha_summary_rollup": ("diksha", "diksha_data_summary", False),
    "diksha_tpd": ("diksha", "diksha_tpd", False),
    "diksha_tpd_mapping": ("diksha", "diksha_tpd_mapping", False),
}
GROUPS = {
    "masters": ["district_master", "block_master", "cluster_master", "school_master", "school_management"],
    "attendance": ["student_attendance", "teacher_attendance"],
    "crc": ["inspection_master", "user_location_master"],
    "pat": [s for s in SOURCES if s.startswith("periodic_")],
    "sat": [s for s in SOURCES if s.startswith("semester_")],
    "infra": ["infra_trans", "infrastructure_master"],
    "udise": [s for s in SOURCES if s.startswith("udise_")],
    "diksha": ["diksha_summary_rollup", "diksha_tpd", "diksha_tpd_mapping"],
}


# ----------------------------------------------------------------------------- model

@dataclass
class School:
    code: str
    name: str
    district: "Unit"
    block: "Unit"
    cluster: "Unit"
    lat: str
    lon: str
    mgmt: int
    category: int
    students: list[tuple[str, int]] = field(default_factory=list)   # (student id, grade)
    teachers: list[str] = field(default_factory=list)
    present_rate: float = 0.88


@dataclass
class Unit:
    code: str
    name: str


@dataclass
class State:
    districts: list[Unit]
    blocks: list[tuple[Unit, Unit]]            # (block, district)
    clusters: list[tuple[Unit, Unit]]          # (cluster, block)
    schools: list[School]
    ghost_schools: list[School]                # only with inject_exceptions: not in the master


def _rng(seed: int, *parts) -> random.Random:
    return random.Random(":".join([str(seed)] + [str(p) for p in parts]))


def build_state(schools: int, students_per_school: int, seed: int, inject_exceptions: bool = False) -> State:
    """The hierarchy: 4 districts x 2 blocks x >=2 clusters (as in the sample), schools spread evenly."""
    if schools < 1 or students_per_school < 1:
        raise ValueError("schools and students_per_school must be >= 1")
    if students_per_school > 9999:
        raise ValueError("students_per_school must be <= 9999 (4-digit student suffix)")
    rng = _rng(seed, "state")
    n_dist, n_blk = 4, 2
    per_block_clusters = max(2, -(-schools // (n_dist * n_blk * 999)))
    districts, blocks, clusters = [], [], []
    for d in range(1, n_dist + 1):
        dist = Unit(f"{STATE_CODE}{d:02d}", f"D{d}")
        districts.append(dist)
        for b in range(1, n_blk + 1):
            blk = Unit(f"{dist.code}{b:02d}", f"D{d}B{b}")
            blocks.append((blk, dist))
            for c in range(1, per_block_clusters + 1):
                clusters.append((Unit(f"{blk.code}{c:04d}", f"D{d}B{b}C{c}"), blk))
    n_cl = len(clusters)
    base, extra = divmod(schools, n_cl)
    dist_of = {blk.code: dist for blk, dist in blocks}
    out: list[School] = []
    used_ll: set[tuple[str, str]] = set()
    for ci, (cl, blk) in enumerate(clusters):
        dist = dist_of[blk.code]
        d_idx, b_idx = int(dist.code[2:]), int(blk.code[4:])
        c_idx = int(cl.code[6:])
        center_lat = 19.0 + 0.9 * (d_idx - 1) + 0.3 * (b_idx - 1)
        center_lon = 73.5 + 0.8 * (d_idx - 1) + 0.25 * (c_idx - 1)
        for s in range(1, base + (1 if ci < extra else 0) + 1):
            code = f"{blk.code}{c_idx:02d}{s:03d}"
            while True:
                lat = f"{center_lat + rng.uniform(-0.25, 0.25):.7f}"
                lon = f"{center_lon + rng.uniform(-0.25, 0.25):.7f}"
                if (lat, lon) not in used_ll:
                    used_ll.add((lat, lon))
                    break
            out.append(School(code=code, name=f"{cl.name}S{s}", district=dist, block=blk, cluster=cl, lat=lat,
                              lon=lon, mgmt=rng.randint(1, len(MANAGEMENT)), category=rng.choice(SCHOOL_CATEGORIES),
                              present_rate=rng.uniform(0.80, 0.95)))
    ghosts: list[School] = []
    if inject_exceptions:
        for g, (cl, blk) in enumerate(clusters[:3]):
            dist = dist_of[blk.code]
            ghosts.append(School(code=f"{blk.code}{int(cl.code[6:]):02d}{990 + g:03d}", name=f"{cl.name}S{990 + g}",
                                 district=dist, block=blk, cluster=cl, lat="20.0000000", lon="75.0000000", mgmt=1,
                                 category=2))
    n_teachers = max(3, min(20, students_per_school // 20))
    for sch in out + ghosts:
        sch.students = [(f"{sch.code}{k + 1:04d}", 1 + (k * 8) // students_per_school)
                        for k in range(students_per_school)]
        sch.teachers = [f"{sch.code}{t + 1:03d}" for t in range(n_teachers)]
    return State(districts, blocks, clusters, out, ghosts)


# ----------------------------------------------------------------------------- writing

class _CountingWriter(io.RawIOBase):
    """Forwards bytes to the zip member stream and counts them (manifest size_bytes)."""

    def __init__(self, raw):
        self.raw, self.count = raw, 0

    def writable(self):
        return True

    def write(self, b):
        self.raw.write(b)
        self.count += len(b)
        return len(b)

    def close(self):
        if not self.closed:
            self.raw.close()
        super().close()


def _zipinfo(name: str) -> zipfile.ZipInfo:
    zi = zipfile.ZipInfo(name, date_time=FIXED_ZIP_TIME)
    zi.compress_type = zipfile.ZIP_DEFLATED
    zi.create_system = 3
    zi.external_attr = 0o644 << 16
    return zi


class _Emitter:
    def __init__(self, out_dir: str, manifest: bool):
        self.out_dir, self.manifest, self.files = out_dir, manifest, []

    def write(self, source: str, folder: str, stem: str, header: list[str], rows, delimiter: str = "|",
              raw_lines: bool = False) -> dict:
        """Write ``<folder>/<stem>.zip`` holding ``<stem>.csv`` (+ manifest.json); rows is an iterable."""
        os.makedirs(os.path.join(self.out_dir, folder), exist_ok=True)
        rel = f"{folder}/{stem}.zip"
        path = os.path.join(self.out_dir, folder, f"{stem}.zip")
        member = f"{stem}.csv"
        records = 0
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            counter = _CountingWriter(zf.open(_zipinfo(member), "w"))
            text = io.TextIOWrapper(io.BufferedWriter(counter, 1 << 20), encoding="utf-8", newline="")
            if raw_lines:     # pre-formatted lines (for the quoted school management master)
                text.write(header[0] + "\n")
                for line in rows:
                    text.write(line + "\n")
                    records += 1
            else:
                w = csv.writer(text, delimiter=delimiter, lineterminator="\n")
                w.writerow(header)
                for row in rows:
                    w.writerow(row)
                    records += 1
            text.flush()
            size = counter.count
            text.close()
            if self.manifest:
                man = {"files": [{"name": member, "records": records, "size_bytes": size}]}
                zf.writestr(_zipinfo("manifest.json"), json.dumps(man, indent=2, sort_keys=True) + "\n")
        entry = {"source": source, "path": rel, "member": member, "records": records, "size_bytes": size}
        self.files.append(entry)
        return entry


# ----------------------------------------------------------------------------- helpers

def parse_months(months) -> list[tuple[int, int]]:
    """'2020-07' / ['2020-07', '2020-08'] / '2020-07,2020-08' -> sorted unique [(2020, 7), ...]."""
    if months is None:
        months = ["2020-07"]
    if isinstance(months, str):
        months = [m for m in months.split(",") if m.strip()]
    out = set()
    for m in months:
        if isinstance(m, tuple):
            y, mo = m
        else:
            y, mo = (int(x) for x in str(m).strip().split("-"))
        if not 1 <= mo <= 12:
            raise ValueError(f"bad month {m!r}")
        out.add((int(y), int(mo)))
    return sorted(out)


def month_range(start: str, count: int) -> list[str]:
    y, m = (int(x) for x in start.split("-"))
    res = []
    for _ in range(count):
        res.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return res


def academic_year(y: int, m: int) -> str:
    """Academic year label: June..December of Y -> 'Y-(Y+1)', January..May -> '(Y-1)-Y'."""
    start = y if m >= 6 else y - 1
    return f"{start}-{(start + 1) % 100:02d}"


def _working_days(y: int, m: int, holidays: set[int]) -> list[int]:
    n = calendar.monthrange(y, m)[1]
    return [d for d in range(1, n + 1) if date(y, m, d).weekday() != 6 and d not in holidays]


def _state_holiday(seed: int, y: int, m: int) -> int:
    n = calendar.monthrange(y, m)[1]
    cands = [d for d in range(1, n + 1) if date(y, m, d).weekday() != 6]
    return _rng(seed, "holiday", y, m).choice(cands)


def _exception_schools(seed: int, st: State, y: int, m: int) -> set[str]:
    """~3% of schools (at least 1 when there are 20+) send no attendance in a month."""
    n = len(st.schools)
    k = max(1 if n >= 20 else 0, round(n * 0.03))
    return set(_rng(seed, "exceptions", y, m).sample([s.code for s in st.schools], k)) if k else set()


def _selected(sources) -> list[str]:
    if sources is None or sources == "all" or sources == ["all"]:
        return list(SOURCES)
    if isinstance(sources, str):
        sources = [s.strip() for s in sources.split(",") if s.strip()]
    out: list[str] = []
    for s in sources:
        if s == "all":
            names = list(SOURCES)
        elif s in GROUPS:
            names = GROUPS[s]
        elif s in SOURCES:
            names = [s]
        else:
            raise ValueError(f"unknown source {s!r}; known: {', '.join(list(SOURCES) + list(GROUPS))}")
        out += [n for n in names if n not in out]
    return [s for s in SOURCES if s in out]


# ----------------------------------------------------------------------------- sources

def _masters(em: _Emitter, st: State, want: list[str]) -> None:
    if "district_master" in want:
        em.write("district_master", "district_master", "district_mst", ["district_name", "udise_district_code", "inityear", "is_active"],
                 ([d.name, d.code, "1995-96", "1"] for d in st.districts))
    if "block_master" in want:
        em.write("block_master", "block_master", "block_mst", ["block_name", "udise_block_code", "udise_dist_code", "udise_state_code"],
                 ([b.name, b.code, d.code, STATE_CODE] for b, d in st.blocks))
    if "cluster_master" in want:
        em.write("cluster_master", "cluster_master", "cluster_mst", ["cluster_name", "udise_block_code", "udise_cluster_code"],
                 ([c.name, b.code, c.code] for c, b in st.clusters))
    if "school_management" in want:
        em.write("school_management", "school_management", "school_management_master",
                 ['"ManagementId"|"Management"|default_option'],
                 (f'{i}|"{m}"|' for i, m in enumerate(MANAGEMENT, start=1)), raw_lines=True)
    if "school_master" in want:
        def rows():
            for s in st.schools:
                lo, hi = CATEGORY_CLASSES[s.category]
                pin = 400000 + int(s.district.code[2:]) * 1000 + int(s.cluster.code[-2:])
                yield [s.code, s.name, STATE_CODE, s.district.code, s.block.code, f"{s.block.code}001", s.cluster.code,
                       "", pin, "", "", "", "", "", "", 1 if int(s.code[-1]) % 4 else 2, s.category, 3, s.mgmt, lo, hi,
                       "", "", "", "", s.lat, s.lon, ""]
        em.write("school_master", "school_master", "school_mst", SCHOOL_MST_HEADER, rows())


def _day_pools(rng: random.Random, y: int, m: int, state_holiday: int, n_pool: int, present: float,
               codes: list[tuple[str, float]], local_holiday: int | None) -> list[tuple[str, ...]]:
    """n_pool day-code patterns (31 strings) for one school-month: Sundays NULL, holidays 5."""
    ndays = calendar.monthrange(y, m)[1]
    kinds = []
    for d in range(1, 32):
        if d > ndays or date(y, m, d).weekday() == 6:
            kinds.append("NULL")
        elif d == state_holiday or d == local_holiday:
            kinds.append("5")
        else:
            kinds.append(None)
    pool = []
    for _ in range(n_pool):
        row = []
        for k in kinds:
            if k is not None:
                row.append(k)
                continue
            r = rng.random()
            if r < present:
                row.append("1")
            else:
                r = (r - present) / (1.0 - present)
                acc = 0.0
                val = "NULL"
                for code, p in codes:
                    acc += p
                    if r < acc:
                        val = code
                        break
                row.append(val)
        pool.append(tuple(row))
    return pool


def _student_attendance(em: _Emitter, st: State, months, seed: int, per_month_files: bool) -> None:
    offset = 100
    for (y, m) in months:
        ay = academic_year(y, m)
        hol = _state_holiday(seed, y, m)
        skip = _exception_schools(seed, st, y, m)
        mo = str(m)

        def rows(offset=offset):
            att_id = offset
            for sch in sorted(st.schools + st.ghost_schools, key=lambda s: s.code):
                if sch.code in skip:
                    continue
                rng = _rng(seed, "sa", sch.code, y, m)
                local = rng.choice(_working_days(y, m, {hol})) if rng.random() < 0.1 else None
                pool = _day_pools(rng, y, m, hol, 48, sch.present_rate - 0.02, [("2", 0.82), ("NULL", 0.18)], local)
                pick = rng.randrange
                for sid, _grade in sch.students:
                    yield (att_id, sid, sch.code, sid, ay, mo) + pool[pick(48)]
                    att_id += 1

        stem = f"student_attendance_{y:04d}_{m:02d}" if per_month_files else "student_attendance"
        entry = em.write("student_attendance", "student_attendance", stem, STUDENT_ATTENDANCE_HEADER, rows())
        offset += entry["records"]


def _teacher_attendance(em: _Emitter, st: State, months, seed: int, per_month_files: bool) -> None:
    codes = [("2", 0.35), ("3", 0.25), ("4", 0.1), ("6", 0.15), ("7", 0.05), ("NULL", 0.10)]
    for (y, m) in months:
        ay = academic_year(y, m)
        hol = _state_holiday(seed, y, m)
        skip = _exception_schools(seed, st, y, m)
        mo = str(m)

        def rows():
            for sch in sorted(st.schools + st.ghost_schools, key=lambda s: s.code):
                if sch.code in skip:
                    continue
                rng = _rng(seed, "ta", sch.code, y, m)
                pool = _day_pools(rng, y, m, hol, 16, 0.9, codes, None)
                for t in sch.teachers:
                    yield (t, sch.code, ay, mo) + pool[rng.randrange(16)]

        stem = f"teacher_attendance_{y:04d}_{m:02d}" if per_month_files else "teacher_attendance"
        em.write("teacher_attendance", "teacher_attendance", stem, TEACHER_ATTENDANCE_HEADER, rows())


def _crc(em: _Emitter, st: State, months, seed: int, per_month_files: bool, want: list[str]) -> None:
    insp_id, loc_id = 1, 1
    observer = {cl.code: (1000 + i, f"CRC {cl.name}") for i, (cl, _b) in enumerate(st.clusters)}
    for (y, m) in months:
        hol = _state_holiday(seed, y, m)
        wdays = _working_days(y, m, {hol})
        visits, locs = [], []
        for sch in sorted(st.schools + st.ghost_schools, key=lambda s: s.code):
            rng = _rng(seed, "crc", sch.code, y, m)
            if rng.random() > 0.7:
                continue
            obs_id, obs_name = observer[sch.cluster.code]
            lo, hi = CATEGORY_CLASSES.get(sch.category, (1, 8))
            for day in sorted(rng.sample(wdays, min(len(wdays), rng.choice([1, 1, 2, 3])))):
                h, mi = rng.randint(9, 13), rng.choice([0, 15, 30, 45])
                rooms = rng.randint(3, 12)
                score = rng.randint(40, 100)
                visits.append([insp_id, obs_id, obs_name, sch.code, lo, hi, rooms, f"{y:04d}-{m:02d}-{day:02d}",
                               f"{h:02d}:{mi:02d}:00", f"{h + 1:02d}:{mi:02d}:00", rng.randint(1, rooms),
                               rng.randint(0, 5), rng.randint(0, 3), 1, "", "", "100", str(score),
                               "false" if rng.random() < 0.9 else "true"])
                inside = rng.random() < 0.92
                jit = 0.0002 if inside else 0.02
                locs.append([loc_id, obs_id, sch.code, insp_id, f"{float(sch.lat) + rng.uniform(-jit, jit):.7f}",
                             f"{float(sch.lon) + rng.uniform(-jit, jit):.7f}", "true" if inside else "false",
                             f"{y:04d}-{m:02d}-{day:02d} {h:02d}:{mi:02d}:00"])
                insp_id += 1
                loc_id += 1
        if "inspection_master" in want:
            stem = f"inspection_master_{y:04d}_{m:02d}" if per_month_files else "inspection_master"
            em.write("inspection_master", "inspection_master", stem, INSPECTION_HEADER, visits)
        if "user_location_master" in want:
            stem = f"user_location_master_{y:04d}_{m:02d}" if per_month_files else "user_location_master"
            em.write("user_location_master", "user_location_master", stem, USER_LOCATION_HEADER, locs)


def _exam_day(y: int, m: int, hol: int, nth_from_end: int) -> int:
    wd = _working_days(y, m, {hol})
    return wd[-(nth_from_end + 1)] if len(wd) > nth_from_end else wd[-1]


def _assessment(em: _Emitter, st: State, months, seed: int, per_month_files: bool, want: list[str],
                prefix: str, code: str, folder: str) -> None:
    sat = prefix == "semester"
    exams, questions = [], []
    exam_id, q_id = 1, 1
    by_month: dict[tuple[int, int], list[tuple[list, list]]] = {}
    for (y, m) in months:
        hol = _state_holiday(seed, y, m)
        rng = _rng(seed, prefix, "mst", y, m)
        for grade in EXAM_GRADES:
            for j, subj in enumerate(EXAM_SUBJECTS):
                d = _exam_day(y, m, hol, len(EXAM_SUBJECTS) - 1 - j)
                ecode = f"{code}{grade:02d}{subj:02d}{d:02d}{m:02d}{y:04d}"
                marks = [rng.choice([2, 3, 4, 5, 5]) for _ in range(5)]
                row = [exam_id, "Hindi", grade, "A", subj, 2, ecode, f"{y:04d}-{m:02d}-{d:02d}", len(marks),
                       sum(marks), academic_year(y, m), "Semester Assessment" if sat else "Periodic Assessment",
                       dict(SUBJECTS)[subj]]
                if sat:
                    row.append(1 if 6 <= m <= 11 else 2)
                exams.append(row)
                qs = []
                for k, mk in enumerate(marks, start=1):
                    questions.append([q_id, exam_id, k, f"LO-{k}", f"LO-{k}", f"LO{grade}{'H' if subj == 1 else 'M'}-{k}",
                                      f"LO-{k}", mk])
                    qs.append((q_id, mk))
                    q_id += 1
                by_month.setdefault((y, m), []).append((row, qs))
                exam_id += 1
    if f"{prefix}_exam_mst" in want:
        em.write(f"{prefix}_exam_mst", folder, f"{prefix}_exam_mst", EXAM_MST_HEADER + (["semester"] if sat else []), exams)
    if f"{prefix}_exam_qst_mst" in want:
        em.write(f"{prefix}_exam_qst_mst", folder, f"{prefix}_exam_qst_mst", QST_MST_HEADER, questions)
    if f"{prefix}_exam_subject_details" in want:
        em.write(f"{prefix}_exam_subject_details", folder, f"{prefix}_exam_subject_details", ["subject_id", "subject", "grade"],
                 ([sid, name, g] for sid, name in SUBJECTS for g in EXAM_GRADES))
    if f"{prefix}_exam_grade_details" in want:
        def grade_rows():
            for sch in st.schools:
                for g in EXAM_GRADES:
                    yield [sch.code, g, sum(1 for _s, gr in sch.students if gr == g)]
        em.write(f"{prefix}_exam_grade_details", folder, f"{prefix}_exam_grade_details", ["school_id", "grade", "students_count"],
                 grade_rows())
    if f"{prefix}_exam_result_trans" not in want:
        return
    rid = 1
    for (y, m) in months:
        exams_m = by_month[(y, m)]

        def rows(start=rid):
            r_id = start
            for sch in sorted(st.schools + st.ghost_schools, key=lambda s: s.code):
                rng = _rng(seed, prefix, "res", sch.code, y, m)
                ability = rng.uniform(0.45, 0.85)
                for g in EXAM_GRADES:
                    studs = [s for s, gr in sch.students if gr == g][:RESULT_STUDENTS_PER_GRADE]
                    for row, qs in exams_m:
                        if row[2] != g:
                            continue
                        exam_id_, ecode = row[0], row[6]
                        for sid in studs:
                            if rng.random() < 0.08:      # absent for this exam
                                continue
                            p = min(1.0, max(0.0, ability + rng.uniform(-0.25, 0.25)))
                            for qid, mk in qs:
                                got = int(p * mk + rng.random())      # 0 <= got <= mk, mean p * mk
                                yield [r_id, exam_id_, ecode, sid, sid, sch.code, g, "A", qid, got]
                                r_id += 1

        stem = f"{prefix}_exam_result_trans_{y:04d}_{m:02d}" if per_month_files else f"{prefix}_exam_result_trans"
        entry = em.write(f"{prefix}_exam_result_trans", folder, stem, RESULT_HEADER, rows())
        rid += entry["records"]


def _infra(em: _Emitter, st: State, seed: int, want: list[str]) -> None:
    if "infra_trans" in want:
        def rows():
            for s in st.schools:
                r = _rng(seed, "infra", s.code)
                water = 1 if r.random() < 0.97 else 0
                boys = r.choice(["", "2", "3", "4"])
                girls = r.choice(["", "2", "3"])
                yield [s.district.code, s.district.name, s.block.code, s.block.name, s.cluster.code, s.cluster.name,
                       s.code, r.choice([0, 1, 1, 1, 2]), int(r.random() < 0.9), int(r.random() < 0.2),
                       int(r.random() < 0.95), water, r.choice([0, 4, 7, 9]) if water else 0, int(r.random() < 0.97),
                       int(r.random() < 0.5), boys, girls, int(r.random() < 0.55)]
        em.write("infra_trans", "infra_trans", "infra_trans", INFRA_HEADER, rows())
    if "infrastructure_master" in want:
        em.write("infrastructure_master", "infra_trans", "infrastructure_master",
                 ["infrastructure", "infrastructure_category", "score", "status"],
                 ([n, cat, w, 1] for n, cat, w in INFRA_ITEMS), delimiter=",")


def _udise_value(rng: random.Random, name: str, typ: str, ay: str) -> str:
    if name == "ac_year":
        return ay
    if typ == "i":
        if name.endswith("_yn"):
            return "1" if rng.random() < 0.6 else "2"
        if rng.random() < 0.1:
            return ""
        return str(rng.randint(0, 40))
    if typ == "l":
        return str(rng.randint(1, 10**9))
    if typ == "d":
        return f"{rng.uniform(0.5, 8.0):.1f}"
    if typ == "D":
        return f"{rng.randint(1965, 1995)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if "year" in name:
        return str(rng.randint(1950, 2015))
    return "" if rng.random() < 0.7 else f"{name.split('_')[0].title()} {rng.randint(1, 99)}"


def _udise(em: _Emitter, st: State, months, seed: int, want: list[str]) -> None:
    ay = academic_year(*months[0])
    for table in [t for t in UDISE_TABLES if t in want]:
        cols = udise_columns(table)
        header = [c for c, _t in cols]

        def rows(table=table, cols=cols):
            for s in st.schools:
                rng = _rng(seed, table, s.code)
                if table == "udise_sch_enr_fresh":
                    for item_id in range(1, 5):          # item_group 1 = social category (gen, sc, st, obc)
                        vals = [s.code, ay, "1", str(item_id)]
                        vals += [str(rng.randint(0, 25)) for _ in cols[4:]]
                        yield vals
                elif table == "udise_tch_profile":
                    for n, t in enumerate(s.teachers, start=1):
                        vals = []
                        for c, ty in cols:
                            if c == "udise_sch_code":
                                vals.append(s.code)
                            elif c == "tch_code":
                                vals.append(t)
                            elif c == "name":
                                vals.append(f"Teacher {s.name}-{n}")
                            elif c == "gender":
                                vals.append(str(rng.choice([1, 2])))
                            elif c == "yoj_pres_sch":
                                vals.append(str(rng.randint(2000, 2020)))
                            else:
                                vals.append(_udise_value(rng, c, ty, ay))
                        yield vals
                else:
                    yield [s.code if c == "udise_sch_code" else _udise_value(rng, c, ty, ay) for c, ty in cols]

        em.write(table, "udise", table, header, rows())


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _diksha(em: _Emitter, st: State, months, seed: int, want: list[str]) -> None:
    rng = _rng(seed, "diksha", "users")
    users = {s.code: _uuid(rng) for s in st.schools}
    if "diksha_tpd_mapping" in want:
        em.write("diksha_tpd_mapping", "diksha", "diksha_tpd_mapping", DIKSHA_MAPPING_HEADER,
                 sorted(([users[s.code], "TestState", s.district.name, s.name, s.code, "SUBMITTED"] for s in st.schools),
                        key=lambda r: r[0]), delimiter=",")
    if "diksha_tpd" in want:
        r = _rng(seed, "diksha", "tpd")
        y0, m0 = months[0]
        rows = []
        all_users = sorted(users.values())
        for cid in range(1, 21):
            grade, subj = 3 + (cid % 8), DIKSHA_SUBJECTS[cid % len(DIKSHA_SUBJECTS)]
            enrol = date(y0, m0, 1) + timedelta(days=r.randint(0, 20))
            for u in r.sample(all_users, min(len(all_users), 25)):
                progress = r.choice([0, 17.5, 25, 50, 75, 100])
                done = enrol + timedelta(days=r.randint(1, 30))
                status = "Issued" if progress == 100 else ("" if progress == 0 else "Failed")
                rows.append([cid, f"Class {grade} {subj}", STATE_NAME, enrol.strftime("%d/%m/%Y"), 100 + cid,
                             f"Test Batch{cid}", done.strftime("%d/%m/%Y") if progress == 100 else "", status,
                             f"Test Org{cid}", progress, r.choice([20, 25, 30, 40, 50]), u])
        em.write("diksha_tpd", "diksha", "diksha_tpd", DIKSHA_TPD_HEADER, rows, delimiter=",")
    if "diksha_summary_rollup" in want:
        r = _rng(seed, "diksha", "summary")
        rows = []
        contents = [(f"do_{10 + i}", f"do_{10000 + i}", DIKSHA_SUBJECTS[i % 5], 1 + i % 10) for i in range(40)]
        combos = [(si, lo) for si in ("Self-Signed-In", "Anonymous") for lo in ("student", "teacher", "other")]
        for (y, m) in months:
            for day in range(1, calendar.monthrange(y, m)[1] + 1, 7):
                dt = f"{y:04d}-{m:02d}-{day:02d}"
                for i, (oid, roll, subj, grade) in enumerate(contents):
                    for d in st.districts:
                        for si, lo in sorted(r.sample(combos, 2)):
                            rows.append([dt, "prod.diksha.app", "sunbird.app.contentplayer", "", "", f"content{i + 1}",
                                         "Test Board", "video/mp4", "Hindi", subj, "1000", oid, "", roll, STATE_NAME,
                                         d.name, si, lo, f"Class {grade} {subj}", "Test Board", "TextBook", "Hindi",
                                         subj, "1000", r.randint(1, 90), f"{r.uniform(5, 2500):.2f}"])
        em.write("diksha_summary_rollup", "diksha", "diksha_data_summary", DIKSHA_SUMMARY_HEADER, rows, delimiter=",")


# ----------------------------------------------------------------------------- entry point

def generate(out_dir: str, schools: int = 160, students_per_school: int = 30, months=("2020-07",), seed: int = 42,
             sources="all", manifest: bool = True, inject_exceptions: bool = False) -> dict:
    """Write a sample state under ``out_dir`` (the emission root). Returns a summary::

        {"out_dir": ..., "months": ["2020-07"], "schools": 160, "students": 4800,
         "files": [{"source", "path", "member", "records", "size_bytes"}, ...],
         "rows": {source: total records}}
    """
    ms = parse_months(list(months) if not isinstance(months, str) else months)
    want = _selected(sources)
    st = build_state(schools, students_per_school, seed, inject_exceptions)
    em = _Emitter(out_dir, manifest)
    per_month = len(ms) > 1
    _masters(em, st, want)
    if "student_attendance" in want:
        _student_attendance(em, st, ms, seed, per_month)
    if "teacher_attendance" in want:
        _teacher_attendance(em, st, ms, seed, per_month)
    if any(s in want for s in GROUPS["crc"]):
        _crc(em, st, ms, seed, per_month, want)
    if any(s in want for s in GROUPS["pat"]):
        _assessment(em, st, ms, seed, per_month, want, "periodic", "PAT", "pat")
    if any(s in want for s in GROUPS["sat"]):
        _assessment(em, st, ms, seed, per_month, want, "semester", "SAT", "sat")
    _infra(em, st, seed, want)
    _udise(em, st, ms, seed, want)
    if any(s in want for s in GROUPS["diksha"]):
        _diksha(em, st, ms, seed, want)
    rows: dict[str, int] = {}
    for f in em.files:
        rows[f["source"]] = rows.get(f["source"], 0) + f["records"]
    return {"out_dir": out_dir, "months": [f"{y:04d}-{m:02d}" for y, m in ms], "schools": len(st.schools),
            "students": len(st.schools) * students_per_school, "files": em.files, "rows": rows}
