"""Credentials of kinds other than a login: what a repository is fetched with (git), and what decrypts
the vault-encrypted files and variables of a repository's playbooks (vault)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import EncryptedText, UTCDateTime, utcnow


class CredentialKind(StrEnum):
    # An SSH private key, or a user name and a token (https).
    GIT = "git"
    # A vault password, and the vault id it answers to (none: the default id).
    VAULT = "vault"


class Credential(db.Model):
    __tablename__ = "credential"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(String(4096), default="")
    # git over https: the user name the token goes with.
    username: Mapped[str | None] = mapped_column(String(255))
    # git over ssh.
    private_key: Mapped[str | None] = mapped_column(EncryptedText)
    # git over https.
    token: Mapped[str | None] = mapped_column(EncryptedText)
    # vault.
    password: Mapped[str | None] = mapped_column(EncryptedText)
    vault_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def has_private_key(self) -> bool:
        return self.private_key is not None

    @property
    def has_token(self) -> bool:
        return self.token is not None

    @property
    def has_password(self) -> bool:
        return self.password is not None

    @property
    def secrets(self) -> list[str]:
        """What must never appear in an output: masked wherever the credential was used."""
        return [value for value in (self.token, self.password, self.private_key) if value]
