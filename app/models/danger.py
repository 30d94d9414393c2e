"""Dangerous-command rules: global ones, a project's own, and a project's switches on global ones."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Boolean, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, query_expression

from app.extensions import db
from app.models.base import UTCDateTime, utcnow


class RuleAction(StrEnum):
    """What a match does: `scan` warns and lets the launch go on, `intercept` refuses it."""

    SCAN = "scan"
    INTERCEPT = "intercept"


class DangerRule(db.Model):
    """A regular expression matched against each line of a script; `project_id` None makes it global."""

    __tablename__ = "danger_rule"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    pattern: Mapped[str] = mapped_column(Text)
    # The languages it applies to; empty for all.
    languages: Mapped[list] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(Text, default="")
    action: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Whether it is in force where it is read: `enabled`, or a project's own switch on a global rule.
    in_force: Mapped[bool | None] = query_expression()

    @property
    def scope(self) -> str:
        return "global" if self.project_id is None else "project"


class DangerRuleOverride(db.Model):
    """A project's own switch on a global rule, which other projects do not see."""

    __tablename__ = "danger_rule_override"
    __table_args__ = (UniqueConstraint("project_id", "rule_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    rule_id: Mapped[int] = mapped_column(ForeignKey("danger_rule.id", ondelete="CASCADE"), index=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    updated_by: Mapped[str] = mapped_column(String(64), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
