"""Accounts: the credentials Ansible logs in with."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import EncryptedText, UTCDateTime, utcnow


class Account(db.Model):
    __tablename__ = "account"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    username: Mapped[str] = mapped_column(String(128))
    private_key: Mapped[str | None] = mapped_column(EncryptedText)
    password: Mapped[str | None] = mapped_column(EncryptedText)
    become: Mapped[bool] = mapped_column(Boolean, default=False)
    become_method: Mapped[str] = mapped_column(String(32), default="sudo")
    become_user: Mapped[str] = mapped_column(String(128), default="root")
    become_password: Mapped[str | None] = mapped_column(EncryptedText)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def has_private_key(self) -> bool:
        return self.private_key is not None

    @property
    def has_password(self) -> bool:
        return self.password is not None
