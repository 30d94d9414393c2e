"""Schemas of repositories, their revisions, syncs and what discovery found in them."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.config import TIMEOUT_MAX
from app.models import SourceType
from app.schemas.fields import NAME, Id, Integer

SOURCE_TYPES = [str(kind) for kind in SourceType]
BRANCH = validate.Regexp(
    r"^(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[A-Za-z0-9._/+-]+(?<!\.lock)(?<![/.])$",
    error="not a branch name",
)


class RepositorySourceSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(SOURCE_TYPES))
    url = fields.String(
        validate=validate.Length(min=1, max=2048),
        metadata={
            "description": "git: https://, ssh:// or user@host:path (file:// where the server allows it)"
        },
    )
    branch = fields.String(
        validate=[validate.Length(min=1, max=255), BRANCH],
        metadata={"description": "git: the branch whose newest commit a sync takes (default main)"},
    )
    credential_id = Id(
        strict=True, allow_none=True, metadata={"description": "git: a git credential of the project"}
    )

    class Meta:
        openapi = {
            "oneOf": [
                {"properties": {"type": {"enum": ["git"]}}, "required": ["type", "url"]},
                {
                    "properties": {"type": {"enum": ["archive"]}},
                    "not": {"anyOf": [{"required": [name]} for name in ("url", "branch", "credential_id")]},
                },
            ]
        }

    @validates_schema
    def fits_the_type(self, data, **kwargs) -> None:
        if data.get("type") == SourceType.ARCHIVE:
            for name in ("url", "branch", "credential_id"):
                if name in data:
                    raise ValidationError(f"an archive repository has no {name}", name)
        elif data.get("type") == SourceType.GIT and "url" not in data:
            raise ValidationError("a git repository needs its url", "url")


class ArchiveSchema(Schema):
    sha256 = fields.String(attribute="archive_sha256")
    size = fields.Integer(attribute="archive_size")
    uploaded_at = fields.DateTime(attribute="archive_uploaded_at")
    uploaded_by = fields.String(attribute="archive_uploaded_by")


class RevisionSchema(Schema):
    revision = fields.String(metadata={"description": "the commit id, or the archive's sha256"})
    summary = fields.String(metadata={"description": "the commit's subject, or what the archive held"})
    synced_at = fields.DateTime()
    synced_by = fields.String()
    job_instance_id = fields.Integer(allow_none=True, metadata={"description": "the sync that made it"})
    file_count = fields.Integer()


class CurrentRevisionSchema(RevisionSchema):
    log = fields.String(metadata={"description": "what the sync that made it printed"})


class LastSyncSchema(Schema):
    job_instance_id = fields.Integer()
    status = fields.String()
    launched_by = fields.String()
    started_at = fields.DateTime(allow_none=True)
    ended_at = fields.DateTime(allow_none=True)
    error = fields.String(allow_none=True)
    log = fields.String(allow_none=True)


class RepositorySchema(Schema):
    id = fields.Integer(dump_only=True)
    project_id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=[validate.Length(min=1, max=128), NAME])
    description = fields.String(load_default="", validate=validate.Length(max=4096))
    source = fields.Nested(RepositorySourceSchema, required=True)
    sync_on_launch = fields.Boolean(
        load_default=False, metadata={"description": "a launch syncs first when the revision is older than"}
    )
    sync_cache_seconds = Integer(
        strict=True,
        load_default=0,
        validate=validate.Range(0, TIMEOUT_MAX),
        metadata={"description": "with sync_on_launch: how old the current revision may be"},
    )
    archive = fields.Method(
        "uploaded_archive", dump_only=True, allow_none=True,
        metadata={"description": "archive: the last upload, which the next sync unpacks"},
    )  # fmt: skip
    current_revision = fields.Nested(CurrentRevisionSchema, dump_only=True, allow_none=True)
    revisions = fields.List(
        fields.Nested(RevisionSchema),
        dump_only=True,
        metadata={"description": "kept revisions, newest first"},
    )
    last_sync = fields.Nested(LastSyncSchema, dump_only=True, allow_none=True)
    created_by = fields.String(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)

    def uploaded_archive(self, repository) -> dict | None:
        if repository.archive_sha256 is None:
            return None
        return ArchiveSchema().dump(repository)


class SyncSchema(Schema):
    refresh_requirements = fields.Boolean(
        load_default=False,
        metadata={"description": "install roles/ and collections/requirements.yml again, cache or not"},
    )


class PlaySchema(Schema):
    name = fields.String(metadata={"description": "the play's name (empty when it has none)"})
    hosts = fields.Raw(metadata={"description": "its host pattern, or list of patterns"})
    import_playbook = fields.String(metadata={"description": "for an import_playbook entry: what it imports"})


class PlaybookFoundSchema(Schema):
    path = fields.String(metadata={"description": "relative to the repository's root"})
    plays = fields.List(fields.Nested(PlaySchema))


class NotPlaybookSchema(Schema):
    path = fields.String()
    reason = fields.String(metadata={"description": "why it is not a playbook"})


class InventoryHostSchema(Schema):
    name = fields.String()
    address = fields.String()


class InventoryFoundSchema(Schema):
    path = fields.String()
    hosts = fields.List(fields.Nested(InventoryHostSchema))
    groups = fields.List(fields.String())
    error = fields.String(allow_none=True, metadata={"description": "why Ansible could not read it"})


class DiscoverySchema(Schema):
    revision = fields.String()
    playbooks = fields.List(fields.Nested(PlaybookFoundSchema))
    not_playbooks = fields.List(
        fields.Nested(NotPlaybookSchema), metadata={"description": "every other YAML file, with its reason"}
    )
    skipped = fields.List(
        fields.Nested(NotPlaybookSchema), metadata={"description": "directories not searched, and why"}
    )
    inventories = fields.List(fields.Nested(InventoryFoundSchema))
    ansible_cfg = fields.Boolean(metadata={"description": "the repository has an ansible.cfg at its root"})


class DiscoveryArgs(Schema):
    revision = fields.String(
        validate=validate.Length(min=7, max=64),
        metadata={"description": "a kept revision (default: the current one)"},
    )
