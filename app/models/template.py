"""Job templates (ordered steps plus global variables) and their plans (saved variants)."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import EncryptedText, UTCDateTime, utcnow


class VariableType(StrEnum):
    STRING = "string"
    # Encrypted at rest, never returned, masked in output.
    SECRET = "secret"
    # Hosts, groups and dynamic groups; a step can target it.
    HOST_LIST = "host_list"
    # Each host holds its own value, set from its output during a step.
    NAMESPACE = "namespace"
    ARRAY = "array"


class StepType(StrEnum):
    SCRIPT = "script"
    FILE_TRANSFER = "file_transfer"
    PLAYBOOK = "playbook"
    MANUAL = "manual"
    # Another template's steps (and variables), in this step's place.
    TEMPLATE = "template"


class JobTemplate(db.Model):
    __tablename__ = "job_template"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    # Variable definitions: name, type, default (secret defaults live in secret_defaults), required,
    # changeable, description.
    variables: Mapped[list] = mapped_column(JSON, default=list)
    secret_defaults: Mapped[str | None] = mapped_column(EncryptedText)
    steps: Mapped[list] = mapped_column(JSON, default=list)
    # Raised by every change of steps or variables; a plan made from an older one is out of date.
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    plans: Mapped[list[JobPlan]] = relationship(back_populates="template", cascade="all, delete-orphan")

    @property
    def secret_default_values(self) -> dict[str, str]:
        return json.loads(self.secret_defaults or "{}")


class JobPlan(db.Model):
    """A template's steps and variables as of `template_versions`, with its own choices and values."""

    __tablename__ = "job_plan"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("job_template.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    # The template's steps and variable definitions when the plan was made or last synced.
    steps: Mapped[list] = mapped_column(JSON, default=list)
    variables: Mapped[list] = mapped_column(JSON, default=list)
    # The version of each template whose steps it holds (the template and those it includes), by id.
    template_versions: Mapped[dict] = mapped_column(JSON, default=dict)
    # Keys of the steps the plan runs.
    enabled_steps: Mapped[list] = mapped_column(JSON, default=list)
    # The plan's own values: {name: value}, secrets in secret_values.
    values: Mapped[dict] = mapped_column(JSON, default=dict)
    secret_values: Mapped[str | None] = mapped_column(EncryptedText)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    template: Mapped[JobTemplate] = relationship(back_populates="plans")

    @property
    def template_version(self) -> int:
        return self.template_versions[str(self.template_id)]

    @property
    def out_of_date(self) -> bool:
        return any(
            template is None or template.version != version
            for template, version in zip(self.templates, self.template_versions.values(), strict=True)
        )

    @property
    def templates(self) -> list[JobTemplate | None]:
        """Its template and those it includes, as they are now (None: deleted since)."""
        return [db.session.get(JobTemplate, int(id)) for id in self.template_versions]

    @property
    def secret_default_values(self) -> dict[str, str]:
        """The secret defaults of its templates; the including template's win."""
        merged: dict[str, str] = {}
        for template in reversed(self.templates):
            if template is not None:
                merged.update(template.secret_default_values)
        return merged

    @property
    def own_secret_values(self) -> dict[str, str]:
        return json.loads(self.secret_values or "{}")
