"""PII encryption at rest (Redis ``user:<id>`` email/phone): AES-256-GCM, authenticated.

Key: ``CQUBE_PII_KEY`` — either the base64 (standard or urlsafe) of exactly 32 random bytes (``cqube-spark pii
keygen`` prints one), or any other text, taken as a passphrase and stretched with scrypt
(n=2**15, r=8, p=1, salt ``b"cqube-spark/pii/v1"``, 32 bytes). A fixed salt is deliberate: every process
must derive the same key; use a random base64 key in production.

Token: ``v1:`` + urlsafe-base64(nonce[12] | ciphertext | tag[16]); the AAD is ``b"cqube-pii:v1"``. A fresh
random nonce per value, so the same plaintext encrypts differently each time. Decrypting a tampered token
or with the wrong key raises ``PiiError`` (never returns garbage).
"""
from __future__ import annotations

import base64
import binascii
import os
from typing import Mapping

VERSION = "v1"
PREFIX = VERSION + ":"
AAD = b"cqube-pii:v1"
KDF_SALT = b"cqube-spark/pii/v1"
NONCE_BYTES = 12


class PiiError(Exception):
    """Missing key, malformed token, wrong key or tampered data (the message never holds the value)."""


def generate_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _b64decode(text: str) -> bytes | None:
    """Strict base64 (standard or urlsafe alphabet, padding optional); None when it is not base64."""
    padded = text.translate(str.maketrans("-_", "+/")) + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded.encode(), validate=True)
    except (binascii.Error, ValueError):
        return None


def derive_key(secret: str) -> bytes:
    """32 key bytes from CQUBE_PII_KEY: base64 of 32 bytes as is, anything else through scrypt."""
    if not secret:
        raise PiiError("CQUBE_PII_KEY is empty")
    raw = _b64decode(secret.strip())
    if raw is not None and len(raw) == 32:
        return raw
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=KDF_SALT, length=32, n=2 ** 15, r=8, p=1).derive(secret.encode())


def key_from_env(env: Mapping[str, str] = os.environ) -> bytes:
    secret = env.get("CQUBE_PII_KEY")
    if not secret:
        raise PiiError("CQUBE_PII_KEY is not set (generate one with `cqube-spark pii keygen`)")
    from cqube_spark.logs import register_secret

    register_secret(secret)
    return derive_key(secret)


class PiiCipher:
    """Encrypt/decrypt PII tokens with one key (create once per partition: cheap to reuse)."""

    def __init__(self, key: bytes):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if len(key) != 32:
            raise PiiError("the PII key must be 32 bytes (AES-256)")
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), AAD)
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def decrypt(self, token: str) -> str:
        from cryptography.exceptions import InvalidTag

        if not isinstance(token, str) or not token.startswith(PREFIX):
            raise PiiError(f"not a {VERSION} PII token")
        body = token[len(PREFIX):]
        try:
            blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise PiiError("malformed PII token (base64)") from None
        if len(blob) < NONCE_BYTES + 16:
            raise PiiError("malformed PII token (too short)")
        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], AAD).decode("utf-8")
        except InvalidTag:
            raise PiiError("PII token failed authentication (wrong key or tampered value)") from None
