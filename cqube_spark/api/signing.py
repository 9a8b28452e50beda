"""HMAC-SHA256 signed, expiring tokens for the API's own links (local uploads, scoped downloads).

``sign(secret, claims, ttl)`` → ``<base64url(json)>.<base64url(mac)>``; ``verify`` checks the MAC in constant
time and the expiry, and returns the claims. Pure functions; once-only use is enforced by the caller
(``uploads.consume``), not here.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time


class BadSignature(ValueError):
    pass


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def sign(secret: str, claims: dict, ttl_s: int, now: float | None = None) -> str:
    body = _b64(json.dumps({**claims, "exp": int((now or time.time()) + ttl_s)}, sort_keys=True).encode())
    mac = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def verify(secret: str, token: str, now: float | None = None) -> dict:
    body, sep, mac = (token or "").partition(".")
    if not sep:
        raise BadSignature("malformed link token")
    want = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    try:
        ok = hmac.compare_digest(want, _unb64(mac))
        claims = json.loads(_unb64(body)) if ok else None
    except (ValueError, json.JSONDecodeError):
        raise BadSignature("malformed link token") from None
    if not ok:
        raise BadSignature("link signature does not match")
    if claims.get("exp", 0) < (now or time.time()):
        raise BadSignature("link expired")
    return claims
