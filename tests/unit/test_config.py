"""Job config validation: errors name the file, the JSON path and what was expected (exit 2)."""
import json

import pytest

from cqube_spark import cli
from cqube_spark.config import ConfigError, apply_params, load_job_config, parse_job_config


def write(tmp_path, obj, name="job.json"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


def error_of(path):
    with pytest.raises(ConfigError) as e:
        load_job_config(path)
    return e.value


def test_valid_config_loads_with_defaults(tmp_path):
    cfg = load_job_config(write(tmp_path, {"model": "load-attendance", "modelParams": {"table": "sa"}}))
    assert (cfg.model, cfg.model_params, cfg.parallelization) == ("load-attendance", {"table": "sa"}, 8)
    assert cfg.app_name == "cqube-load-attendance"


def test_unknown_model_names_path_and_choices(tmp_path):
    p = write(tmp_path, {"model": "attendence", "modelParams": {}})
    err = error_of(p)
    assert err.source == str(p) and err.path == "$.model"
    assert "expected one of" in err.message and "'intake'" in err.message


def test_missing_key(tmp_path):
    err = error_of(write(tmp_path, {"model": "intake"}))
    assert err.path == "$" and err.message.startswith("missing key: 'modelParams'")


def test_wrong_type_in_model_params(tmp_path):
    err = error_of(write(tmp_path, {"model": "load-attendance", "modelParams": {"table": 7}}))
    assert err.path == "$.modelParams.table" and err.message == "expected string, got int 7"


def test_wrong_type_in_envelope(tmp_path):
    err = error_of(write(tmp_path, {"model": "intake", "modelParams": {}, "parallelization": "many"}))
    assert err.path == "$.parallelization" and "expected integer" in err.message


def test_unexpected_key_is_refused(tmp_path):
    err = error_of(write(tmp_path, {"model": "intake", "modelParams": {}, "modle": 1}))
    assert "unexpected key" in err.message


def test_invalid_json_names_line_and_column(tmp_path):
    err = error_of(write(tmp_path, '{"model": "intake",\n  "modelParams": {,}}'))
    assert err.path == "line 2 column 19" and "invalid JSON" in err.message


def test_env_references_are_resolved_and_remembered():
    cfg = parse_job_config({"model": "load-attendance", "modelParams": {"table": "${T_NAME}"}},
                           env={"T_NAME": "attendance"})
    assert cfg.model_params["table"] == "attendance" and cfg.secret_refs == ("T_NAME",)


def test_unset_env_reference_is_a_config_error():
    with pytest.raises(ConfigError) as e:
        parse_job_config({"model": "load-attendance", "modelParams": {"table": "x${MISSING_VAR}"}}, env={})
    assert e.value.path == "$.modelParams.table" and "MISSING_VAR is not set" in e.value.message


def test_param_overrides_are_typed_and_validated(tmp_path):
    cfg = load_job_config(write(tmp_path, {"model": "load-attendance", "modelParams": {"table": "a"}}))
    assert apply_params(cfg, ["table=b"]).model_params["table"] == "b"
    with pytest.raises(ConfigError) as e:
        apply_params(cfg, ["table=5"])  # JSON-parsed to an int: wrong type
    assert e.value.path == "$.modelParams.table"
    with pytest.raises(ConfigError):
        apply_params(cfg, ["no-equals-sign"])


@pytest.mark.parametrize("argv", [
    ["run", "{bad}"],
    ["run", "load-attendance", "--as-of", "2020-13-01"],
    ["run", "load-attendance", "--param", "table=5"],
    ["frobnicate"],
])
def test_cli_exits_2_on_bad_config_or_arguments(tmp_path, argv, capsys):
    if argv[1:2] == ["{bad}"]:
        argv = ["run", str(write(tmp_path, {"model": "nope", "modelParams": {}}))]
    with pytest.raises(SystemExit) as e:
        raise SystemExit(cli.main(argv))
    assert e.value.code == 2
    assert "error" in capsys.readouterr().err


def test_secrets_are_not_logged(capsys):
    from cqube_spark.logs import get_logger, register_secret

    register_secret("s3cr3t-value")
    get_logger("run-1").info("connecting", dsn="postgresql://u:s3cr3t-value@h/db", note="uses s3cr3t-value")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["run_id"] == "run-1" and line["dsn"] == "***" and line["note"] == "uses ***"
