"""Every row-level rule fails for the right reason on a tiny hostile line (pure DataFrame → DataFrame)."""
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from cqube_spark.quality import dedupe, expectations, rules
from cqube_spark.quality.spec import parse_spec
from cqube_spark.sources import attendance, exams

SPEC = parse_spec({
    "name": "t", "file_pattern": "^t", "delimiter": "|", "null_values": ["NULL", ""],
    "columns": [
        {"name": "id", "type": "long", "mandatory": True, "max_length": 5, "pattern": "^[0-9]+$"},
        {"name": "code", "type": "int", "domain": [1, 2, 5]},
        {"name": "marks", "type": "double", "min": 0},
        {"name": "max_marks", "type": "double"},
        {"name": "lat", "type": "double"},
        {"name": "lon", "type": "double"},
        {"name": "school", "type": "long"},
    ],
    "keys": ["id"],
    "foreign_keys": [{"column": "school", "references": {"source": "s", "column": "v"}}],
    "checks": [{"rule": "latlong_valid", "columns": ["lat", "lon"]},
               {"rule": "marks_not_above_max", "column": "marks", "max_column": "max_marks"}],
})
GOOD = "1|1|5|10|20.1|74.2|100"


def _validate(spark, lines):
    df = spark.createDataFrame([("f", i + 2, l) for i, l in enumerate(lines)], "_file string, _line long, value string")
    refs = {"s.v": spark.createDataFrame([(100,)], "v long")}
    return rules.validate(df, SPEC, refs)


@pytest.mark.parametrize("line,rule,column", [
    ("", "blank_line", None),
    ("1|1|5", "column_count", None),
    ("1|1|5|10|20.1|74.2|100|extra", "column_count", None),
    ("x|1|5|10|20.1|74.2|100", "type_mismatch", "id"),
    ("1|1.5|5|10|20.1|74.2|100", "type_mismatch", "code"),            # a plain cast would truncate to 1
    ("1|1|5|10|20.1|74.2|99999999999999999999", "type_mismatch", "school"),   # long overflow
    ("1|1|5x|10|20.1|74.2|100", "type_mismatch", "marks"),
    ("123456|1|5|10|20.1|74.2|100", "max_length", "id"),
    ("NULL|1|5|10|20.1|74.2|100", "mandatory_missing", "id"),
    ("+1|1|5|10|20.1|74.2|100", "pattern_mismatch", "id"),
    ("1|3|5|10|20.1|74.2|100", "out_of_domain", "code"),
    ("1|1|-1|10|20.1|74.2|100", "out_of_domain", "marks"),
    ("1|1|5|10|20.1|74.2|999", "unknown_foreign_key", "school"),
    ("1|1|11|10|20.1|74.2|100", "marks_above_max", "marks"),
    ("1|1|5|10|0|0|100", "invalid_latlong", "lat,lon"),
    ("1|1|5|10|20.1|74.2|10\x070", "control_characters", None),
    ("1|1|5|10|20.1|74.2|1\ufffd0", "control_characters", None),
])
def test_each_rule(spark, line, rule, column):
    rows = _validate(spark, [GOOD, line]).orderBy("_line").select("_violations").collect()
    assert rows[0]._violations == []
    first = rows[1]._violations[0]
    assert (first.rule, first.column) == (rule, column), rows[1]._violations
    assert first.reason


def test_quoted_values_and_null_tokens(spark):
    df = _validate(spark, ['"1"|NULL||10|20.1|74.2|100']).select("id", "code", "__t_id").collect()[0]
    assert (df["id"], df["code"], df["__t_id"]) == ("1", None, 1)


def test_duplicates_identical_kept_once_conflicts_all_marked(spark):
    v = _validate(spark, [GOOD, GOOD, "2|1|5|10|20.1|74.2|100", "2|2|5|10|20.1|74.2|100"])
    out = dedupe.mark_duplicates(v, SPEC).select("_line", "_dup")
    expected = spark.createDataFrame([(2, "keep"), (3, "identical"), (4, "conflict"), (5, "conflict")],
                                     "_line long, _dup string")
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_shared_latlong_between_different_keys_is_a_conflict(spark):
    spec = parse_spec({**SPEC_RAW, "checks": [{"rule": "unique_value_per_key", "columns": ["lat", "lon"]}]})
    df = spark.createDataFrame([("f", 2, "1|1|5|10|20.1|74.2|100"), ("f", 3, "2|1|5|10|20.1|74.2|100"),
                                ("f", 4, "3|1|5|10|21.1|74.2|100")], "_file string, _line long, value string")
    out = dedupe.mark_duplicates(rules.validate(df, spec), spec).select("_line", "_dup")
    expected = spark.createDataFrame([(2, "conflict"), (3, "conflict"), (4, "keep")], "_line long, _dup string")
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


SPEC_RAW = {"name": "t", "file_pattern": "^t", "delimiter": "|",
            "columns": [{"name": n, "type": t} for n, t in
                        [("id", "long"), ("code", "int"), ("marks", "double"), ("max_marks", "double"),
                         ("lat", "double"), ("lon", "double"), ("school", "long")]], "keys": ["id"]}


