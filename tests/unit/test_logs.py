"""Secret masking: registered values, the passwords inside DSNs/URLs, secret-named environment variables."""
import json
import logging

import pytest

from cqube_spark import logs
from cqube_spark.config import ConfigError, apply_params, parse_job_config


@pytest.fixture(autouse=True)
def _fresh_secrets(monkeypatch):
    monkeypatch.setattr(logs, "_SECRET_VALUES", set())


def test_the_password_of_a_dsn_or_url_is_masked_alone_too():
    logs.register_secret("postgresql://cqube:Pg-S3cret%21pw@db:5432/cqube")
    logs.register_secret("redis://:R3dis-pw-xyz@127.0.0.1:6379/0")
    logs.register_secret("host=db user=cqube password='Kw-S3cret-1' dbname=x")
    text = "auth failed for Pg-S3cret!pw / Pg-S3cret%21pw, R3dis-pw-xyz, Kw-S3cret-1"
    assert logs.redact_text(text) == "auth failed for *** / ***, ***, ***"
    assert logs.redact_text("postgresql://cqube:Pg-S3cret%21pw@db:5432/cqube") == "***"
    logs.register_secret("postgresql://cqube:cqube@127.0.0.1:5432/cqube")  # a short dev password: DSN only
    assert logs.redact_text("logger cqube, dsn postgresql://cqube:cqube@127.0.0.1:5432/cqube") == "logger cqube, dsn ***"


def test_secret_named_environment_variables_are_registered_and_ids_hosts_users_are_not():
    env = {"CQUBE_PII_KEY": "pii-key-value-1", "AWS_SECRET_ACCESS_KEY": "aws-secret-value",
           "CQUBE_SMTP_PASSWORD": "smtp-pass-value", "CQUBE_POSTGRES_DSN": "postgresql://u:pg-pass-val@h/db",
           "GITHUB_TOKEN": "tok-value-123", "AWS_ACCESS_KEY_ID": "cqube", "CQUBE_SMTP_HOST": "mail.local",
           "CQUBE_CASSANDRA_USERNAME": "cass-user", "HOME": "/root"}
    logs.register_env_secrets(env)
    assert logs._SECRET_VALUES >= {"pii-key-value-1", "aws-secret-value", "smtp-pass-value", "pg-pass-val",
                                   "tok-value-123"}
    assert not logs._SECRET_VALUES & {"cqube", "mail.local", "cass-user", "/root"}


def test_a_log_line_never_carries_a_registered_secret(capsys):
    logs.register_secret("Zip-Key-Secret-9")
    logs.get_logger("r1", name="cqube.test.logs").error("failed with Zip-Key-Secret-9", error="x Zip-Key-Secret-9",
                                                       nested={"a": ["Zip-Key-Secret-9"]}, password="plain")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert "Zip-Key-Secret-9" not in json.dumps(line)
    assert (line["msg"], line["error"], line["nested"], line["password"]) == ("failed with ***", "x ***",
                                                                             {"a": ["***"]}, "***")
    logging.getLogger("cqube.test.logs").handlers.clear()


def test_secret_named_fields_are_masked_and_rule_and_key_counts_are_not(capsys):
    logs.get_logger("r1", name="cqube.test.fields").info(
        "counts", quarantined_by_rule={"unknown_foreign_key": 3, "type_mismatch": 1}, repeated_keys=True,
        api_key="a1", pii_key="p1", key="k1", access_key="s1", token="t1")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["quarantined_by_rule"] == {"unknown_foreign_key": 3, "type_mismatch": 1}
    assert line["repeated_keys"] is True
    assert [line[k] for k in ("api_key", "pii_key", "key", "access_key", "token")] == ["***"] * 5
    logging.getLogger("cqube.test.fields").handlers.clear()


def test_config_errors_never_show_a_substituted_value():
    raw = {"model": "program-user-exhaust", "modelParams": {"maxIterations": "${MY_ITER}", "label_mapping": {},
                                                            "order_of_csv_column": []}}
    with pytest.raises(ConfigError) as e:
        parse_job_config(raw, "job.json", {"MY_ITER": "Var-S3cret-Value"})
    assert "Var-S3cret-Value" not in str(e.value) and "***" in str(e.value)
    assert str(e.value).startswith("job.json: at $.modelParams.maxIterations: ")
    with pytest.raises(ConfigError) as e:   # the key pattern refuses '!': the message echoes the value
        parse_job_config({"model": "program-user-exhaust", "modelParams": {
            "key": "x/${MY_KEY}", "label_mapping": {}, "order_of_csv_column": []}}, "job.json", {"MY_KEY": "Var!Key1"})
    assert "Var!Key1" not in str(e.value) and "'x/***' does not match" in str(e.value)
