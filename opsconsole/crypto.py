"""Secrets at rest: AES-256-GCM with a key ring.

`OPSCONSOLE_ENCRYPTION_KEYS` holds comma-separated keys; the first encrypts,
all of them decrypt, so a key is rotated by putting the new one first, running
`manage.py rotate_encryption_key`, then dropping the old one.

A stored value reads `v1:<key id>:<base64url(nonce | ciphertext | tag)>`. The key
id (a hash prefix, not the key) says which key to try; the field's name is bound
in as associated data, so a ciphertext copied into another field fails too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

PREFIX = "v1"
NONCE_BYTES = 12


class DecryptionError(Exception):
    """A stored secret cannot be read: modified, truncated, or made with an unknown key."""


def generate_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def parse_keys(text: str) -> list[bytes]:
    """Decode the comma-separated key list; the message never repeats a key."""
    keys = []
    for position, item in enumerate((part.strip() for part in text.split(",")), start=1):
        if not item:
            continue
        try:
            key = base64.urlsafe_b64decode(item.encode())
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise ValueError(
                f"key {position} is not 32 bytes of url-safe base64 "
                "(make one with: manage.py generate_encryption_key)"
            )
        keys.append(key)
    if not keys:
        raise ValueError("no key given")
    return keys


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"opsconsole-key-id" + key).hexdigest()[:8]


def _keys() -> list[bytes]:
    return settings.OPSCONSOLE_ENCRYPTION_KEYS


def encrypt(plaintext: str, *, context: str) -> str:
    key = _keys()[0]
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), context.encode())
    body = base64.urlsafe_b64encode(nonce + sealed).decode()
    return f"{PREFIX}:{key_id(key)}:{body}"


def decrypt(token: str, *, context: str) -> str:
    try:
        prefix, kid, body = token.split(":", 2)
        raw = base64.urlsafe_b64decode(body.encode())
    except (ValueError, binascii.Error):
        raise DecryptionError(f"{context}: the stored value is not an encrypted secret") from None
    if prefix != PREFIX or len(raw) <= NONCE_BYTES:
        raise DecryptionError(f"{context}: the stored value is not an encrypted secret")
    key = next((k for k in _keys() if key_id(k) == kid), None)
    if key is None:
        raise DecryptionError(
            f"{context}: encrypted with key {kid}, which is not in OPSCONSOLE_ENCRYPTION_KEYS"
        )
    try:
        plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
    except InvalidTag:
        raise DecryptionError(
            f"{context}: the stored value was modified or corrupted (authentication failed)"
        ) from None
    return plain.decode()


def token_key_id(token: str) -> str | None:
    """Which key a stored value was made with, without decrypting it."""
    parts = token.split(":", 2)
    return parts[1] if len(parts) == 3 and parts[0] == PREFIX else None
