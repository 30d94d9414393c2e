"""Schemas of timed jobs, their runs, previews and triggers."""

from __future__ import annotations

from datetime import UTC

from marshmallow import Schema, ValidationError, fields, post_dump, validate, validates_schema

from app.config import MISFIRE_GRACE_DEFAULT, MISFIRE_GRACE_MAX, PREVIEW_COUNT_MAX
from app.models import Overlap, RunOrigin, TimedRunStatus
from app.schemas.fields import Id, Integer
from app.schemas.job import ScriptExecutionSchema
from app.schemas.query import FilterArgs
from app.secrets import MASK
from app.services.timed_jobs import next_fire_at, statistics

TARGET_KINDS = ("plan_id", "template_id", "flow_id", "script_execution")
RUN_STATUSES = [str(status) for status in TimedRunStatus]


class TimedTargetSchema(Schema):
    plan_id = Id(strict=True, metadata={"description": "launch this job plan"})
    template_id = Id(strict=True, metadata={"description": "launch this job template"})
    flow_id = Id(strict=True, metadata={"description": "start a task of this flow's newest version"})
    script_execution = fields.Nested(
        ScriptExecutionSchema(exclude=("idempotency_key",)),
        metadata={"description": "the body of a script execution"},
    )

    @validates_schema
    def one_target(self, data, **kwargs) -> None:
        if len(data) != 1:
            raise ValidationError(f"give exactly one of {', '.join(TARGET_KINDS)}", field_name="plan_id")


class TimedJobSchema(Schema):
    id = fields.Integer(dump_only=True)
    project_id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    description = fields.String(validate=validate.Length(max=4096))
    target = fields.Nested(TimedTargetSchema, required=True)
    variables = fields.Dict(
        keys=fields.String(),
        load_default=dict,
        metadata={"description": "overrides of the target's variables, checked as a launch checks them"},
    )
    schedule = fields.Dict(
        required=True,
        metadata={
            "description": '{"cron": "*/10 * * * * *"} (seconds first; five fields: second 0), '
            '{"at": "2026-12-24T18:00:00"} (once) or {"every": 90} (seconds)'
        },
    )
    timezone = fields.String(load_default="UTC", metadata={"description": "an IANA zone"})
    start_at = fields.DateTime(allow_none=True, load_default=None, metadata={"description": "in the zone"})
    end_at = fields.DateTime(allow_none=True, load_default=None, metadata={"description": "in the zone"})
    enabled = fields.Boolean(load_default=True, metadata={"description": "false pauses it"})
    disabled_reason = fields.String(
        dump_only=True, metadata={"description": "why it disabled itself (its schedule cannot fire again)"}
    )
    overlap = fields.String(
        load_default=Overlap.SKIP,
        validate=validate.OneOf([str(overlap) for overlap in Overlap]),
        metadata={
            "description": "a fire while the previous run still runs: allow, skip, or queue (one waits)"
        },
    )
    misfire_grace = fields.Integer(
        strict=True,
        load_default=MISFIRE_GRACE_DEFAULT,
        validate=validate.Range(0, MISFIRE_GRACE_MAX),
        metadata={"description": "seconds after its time a fire may still run; later ones are missed"},
    )
    notify_after_failures = Integer(strict=True, allow_none=True, validate=validate.Range(min=1))
    next_fire_at = fields.Method("next_fire", dump_only=True)
    statistics = fields.Method("statistics_of", dump_only=True)
    trigger_url = fields.String(
        dump_only=True,
        metadata={"description": "only in the answer that makes it: keep it, it is not shown again"},
    )
    has_trigger_secret = fields.Method("trigger_secret_set", dump_only=True)
    created_by = fields.String(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)

    def next_fire(self, timed_job) -> str | None:
        time = next_fire_at(timed_job)
        return time.isoformat() if time else None

    def statistics_of(self, timed_job) -> dict:
        return statistics(timed_job)

    def trigger_secret_set(self, timed_job) -> bool:
        return timed_job.trigger_secret_hash is not None

    @post_dump(pass_original=True)
    def mask_secrets(self, data: dict, timed_job, **kwargs) -> dict:
        hidden = timed_job.secrets
        data["variables"] = {**data["variables"], **dict.fromkeys(hidden.get("variables", {}), MASK)}
        if "params" in hidden:
            data["target"]["script_execution"]["params"] = MASK
        return data


class TimedJobArgs(FilterArgs):
    enabled = fields.Boolean()


class TimedRunSchema(Schema):
    id = fields.Integer()
    timed_job_id = fields.Integer()
    origin = fields.String(metadata={"enum": [str(origin) for origin in RunOrigin]})
    scheduled_at = fields.DateTime()
    fired_at = fields.DateTime()
    launched_at = fields.DateTime()
    lateness_ms = fields.Integer(metadata={"description": "fired minus scheduled, in milliseconds"})
    status = fields.String(metadata={"enum": RUN_STATUSES})
    reason = fields.String(metadata={"description": "why it was skipped, missed or failed to launch"})
    run_key = fields.String()
    triggered_by = fields.String()
    job_instance_id = fields.Integer(metadata={"description": "the job instance it started (a job target)"})
    flow_task_id = fields.Integer(metadata={"description": "the flow task it started (a flow target)"})
    target_status = fields.String(
        metadata={"description": "the status of the job instance or flow task it started"}
    )


class TimedRunArgs(FilterArgs):
    status = fields.List(
        fields.String(validate=validate.OneOf(RUN_STATUSES)), metadata={"description": "repeatable"}
    )
    origin = fields.String(validate=validate.OneOf([str(origin) for origin in RunOrigin]))
    scheduled_after = fields.AwareDateTime(default_timezone=UTC, metadata={"description": "inclusive"})
    scheduled_before = fields.AwareDateTime(default_timezone=UTC, metadata={"description": "exclusive"})


class PreviewArgs(FilterArgs):
    count = fields.Integer(load_default=10, validate=validate.Range(1, PREVIEW_COUNT_MAX))


class FireTimeSchema(Schema):
    at = fields.String(metadata={"description": "in the timed job's zone"})
    utc = fields.String()


class TriggerSchema(Schema):
    run_key = fields.String(
        validate=validate.Length(min=1, max=255),
        metadata={"description": "the caller's id of this fire: the same key twice starts one run"},
    )
    variables = fields.Dict(keys=fields.String(), load_default=dict, metadata={"description": "overrides"})


class TriggerUrlSchema(Schema):
    trigger_url = fields.String(metadata={"description": "shown once"})