def test_calendar_period(spark):
    df = spark.createDataFrame([("2020-21", 7), ("2020-21", 1)], "ay string, m int")
    out = attendance.calendar_period(df, "ay", "m")
    expected = spark.createDataFrame([("2020-21", 7, 2020, 7), ("2020-21", 1, 2021, 1)],
                                     "ay string, m int, year int, month int")
    assert_df_equality(out, expected, ignore_nullable=True)


def test_overlap_keeps_only_days_after_last_loaded(spark):
    silver = spark.createDataFrame([(1, 7, 1, 1, None)], "school long, month int, `1` int, `2` int, `3` int")
    new = spark.createDataFrame([(1, 7, 2, 2, 1), (2, 7, 1, 1, 1)], "school long, month int, `1` int, `2` int, `3` int")
    last = attendance.last_loaded_day(silver, ["school", "month"], ["1", "2", "3"])
    out = attendance.apply_overlap(new, last, ["school", "month"], ["1", "2", "3"])
    expected = spark.createDataFrame([(1, 7, None, None, 1, 2), (2, 7, 1, 1, 1, 0)],
                                     "school long, month int, `1` int, `2` int, `3` int, _overlap_ignored int")
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_exam_date_from_code(spark):
    df = spark.createDataFrame([("PAT030129072020",)], "exam_code string")
    assert exams.exam_date_from_code(df, "exam_code").collect()[0].exam_date.isoformat() == "2020-07-29"


def test_foreign_key_by_hash_set_equals_the_join(spark, monkeypatch):
    """A small reference table is checked with a hash set, a large one with a broadcast join: same rows."""
    lines = [GOOD, "1|1|5|10|20.1|74.2|999", "2|1|5|10|20.1|74.2|NULL", "3|1|5|10|20.1|74.2|x"]
    by_set = _validate(spark, lines)
    monkeypatch.setattr(rules, "FK_INSET_MAX", 0)
    by_join = _validate(spark, lines)
    assert "Join" not in by_set._jdf.queryExecution().optimizedPlan().toString()
    assert "Join" in by_join._jdf.queryExecution().optimizedPlan().toString()
    assert_df_equality(by_set, by_join, ignore_row_order=True, ignore_nullable=True)
    fk = by_set.select("_line", F.exists("_violations", lambda x: x.rule == "unknown_foreign_key").alias("fk"))
    assert {r._line: r.fk for r in fk.collect()} == {2: False, 3: True, 4: False, 5: False}


def test_a_reference_collects_its_keys_once_per_type(spark):
    """Files of one run share a Reference: the second file's check uses the keys the first one collected."""
    ref = rules.Reference(spark.createDataFrame([(100,), (100,), (None,)], "v long"))
    lines = [GOOD, "1|1|5|10|20.1|74.2|999"]
    df = spark.createDataFrame([("f", i + 2, l) for i, l in enumerate(lines)], "_file string, _line long, value string")
    first = rules.validate(df, SPEC, {"s.v": ref})
    assert ref.keys("long") == [100]
    ref.frame = None                        # a second read of the table would fail now
    second = rules.validate(df, SPEC, {"s.v": ref})
    assert_df_equality(second, first, ignore_row_order=True, ignore_nullable=True)
    fk = second.select("_line", F.exists("_violations", lambda x: x.rule == "unknown_foreign_key").alias("fk"))
    assert {r._line: r.fk for r in fk.collect()} == {2: False, 3: True}


def test_intake_reads_a_referenced_table_once_per_run_but_never_its_own(spark, tmp_path):
    from cqube_spark.intake.load import reference_frames
    from cqube_spark.quality.spec import parse_spec as spec_of

    lake = lambda *p: str(tmp_path.joinpath(*p))                         # noqa: E731
    spark.createDataFrame([(100, "a")], "v long, name string").write.format("delta").save(lake("silver", "s"))
    spark.createDataFrame([(7, 1)], "id long, parent long").write.format("delta").save(lake("silver", "t"))
    selfref = spec_of({"name": "t", "file_pattern": "^t", "delimiter": "|",
                       "columns": [{"name": "id", "type": "long"}, {"name": "parent", "type": "long"}], "keys": ["id"],
                       "foreign_keys": [{"column": "parent", "references": {"source": "t", "column": "id"}}]})
    memo: dict = {}
    refs, skipped = reference_frames(spark, lake, SPEC, memo)
    again, _ = reference_frames(spark, lake, SPEC, memo)
    assert skipped == [] and again["s.v"] is refs["s.v"] and list(memo) == [("s", "v", ())]
    own, _ = reference_frames(spark, lake, selfref, memo)
    assert "t.id" in own and list(memo) == [("s", "v", ())]


