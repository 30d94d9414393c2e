"""job_plan: launch a plan (or a template) with variable values and wait for its job instance; outputs
as for script."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.flows.atoms import Context
from app.flows.atoms.script import JobAtom
from app.models import JobInstance, LaunchType
from app.services import launches


class JobPlanInputs(Schema):
    plan_id = fields.Integer(strict=True)
    template_id = fields.Integer(strict=True)
    name = fields.String(validate=validate.Length(min=1, max=255))
    variables = fields.Dict(
        keys=fields.String(), load_default=dict, metadata={"description": "values by name"}
    )

    @validates_schema
    def one_of(self, data, partial=(), **kwargs) -> None:
        given = ("plan_id" in data) + ("template_id" in data)
        if given != 1 and not set(partial or ()) & {"plan_id", "template_id"}:
            raise ValidationError("name a plan_id or a template_id", "plan_id")


class JobPlan(JobAtom):
    name = "job_plan"
    schema = JobPlanInputs

    def launch(self, context: Context, data: dict[str, Any]) -> JobInstance:
        project_id = context.task.project_id
        body = {
            "variables": data["variables"],
            "name": data.get("name"),
            "idempotency": data["idempotency"],
        }
        body = {key: value for key, value in body.items() if value is not None}
        if "plan_id" in data:
            return launches.launch_plan(
                context.actor, project_id, data["plan_id"], body, launch_type=LaunchType.FLOW
            )
        return launches.launch_template(
            context.actor, project_id, data["template_id"], body, launch_type=LaunchType.FLOW
        )


ATOM = JobPlan()
