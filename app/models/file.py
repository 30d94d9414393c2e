"""The file store's files, and per-file results of file transfers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import UTCDateTime, utcnow
from app.status import FileStatus


class StoredFile(db.Model):
    """An uploaded file: its bytes live under the data dir's files/, named by `storage_name`."""

    __tablename__ = "stored_file"
    __table_args__ = (Index("ix_stored_file_project_created", "project_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    # The name it is written under on targets; never used as a path on the controller.
    name: Mapped[str] = mapped_column(String(255))
    storage_name: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    # What Ansible's copy compares on targets: known here, the file is not hashed again per host.
    sha1: Mapped[str] = mapped_column(String(40))
    uploaded_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FileResult(db.Model):
    """One file on one target host of a transfer's push step."""

    __tablename__ = "file_result"
    __table_args__ = (
        UniqueConstraint("host_result_id", "seq"),
        Index("ix_file_result_step_host", "step_instance_id", "host_name"),
        Index("ix_file_result_job", "job_instance_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_instance_id: Mapped[int] = mapped_column(ForeignKey("job_instance.id", ondelete="CASCADE"))
    step_instance_id: Mapped[int] = mapped_column(ForeignKey("step_instance.id", ondelete="CASCADE"))
    host_result_id: Mapped[int] = mapped_column(ForeignKey("host_result.id", ondelete="CASCADE"))
    host_name: Mapped[str] = mapped_column(String(255))
    # The file's place in the step's list of files.
    seq: Mapped[int] = mapped_column(Integer)
    # Where it was written on the host, and where it came from (a source host's name, or the controller).
    path: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(255))
    size: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default=FileStatus.FAILED)
    error: Mapped[str | None] = mapped_column(Text)
    # The target checked the file against the source's checksum (the bytes it received, before renaming
    # them into place; or the file it already held); None when the push failed for another reason.
    checksum_verified: Mapped[bool | None] = mapped_column(Boolean)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def duration(self) -> float | None:
        if self.started_at and self.ended_at:
            return round((self.ended_at - self.started_at).total_seconds(), 3)
        return None

    @property
    def speed(self) -> float | None:
        """Bytes per second of a file actually copied."""
        duration = self.duration
        if self.status != FileStatus.COPIED or not duration or self.size is None:
            return None
        return round(self.size / duration, 1)
