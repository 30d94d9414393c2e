"""Hosts, static groups and dynamic groups of a project."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Boolean, Column, ForeignKey, Integer, String, Table, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import UTCDateTime, utcnow


class Connection(StrEnum):
    SSH = "ssh"
    LOCAL = "local"
    WINRM = "winrm"


group_host = Table(
    "group_host",
    db.metadata,
    Column("group_id", Integer, ForeignKey("host_group.id", ondelete="CASCADE"), primary_key=True),
    Column("host_id", Integer, ForeignKey("host.id", ondelete="CASCADE"), primary_key=True, index=True),
)

group_child = Table(
    "group_child",
    db.metadata,
    Column("parent_id", Integer, ForeignKey("host_group.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "child_id", Integer, ForeignKey("host_group.id", ondelete="CASCADE"), primary_key=True, index=True
    ),
)


class Host(db.Model):
    __tablename__ = "host"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    address: Mapped[str] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer)
    connection: Mapped[str] = mapped_column(String(16), default=Connection.SSH)
    labels: Mapped[dict] = mapped_column(JSON, default=dict)
    variables: Mapped[dict] = mapped_column(JSON, default=dict)
    # The last reachability check: None until one has run. `unreachable_since` is when the
    # host became unreachable and has stayed so at every check since.
    reachable: Mapped[bool | None] = mapped_column(Boolean)
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_check_error: Mapped[str | None] = mapped_column(Text)
    unreachable_since: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Group(db.Model):
    __tablename__ = "host_group"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    variables: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    hosts: Mapped[list[Host]] = relationship(secondary=group_host, order_by=Host.id)
    children: Mapped[list[Group]] = relationship(
        secondary=group_child,
        primaryjoin=lambda: Group.id == group_child.c.parent_id,
        secondaryjoin=lambda: Group.id == group_child.c.child_id,
        order_by=lambda: Group.id,
    )


class DynamicGroup(db.Model):
    """A saved host filter, resolved to hosts each time it is used."""

    __tablename__ = "dynamic_group"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    filter: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
