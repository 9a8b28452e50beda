"""Configuration: job configs (JSON + JSON Schema), env substitution, errors that name file and path."""
from cqube_spark.config.loader import (  # noqa: F401
    ConfigError,
    JobConfig,
    apply_params,
    known_models,
    load_job_config,
    parse_job_config,
)
