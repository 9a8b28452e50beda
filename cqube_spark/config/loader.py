"""Load and validate job configs (model-config-style JSON) before Spark starts.

A job config looks like::

    {"model": "intake", "modelParams": {...}, "output": [...], "parallelization": 8, "appName": "..."}

Validation is two-step with JSON Schema: the envelope (``job.schema.json``), then ``modelParams`` against
the model's own schema (``<model>.params.schema.json`` when it exists). ``${VAR}`` anywhere in a string is
replaced from the environment; an unset variable is a config error naming it. Errors name the file, the
JSON path and what was expected; callers exit with status 2.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from jsonschema import Draft202012Validator

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """A configuration or argument problem: the job must not start (exit status 2)."""

    def __init__(self, source: str, path: str, message: str):
        self.source, self.path, self.message = source, path, message
        super().__init__(f"{source}: at {path}: {message}")


@dataclass(frozen=True)
class JobConfig:
    model: str
    model_params: dict[str, Any]
    output: list[Any] = field(default_factory=list)
    parallelization: int = 8
    app_name: str = "cqube-spark"
    source: str = "<inline>"
    # Names of environment variables that were substituted: their values are never logged.
    secret_refs: tuple[str, ...] = ()


def json_path(parts) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def substitute_env(node: Any, env: Mapping[str, str], source: str, path: tuple = (), used: set | None = None):
    """Replace ``${VAR}`` in every string of a JSON tree; unset variables raise ConfigError."""
    if isinstance(node, dict):
        return {k: substitute_env(v, env, source, path + (k,), used) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute_env(v, env, source, path + (i,), used) for i, v in enumerate(node)]
    if isinstance(node, str):
        def repl(m: re.Match) -> str:
            name = m.group(1)
            if name not in env:
                raise ConfigError(source, json_path(path), f"environment variable {name} is not set")
            if used is not None:
                used.add(name)
            return env[name]

        return ENV_REF.sub(repl, node)
    return node


class _masked:
    """Values substituted from ``${VAR}`` never appear in a ConfigError raised inside (they are ``***``)."""

    def __init__(self, values):
        self.values = sorted((v for v in values if v), key=len, reverse=True)

    def __enter__(self):
        return self

    def __exit__(self, kind, e, tb):
        if isinstance(e, ConfigError) and self.values:
            path, message = e.path, e.message
            for v in self.values:
                path, message = path.replace(v, "***"), message.replace(v, "***")
            raise ConfigError(e.source, path, message) from None
        return False


def _schema(name: str) -> dict | None:
    path = SCHEMA_DIR / f"{name}.schema.json"
    return json.loads(path.read_text()) if path.exists() else None


def _check(instance: Any, schema: dict, source: str, prefix: tuple = ()) -> None:
    errors = sorted(Draft202012Validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = json_path(prefix + tuple(e.absolute_path))
        if e.validator == "required":
            msg = f"missing key: {e.message.split(' ')[0]}"
        elif e.validator == "type":
            msg = f"expected {e.validator_value}, got {type(e.instance).__name__} {json.dumps(e.instance)[:60]}"
        elif e.validator == "enum":
            msg = f"expected one of {e.validator_value}, got {json.dumps(e.instance)[:60]}"
        elif e.validator == "additionalProperties":
            msg = f"unexpected key ({e.message})"
        else:
            msg = e.message
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(source, where, msg + more)


def known_models() -> list[str]:
    return json.loads((SCHEMA_DIR / "job.schema.json").read_text())["properties"]["model"]["enum"]


def parse_job_config(raw: Any, source: str = "<inline>", env: Mapping[str, str] = os.environ) -> JobConfig:
    envelope = _schema("job")
    _check(raw, envelope, source)
    used: set[str] = set()
    data = substitute_env(raw, env, source, (), used)
    params_schema = _schema(f"{data['model']}.params")
    if params_schema:
        with _masked([env.get(n) for n in used]):
            _check(data.get("modelParams", {}), params_schema, source, ("modelParams",))
    return JobConfig(
        model=data["model"],
        model_params=data.get("modelParams", {}),
        output=data.get("output", []),
        parallelization=data.get("parallelization", 8),
        app_name=data.get("appName", f"cqube-{data['model']}"),
        source=source,
        secret_refs=tuple(sorted(used)),
    )


def load_job_config(path: str | Path, env: Mapping[str, str] = os.environ) -> JobConfig:
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise ConfigError(source, "$", "file not found")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(source, f"line {e.lineno} column {e.colno}", f"invalid JSON: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(source, "$", f"not UTF-8 text (byte {e.start}: {e.reason})") from None
    except RecursionError:
        raise ConfigError(source, "$", "invalid JSON: nested too deeply") from None
    except OSError as e:
        raise ConfigError(source, "$", f"cannot read the file: {e.strerror or e}") from None
    try:
        return parse_job_config(raw, source, env)
    except RecursionError:
        raise ConfigError(source, "$", "nested too deeply") from None


def apply_params(cfg: JobConfig, params: list[str]) -> JobConfig:
    """Apply ``--param key=value`` overrides (dotted keys into modelParams; values parsed as JSON if they can be)."""
    merged = json.loads(json.dumps(cfg.model_params))
    for item in params:
        if "=" not in item:
            raise ConfigError("--param", item, "expected key=value")
        key, value = item.split("=", 1)
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        node = merged
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError("--param", key, f"{part} is not an object")
        node[parts[-1]] = parsed
    params_schema = _schema(f"{cfg.model}.params")
    if params_schema:
        with _masked([os.environ.get(n) for n in cfg.secret_refs]):
            _check(merged, params_schema, f"{cfg.source} + --param", ("modelParams",))
    return JobConfig(cfg.model, merged, cfg.output, cfg.parallelization, cfg.app_name, cfg.source, cfg.secret_refs)
