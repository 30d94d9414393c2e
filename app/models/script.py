"""The script library: scripts of a project or public to all, and their versions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import UTCDateTime, unique_where, utcnow
from app.status import VersionState


class Script(db.Model):
    """A named script; `project_id` None makes it public, usable from every project."""

    __tablename__ = "script"
    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        # Unique constraints treat NULLs as distinct, so public names need an index of their own.
        unique_where("uq_script_public_name", "name", "project_id IS NULL"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    versions: Mapped[list[ScriptVersion]] = relationship(
        back_populates="script", order_by="ScriptVersion.id", cascade="all, delete-orphan"
    )

    @property
    def public(self) -> bool:
        return self.project_id is None


class ScriptVersion(db.Model):
    __tablename__ = "script_version"
    __table_args__ = (
        UniqueConstraint("script_id", "version"),
        # At most one online version per script, held by the database itself.
        unique_where("uq_script_version_online", "script_id", "state = 'online'"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    script_id: Mapped[int] = mapped_column(ForeignKey("script.id", ondelete="CASCADE"), index=True)
    version: Mapped[str] = mapped_column(String(64))
    content: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default=VersionState.DRAFT)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    script: Mapped[Script] = relationship(back_populates="versions")
