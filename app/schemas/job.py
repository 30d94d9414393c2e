"""Schemas of script executions, job instances and host results."""

from __future__ import annotations

import json
from datetime import UTC

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.config import TIMEOUT_DEFAULT, TIMEOUT_MAX, TIMEOUT_MIN
from app.execution.compiler import LANGUAGES
from app.models import HostStatus, LaunchType, RunStatus, TaskStatus
from app.schemas.danger import RuleMatchSchema
from app.schemas.fields import Id, Integer, exactly_one_shape
from app.schemas.query import FilterArgs
from app.secrets import MASK

RUN_STATUSES = [str(status) for status in RunStatus]
HOST_STATUSES = [str(status) for status in HostStatus]
TASK_STATUSES = [str(status) for status in TaskStatus]
LAUNCH_TYPES = [str(launch_type) for launch_type in LaunchType]
SCRIPT_SOURCES = ("content", "script_id", "version_id")
TARGET_KINDS = ("hosts", "groups", "dynamic_groups")


class ScriptSchema(Schema):
    content = fields.String(validate=validate.Length(min=1))
    language = fields.String(
        validate=validate.OneOf(LANGUAGES),
        metadata={"description": f"with content: one of {', '.join(LANGUAGES)} (default shell)"},
    )
    script_id = Id(strict=True, metadata={"description": "run the script's online version"})
    version_id = Id(strict=True, metadata={"description": "run this version of a script"})

    class Meta:
        openapi = exactly_one_shape(
            (("content",), ("language",)), (("script_id",), ()), (("version_id",), ())
        )

    @validates_schema
    def one_source(self, data, **kwargs) -> None:
        sources = [name for name in SCRIPT_SOURCES if name in data]
        if len(sources) != 1:
            extra = sources[1] if len(sources) > 1 else "content"
            raise ValidationError("give exactly one of content, script_id or version_id", field_name=extra)
        if "language" in data and "content" not in data:
            raise ValidationError("a library script runs in its own language: leave language out", "language")


class TargetsSchema(Schema):
    hosts = fields.List(Id(strict=True), load_default=list)
    groups = fields.List(Id(strict=True), load_default=list)
    dynamic_groups = fields.List(
        Id(strict=True), load_default=list, metadata={"description": "resolved at launch"}
    )

    class Meta:
        openapi = {
            "anyOf": [{"required": [name], "properties": {name: {"minItems": 1}}} for name in TARGET_KINDS]
        }

    @validates_schema
    def not_empty(self, data, **kwargs) -> None:
        if not any(data[name] for name in TARGET_KINDS):
            raise ValidationError("name at least one host, group or dynamic group", field_name="hosts")


class ScriptExecutionSchema(Schema):
    idempotency_key = fields.String(
        validate=validate.Length(min=1, max=255),
        metadata={"description": "a retried launch with the same key returns the first job instance"},
    )
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
    account_id = Id(strict=True, allow_none=True, load_default=None)
    timeout = Integer(
        strict=True, load_default=TIMEOUT_DEFAULT, validate=validate.Range(TIMEOUT_MIN, TIMEOUT_MAX)
    )
    forks = Integer(strict=True, allow_none=True, load_default=None, validate=validate.Range(min=1))


class SliceSchema(Schema):
    index = fields.Integer()
    batch = fields.Integer(metadata={"description": "the rolling batch it belongs to"})
    status = fields.String(metadata={"enum": RUN_STATUSES})
    host_count = fields.Integer()
    worker = fields.String(allow_none=True, metadata={"description": "null until a worker takes the slice"})
    error = fields.String(allow_none=True)
    started_at = fields.DateTime(allow_none=True)
    ended_at = fields.DateTime(allow_none=True)


class BatchSchema(Schema):
    batch = fields.Integer()
    size = fields.Integer()
    status = fields.String(metadata={"enum": RUN_STATUSES})
    counts = fields.Dict(keys=fields.String(), values=fields.Integer())


class OperationSchema(Schema):
    id = fields.Integer()
    step_instance_id = fields.Integer(allow_none=True)
    action = fields.String(metadata={"description": "terminate, retry, ignore, skip, confirm or reject"})
    actor = fields.String()
    reason = fields.String()
    details = fields.Dict()
    created_at = fields.DateTime()


class StepSchema(Schema):
    id = fields.Integer()
    seq = fields.Integer()
    name = fields.String()
    kind = fields.String()
    status = fields.String(metadata={"enum": RUN_STATUSES})
    host_count = fields.Integer()
    counts = fields.Dict(keys=fields.String(), values=fields.Integer())
    spec = fields.Method("public_spec")
    template_step = fields.String(allow_none=True, metadata={"description": "the template step's key"})
    on_failure = fields.String(metadata={"description": "stop, ignore or continue"})
    rolling_mode = fields.String(allow_none=True)
    current_batch = fields.Integer()
    batches = fields.List(fields.Nested(BatchSchema), attribute="batch_view")
    started_at = fields.DateTime(allow_none=True)
    ended_at = fields.DateTime(allow_none=True)
    slices = fields.List(fields.Nested(SliceSchema))
    output = fields.String(
        allow_none=True,
        metadata={"description": "what a step on no host printed: a sync's log, a syntax check's answer"},
    )

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
    launch_type = fields.String(metadata={"enum": LAUNCH_TYPES})
    relaunch_of_id = fields.Integer(allow_none=True, metadata={"description": "the job instance relaunched"})
    timed_job_id = fields.Integer(allow_none=True, metadata={"description": "the timed job that launched it"})
    dispatched_at = fields.DateTime(
        allow_none=True, metadata={"description": "null while the project's running limit holds the job back"}
    )
    cancelled_by = fields.String(allow_none=True)
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    ended_at = fields.DateTime(allow_none=True)
    warnings = fields.List(
        fields.Nested(RuleMatchSchema),
        metadata={"description": "matches of dangerous-command rules that only warn (scan)"},
    )
    template_id = fields.Integer(allow_none=True)
    plan_id = fields.Integer(allow_none=True)
    variables = fields.Method(
        "launched_variables", metadata={"description": "the global variables as launched; secrets masked"}
    )
    callback_url = fields.String(allow_none=True)
    steps = fields.List(fields.Nested(StepSchema))
    operations = fields.List(fields.Nested(OperationSchema))

    def launched_variables(self, job) -> dict:
        secrets = json.loads(job.secret_variables or "{}")
        return {**job.variables, **{name: {"type": "secret", "value": MASK} for name in secrets}}


