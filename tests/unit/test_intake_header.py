"""The header check of intake: exact spec columns, or exactly the state-active ones; anything else refused."""
import pytest

from cqube_spark.intake.job import Rejection, check_header
from cqube_spark.quality.spec import load_spec, load_state


@pytest.fixture
def specs(tmp_path):
    state = tmp_path / "state.yaml"
    state.write_text("optional_attributes:\n  HaveCCTV: false\n")
    full = load_spec("configs/sources/infra_trans.yaml")
    return full, load_spec("configs/sources/infra_trans.yaml", load_state(state))


def test_full_header_keeps_the_spec(specs):
    full, stated = specs
    header = "|".join(f'"{c.name}"' for c in full.columns)      # quoted names are fine
    assert check_header(full, header) is full and check_header(stated, header) is stated


def test_header_without_the_deactivated_column_loads_with_the_active_columns(specs):
    _full, stated = specs
    got = check_header(stated, "|".join(c.name for c in stated.active_columns))
    assert [c.name for c in got.columns] == [c.name for c in stated.active_columns]
    assert "HaveCCTV" not in [c.name for c in got.columns] and got.keys == stated.keys


@pytest.mark.parametrize("which,drop", [("full", "HaveCCTV"),      # not switched off: still required
                                        ("stated", "HaveLibrary")])  # an active column is always required
def test_missing_columns_without_a_state_switch_are_refused(specs, which, drop):
    spec = specs[0] if which == "full" else specs[1]
    header = "|".join(c.name for c in spec.columns if c.name != drop)
    with pytest.raises(Rejection) as e:
        check_header(spec, header)
    assert e.value.kind == "header_mismatch" and drop.lower() in str(e.value)


def test_empty_file_is_refused(specs):
    with pytest.raises(Rejection) as e:
        check_header(specs[0], None)
    assert e.value.kind == "empty_file"
