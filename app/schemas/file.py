"""Schemas of the file store."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.schemas.query import FilterArgs


class StoredFileSchema(Schema):
    id = fields.Integer()
    project_id = fields.Integer()
    name = fields.String(metadata={"description": "the name it is written under on targets"})
    size = fields.Integer(metadata={"description": "bytes"})
    sha256 = fields.String()
    uploaded_by = fields.String()
    created_at = fields.DateTime()


class UploadArgs(Schema):
    name = fields.String(
        metadata={
            "description": "the file's name: required with a raw body; with multipart, the file part's "
            "filename unless given here"
        }
    )


class FileListArgs(FilterArgs):
    name = fields.String(validate=validate.Length(min=1), metadata={"description": "an exact name"})
