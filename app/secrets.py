"""Encryption of secrets at rest, and masking of secrets in output.

The key is OPSFLOW_SECRET_KEY (a Fernet key) when set; otherwise one is made on
first start and kept in $OPSFLOW_DATA_DIR/secret.key with mode 600.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from cryptography.fernet import Fernet

MASK = "******"


def load_key(secret_key: str | None, key_file: Path) -> bytes:
    """The configured key, or the one kept in key_file (made when missing)."""
    if secret_key:
        return secret_key.encode()
    try:
        return key_file.read_bytes().strip()
    except FileNotFoundError:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key()
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        return key


@cache
def _fernet(key: bytes) -> Fernet:
    return Fernet(key)


class Cipher:
    """Encrypts and decrypts text with the service's key."""

    key: bytes | None = None

    @classmethod
    def configure(cls, key: bytes) -> None:
        cls.key = key

    @classmethod
    def encrypt(cls, text: str) -> str:
        return _fernet(cls.configured_key()).encrypt(text.encode()).decode()

    @classmethod
    def decrypt(cls, token: str) -> str:
        return _fernet(cls.configured_key()).decrypt(token.encode()).decode()

    @classmethod
    def configured_key(cls) -> bytes:
        if cls.key is None:
            raise RuntimeError("the secret key is not configured: call create_app() first")
        return cls.key


def mask(text: str, secrets: Iterable[str]) -> str:
    """Text with every occurrence of every secret replaced by the mask."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
