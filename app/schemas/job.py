"""Schemas of script executions, job instances and host results."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.config import TIMEOUT_DEFAULT, TIMEOUT_MAX, TIMEOUT_MIN
from app.execution.compiler import LANGUAGES
from app.models import HostStatus, RunStatus
from app.secrets import MASK

RUN_STATUSES = [str(status) for status in RunStatus]
HOST_STATUSES = [str(status) for status in HostStatus]


class ScriptSchema(Schema):
    content = fields.String(required=True, validate=validate.Length(min=1))
    language = fields.String(
        load_default="shell",
        validate=validate.OneOf(LANGUAGES),
        metadata={"description": f"one of {', '.join(LANGUAGES)}"},
    )


class TargetsSchema(Schema):
    hosts = fields.List(fields.Integer(strict=True), load_default=list)
    groups = fields.List(fields.Integer(strict=True), load_default=list)
    dynamic_groups = fields.List(
        fields.Integer(strict=True), load_default=list, metadata={"description": "resolved at launch"}
    )

    @validates_schema
    def not_empty(self, data, **kwargs) -> None:
        if not data["hosts"] and not data["groups"] and not data["dynamic_groups"]:
            raise ValidationError("name at least one host, group or dynamic group", field_name="hosts")


class ScriptExecutionSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=255))
    script = fields.Nested(ScriptSchema, required=True)
    params = fields.List(
        fields.String(validate=validate.Length(max=65536)),
        load_default=list,
        validate=validate.Length(max=256),
        metadata={"description": "positional arguments of the script, passed as they are"},
    )
    sensitive = fields.Boolean(
        load_default=False, metadata={"description": "mask params in every result, log and response"}
    )
    targets = fields.Nested(TargetsSchema, required=True)
    account_id = fields.Integer(strict=True, allow_none=True, load_default=None)
    timeout = fields.Integer(
        strict=True, load_default=TIMEOUT_DEFAULT, validate=validate.Range(TIMEOUT_MIN, TIMEOUT_MAX)
    )
    forks = fields.Integer(strict=True, allow_none=True, load_default=None, validate=validate.Range(min=1))


class SliceSchema(Schema):
    index = fields.Integer()
    status = fields.String(metadata={"enum": RUN_STATUSES})
    host_count = fields.Integer()
    worker = fields.String()
    error = fields.String()
    started_at = fields.DateTime()
    ended_at = fields.DateTime()


class StepSchema(Schema):
    id = fields.Integer()
    seq = fields.Integer()
    name = fields.String()
    kind = fields.String()
    status = fields.String(metadata={"enum": RUN_STATUSES})
    host_count = fields.Integer()
    counts = fields.Dict(keys=fields.String(), values=fields.Integer())
    spec = fields.Method("public_spec")
    started_at = fields.DateTime()
    ended_at = fields.DateTime()
    slices = fields.List(fields.Nested(SliceSchema))

    def public_spec(self, step) -> dict:
        spec = dict(step.spec)
        if spec.get("sensitive"):
            spec["params"] = MASK
        return spec


class JobSchema(Schema):
    id = fields.Integer()
    project_id = fields.Integer()
    name = fields.String()
    kind = fields.String()
    status = fields.String(metadata={"enum": RUN_STATUSES})
    host_count = fields.Integer()
    counts = fields.Dict(keys=fields.String(), values=fields.Integer())
    launched_by = fields.String()
    dispatched_at = fields.DateTime(
        allow_none=True, metadata={"description": "null while the project's running limit holds the job back"}
    )
    cancelled_by = fields.String(allow_none=True)
    created_at = fields.DateTime()
    started_at = fields.DateTime()
    ended_at = fields.DateTime()
    steps = fields.List(fields.Nested(StepSchema))


class JobListArgs(Schema):
    status = fields.String(validate=validate.OneOf(RUN_STATUSES))


class HostResultArgs(Schema):
    step = fields.Integer(metadata={"description": "a step instance id"})
    status = fields.String(validate=validate.OneOf(HOST_STATUSES))


class HostResultSchema(Schema):
    id = fields.Integer()
    step_instance_id = fields.Integer()
    host_id = fields.Integer(allow_none=True)
    host_name = fields.String()
    address = fields.String()
    status = fields.String(metadata={"enum": HOST_STATUSES})
    exit_code = fields.Integer(allow_none=True)
    stdout = fields.String()
    stderr = fields.String()
    stdout_truncated = fields.Boolean()
    stderr_truncated = fields.Boolean()
    error = fields.String(allow_none=True)
    started_at = fields.DateTime(allow_none=True)
    ended_at = fields.DateTime(allow_none=True)
    duration = fields.Float(allow_none=True)