class StepOperationSchema(Schema):
    reason = fields.String(load_default="", validate=validate.Length(max=4096))


class RetrySchema(Schema):
    failed_only = fields.Boolean(
        load_default=True,
        metadata={"description": "the hosts that did not succeed, else every host it ran on"},
    )


class JobListArgs(FilterArgs):
    status = fields.List(
        fields.String(validate=validate.OneOf(RUN_STATUSES)),
        metadata={"description": "repeat for several statuses"},
    )
    launched_by = fields.String(metadata={"description": "the user name that launched it"})
    launch_type = fields.String(validate=validate.OneOf(LAUNCH_TYPES))
    timed_job_id = Id(metadata={"description": "the runs of this timed job"})
    name = fields.String(
        validate=validate.Length(min=1), metadata={"description": "part of the name, any case"}
    )
    host = fields.String(
        validate=validate.Length(min=1), metadata={"description": "a target host's exact name or address"}
    )
    created_after = fields.AwareDateTime(default_timezone=UTC, metadata={"description": "inclusive"})
    created_before = fields.AwareDateTime(default_timezone=UTC, metadata={"description": "exclusive"})

    @validates_schema
    def ordered_range(self, data, **kwargs) -> None:
        if (
            "created_after" in data
            and "created_before" in data
            and data["created_after"] >= data["created_before"]
        ):
            raise ValidationError("must be later than created_after", field_name="created_before")


class HostResultArgs(FilterArgs):
    step = Id(metadata={"description": "a step instance id"})
    attempt = Integer(
        validate=validate.Range(min=1),
        metadata={"description": "each host's attempt of this number (1: its first); default: its latest"},
    )
    status = fields.String(validate=validate.OneOf(HOST_STATUSES))
    exit_code = Integer()
    output_digest = fields.String(metadata={"description": "hosts of one output group"})


class RelaunchSchema(Schema):
    failed_only = fields.Boolean(
        load_default=False, metadata={"description": "only the hosts that did not succeed, else all hosts"}
    )


class OutputGroupSchema(Schema):
    status = fields.String(metadata={"enum": HOST_STATUSES})
    exit_code = fields.Integer(allow_none=True)
    output_digest = fields.String(metadata={"description": "pass to host-results to page through the hosts"})
    count = fields.Integer()
    stdout = fields.String(metadata={"description": "the output every host of the group printed"})
    stdout_truncated = fields.Boolean()
    hosts = fields.List(fields.String(), metadata={"description": "the group's first 100 host names"})


class HostResultSchema(Schema):
    id = fields.Integer()
    step_instance_id = fields.Integer()
    host_id = fields.Integer(allow_none=True)
    host_name = fields.String()
    address = fields.String()
    attempt = fields.Integer(metadata={"description": "1 for the first run; each retry of the step adds one"})
    latest = fields.Boolean(metadata={"description": "the host's last attempt of the step"})
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


class TaskResultArgs(FilterArgs):
    step = Id(metadata={"description": "a step instance id"})
    attempt = Integer(
        validate=validate.Range(min=1),
        metadata={"description": "the host's attempt of this number (1: its first); default: its latest"},
    )
    status = fields.List(
        fields.String(validate=validate.OneOf(TASK_STATUSES)),
        metadata={"description": "repeat for several statuses"},
    )


class TaskResultSchema(Schema):
    id = fields.Integer()
    step_instance_id = fields.Integer(attribute="host_result.step_instance_id")
    host_result_id = fields.Integer(metadata={"description": "the host result (one attempt) it belongs to"})
    host_name = fields.String(attribute="host_result.host_name")
    attempt = fields.Integer(attribute="host_result.attempt")
    seq = fields.Integer(metadata={"description": "its place in the host's run of the step, from 1"})
    name = fields.String(attribute="task", metadata={"description": "the task's name (else its module's)"})
    role = fields.String(allow_none=True, metadata={"description": "the role it belongs to, if any"})
    action = fields.String(metadata={"description": "the module or action it ran"})
    status = fields.String(
        attribute="outcome",
        metadata={
            "enum": TASK_STATUSES,
            "description": "ignored: failed with ignore_errors; rescued: failed in a block whose rescue ran",
        },
    )
    changed = fields.Boolean()
    msg = fields.String(metadata={"description": "the module's message"})
    diff = fields.String(
        allow_none=True, metadata={"description": "what it changed, a unified diff, when it ran in diff mode"}
    )
    exit_code = fields.Integer(allow_none=True)
    stdout = fields.String()
    stderr = fields.String()
    started_at = fields.DateTime(allow_none=True)
    ended_at = fields.DateTime(allow_none=True)
    duration = fields.Float(allow_none=True)
