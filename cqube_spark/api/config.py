"""Service settings: ``configs/jobs/serve.json`` (model ``serve``, validated by ``serve.params.schema.json``)
overlaid by the environment.

Inputs: the config file (``${VAR}`` substituted), ``CQUBE_API_*`` variables (host, port, issuer, audience,
JWKS URL, signing secret, metrics token), the storage roots (``cqube_spark.storage.roots``) and the PostgreSQL DSN of the
exhaust settings. Output: one frozen ``Settings``. Pure apart from reading the file and the environment.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from cqube_spark import storage
from cqube_spark.config import load_job_config

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "jobs" / "serve.json"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8700
    issuer: str = "http://127.0.0.1:8180/realms/cqube"
    audience: str = "cqube-api"
    jwks_url: str | None = None  # default: <issuer>/protocol/openid-connect/certs
    max_body_bytes: int = 1_048_576
    max_upload_bytes: int = 2_147_483_648
    request_timeout_s: float = 30.0
    upload_url_expiry_s: int = 300
    download_url_expiry_s: int = 600
    log_tail_max_lines: int = 1000
    public_url: str | None = None  # how clients reach us (for signed local links); default http://host:port
    # None: the secret all API processes share, kept in PostgreSQL (``uploads.shared_secret``)
    signing_secret: str | None = field(default=None, repr=False)
    roots: dict = field(default_factory=dict)
    pg_dsn: str | None = field(default=None, repr=False)
    log_dir: str | None = None

    @property
    def jwks(self) -> str:
        return self.jwks_url or self.issuer.rstrip("/") + "/protocol/openid-connect/certs"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


def load(path: str | Path | None = None, env: Mapping[str, str] = os.environ) -> Settings:
    """Settings from the config file (errors are ``ConfigError`` naming the JSON path) and the environment."""
    cfg = load_job_config(path or env.get("CQUBE_API_CONFIG") or DEFAULT_CONFIG, env)
    camel = {"maxBodyBytes": "max_body_bytes", "maxUploadBytes": "max_upload_bytes",
             "requestTimeoutSeconds": "request_timeout_s", "uploadUrlExpirySeconds": "upload_url_expiry_s",
             "downloadUrlExpirySeconds": "download_url_expiry_s", "logTailMaxLines": "log_tail_max_lines",
             "jwksUrl": "jwks_url", "publicUrl": "public_url"}
    p = {camel.get(k, k): v for k, v in cfg.model_params.items()}
    overrides = {"host": "CQUBE_API_HOST", "port": "CQUBE_API_PORT", "issuer": "CQUBE_API_ISSUER",
                 "audience": "CQUBE_API_AUDIENCE", "jwks_url": "CQUBE_API_JWKS_URL",
                 "public_url": "CQUBE_API_PUBLIC_URL"}
    for key, var in overrides.items():
        if env.get(var):
            p[key] = int(env[var]) if key == "port" else env[var]
    from cqube_spark.exhaust import settings as exhaust_settings

    kwargs = {k: p[k] for k in Settings.__dataclass_fields__ if k in p}
    if env.get("CQUBE_API_SIGNING_SECRET"):
        kwargs["signing_secret"] = env["CQUBE_API_SIGNING_SECRET"]
    return Settings(**kwargs, roots=storage.roots(env), pg_dsn=exhaust_settings.postgres_dsn(),
                    log_dir=env.get("CQUBE_LOG_DIR"))
