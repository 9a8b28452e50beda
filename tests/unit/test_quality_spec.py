"""Spec and state.yaml validation: bad config names file, path, expectation."""
import pytest

from cqube_spark.config import ConfigError
from cqube_spark.quality.spec import apply_state, load_order, load_specs, parse_spec, parse_state

BASE = {"name": "t", "file_pattern": "^t.*\\.csv$", "delimiter": "|",
        "columns": [{"name": "id", "type": "int", "mandatory": True},
                    {"name": "opt", "type": "int", "optional_attribute": "opt"}], "keys": ["id"]}


def test_all_project_specs_load():
    specs = load_specs("configs/sources")
    order = load_order(specs)
    assert order.index("school_master") < order.index("student_attendance")


def test_bad_type_is_a_config_error():
    bad = {**BASE, "columns": [{"name": "id", "type": "integer"}]}
    with pytest.raises(ConfigError) as e:
        parse_spec(bad, "t.yaml")
    assert "t.yaml" in str(e.value) and "$.columns[0].type" in str(e.value)


def test_key_must_be_a_column():
    with pytest.raises(ConfigError, match=r"\$\.keys\[0\]"):
        parse_spec({**BASE, "keys": ["nope"]}, "t.yaml")


def test_state_deactivates_optional_attribute():
    spec = apply_state(parse_spec(BASE), parse_state({"optional_attributes": {"opt": False}}))
    assert spec.inactive_columns == ["opt"] and [c.name for c in spec.active_columns] == ["id"]


def test_deactivating_a_key_column_is_a_config_error():
    with pytest.raises(ConfigError, match="key"):
        apply_state(parse_spec(BASE), parse_state({"sources": {"t": {"inactive": ["id"]}}}, "state.yaml"))


def test_state_value_must_be_boolean():
    with pytest.raises(ConfigError, match=r"state.yaml: at \$.optional_attributes.opt"):
        parse_state({"optional_attributes": {"opt": "maybe"}}, "state.yaml")
