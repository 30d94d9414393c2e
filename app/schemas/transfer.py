"""Schemas of file transfers and their per-file results."""

from __future__ import annotations

from datetime import UTC, datetime

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from app.config import TIMEOUT_DEFAULT, TIMEOUT_MAX, TIMEOUT_MIN, TRANSFER_SOURCES_MAX
from app.execution.transfer import MODES, PATH_VARIABLES, SAFE_LAYOUTS, STRICT, unknown_variables
from app.models import FileStatus
from app.schemas.fields import ABSOLUTE_PATH, Id, Integer, exactly_one_shape
from app.schemas.job import TargetsSchema
from app.schemas.query import FilterArgs

FILE_STATUSES = [str(status) for status in FileStatus]
SOURCE_KINDS = ("file_id", "content", "path")
# strftime directives and plain characters; no "/" so a date stays one directory name.
DATE_FORMAT = validate.Regexp(
    r"^[A-Za-z0-9%_.:+-]+$", error="use strftime directives, letters, digits and . _ : + -"
)


class SourceSchema(Schema):
    file_id = Id(strict=True, metadata={"description": "a file of the project's file store"})
    name = fields.String(metadata={"description": "with content: the file's name on targets"})
    content = fields.String(metadata={"description": "a small file given inline, as text"})
    path = fields.String(
        validate=[validate.Length(min=1, max=4096), ABSOLUTE_PATH],
        metadata={
            "description": "on source hosts: an absolute path to a file, a directory, or a glob of files"
        },
    )
    source_hosts = fields.Nested(
        TargetsSchema, metadata={"description": "with path: the hosts to take it from"}
    )
    account_id = Id(
        strict=True,
        allow_none=True,
        metadata={"description": "with path: the account to log in to source hosts"},
    )

    class Meta:
        openapi = exactly_one_shape(
            (("file_id",), ()), (("content", "name"), ()), (("path", "source_hosts"), ("account_id",))
        )

    @validates_schema
    def one_kind(self, data, **kwargs) -> None:
        kinds = [kind for kind in SOURCE_KINDS if kind in data]
        if len(kinds) != 1:
            raise ValidationError(
                "give exactly one of file_id, content (with name) or path (with source_hosts)",
                field_name=kinds[1] if len(kinds) > 1 else "file_id",
            )
        if "content" in data and "name" not in data:
            raise ValidationError("an inline file needs a name", field_name="name")
        if "name" in data and "content" not in data:
            raise ValidationError("name goes with content only", field_name="name")
        if "path" in data:
            if "source_hosts" not in data:
                raise ValidationError("name the hosts to take the path from", field_name="source_hosts")
        elif "source_hosts" in data or "account_id" in data:
            field = "source_hosts" if "source_hosts" in data else "account_id"
            raise ValidationError("goes with path only", field_name=field)


class FileTransferSchema(Schema):
    idempotency_key = fields.String(
        validate=validate.Length(min=1, max=255),
        metadata={"description": "a retried launch with the same key returns the first job instance"},
    )
    name = fields.String(validate=validate.Length(min=1, max=255))
    sources = fields.List(
        fields.Nested(SourceSchema), required=True, validate=validate.Length(min=1, max=TRANSFER_SOURCES_MAX)
    )
    target_path = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=4096), ABSOLUTE_PATH],
        metadata={
            "description": "the directory files are written to on targets; "
            f"may hold {', '.join('${' + name + '}' for name in PATH_VARIABLES)}, expanded per source"
        },
    )
    targets = fields.Nested(TargetsSchema, required=True)
    account_id = Id(
        strict=True, allow_none=True, load_default=None, metadata={"description": "the account on targets"}
    )
    mode = fields.String(
        load_default=STRICT,
        validate=validate.OneOf(MODES),
        metadata={
            "description": "strict: a missing target directory fails the host; force: create directories "
            "and overwrite; safe: as force, into a sub-directory per source (and date)"
        },
    )
    safe_layout = fields.String(load_default="host", validate=validate.OneOf(SAFE_LAYOUTS))
    date_format = fields.String(
        load_default="%Y%m%d",
        validate=[validate.Length(min=1, max=64), DATE_FORMAT],
        metadata={"description": "strftime format of ${date} and of safe mode's date directory"},
    )
    timeout = Integer(
        strict=True,
        load_default=TIMEOUT_DEFAULT,
        validate=validate.Range(TIMEOUT_MIN, TIMEOUT_MAX),
        metadata={"description": "seconds, for each step (fetch, push)"},
    )
    speed_limit = Integer(
        strict=True,
        allow_none=True,
        load_default=None,
        validate=validate.Range(min=1),
        metadata={"description": "KB/s per host on the wire; none: no limit"},
    )
    forks = Integer(strict=True, allow_none=True, load_default=None, validate=validate.Range(min=1))

    @validates("target_path")
    def known_variables(self, value: str, **kwargs) -> None:
        unknown = unknown_variables(value)
        if unknown:
            raise ValidationError(
                f"unknown variable ${{{unknown[0]}}}: use {', '.join('${' + n + '}' for n in PATH_VARIABLES)}"
            )

    @validates("date_format")
    def formats_a_name(self, value: str, **kwargs) -> None:
        if datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).strftime(value) in (".", ".."):
            raise ValidationError("the date must not read as . or ..")


class FileResultArgs(FilterArgs):
    step = Id(metadata={"description": "a step instance id"})
    host = fields.String(validate=validate.Length(min=1), metadata={"description": "a target host's name"})
    status = fields.String(validate=validate.OneOf(FILE_STATUSES))
    attempt = Integer(
        validate=validate.Range(min=1),
        metadata={"description": "the files of each host's attempt of this number; default: its latest"},
    )


class FileResultSchema(Schema):
    id = fields.Integer()
    step_instance_id = fields.Integer()
    host_name = fields.String()
    seq = fields.Integer(metadata={"description": "the file's place in the step's list of files"})
    path = fields.String(metadata={"description": "where it was written on the host"})
    source = fields.String(metadata={"description": "the source host's name, or controller"})
    size = fields.Integer(allow_none=True, metadata={"description": "bytes"})
    status = fields.String(metadata={"enum": FILE_STATUSES})
    error = fields.String(allow_none=True)
    checksum_verified = fields.Boolean(
        allow_none=True,
        metadata={
            "description": "the host checked the file against the source's checksum (the bytes received, "
            "before they took the file's place, or the file it already held); null: failed for another reason"
        },
    )
    started_at = fields.DateTime(allow_none=True)
    ended_at = fields.DateTime(allow_none=True)
    duration = fields.Float(allow_none=True, metadata={"description": "seconds"})
    speed = fields.Float(allow_none=True, metadata={"description": "bytes per second of a copied file"})
