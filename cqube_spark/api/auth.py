"""OIDC bearer tokens: verify a JWT against the issuer's JWKS, then roles and the hierarchy scope.

Input: the ``Authorization: Bearer <jwt>`` header. Checks: RS256/ES256 signature with a key from the JWKS (keys
cached, refetched on an unknown ``kid``), ``iss`` = the configured issuer, ``aud`` contains the API audience,
``exp`` in the future (``iat``/``nbf`` honoured), and a ``typ`` claim, when present, of ``Bearer`` (Keycloak's
ID and refresh tokens are signed by the same key and an ID token carries the client as its audience; neither
is an access token). Output: a ``Principal`` (subject, username, roles from
``realm_access.roles``, scope from the ``cqube_scope`` claim). Failures raise ``ApiError`` 401 (no or bad
token) or 403 (valid token, wrong role or scope), each with a message saying which check failed.
"""
from __future__ import annotations

from dataclasses import dataclass

import jwt

from cqube_spark.api.errors import ApiError
from cqube_spark.api.scope import Scope, parse_scope

# ``metrics``: a Prometheus scraper's role (e.g. a client-credentials service account), /metrics and nothing else
ROLES = ("admin", "emitter", "report_viewer", "report_creator", "program_manager", "metrics")


@dataclass(frozen=True)
class Principal:
    subject: str
    username: str
    roles: frozenset[str]
    scope: Scope | None  # None: the token carries no (valid) cqube_scope claim

    def has_any(self, roles) -> bool:
        return "admin" in self.roles or bool(self.roles & set(roles))


class Verifier:
    def __init__(self, issuer: str, audience: str, jwks_url: str):
        self.issuer, self.audience = issuer, audience
        self.jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=3600, timeout=10)

    def verify(self, authorization: str | None) -> Principal:
        if not authorization:
            raise ApiError(401, "unauthenticated", "no bearer token: send Authorization: Bearer <access token>")
        kind, _, token = authorization.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthenticated", "the Authorization header must be 'Bearer <access token>'")
        token = token.strip()
        try:
            key = self.jwks.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as e:
            raise ApiError(503, "issuer_unreachable", f"cannot fetch the issuer's keys: {e}") from None
        except jwt.exceptions.PyJWTError as e:
            raise ApiError(401, "invalid_token", f"token rejected: {e}") from None
        try:
            claims = jwt.decode(token, key.key, algorithms=["RS256", "RS384", "RS512", "ES256", "PS256"],
                                audience=self.audience, issuer=self.issuer,
                                options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError:
            raise ApiError(401, "token_expired", "token expired: get a new one from the issuer") from None
        except jwt.InvalidAudienceError:
            raise ApiError(401, "invalid_token", f"token is not for this API (audience must include "
                                                 f"{self.audience!r})") from None
        except jwt.InvalidIssuerError:
            raise ApiError(401, "invalid_token", f"token issuer is not {self.issuer!r}") from None
        except jwt.exceptions.PyJWTError as e:
            raise ApiError(401, "invalid_token", f"token rejected: {e}") from None
        kind = claims.get("typ")
        if kind is not None and str(kind).lower() != "bearer":
            raise ApiError(401, "invalid_token", f"{kind} tokens are not access tokens: send the access_token")
        return principal(claims)


def principal(claims: dict) -> Principal:
    roles = frozenset(r for r in (claims.get("realm_access") or {}).get("roles", []) if r in ROLES)
    raw = claims.get("cqube_scope")
    try:
        scope = parse_scope(raw) if isinstance(raw, str) else None
    except ValueError:
        scope = None
    return Principal(str(claims.get("sub")), str(claims.get("preferred_username") or claims.get("sub")),
                     roles, scope)


def require(p: Principal, *roles: str, scoped: bool = False) -> Principal:
    """403 unless the principal has one of ``roles`` (admin has all); ``scoped``: a valid scope is needed too."""
    if not p.has_any(roles):
        raise ApiError(403, "forbidden_role", f"{p.username} lacks the role for this: needs one of "
                                              f"{', '.join(roles)} (has {', '.join(sorted(p.roles)) or 'none'})")
    if scoped and p.scope is None and "admin" not in p.roles:
        raise ApiError(403, "forbidden_scope", f"{p.username} has no valid cqube_scope claim "
                                               "(state or <level>:<id>): nothing is visible")
    return p