@pytest.mark.parametrize("wide", [False, True], ids=["sum_per_check", "broken_indexes"])
def test_great_expectations_counts_agree_with_rule_counts(spark, monkeypatch, wide):
    """Both ways of counting a suite's breaks (a sum per check; for suites of hundreds of checks, the indexes
    of the checks each row breaks) give the rule engine's counts."""
    if wide:
        monkeypatch.setattr(expectations, "WIDE_SUITE_CHECKS", 0)
    lines = [GOOD, "x|1|5|10|20.1|74.2|100", "123456|1|5|10|20.1|74.2|100", "NULL|9|5|10|20.1|74.2|100",
             "+1|3|-1|10|20.1|74.2|100", "",
             "7|1|50|10|20.1|74.2|100", "8|1|5|10|50.0|74.2|100"]       # marks above max, lat outside India
    v = _validate(spark, lines).cache()
    sound = v.where(~F.exists("_violations", lambda x: x.rule.isin("blank_line", "column_count")))
    result = expectations.run_suite(sound, SPEC)
    ge = expectations.counts_by_rule(result)
    # one expectation per rule, one result per (rule, column) check, each with its counts
    assert {r["element_count"] for r in result["results"]} == {sound.count()}
    assert all(r["success"] == (r["unexpected_count"] == 0) for r in result["results"])
    assert not all(r["success"] for r in result["results"])
    assert not result["success"]
    assert result["statistics"]["evaluated_expectations"] == len({r["rule"] for r in result["results"]})
    mine = {}
    for r in sound.select(F.explode("_violations").alias("x")).collect():
        if r.x.rule == "unknown_foreign_key":    # needs another table: a row-level rule only
            continue
        mine[(r.x.rule, r.x.column)] = mine.get((r.x.rule, r.x.column), 0) + 1
    assert mine  # the fixture does break rules
    assert {k: n for k, n in ge.items() if n} == mine


def test_great_expectations_suite_passes_identical_duplicates(spark):
    """Repeated keys are the dedupe step's business, not a failed expectation: a file whose only flaw is an
    identical duplicate row passes its suite, and the suite has one expectation per row-level rule only."""
    sound = _validate(spark, [GOOD, GOOD, "2|2|5|10|20.1|74.2|100"])
    result = expectations.run_suite(sound, SPEC)
    assert result["success"] and all(r["success"] for r in result["results"])
    assert {r["rule"] for r in result["results"]} == {
        "mandatory_missing", "type_mismatch", "max_length", "pattern_mismatch", "out_of_domain",
        "invalid_latlong", "marks_above_max"}
    assert {r["element_count"] for r in result["results"]} == {3}


def test_sat_same_student_exam_question_with_different_marks_is_a_conflict(spark):
    """SAT's 'same student, school, semester, class, different subject values' rule at question level:
    the exam code fixes semester, class and subject, so two rows of one student, exam and question with
    different marks are conflicting (all quarantined); other questions of the same student are kept."""
    from cqube_spark.quality.spec import load_spec

    spec = load_spec("configs/sources/semester_exam_result_trans.yaml")
    exam = "SAT030101072020"
    lines = [f"1|1|{exam}|7|7|75010100101|3|A|101|4",
             f"2|1|{exam}|7|7|75010100101|3|A|101|5",      # same student, exam, question: other marks
             f"3|1|{exam}|7|7|75010100101|3|A|102|2",
             f"4|1|{exam}|8|8|75010100101|3|A|101|4"]
    df = spark.createDataFrame([("f", i + 2, l) for i, l in enumerate(lines)], "_file string, _line long, value string")
    out = dedupe.mark_duplicates(rules.validate(df, spec), spec).select("_line", "_dup")
    expected = spark.createDataFrame([(2, "conflict"), (3, "conflict"), (4, "keep"), (5, "keep")],
                                     "_line long, _dup string")
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


@pytest.mark.parametrize("lines,repeated", [
    ([GOOD, "2|2|5|10|20.1|74.2|100", "x|1|5|10|20.1|74.2|100"], False),
    ([GOOD, "1|2|5|10|20.1|74.2|100", "x|1|5|10|20.1|74.2|100"], True),       # key 1 twice among valid rows
    ([GOOD, "1|1|5|10|20.1|74.2|NULL|x", "", "1|3|5|10|20.1|74.2|100"], False),  # repeats only in broken rows
])
def test_file_counts_in_one_aggregation(spark, lines, repeated):
    """A file's counts, violations by rule (all, and first per row) and whether a valid row repeats a key,
    as the rows' own violations and keys say."""
    from cqube_spark.intake.load import file_counts, loading_conf

    with loading_conf(spark):
        v = _validate(spark, lines).cache()
        got = file_counts(v, SPEC)
    rows = v.collect()
    every, first = {}, {}
    for r in rows:
        for i, x in enumerate(r._violations):
            every[x.rule] = every.get(x.rule, 0) + 1
            if i == 0:
                first[x.rule] = first.get(x.rule, 0) + 1
    valid_keys = [r["__t_id"] for r in rows if not r._violations]
    assert got["total"] == len(lines) and got["invalid"] == sum(1 for r in rows if r._violations)
    assert got["violations_by_rule"] == every and got["by_rule_rows"] == first and every
    assert got["repeated_keys"] is repeated is (len(valid_keys) != len(set(valid_keys)))
    assert got["nulls"]["id"] == sum(1 for r in rows if r["id"] is None
                                     and not {x.rule for x in r._violations} & {"blank_line", "column_count"})
